package events

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/phone"
)

// Numbers normalises raw numbers; *phone.Normalizer satisfies it.
type Numbers interface {
	Normalize(raw string) phone.Number
}

// Directory maps PBX extensions to agents; *extensions.Directory satisfies it.
type Directory interface {
	Lookup(source, pbxID string) (extensions.Agent, bool)
}

// Policies are the operator's choices about which calls are reported, and
// what the sources declare about themselves.
type Policies struct {
	// ReportMissed: an inbound call that ends unanswered gives one
	// Disconnected with the last agent that rang (MISSED_CALLS=report).
	ReportMissed bool
	// ReportInternal: extension-to-extension calls are reported too
	// (INTERNAL_CALLS=report).
	ReportInternal bool
	// AnonymousNumber is sent as PhoneNumber for withheld numbers; empty
	// means such calls are not reported (ANONYMOUS_NUMBER).
	AnonymousNumber string
	// CallTimeout ends calls that never report an end (CALL_TIMEOUT).
	CallTimeout time.Duration
	// TransferWindow is how long a call of a continuing source waits, after
	// its last leg ended, for a leg that continues it under a new call id
	// (a hunt step, a blind transfer), and how long after its start a ring
	// group may add legs (TRANSFER_WINDOW).
	TransferWindow time.Duration
	// CallIDReuseAfter: a ringing or answered signal for a call id whose
	// call ended at least this long before, by the signals' own time, starts
	// a new call (CALL_ID_REUSE_AFTER; default 10m).
	CallIDReuseAfter time.Duration
	// DIDMap gives the company number (raw, normalised like any) of a call
	// whose source sends no dialled number: by "source:line" (Signal.Line),
	// else by "source:*", the source's default (DID_MAP).
	DIDMap map[string]string
	// Continuing names the sources that can continue a call under a new,
	// unlinked call id (a B2BUA's dialog per phone, a transfer without
	// Replaces). Only their calls are correlated by number and wait
	// TransferWindow before Disconnected; every other call is reported
	// Disconnected as soon as its last leg ends.
	Continuing map[string]bool
}

// defaultReuseAfter is CALL_ID_REUSE_AFTER's default.
const defaultReuseAfter = 10 * time.Minute

// Outcome of folding one signal, the label of the signals metric.
const (
	OutcomeApplied   = "applied"
	OutcomeDuplicate = "duplicate"
	OutcomeStale     = "stale"
	OutcomeAfterEnd  = "after_end"
	OutcomeUnknown   = "unknown_call"
	OutcomeReplayed  = "replayed"
)

type phase uint8

const (
	phaseRinging phase = iota
	phaseAnswered
)

// callLeg is the leg id that stands for the call itself: a signal with
// neither leg id nor extension.
const callLeg = "call"

// leg is one extension's (or channel's, or dialog's) part in a call.
type leg struct {
	ID    string    `json:"id"`            // the canonical leg identity (see legKey)
	Ext   string    `json:"ext,omitempty"` // the PBX extension on the leg
	State State     `json:"state"`         // Ringing, Answered or Ended
	Agent string    `json:"agent,omitempty"`
	Time  time.Time `json:"time"` // PBX time of the leg's last state
	// Prev and PrevTime are the leg's state before it ended and its PBX
	// time ("" when the end arrived first), so that an earlier state
	// arriving after the end still counts.
	// Handed: a transfer to this leg arrived before the call's answer.
	Handed   bool      `json:"handed,omitempty"`
	Prev     State     `json:"prev,omitempty"`
	PrevTime time.Time `json:"prev_time,omitzero"`
	// Consult: a consultation leg (see Signal.Consulting). It keeps the
	// call going, but its answer is not the customer's, and it ends only by
	// its own identity. Unsure: a transfer the source could not read came
	// while it was up (CauseUnconfirmed).
	Consult bool `json:"consult,omitempty"`
	Unsure  bool `json:"unsure,omitempty"`
	// Given: a transfer or a consultation gave this leg the customer. A
	// leg of a call id never seen, of the same extension and customer,
	// continues its call (a PBX that goes on under a new call id).
	Given bool `json:"given,omitempty"`
}

// call is the tracker's record of one customer call. It is persisted as JSON
// after every change, so field names are part of the journal's format. Its
// fields are ordered so that it fits a 512-byte allocation: a tracker holds
// up to a hundred thousand of them (see BenchmarkHeldCallMemory).
type call struct {
	ID string `json:"id"` // event Id: the PBX call id of the customer call
	// Gen tells apart calls that reuse one PBX call id: the PBX time of the
	// call's first signal (Unix ns). 0 in records of versions before it.
	Gen       int64     `json:"gen,omitempty"`
	Source    string    `json:"source"`
	CallIDs   []string  `json:"call_ids"` // every PBX call id of its legs
	Direction Direction `json:"direction"`
	Remote    string    `json:"remote,omitempty"`
	RemoteRaw string    `json:"remote_raw,omitempty"`
	Referrer  string    `json:"referrer,omitempty"`
	Ignore    string    `json:"ignore,omitempty"` // why the call is not reported
	// From is the caller's extension of a call between extensions.
	From       string    `json:"from,omitempty"`
	Agent      string    `json:"agent,omitempty"`       // agent on the call now
	LastRang   string    `json:"last_rang,omitempty"`   // last agent that rang
	LastRangAt time.Time `json:"last_rang_at,omitzero"` // PBX time it rang
	AnsweredAt time.Time `json:"answered_at,omitzero"`  // our time of the answer
	// AgentAt is the PBX time (Unix ns) the current agent took the call
	// (answered it, or was handed it): an answer or transfer older than
	// that arrived late and does not take the call back.
	AgentAt int64 `json:"agent_at_ns,omitempty"`
	// AnswerTime is the PBX time (Unix ns) of the call's first answer: a
	// ring that began before it and arrives after it lost (a ring group).
	AnswerTime int64     `json:"answer_at_ns,omitempty"`
	Legs       []leg     `json:"leg_list,omitempty"`
	Seen       []uint64  `json:"seen_h,omitempty"` // hashes of recent dedup keys
	Started    time.Time `json:"started,omitzero"` // our time of the first signal
	LastTime   time.Time `json:"last_time,omitzero"`
	EndAt      time.Time `json:"end_at,omitzero"` // pending end: Disconnected due then
	// CallEnd is the PBX time of the whole call's end: what arrives later
	// about an earlier moment is ended at once. EndFirst: that end arrived
	// before the call's other signals.
	CallEnd time.Time `json:"call_end,omitzero"`
	Cause   string    `json:"cause,omitempty"` // cause of the pending end
	Done    time.Time `json:"done,omitzero"`   // when the call was finished (tombstone)
	Updated time.Time `json:"updated"`         // last activity (our clock)
	LastSeq uint64    `json:"last_seq"`        // last signal sequence folded in

	key     string // journal key
	indexed string // byCustomer key it is filed under, "" when none

	Transfers int16 `json:"transfers,omitempty"`
	Phase     phase `json:"phase"`
	// Held: the call started answered, with another agent, while a call
	// of the same customer and company number was answered: perhaps that
	// call handed over (a B2BUA bridging the customer on a new dialog),
	// perhaps a second call. Its events wait until that call's agent leg
	// ends (a hand-over: the legs join that call) or TransferWindow passes
	// (a call of its own: its Answered goes out then).
	Held      bool `json:"held,omitempty"`
	Anonymous bool `json:"anonymous,omitempty"`
	// Internal: a call between extensions (see From).
	Internal bool `json:"internal,omitempty"`
	EndFirst bool `json:"end_first,omitempty"`
}

// oldRecord reads call records of versions that kept legs in a map.
type oldRecord struct {
	*call
	OldLegs map[string]*leg `json:"legs,omitempty"`
}

// maxSeen bounds the dedup keys kept per call.
const maxSeen = 64

// machine folds signals into calls. It does no I/O and is not safe for
// concurrent use: the tracker owns it. Its cost per signal does not grow
// with the calls it holds: calls are found through indexes, and the tick
// pops deadlines from a heap.
type machine struct {
	pol     Policies
	numbers Numbers
	dir     Directory
	calls   map[string]*call  // by call key: calls in progress and tombstones
	aliases map[string]string // source|pbx call id → key of its newest call
	// byCustomer files the calls of continuing sources that are not done by
	// source, customer and company number, for correlation.
	byCustomer map[string][]string
	// byExt files the calls with an open leg by source and extension, for
	// snapshots.
	byExt files
	// lastExt is, by source and extension, the call that extension was
	// last on: a referral from it continues that call while its end is
	// pending.
	lastExt map[string]string
	// given files, by source and extension, the calls on which a transfer
	// or a consultation gave that extension a leg (Given or Consult): few
	// at any time, for givenCall. Entries are checked when read.
	given  files
	timers timers
	// warn receives number problems worth a log line.
	warn func(msg string, args ...any)
}

func newMachine(pol Policies, numbers Numbers, dir Directory) *machine {
	if pol.CallIDReuseAfter <= 0 {
		pol.CallIDReuseAfter = defaultReuseAfter
	}
	return &machine{
		pol: pol, numbers: numbers, dir: dir,
		calls:      map[string]*call{},
		aliases:    map[string]string{},
		byCustomer: map[string][]string{},
		byExt:      files{},
		lastExt:    map[string]string{},
		given:      files{},
		warn:       func(string, ...any) {},
	}
}

func aliasKey(source, callID string) string { return source + "|" + callID }

// callKey is the journal key of a call: JetStream KV keys allow a limited
// alphabet, PBX call ids do not. It is "c" and 128 bits of a hash in
// base64url (records of earlier versions have hex keys; both are read).
func callKey(source, callID string, gen int64) string {
	s := aliasKey(source, callID)
	if gen != 0 {
		s += "|" + strconv.FormatInt(gen, 10)
	}
	h := sha256.Sum256([]byte(s))
	return "c" + base64.RawURLEncoding.EncodeToString(h[:16])
}

// keep is how long a tombstone is kept: late repeats inside it are ignored,
// and a reused call id is recognised.
func (m *machine) keep() time.Duration {
	return max(time.Hour, 2*m.pol.TransferWindow, 2*m.pol.CallIDReuseAfter)
}

func (m *machine) continuing(source string) bool {
	return m.pol.Continuing[source] && m.pol.TransferWindow > 0
}

// decodeCall reads a persisted call record, those of versions that kept
// legs in a map included.
func decodeCall(data []byte) (*call, error) {
	rec := oldRecord{call: new(call)}
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, err
	}
	c := rec.call
	for id, l := range rec.OldLegs {
		l.ID = id
		if l.Ext == "" && id != callLeg {
			l.Ext = id
		}
		c.Legs = append(c.Legs, *l)
	}
	if rec.OldLegs != nil {
		slices.SortFunc(c.Legs, func(a, b leg) int { return a.Time.Compare(b.Time) })
	}
	return c, nil
}

// restore adds a persisted call under its journal key.
func (m *machine) restore(key string, c *call) {
	c.key = key
	m.calls[key] = c
	for _, id := range c.CallIDs {
		ak := aliasKey(c.Source, id)
		if old, ok := m.calls[m.aliases[ak]]; !ok || old.Gen <= c.Gen {
			m.aliases[ak] = key
		}
	}
	switch {
	case !c.Done.IsZero():
		m.timers.push(c.Done.Add(m.keep()), key, timerForget)
		return
	case !c.EndAt.IsZero():
		m.timers.push(c.EndAt, key, timerEnd)
	}
	if c.Held {
		m.timers.push(c.Started.Add(m.pol.TransferWindow), key, timerRelease)
	}
	m.schedTimeout(c)
	m.index(c)
	for _, l := range c.Legs {
		if l.State != Ended && l.Ext != "" {
			m.fileExt(c, l.Ext)
			if l.Given || l.Consult {
				m.fileGiven(c, l.Ext)
			}
		}
	}
}

// result is what folding one signal or one tick produced.
type result struct {
	events  []Envelope
	changed []string // call keys to persist
	deleted []string // call keys to delete
	outcome string
	marked  map[string]struct{} // changed, as a set once it grows
}

func (r *result) change(key string) {
	if len(r.changed) < 16 {
		if !slices.Contains(r.changed, key) {
			r.changed = append(r.changed, key)
		}
		return
	}
	if r.marked == nil {
		r.marked = make(map[string]struct{}, 2*len(r.changed))
		for _, k := range r.changed {
			r.marked[k] = struct{}{}
		}
	}
	if _, ok := r.marked[key]; !ok {
		r.marked[key] = struct{}{}
		r.changed = append(r.changed, key)
	}
}

func hashKey(k string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(k))
	return h.Sum64()
}

// legKey is a signal's leg identity: its leg id when the source gives one,
// else its extension, else the call itself.
func legKey(s Signal) string {
	switch {
	case s.LegID != "":
		return s.LegID
	case s.Extension != "":
		return s.Extension
	}
	return callLeg
}

// apply folds one signal (stream sequence seq) at our time now.
func (m *machine) apply(s Signal, seq uint64, now time.Time) result {
	if s.State == Snapshot {
		return m.snapshot(s, now)
	}
	key, c := m.find(s, now)
	endFirst := false
	if c == nil {
		if s.State == Ended && (m.pol.TransferWindow <= 0 || s.LegID != "" || s.Extension != "") {
			return result{outcome: OutcomeUnknown}
		}
		held := m.heldFor(s)
		key, c = m.create(s, now)
		endFirst = s.State == Ended
		if held {
			c.Held = true
			m.timers.push(now.Add(m.pol.TransferWindow), key, timerRelease)
		}
	}
	h := hashKey(s.DedupKey)
	switch {
	case seq != 0 && c.LastSeq >= seq:
		return result{outcome: OutcomeReplayed}
	case slices.Contains(c.Seen, h):
		return result{outcome: OutcomeDuplicate}
	case !c.Done.IsZero():
		return result{outcome: OutcomeAfterEnd}
	}
	r := result{outcome: OutcomeApplied, changed: []string{key}}
	c.Seen = append(c.Seen, h)
	if len(c.Seen) > maxSeen {
		c.Seen = slices.Delete(c.Seen, 0, len(c.Seen)-maxSeen)
	}
	if seq != 0 {
		c.LastSeq = seq
	}
	c.Updated = now
	if s.Time.After(c.LastTime) {
		c.LastTime = s.Time
	}
	if !slices.Contains(c.CallIDs, s.CallID) {
		c.CallIDs = append(c.CallIDs, s.CallID)
		m.aliases[aliasKey(s.Source, s.CallID)] = key
	}
	consult := m.consults(c, s)
	if !consult {
		// A consultation's numbers are the consulted party's, not the
		// customer's.
		m.fillNumbers(c, s)
	}
	if endFirst {
		// The end of a call arrived before anything else of it (a source
		// whose messages can overtake each other): keep it, and give the
		// rest TransferWindow to arrive. What they say happened before the
		// end is folded and ended at once; nothing is reported if nothing
		// comes.
		c.CallEnd, c.EndFirst, c.Cause = s.Time, true, s.Cause
		c.EndAt = now.Add(m.pol.TransferWindow)
		m.timers.push(c.EndAt, c.key, timerEnd)
		return r
	}
	if consult {
		r.outcome = m.consultation(c, s, now, &r)
	} else {
		r.outcome = m.fold(c, s, now, &r)
	}
	if !c.CallEnd.IsZero() && !s.Time.After(c.CallEnd) && s.State != Ended {
		for i := range c.Legs {
			if l := &c.Legs[i]; l.State != Ended {
				m.endLeg(c, l, c.CallEnd)
			}
		}
		if c.Done.IsZero() && c.EndAt.IsZero() {
			m.ended(c, c.Cause, now, &r)
		}
	}
	return r
}

// The transition table of a leg. Rows are the leg's state before the signal
// ("none": the call has no leg of that identity), columns the signal; the
// README carries the same table.
//
//	leg \ signal  ringing           answered              transferred (to it)     ended
//	none          ringing           answered [A|T]        answered [A|T]          remembered as ended
//	                                                      (ringing before the     (its earlier signals
//	                                                      first answer [H])       may still come)
//	ringing       duplicate         answered [A|T]        answered [A|T]          ended [E]
//	answered      stale             duplicate             duplicate               ended [E]
//	ended         ringing if later  answered [A|T] if later by PBX time, or if    duplicate
//	              by PBX time       it happened before the end (arrived late:
//	              (late: counts     the leg stays ended); else stale
//	              for a missed
//	              call); else stale
//
// [A|T]: the first agent to answer gives Answered, a different agent later
// gives Transfer (and ends the previous agent's legs); the same agent gives
// nothing. An answer ends the legs that rang before it by PBX time (a ring
// group answered elsewhere). [H]: a transfer that arrived before the answer
// it followed hands the call on once that answer arrives. [E]: when no leg
// is left ringing or answered the call ends: Disconnected at once, or after
// TransferWindow for continuing sources, for unanswered calls and for calls
// whose signals are plainly incomplete (an end arrived before what it ends).
// An ended signal with an extension also ends every open leg of that
// extension; one with neither leg id nor extension ends every leg, and what
// arrives later about an earlier moment is ended at once. A signal older by
// PBX time than the leg's last state is stale. [S]: across legs, an answer
// or transfer older by PBX time than the moment the current agent took the
// call (AgentAt) ends its leg and takes nothing back, a transfer to a leg
// that has the call moves that moment, and a ring older than the call's
// first answer (AnswerTime) is a ring group's phone that lost. [C]:
// consultation legs (see consultation) follow their own rules, and an
// extension's end leaves its consultation legs alone.
func (m *machine) fold(c *call, s Signal, now time.Time, r *result) string {
	agent := m.agent(s)
	if c.Internal {
		if c.From == "" {
			c.From = m.internalCaller(s)
		}
		if s.Direction == Outbound {
			// The caller's own leg of a call between extensions: it follows
			// the call, but its agent neither rings nor answers.
			agent = ""
		}
	}
	lk := legKey(s)
	if s.Extension != "" && s.State != Ringing && c.Remote != "" {
		if l := c.consultOf(s.Extension); l != nil && l.State == Answered && m.customer(s) == c.Remote {
			// The consulted agent is seen with the customer: the
			// consultation became the transfer, whether or not the PBX
			// said so.
			m.handTo(c, l, s.Time, now, r)
		}
	}
	switch s.State {
	case Ringing, Answered, Transferred:
		st := s.State
		if st == Transferred {
			st = Answered
			if c.Phase == phaseRinging {
				st = Ringing
			}
		}
		l := c.leg(lk)
		if l != nil && l.State == Ended && !s.Time.After(l.Time) && st.rank() > l.Prev.rank() && !s.Time.Before(l.PrevTime) {
			// The leg's end arrived before this earlier state: what it says
			// still happened, and the leg is over.
			return m.lateStart(c, l, s, st, agent, now, r)
		}
		if st == Answered && before(s.Time, c.AgentAt) && (l == nil || l.State != Answered) {
			return m.superseded(c, l, lk, s, agent, now, r)
		}
		at := s.Time
		if l != nil {
			switch {
			case l.State == Ended && !s.Time.After(l.Time):
				return OutcomeStale
			case l.State == Ended:
				// The same extension again, later: a new episode of the leg.
			case l.Handed && l.State == Ringing && st == Answered && s.Time.Before(l.Time):
				// The answer of a leg the call was handed to before the
				// call's answer, reported after that hand-over: the leg
				// took the call at the later of the two.
				at = l.Time
			case s.Time.Before(l.Time) || st.rank() < l.State.rank():
				return OutcomeStale
			case l.State == Answered && st == Answered && s.State == Transferred && s.Time.After(l.Time):
				// Handed again to a leg that has the call: nothing to
				// report, but what is older than this is superseded.
				l.Time = s.Time
				if l.Agent == c.Agent {
					c.takenAt(lk)
				}
				return OutcomeApplied
			case l.State == st && (s.State != Transferred || st != Ringing || l.Handed):
				return OutcomeDuplicate
			}
		} else if st == Ringing && c.Phase == phaseAnswered && c.AnswerTime != 0 && s.Time.UnixNano() <= c.AnswerTime {
			// A phone of a ring group that rang before the answer, reported
			// after it: it lost.
			c.Legs = append(c.Legs, leg{ID: lk, Ext: s.Extension, State: Ringing, Time: s.Time, Agent: agent})
			m.endLeg(c, &c.Legs[len(c.Legs)-1], s.Time)
			return OutcomeApplied
		} else {
			c.Legs = append(c.Legs, leg{ID: lk, Ext: s.Extension})
			l = &c.Legs[len(c.Legs)-1]
		}
		if l.State == Ended {
			l.Given = false // a new episode of the leg
		}
		l.State, l.Time, l.Agent = st, at, agent
		l.Handed = s.State == Transferred && st == Ringing
		l.Given = l.Given || s.State == Transferred
		if l.Ext != "" {
			m.fileExt(c, l.Ext)
			if l.Given {
				m.fileGiven(c, l.Ext)
			}
		}
		m.revive(c)
		if s.State == Transferred && st == Answered {
			// The PBX handed the call on: the legs it was on are over,
			// whether or not their agents are known.
			for i := range c.Legs {
				if o := &c.Legs[i]; o.ID != lk && o.State == Answered {
					m.endLeg(c, o, s.Time)
				}
			}
		}
		if st == Ringing {
			if agent != "" && !s.Time.Before(c.LastRangAt) {
				c.LastRang, c.LastRangAt = agent, s.Time
			}
			return OutcomeApplied
		}
		if agent != "" {
			m.answeredBy(c, lk, agent, now, r)
		}
	case Ended:
		changed := false
		for i := range c.Legs {
			l := &c.Legs[i]
			if l.State == Ended || l.Time.After(s.Time) {
				continue // over already, or in a later state than this end
			}
			if lk == callLeg || l.ID == lk || l.ID == callLeg || (s.Extension != "" && l.Ext == s.Extension && !l.Consult) {
				m.endLeg(c, l, s.Time)
				changed = true
			}
		}
		if lk == callLeg && s.Time.After(c.CallEnd) {
			c.CallEnd = s.Time
		}
		known := slices.ContainsFunc(c.Legs, func(l leg) bool {
			return l.ID == lk || s.Extension != "" && l.Ext == s.Extension
		})
		if !known && lk != callLeg {
			// The end of a leg not seen yet (its earlier signals may still
			// arrive, late): remember it, so that they are stale.
			c.Legs = append(c.Legs, leg{ID: lk, Ext: s.Extension, State: Ended, Agent: agent, Time: s.Time})
			changed = true
		}
		if !changed {
			return OutcomeDuplicate
		}
		m.handUnsure(c, s.Time, now, r)
		if !c.active() {
			m.ended(c, s.Cause, now, r)
		}
	}
	return OutcomeApplied
}

// consultKey is the leg identity of a consultation signal: its leg id, or
// the consulting agent and the consulted extension.
func consultKey(s Signal) string {
	if s.LegID != "" {
		return s.LegID
	}
	return s.Extension + ">" + s.Consulting
}

// consults reports whether s, a signal of an agent calling s.Consulting, is
// about a consultation leg of c: one c has (or had, before it became the
// transfer), or a new one, when the agent is answered on c and does not
// call c's customer. Otherwise s is about the agent's own call.
func (m *machine) consults(c *call, s Signal) bool {
	if s.Consulting == "" {
		return false
	}
	if l := c.leg(consultKey(s)); l != nil {
		return l.Consult || l.Given && l.Ext == s.Consulting
	}
	if cust := m.customer(s); cust != "" && cust == c.Remote {
		return false
	}
	return c.Done.IsZero() && slices.ContainsFunc(c.Legs, func(l leg) bool {
		return !l.Consult && l.State == Answered && l.Ext == s.Extension
	})
}

// consultOf returns c's open consultation leg of extension ext, or nil.
func (c *call) consultOf(ext string) *leg {
	for i := range c.Legs {
		if l := &c.Legs[i]; l.Consult && l.State != Ended && l.Ext == ext {
			return l
		}
	}
	return nil
}

// consultation folds a signal of a consultation leg of c (see consults):
// it rings, is answered and ends on its own, without an event; a transfer
// on it hands the customer to the consulted agent. A signal about a
// consultation that already became the transfer changes nothing: its leg
// is the customer's now, and ends as the customer's leg.
func (m *machine) consultation(c *call, s Signal, now time.Time, r *result) string {
	lk := consultKey(s)
	l := c.leg(lk)
	if l != nil && !l.Consult {
		return OutcomeDuplicate
	}
	if l == nil {
		c.Legs = append(c.Legs, leg{ID: lk, Ext: s.Consulting, Consult: true, Time: s.Time,
			Agent: m.agent(Signal{Source: s.Source, Extension: s.Consulting})})
		l = &c.Legs[len(c.Legs)-1]
		if s.State == Ended {
			// Its end arrived first: remembered, so that what it ends is stale.
			l.State = Ended
			return OutcomeApplied
		}
	} else if l.State == Ended && !s.Time.After(l.Time) {
		return OutcomeStale
	}
	switch s.State {
	case Ringing, Answered:
		switch {
		case l.State == s.State:
			return OutcomeDuplicate
		case l.State != "" && l.State != Ended && s.State.rank() < l.State.rank():
			return OutcomeStale
		}
		l.State, l.Time = s.State, s.Time
		m.fileExt(c, l.Ext)
		m.fileGiven(c, l.Ext)
		m.revive(c)
	case Transferred:
		if l.State == Ended {
			return OutcomeStale
		}
		if s.Cause == CauseUnconfirmed {
			if l.Unsure {
				return OutcomeDuplicate
			}
			l.Unsure = true
			m.handUnsure(c, s.Time, now, r)
			return OutcomeApplied
		}
		m.handTo(c, l, s.Time, now, r)
	case Ended:
		if l.State == Ended {
			return OutcomeDuplicate
		}
		m.endLeg(c, l, s.Time)
		if !c.active() {
			m.ended(c, s.Cause, now, r)
		}
	}
	return OutcomeApplied
}

// handTo makes consultation leg l the customer's leg at PBX time at: the
// consulted agent has the customer (Transfer), and the legs of the agents
// the customer was with are over.
func (m *machine) handTo(c *call, l *leg, at time.Time, now time.Time, r *result) {
	l.Consult, l.Unsure, l.Given = false, false, true
	l.State, l.Time = Answered, at
	id, agent := l.ID, l.Agent
	for i := range c.Legs {
		if o := &c.Legs[i]; o.ID != id && o.State == Answered && !o.Consult {
			m.endLeg(c, o, at)
		}
	}
	m.revive(c)
	if agent != "" {
		m.answeredBy(c, id, agent, now, r)
	}
}

// handUnsure hands answered call c to the consulted agent of an answered
// consultation leg marked Unsure once no leg of the customer is left: the
// consulting agent left the customer to them, which is what an attended
// transfer looks like (see CauseUnconfirmed).
func (m *machine) handUnsure(c *call, at time.Time, now time.Time, r *result) {
	if c.Phase != phaseAnswered || !c.Done.IsZero() {
		return
	}
	var u *leg
	for i := range c.Legs {
		l := &c.Legs[i]
		switch {
		case l.State == Ended:
		case !l.Consult:
			return // the customer is still with an agent
		case l.Unsure && l.State == Answered && (u == nil || l.Time.After(u.Time)):
			u = l
		}
	}
	if u != nil {
		m.handTo(c, u, at, now, r)
	}
}

// lateStart folds a ringing, answer or transfer of a leg whose end arrived
// first (a source whose signals carry PBX time, delivered out of order): the
// leg rang or was answered before it ended, so the ring counts for a missed
// call and the answer gives its Answered or Transfer; the leg stays ended.
func (m *machine) lateStart(c *call, l *leg, s Signal, st State, agent string, now time.Time, r *result) string {
	l.Prev, l.PrevTime = st, s.Time
	l.Handed = s.State == Transferred && st == Ringing
	if st == Ringing {
		if agent != "" && !s.Time.Before(c.LastRangAt) {
			c.LastRang, c.LastRangAt = agent, s.Time
		}
		return OutcomeApplied
	}
	if before(s.Time, c.AgentAt) {
		// The call was taken by its current agent after this: what it
		// says happened, but the call has moved on.
		return OutcomeApplied
	}
	if s.State == Transferred && c.Phase == phaseAnswered {
		for i := range c.Legs {
			if o := &c.Legs[i]; o.ID != l.ID && o.State == Answered {
				m.endLeg(c, o, s.Time)
			}
		}
	}
	if agent != "" {
		m.answeredBy(c, l.ID, agent, now, r)
	}
	if !c.active() && c.Done.IsZero() && c.EndAt.IsZero() {
		m.ended(c, c.Cause, now, r)
	}
	return OutcomeApplied
}

// superseded folds an answer or transfer to leg lk that happened before the
// call's current agent took it, and arrived after (signals overtaking each
// other): the leg was answered then and handed on when the current agent
// took the call, so it ends there; the call stays with its agent.
func (m *machine) superseded(c *call, l *leg, lk string, s Signal, agent string, now time.Time, r *result) string {
	if l == nil {
		c.Legs = append(c.Legs, leg{ID: lk, Ext: s.Extension})
		l = &c.Legs[len(c.Legs)-1]
	}
	l.State, l.Time, l.Agent, l.Handed = Answered, s.Time, agent, false
	m.endLeg(c, l, time.Unix(0, c.AgentAt).UTC())
	if !c.active() && c.Done.IsZero() && c.EndAt.IsZero() {
		m.ended(c, c.Cause, now, r)
	}
	return OutcomeApplied
}

// before reports whether t is before the instant ns (Unix ns; 0: none).
func before(t time.Time, ns int64) bool { return ns != 0 && t.UnixNano() < ns }

// answeredAt is the PBX time of the leg's answer (or hand-over): its state's
// time, or the time before its end when the end arrived first.
func (l *leg) answeredAt() time.Time {
	if l.State == Ended {
		return l.PrevTime
	}
	return l.Time
}

// leg returns the call's leg with identity id, or nil.
func (c *call) leg(id string) *leg {
	for i := range c.Legs {
		if c.Legs[i].ID == id {
			return &c.Legs[i]
		}
	}
	return nil
}

// endLeg ends one leg of c (at PBX time t).
func (m *machine) endLeg(c *call, l *leg, t time.Time) {
	l.Prev, l.PrevTime = l.State, l.Time
	l.State, l.Time = Ended, t
	if l.Ext != "" {
		m.unfileExt(c, l.Ext)
	}
}

// lastTime is the PBX time of the call's last signal (our time of its end
// in records of versions that did not keep it).
func (c *call) lastTime() time.Time {
	if c.LastTime.IsZero() {
		return c.Done
	}
	return c.LastTime
}

// revive takes back a pending end: a leg of the call is up again.
func (m *machine) revive(c *call) {
	c.EndAt, c.Cause = time.Time{}, ""
}

// answeredBy records that agent answered (or took over) the call on leg.
func (m *machine) answeredBy(c *call, legID, agent string, now time.Time, r *result) {
	switch {
	case c.Phase == phaseRinging:
		c.Phase, c.Agent, c.AnsweredAt = phaseAnswered, agent, now
		// The other legs that were ringing lost: a ring group or queue
		// answered elsewhere. Legs that began ringing later, by PBX time,
		// are a transfer target (reported before the answer, out of order)
		// and stay.
		l := c.leg(legID)
		at := l.answeredAt()
		c.AgentAt, c.AnswerTime = at.UnixNano(), at.UnixNano()
		for i := range c.Legs {
			if l := &c.Legs[i]; l.ID != legID && l.State == Ringing && !l.Time.After(at) {
				m.endLeg(c, l, l.Time)
			}
		}
		m.emit(c, EventAnswered, now, r)
		m.handOnLate(c, at, now, r)
	case c.Agent != agent:
		c.Agent = agent
		c.Transfers++
		c.takenAt(legID)
		// The previous agent handed the call on: their legs are over, even
		// when the PBX does not say so.
		for i := range c.Legs {
			if l := &c.Legs[i]; l.ID != legID && l.State == Answered && l.Agent != agent {
				m.endLeg(c, l, l.Time)
			}
		}
		m.emit(c, EventTransfer, now, r)
	default:
		// The same agent again (another of their legs, a transfer back
		// to them): nothing to report, but what is older is superseded.
		c.takenAt(legID)
	}
}

// takenAt records that the call's agent took it (again) on leg legID.
func (c *call) takenAt(legID string) {
	if at := c.leg(legID).answeredAt().UnixNano(); at > c.AgentAt {
		c.AgentAt = at
	}
}

// handOnLate applies, in PBX-time order, the transfers that arrived before
// the answer they followed (messages overtaking each other): each hands the
// call on as it would have on time.
func (m *machine) handOnLate(c *call, answered time.Time, now time.Time, r *result) {
	// handedAt is when the call was handed to l: its transfer, whether or
	// not its end arrived since.
	handedAt := func(l leg) time.Time {
		if l.State == Ended {
			return l.PrevTime
		}
		return l.Time
	}
	var late []int
	for i, l := range c.Legs {
		if l.Handed && (l.State == Ringing || l.State == Ended && l.Prev == Ringing) && handedAt(l).After(answered) {
			late = append(late, i)
		}
	}
	slices.SortFunc(late, func(a, b int) int { return handedAt(c.Legs[a]).Compare(handedAt(c.Legs[b])) })
	for _, i := range late {
		l := &c.Legs[i]
		at := handedAt(*l)
		l.Handed = false
		if l.State == Ringing {
			l.State = Answered
		}
		for j := range c.Legs {
			if o := &c.Legs[j]; j != i && o.State == Answered {
				m.endLeg(c, o, at)
			}
		}
		if l.Agent != "" {
			m.answeredBy(c, l.ID, l.Agent, now, r)
		}
	}
}

// active reports whether any leg of the call is still ringing or answered.
func (c *call) active() bool {
	for _, l := range c.Legs {
		if l.State != Ended {
			return true
		}
	}
	return false
}

// ended handles a call whose last leg ended. An answered call finishes at
// once, unless its source may continue it under a new call id. A call that
// was never answered waits TransferWindow whatever its source: a hunt group
// rings the next phone after the last one gave up, and a missed call's
// report is waited for by nobody.
func (m *machine) ended(c *call, cause string, now time.Time, r *result) {
	if c.Held {
		// A held call that ends was a call of its own.
		m.release(c, now, r)
	}
	if c.Phase == phaseAnswered && m.continuing(c.Source) && m.handOver(c, now, r) {
		return // the call goes on with the agent it was handed to
	}
	if m.pol.TransferWindow <= 0 || (c.Phase == phaseAnswered && !m.continuing(c.Source) && c.complete()) {
		c.Cause = cause
		m.finish(c, now, r)
		return
	}
	if c.Phase == phaseAnswered && m.absorb(c, now, r) {
		return // continued by a leg that began ringing just before
	}
	c.EndAt, c.Cause = now.Add(m.pol.TransferWindow), cause
	m.timers.push(c.EndAt, c.key, timerEnd)
}

// complete reports whether the call's signals look whole: no call end and
// no leg end arrived before what it ends. When one did, signals sent before
// it are still on their way (messages overtaking each other), and the call
// waits TransferWindow for them before it is reported ended.
func (c *call) complete() bool {
	if c.EndFirst {
		return false
	}
	for _, l := range c.Legs {
		if l.State == Ended && l.Prev == "" {
			return false
		}
	}
	return true
}

// absorb continues answered call c, whose last leg just ended, with a call
// of the same customer that began ringing less than TransferWindow before
// and was never answered: a blind transfer whose PBX rang the target on a
// new dialog before it let the first one go. That call's legs, ids and
// dedup keys become c's; it had reported nothing.
func (m *machine) absorb(c *call, now time.Time, r *result) bool {
	b := m.newestBeside(c, func(o *call) bool {
		return o.Phase == phaseRinging && o.EndAt.IsZero() && now.Sub(o.Started) < m.pol.TransferWindow
	})
	if b == nil {
		return false
	}
	m.merge(c, b, r)
	return true
}

// handOver continues answered call c, whose last leg just ended, with a
// held call of the same customer (see Call.Held): the PBX had bridged the
// customer to that call's agent on a dialog of its own. Its legs, ids and
// dedup keys become c's, and c is handed to its agent (Transfer).
func (m *machine) handOver(c *call, now time.Time, r *result) bool {
	b := m.newestBeside(c, func(o *call) bool { return o.Held })
	if b == nil {
		return false
	}
	agent, leg := b.Agent, ""
	for _, l := range b.Legs {
		if l.State == Answered && l.Agent == agent {
			leg = l.ID
		}
	}
	m.merge(c, b, r)
	m.revive(c)
	if leg != "" && agent != "" {
		m.answeredBy(c, leg, agent, now, r)
	}
	return true
}

// newestBeside returns the call of c's customer and company number, other
// than c, not finished and with a leg up, that ok accepts and that started
// last; nil when there is none.
func (m *machine) newestBeside(c *call, ok func(o *call) bool) *call {
	if c.indexed == "" {
		return nil
	}
	var b *call
	for _, k := range m.byCustomer[c.indexed] {
		o := m.calls[k]
		if o == nil || o == c || !o.Done.IsZero() || !o.active() || !ok(o) {
			continue
		}
		if b == nil || o.Started.After(b.Started) {
			b = o
		}
	}
	return b
}

// release ends the hold of call c: a call of its own, whose Answered goes
// out now.
func (m *machine) release(c *call, now time.Time, r *result) {
	c.Held = false
	if c.Phase == phaseAnswered {
		m.emit(c, EventAnswered, now, r)
	}
	r.change(c.key)
}

// merge moves call b into c: its legs, call ids and dedup keys; b is gone.
func (m *machine) merge(c, b *call, r *result) {
	for _, l := range b.Legs {
		c.Legs = append(c.Legs, l)
		if l.State != Ended && l.Ext != "" {
			m.byExt.remove(aliasKey(b.Source, l.Ext), b.key)
			m.fileExt(c, l.Ext)
			if l.Given || l.Consult {
				m.given.remove(aliasKey(b.Source, l.Ext), b.key)
				m.given.add(aliasKey(c.Source, l.Ext), c.key)
			}
		}
	}
	for _, id := range b.CallIDs {
		if !slices.Contains(c.CallIDs, id) {
			c.CallIDs = append(c.CallIDs, id)
		}
		m.aliases[aliasKey(b.Source, id)] = c.key
	}
	c.Seen = append(c.Seen, b.Seen...)
	if len(c.Seen) > maxSeen {
		c.Seen = slices.Delete(c.Seen, 0, len(c.Seen)-maxSeen)
	}
	c.LastSeq = max(c.LastSeq, b.LastSeq)
	m.unindex(b)
	delete(m.calls, b.key)
	r.deleted = append(r.deleted, b.key)
	r.change(c.key)
}

// snapshot ends the legs of the snapshot's extension that it no longer
// holds (and that began at or before it).
func (m *machine) snapshot(s Signal, now time.Time) result {
	r := result{outcome: OutcomeApplied}
	fk := aliasKey(s.Source, s.Extension)
	keys := slices.Sorted(maps.Keys(m.byExt[fk])) // a stable order of events
	for _, key := range keys {
		c := m.calls[key]
		if c == nil || !c.Done.IsZero() {
			continue
		}
		changed := false
		for i := range c.Legs {
			l := &c.Legs[i]
			if l.State == Ended || l.Ext != s.Extension || l.Time.After(s.Time) || slices.Contains(s.Open, l.ID) {
				continue
			}
			m.endLeg(c, l, s.Time)
			changed = true
		}
		if !changed {
			continue
		}
		c.Updated = now
		r.change(key)
		if !c.active() {
			m.ended(c, "gone", now, &r)
		}
	}
	return r
}

// Kinds of deadline in the timer heap.
const (
	timerEnd     = iota // a pending end is due
	timerTimeout        // the call may have timed out
	timerForget         // a tombstone may be forgotten
	timerRelease        // a held call's hold is over
)

func (m *machine) schedTimeout(c *call) {
	if m.pol.CallTimeout > 0 {
		m.timers.push(c.Updated.Add(m.pol.CallTimeout), c.key, timerTimeout)
	}
}

// tick ends calls whose transfer window or timeout has passed, and forgets
// finished calls once late signals can no longer matter. It touches only
// the calls with a deadline due.
func (m *machine) tick(now time.Time) result {
	var r result
	for {
		t, ok := m.timers.popDue(now)
		if !ok {
			break
		}
		c := m.calls[t.key]
		if c == nil {
			continue
		}
		switch t.kind {
		case timerEnd:
			if c.Done.IsZero() && !c.EndAt.IsZero() && !now.Before(c.EndAt) {
				m.finish(c, now, &r)
			}
		case timerTimeout:
			if !c.Done.IsZero() {
				continue
			}
			if due := c.Updated.Add(m.pol.CallTimeout); now.Before(due) {
				m.timers.push(due, c.key, timerTimeout)
				continue
			}
			c.Cause = "timeout"
			m.finish(c, now, &r)
		case timerRelease:
			if c.Held && c.Done.IsZero() {
				m.release(c, now, &r)
			}
		case timerForget:
			if c.Done.IsZero() || now.Sub(c.Done) < m.keep() {
				continue
			}
			delete(m.calls, t.key)
			for _, id := range c.CallIDs {
				if ak := aliasKey(c.Source, id); m.aliases[ak] == t.key {
					delete(m.aliases, ak)
				}
			}
			r.deleted = append(r.deleted, t.key)
		}
	}
	return r
}

// finish ends the customer call: Disconnected once if it was answered, or
// for a missed inbound call when the policy says so. What is left is a
// tombstone: enough to ignore late signals and recognise a reused call id.
func (m *machine) finish(c *call, now time.Time, r *result) {
	if c.Held {
		m.release(c, now, r)
	}
	c.Done, c.EndAt = now, time.Time{}
	for _, l := range c.Legs {
		if l.State != Ended && l.Ext != "" {
			m.unfileExt(c, l.Ext)
		}
		if l.Given || l.Consult {
			m.given.remove(aliasKey(c.Source, l.Ext), c.key)
		}
	}
	switch {
	case c.Phase == phaseAnswered:
		m.emit(c, EventDisconnected, now, r)
	case c.Cause == "timeout":
		// An unanswered call that never ended: nothing to report.
	case c.Direction == Inbound && m.pol.ReportMissed && c.LastRang != "":
		c.Agent = c.LastRang
		m.emit(c, EventDisconnected, now, r)
	}
	m.unindex(c)
	c.Legs, c.Seen = nil, nil
	m.timers.push(now.Add(m.keep()), c.key, timerForget)
	r.change(c.key)
}

// emit appends the event for the call's current state, unless the call is
// not to be reported.
func (m *machine) emit(c *call, t EventType, now time.Time, r *result) {
	number := c.Remote
	if c.Internal && c.From != "" {
		number = c.From
	}
	if c.Anonymous || c.RemoteRaw == "" {
		// Withheld, or no signal ever carried a number.
		number = m.pol.AnonymousNumber
		if number == "" {
			return
		}
	}
	if c.Ignore != "" || c.Held && t != EventDisconnected {
		return
	}
	// The id is deterministic (a replayed signal gives the same one, and
	// the journal stores it once) and tells apart calls reusing a call id.
	id := aliasKey(c.Source, c.ID)
	if c.Gen != 0 {
		id += "|" + strconv.FormatInt(c.Gen, 10)
	}
	id += "|" + string(t)
	if t == EventTransfer {
		id += "|" + strconv.Itoa(int(c.Transfers))
	}
	r.events = append(r.events, Envelope{
		Event: Event{
			ID:             c.ID,
			Type:           t,
			PhoneNumber:    number,
			PhoneExtension: c.Agent,
			Direction:      DirectionLabel(c.Direction),
			PhoneReferrer:  c.Referrer,
		},
		MsgID:      id,
		CallKey:    c.key,
		Source:     c.Source,
		InProgress: t != EventDisconnected,
		Created:    now,
		Call:       c.summary(t, now),
	})
}

// summary describes the call for sinks beyond register-event.
func (c *call) summary(t EventType, now time.Time) *CallSummary {
	s := &CallSummary{Customer: c.Remote, Anonymous: c.Anonymous, DID: c.Referrer, Internal: c.Internal,
		Started: c.Started, Answered: c.AnsweredAt}
	if s.Anonymous {
		s.Customer = ""
	}
	for _, l := range c.Legs {
		if l.Ext != "" && !l.Consult && !slices.Contains(s.Rang, l.Ext) {
			s.Rang = append(s.Rang, l.Ext)
		}
	}
	if t == EventDisconnected {
		// The call ended at its last signal, not when the transfer
		// window let the Disconnected go.
		s.Ended = now
		if !c.LastTime.IsZero() && !c.LastTime.After(now) && !c.LastTime.Before(c.Started) {
			s.Ended = c.LastTime
		}
		s.Missed = c.Phase != phaseAnswered
	}
	return s
}

// agent returns the ROBIN extension of the signal's extension, or "".
func (m *machine) agent(s Signal) string {
	if s.Extension == "" {
		return ""
	}
	a, ok := m.dir.Lookup(s.Source, s.Extension)
	if !ok {
		return ""
	}
	return a.Extension
}

// find returns the call a signal belongs to: by its call id, by an explicit
// link, or, for continuing sources, by correlation with a call of the same
// customer and company number. It returns nil for a new call, including a
// call id reused after its call ended CallIDReuseAfter before.
func (m *machine) find(s Signal, now time.Time) (string, *call) {
	if k, ok := m.aliases[aliasKey(s.Source, s.CallID)]; ok {
		c := m.calls[k]
		starts := s.State == Ringing || s.State == Answered
		if !c.Done.IsZero() && starts && !s.Time.Before(c.lastTime().Add(m.pol.CallIDReuseAfter)) {
			return "", nil
		}
		return k, c
	}
	if s.LinkedCallID != "" {
		if k, ok := m.aliases[aliasKey(s.Source, s.LinkedCallID)]; ok && m.calls[k].Done.IsZero() {
			return k, m.calls[k]
		}
	}
	if s.ReferredBy != "" && s.ReferredBy != s.Extension && s.State != Ended {
		if c := m.referredCall(s); c != nil {
			return c.key, c
		}
	}
	if s.Consulting != "" && s.State != Ended {
		if c := m.consultedCall(s); c != nil {
			return c.key, c
		}
	}
	if s.Consulting == "" && s.Extension != "" {
		if c := m.givenCall(s); c != nil {
			return c.key, c
		}
	}
	if s.State == Ended || s.Remote == "" || !m.pol.Continuing[s.Source] {
		return "", nil
	}
	var best *call
	for _, k := range m.customerCalls(s) {
		c := m.calls[k]
		if c == nil || !c.Done.IsZero() || !m.continues(c, s, now) {
			continue
		}
		if best == nil || c.Updated.After(best.Updated) {
			best = c
		}
	}
	if best == nil {
		return "", nil
	}
	return best.key, best
}

// continues reports whether a leg of an unknown call id, of the same
// customer and company number, belongs to call c:
//   - c is ending (its last leg ended less than TransferWindow ago): a hunt
//     step or a transfer that the PBX placed as a new call;
//   - c only rings and began less than TransferWindow ago: a ring group
//     whose PBX rings each phone on a dialog of its own;
//
// Never to a call that is plainly still going. A leg that starts answered
// with another agent while c is answered may be a hand-over (the PBX
// bridged the customer to that agent) or a second call: it becomes a call
// of its own, held (see heldFor and handOver).
func (m *machine) continues(c *call, s Signal, now time.Time) bool {
	switch {
	case !c.EndAt.IsZero():
		return now.Before(c.EndAt)
	case c.Phase == phaseRinging:
		return now.Sub(c.Started) < m.pol.TransferWindow
	}
	return false
}

// heldFor reports whether a new call whose first signal is s is held: s
// starts answered, with an agent, and a call of the same customer and
// company number is answered by another agent and not ending.
func (m *machine) heldFor(s Signal) bool {
	if !m.continuing(s.Source) || s.Remote == "" || (s.State != Answered && s.State != Transferred) {
		return false
	}
	a := m.agent(s)
	if a == "" {
		return false
	}
	for _, k := range m.customerCalls(s) {
		c := m.calls[k]
		if c != nil && c.Done.IsZero() && c.EndAt.IsZero() && c.Phase == phaseAnswered && !c.Held && c.Agent != a {
			return true
		}
	}
	return false
}

// referredCall returns the call s's referrer is on: the call with an open
// leg of that extension updated last, or else the call it was last on if
// that call's end is still pending; only a call of the same customer when
// both numbers are known (the referrer's newer call may not have been seen
// yet: its legs come over other subscriptions, in any order). nil when
// there is none.
func (m *machine) referredCall(s Signal) *call {
	k := aliasKey(s.Source, s.ReferredBy)
	customer := m.customer(s)
	other := func(c *call) bool { return customer != "" && c.Remote != "" && c.Remote != customer }
	var best *call
	for key := range m.byExt[k] {
		c := m.calls[key]
		if c == nil || !c.Done.IsZero() || other(c) {
			continue
		}
		if newer(c, best) {
			best = c
		}
	}
	if best != nil {
		return best
	}
	if c := m.calls[m.lastExt[k]]; c != nil && c.Done.IsZero() && !c.EndAt.IsZero() && !other(c) {
		return c
	}
	return nil
}

// newer reports whether c was updated after best (nil: c is), in a stable
// order when both were updated at once.
func newer(c, best *call) bool {
	return best == nil || c.Updated.After(best.Updated) || c.Updated.Equal(best.Updated) && c.key < best.key
}

// consultedCall returns the call a new consultation leg belongs to: the
// unfinished call, with a customer other than the party called, on which
// the consulting agent (s.Extension) answered last by PBX time (an agent
// with a call on hold is on the one answered since); nil when there is none
// (the agent's own call).
func (m *machine) consultedCall(s Signal) *call {
	var best *call
	var bestAt time.Time
	for key := range m.byExt[aliasKey(s.Source, s.Extension)] {
		c := m.calls[key]
		if c == nil || !c.Done.IsZero() || !m.consults(c, s) {
			continue
		}
		var at time.Time
		for _, l := range c.Legs {
			if !l.Consult && l.State == Answered && l.Ext == s.Extension && l.Time.After(at) {
				at = l.Time
			}
		}
		if best == nil || at.After(bestAt) || at.Equal(bestAt) && newer(c, best) {
			best, bestAt = c, at
		}
	}
	return best
}

// givenCall returns the unfinished call of s's customer on which s's
// extension has an open leg that a transfer or a consultation gave it: a
// leg of a call id never seen that continues that call (a PBX that carries
// a transferred call on, or ends it, under a new call id). nil when there
// is none.
func (m *machine) givenCall(s Signal) *call {
	gk := aliasKey(s.Source, s.Extension)
	if len(m.given[gk]) == 0 {
		return nil // the common case: nothing to normalise the number for
	}
	cust := m.customer(s)
	if cust == "" {
		return nil
	}
	var best *call
	for key := range m.given[gk] {
		c := m.calls[key]
		if c == nil || !c.Done.IsZero() || !slices.ContainsFunc(c.Legs, func(l leg) bool {
			return l.State != Ended && l.Ext == s.Extension && (l.Given || l.Consult)
		}) {
			m.given.remove(gk, key) // over: forgotten as it is found
			continue
		}
		if c.Remote == cust && newer(c, best) {
			best = c
		}
	}
	return best
}

func (m *machine) fileGiven(c *call, ext string) { m.given.add(aliasKey(c.Source, ext), c.key) }

// customer is the signal's outside party in E.164, as calls file it, or ""
// when it has none (no number, withheld, an extension).
func (m *machine) customer(s Signal) string {
	if s.Remote == "" {
		return ""
	}
	if n := m.numbers.Normalize(s.Remote); n.Kind == phone.External || n.Kind == phone.Invalid {
		return n.E164
	}
	return ""
}

// customerCalls returns the keys of the calls filed under s's customer and
// company number (see index), none when s has no customer.
func (m *machine) customerCalls(s Signal) []string {
	remote := m.customer(s)
	if remote == "" {
		return nil
	}
	return m.byCustomer[customerKey(s.Source, remote, m.referrer(s.Dialled))]
}

func customerKey(source, remote, referrer string) string {
	return source + "|" + remote + "|" + referrer
}

// index files a call of a continuing source by its customer, once known.
func (m *machine) index(c *call) {
	if !m.pol.Continuing[c.Source] || c.Remote == "" || c.Anonymous {
		return
	}
	k := customerKey(c.Source, c.Remote, c.Referrer)
	if k == c.indexed {
		return
	}
	m.unindex(c)
	m.byCustomer[k] = append(m.byCustomer[k], c.key)
	c.indexed = k
}

func (m *machine) unindex(c *call) {
	if c.indexed == "" {
		return
	}
	m.byCustomer[c.indexed] = remove(m.byCustomer[c.indexed], c.key)
	if len(m.byCustomer[c.indexed]) == 0 {
		delete(m.byCustomer, c.indexed)
	}
	c.indexed = ""
}

func (m *machine) fileExt(c *call, ext string) {
	k := aliasKey(c.Source, ext)
	m.byExt.add(k, c.key)
	m.lastExt[k] = c.key
}

// unfileExt removes the call from its extension's file when no leg of that
// extension is open any more.
func (m *machine) unfileExt(c *call, ext string) {
	for _, l := range c.Legs {
		if l.Ext == ext && l.State != Ended {
			return
		}
	}
	m.byExt.remove(aliasKey(c.Source, ext), c.key)
}

// files is an index of call keys by a key (a source and extension).
type files map[string]map[string]struct{}

func (f files) add(k, key string) {
	set := f[k]
	if set == nil {
		set = map[string]struct{}{}
		f[k] = set
	}
	set[key] = struct{}{}
}

func (f files) remove(k, key string) {
	delete(f[k], key)
	if len(f[k]) == 0 {
		delete(f, k)
	}
}

func remove(keys []string, key string) []string {
	if i := slices.Index(keys, key); i >= 0 {
		return slices.Delete(keys, i, i+1)
	}
	return keys
}

// create starts a new call from its first signal.
func (m *machine) create(s Signal, now time.Time) (string, *call) {
	c := &call{
		ID: s.CallID, Gen: s.Time.UnixNano(), Source: s.Source, Direction: s.Direction,
		Started: now, Updated: now,
	}
	if c.Direction == "" {
		c.Direction = Inbound
	}
	c.key = callKey(s.Source, s.CallID, c.Gen)
	m.calls[c.key] = c
	m.aliases[aliasKey(s.Source, s.CallID)] = c.key
	c.CallIDs = []string{s.CallID}
	m.fillNumbers(c, s)
	m.schedTimeout(c)
	return c.key, c
}

// fillNumbers sets the customer's number and the company number the first
// time a signal carries them, and decides whether the call is reported.
func (m *machine) fillNumbers(c *call, s Signal) {
	defer m.index(c)
	if c.Referrer == "" && s.Dialled != "" {
		c.Referrer = m.referrer(s.Dialled)
	}
	if c.Referrer == "" && len(m.pol.DIDMap) > 0 {
		if n, ok := m.pol.DIDMap[s.Source+":"+s.Line]; ok && s.Line != "" {
			c.Referrer = m.referrer(n)
		} else if n, ok := m.pol.DIDMap[s.Source+":*"]; ok {
			c.Referrer = m.referrer(n)
		}
	}
	if c.RemoteRaw != "" || s.Remote == "" {
		return
	}
	c.RemoteRaw = s.Remote
	n := m.numbers.Normalize(s.Remote)
	c.Remote, c.Ignore = n.E164, ""
	switch n.Kind {
	case phone.Anonymous:
		c.Remote, c.Anonymous = "", true
	case phone.Internal:
		// A call between two extensions is reported from the callee's
		// side: the callee's agent, the caller's extension as the number.
		c.Internal, c.Direction = true, Inbound
		if !m.pol.ReportInternal {
			c.Ignore = "internal"
		}
	case phone.Invalid:
		m.warn("number is not valid; sending it cleaned", "call_id", c.ID, "source", c.Source, "number", n.E164)
	}
}

// internalCaller is the caller of a call between extensions as a signal
// tells it: the extension of the caller's own leg (outbound), or the other
// party of the callee's leg. "" when the signal says neither.
func (m *machine) internalCaller(s Signal) string {
	if s.Direction == Outbound {
		return s.Extension
	}
	if s.Remote == "" {
		return ""
	}
	return m.numbers.Normalize(s.Remote).E164
}

// referrer returns the company number to send as PhoneReferrer, or "".
func (m *machine) referrer(raw string) string {
	if raw == "" {
		return ""
	}
	if n := m.numbers.Normalize(raw); n.Kind == phone.External {
		return n.E164
	}
	return ""
}
