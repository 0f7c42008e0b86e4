package threecx

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// SourceName is the Signal.Source of every signal this package produces.
const SourceName = "threecx"

// Causes of the ended signals this package produces.
const (
	// CauseRemoved: the PBX said the participant was removed.
	CauseRemoved = "removed"
	// CauseGone: the participant was missing from a snapshot or its entity
	// was not found (it ended while the bridge was not listening).
	CauseGone = "gone"
)

// Memory limits: how long the book remembers ended legs (to ignore late
// messages about them) and ended calls (for their direction and line).
const (
	tombstoneTTL = 10 * time.Minute
	pruneEvery   = time.Minute
)

// book is the source's memory of the PBX: the DN types it has learned and
// every leg it has reported. Only what was journaled is recorded as sent, so
// a failed publish is derived again from the next snapshot.
type book struct {
	nonAgent map[string]bool
	dnTypes  map[string]string
	legs     map[string]*leg      // by participant entity path
	gone     map[string]time.Time // ended legs, by path
	calls    map[string]*callInfo // by callid
	pruned   time.Time
}

// leg is one participant the book follows.
type leg struct {
	p     Participant // last seen state
	agent bool
	sent  events.State // highest state journaled, "" before the first
	dir   events.Direction
	// referredBy is the agent's extension that handed this leg its call
	// (see referrerOf); the tracker joins a new callid to that agent's call.
	referredBy string
	// consultParty is the other extension while this participant was in a
	// call between two extensions (the consultation of an attended transfer).
	consultParty string
}

type callInfo struct {
	dir   events.Direction
	legs  int // reported legs not yet ended
	ended time.Time
	// line is the DN of the trunk the call came in on (or went out on) and
	// did the dialled number, from whichever participant of the call showed
	// them first (see learnCall).
	line, did string
}

// pending is a signal to journal and the path of the leg it belongs to; the
// book records it (commit) only after the journal took it.
type pending struct {
	sig  events.Signal
	path string
}

func newBook(nonAgent []string) *book {
	b := &book{
		nonAgent: make(map[string]bool),
		dnTypes:  make(map[string]string),
		legs:     make(map[string]*leg),
		gone:     make(map[string]time.Time),
		calls:    make(map[string]*callInfo),
	}
	for _, dn := range nonAgent {
		if dn = strings.TrimSpace(dn); dn != "" {
			b.nonAgent[dn] = true
		}
	}
	return b
}

// knowsDN reports whether the type of dn is known or configured.
func (b *book) knowsDN(dn string) bool {
	_, ok := b.dnTypes[dn]
	return ok || b.nonAgent[dn]
}

func (b *book) learnDN(dn, typ string) { b.dnTypes[dn] = typ }

// isAgent reports whether participants on dn are agents. Only extensions are
// agents; queues, IVRs, route points and the DNs configured as non-agents are
// not. A DN of unknown type counts as an agent: the API shows only the DNs an
// administrator added, and those are normally the agents' extensions.
func (b *book) isAgent(dn string) bool {
	if b.nonAgent[dn] {
		return false
	}
	if t, ok := b.dnTypes[dn]; ok && t != "" {
		return t == TypeExtension
	}
	return true
}

func (b *book) isGone(path string) bool {
	_, ok := b.gone[path]
	return ok
}

// observe records the current state of a participant and returns the signal
// it calls for, if any. Repeats and states older than what was sent call for
// nothing, so duplicated and reordered messages cannot add signals.
func (b *book) observe(path string, p Participant, now time.Time) (pending, bool) {
	if b.isGone(path) {
		return pending{}, false
	}
	b.learnCall(p, now)
	if b.isTrunk(p.DN) {
		// A participant on a monitored trunk is the outside end of a call,
		// not a leg: its party is the PBX side. It only tells the call's
		// line and DID.
		return pending{}, false
	}
	l := b.legs[path]
	if l == nil {
		l = &leg{}
		b.legs[path] = l
	}
	l.p = p
	l.agent = b.isAgent(p.DN)
	if l.sent == "" && p.PartyDNType == TypeExtension {
		// A call between two extensions is not a customer call. It may become
		// one (an attended transfer that keeps the consultation's callid), so
		// remember whom it was with.
		l.consultParty = p.PartyDN
		return pending{}, false
	}
	st := events.Ringing
	if l.agent && p.Status == StatusConnected {
		st = events.Answered
	}
	if rank(st) <= rank(l.sent) {
		return pending{}, false
	}
	dir, ref := l.dir, l.referredBy
	if l.sent == "" {
		ref = b.referrerOf(p, l)
		dir = b.directionFor(p, l.agent)
	}
	return pending{sig: b.signal(l, st, "", dir, ref, now), path: path}, true
}

// end returns the ended signal of a leg the book reported. A leg it never
// reported is forgotten without a signal.
func (b *book) end(path, cause string, now time.Time) (pending, bool) {
	l := b.legs[path]
	if l == nil || l.sent == "" {
		delete(b.legs, path)
		b.gone[path] = now
		return pending{}, false
	}
	return pending{sig: b.signal(l, events.Ended, cause, l.dir, l.referredBy, now), path: path}, true
}

// commit records that pd's signal was journaled.
func (b *book) commit(pd pending, now time.Time) {
	l := b.legs[pd.path]
	if l == nil {
		return
	}
	s := pd.sig
	c := b.calls[s.CallID]
	if c == nil {
		c = &callInfo{}
		b.calls[s.CallID] = c
	}
	if l.sent == "" {
		c.legs++
		l.dir, l.referredBy = s.Direction, s.ReferredBy
	}
	if c.dir == "" {
		c.dir = s.Direction
	}
	l.sent = s.State
	if s.State == events.Ended {
		delete(b.legs, pd.path)
		b.gone[pd.path] = now
		c.legs--
		if c.legs <= 0 {
			c.legs, c.ended = 0, now
		}
	}
	b.prune(now)
}

// step is one thing a snapshot diff asks for: observe a participant, or end
// a leg that is no longer there.
type step struct {
	path string
	p    *Participant // nil: the leg ended
}

// diff compares a snapshot with the book and returns what to do, in order:
// every participant present first, then the ends of reported legs that are
// missing. That order matters: a call transferred while the bridge was
// disconnected must show its new leg before its old leg's end, or the call
// would look finished.
func (b *book) diff(dns []DNInfo, now time.Time) []step {
	seen := make(map[string]bool)
	var present []step
	// Every call's line and DID first, whichever of its participants shows
	// them, so that the first signal of each leg carries them.
	for _, d := range dns {
		b.learnDN(d.DN, d.Type)
	}
	for _, d := range dns {
		for _, p := range d.Participants {
			b.learnCall(p, now)
		}
	}
	for _, d := range dns {
		for i := range d.Participants {
			p := &d.Participants[i]
			path := ParticipantPath(d.DN, p.ID)
			if seen[path] {
				continue
			}
			seen[path] = true
			present = append(present, step{path: path, p: p})
		}
	}
	slices.SortStableFunc(present, func(x, y step) int {
		return cmp.Or(compareIDs(x.p.CallID, y.p.CallID), compareIDs(x.p.ID, y.p.ID))
	})
	var missing []step
	for path, l := range b.legs {
		if seen[path] {
			continue
		}
		if l.sent == "" {
			delete(b.legs, path)
			continue
		}
		missing = append(missing, step{path: path})
	}
	slices.SortFunc(missing, func(x, y step) int {
		lx, ly := b.legs[x.path], b.legs[y.path]
		return cmp.Or(compareIDs(lx.p.CallID, ly.p.CallID), compareIDs(lx.p.ID, ly.p.ID))
	})
	for path := range b.gone {
		if !seen[path] {
			delete(b.gone, path)
		}
	}
	return append(present, missing...)
}

// referrerOf names the agent who handed this participant its call, when
// the PBX says so: it was referred by (or acts on behalf of) that agent's
// extension, or it was that agent's consultation partner (an attended
// transfer that keeps the consultation's callid). The tracker decides
// which call that makes it a part of; only agents' extensions are legs
// it knows.
func (b *book) referrerOf(p Participant, l *leg) string {
	for _, dn := range []string{p.ReferredByDN, p.OnBehalfOfDN, l.consultParty} {
		if dn != "" && dn != p.DN && b.isAgent(dn) {
			return dn
		}
	}
	return ""
}

// directionFor gives a new leg the direction of its call if the call has
// one, else derives it from the participant:
// Dialing on an agent is an outgoing call, Ringing an incoming one; a leg
// first seen Connected is incoming when the PBX routed or referred it.
func (b *book) directionFor(p Participant, agent bool) events.Direction {
	if c := b.calls[string(p.CallID)]; c != nil && c.dir != "" {
		return c.dir
	}
	if !agent {
		return events.Inbound
	}
	switch p.Status {
	case StatusDialing:
		return events.Outbound
	case StatusRinging:
		return events.Inbound
	}
	if p.OriginatedByDN != "" || p.ReferredByDN != "" || p.OnBehalfOfDN != "" || p.PartyDID != "" {
		return events.Inbound
	}
	return events.Outbound
}

func (b *book) signal(l *leg, st events.State, cause string, dir events.Direction, ref string, now time.Time) events.Signal {
	p := l.p
	s := events.Signal{
		Source:     SourceName,
		CallID:     string(p.CallID),
		LegID:      string(p.ID),
		ReferredBy: ref,
		Remote:     remoteNumber(p),
		Dialled:    strings.TrimSpace(p.PartyDID),
		Line:       b.lineOf(string(p.CallID)),
		Direction:  dir,
		State:      st,
		Cause:      cause,
		Time:       now,
		// A participant reaches each state once, so call, leg and state
		// identify the observation: a repeated upsert, a replayed snapshot
		// or a restart of the bridge gives the same key.
		DedupKey: SourceName + ":" + string(p.CallID) + ":" + string(p.ID) + ":" + string(st),
	}
	if s.Dialled == "" {
		s.Dialled = b.didOf(string(p.CallID))
	}
	if l.agent {
		s.Extension = p.DN
	}
	return s
}

// isTrunkType reports whether a DN type names a trunk (an external line).
// 3CX V20 was seen sending Wexternalline as party_dn_type for the trunk of
// an outside call; other spellings with "trunk" are accepted as a guess.
func isTrunkType(t string) bool {
	t = strings.ToLower(t)
	return t == strings.ToLower(TypeExternalLine) || strings.Contains(t, "trunk")
}

// isTrunk reports whether dn is a monitored trunk.
func (b *book) isTrunk(dn string) bool { return isTrunkType(b.dnTypes[dn]) }

// learnCall records the line and DID a participant shows for its call:
// the trunk's DN when its party is a trunk (party_dn, as captured on V20:
// party_dn "10007", party_dn_type "Wexternalline") or when it is itself on
// a monitored trunk, and party_did when 3CX filled it (on V20 it was seen
// empty). The first value seen for a call stays.
func (b *book) learnCall(p Participant, now time.Time) {
	line := ""
	switch {
	case b.isTrunk(p.DN):
		line = p.DN
	case isTrunkType(p.PartyDNType) && validSegment(p.PartyDN):
		line = p.PartyDN
	}
	did := strings.TrimSpace(p.PartyDID)
	if line == "" && did == "" {
		return
	}
	c := b.calls[string(p.CallID)]
	if c == nil {
		// Not yet reported: kept as long as an ended call (see prune).
		c = &callInfo{ended: now}
		b.calls[string(p.CallID)] = c
	}
	if c.line == "" {
		c.line = line
	}
	if c.did == "" {
		c.did = did
	}
}

// lineOf is the trunk DN of a call, "" when unknown. (A call that
// continues another under a new callid gets its line from that call in
// the tracker.)
func (b *book) lineOf(callID string) string {
	if c := b.calls[callID]; c != nil {
		return c.line
	}
	return ""
}

// didOf is the DID of a call, "" when unknown.
func (b *book) didOf(callID string) string {
	if c := b.calls[callID]; c != nil {
		return c.did
	}
	return ""
}

// prune forgets ended legs and calls once no late message can concern them.
func (b *book) prune(now time.Time) {
	if now.Sub(b.pruned) < pruneEvery {
		return
	}
	b.pruned = now
	for path, at := range b.gone {
		if now.Sub(at) > tombstoneTTL {
			delete(b.gone, path)
		}
	}
	for id, c := range b.calls {
		if c.legs == 0 && now.Sub(c.ended) > tombstoneTTL {
			delete(b.calls, id)
		}
	}
}

// remoteNumber is the number of the other party: party_caller_id, or
// party_caller_name when that holds a number and the id is empty.
func remoteNumber(p Participant) string {
	if s := strings.TrimSpace(p.PartyCallerID); s != "" {
		return s
	}
	if s := strings.TrimSpace(p.PartyCallerName); looksLikeNumber(s) {
		return s
	}
	return ""
}

// looksLikeNumber reports whether s is a dialable number: an optional "+",
// then at least three digits with the usual separators.
func looksLikeNumber(s string) bool {
	s = strings.TrimPrefix(s, "+")
	digits := 0
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9':
			digits++
		case r == ' ', r == '-', r == '(', r == ')', r == '.', r == '/':
		default:
			return false
		}
	}
	return digits >= 3
}

func rank(s events.State) int {
	switch s {
	case events.Ringing:
		return 1
	case events.Answered, events.Transferred:
		return 2
	case events.Ended:
		return 3
	}
	return 0
}

// compareIDs orders numeric ids by value and others as strings.
func compareIDs(a, b ID) int {
	x, errx := strconv.ParseInt(string(a), 10, 64)
	y, erry := strconv.ParseInt(string(b), 10, 64)
	if errx == nil && erry == nil {
		return cmp.Compare(x, y)
	}
	return strings.Compare(string(a), string(b))
}
