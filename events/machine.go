package events

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
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

// Policies are the operator's choices about which calls are reported.
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
	// TransferWindow is how long an ended call waits for a leg that continues
	// it (a transfer that changed the call id) before it is reported
	// Disconnected (TRANSFER_WINDOW).
	TransferWindow time.Duration
}

// Outcome of folding one signal, the label of the signals metric.
const (
	OutcomeApplied   = "applied"
	OutcomeDuplicate = "duplicate"
	OutcomeStale     = "stale"
	OutcomeAfterEnd  = "after_end"
	OutcomeUnknown   = "unknown_call"
	OutcomeReplayed  = "replayed"
)

type phase int

const (
	phaseRinging phase = iota
	phaseAnswered
)

// leg is one extension's (or channel's) part in a call.
type leg struct {
	State State     `json:"state"`
	Agent string    `json:"agent,omitempty"` // ROBIN extension, when the leg is an agent's
	Time  time.Time `json:"time"`            // PBX time of the leg's last state
	Since time.Time `json:"since"`           // our time the leg was first seen
}

// call is the tracker's record of one customer call. It is persisted as JSON
// after every change, so field names are part of the journal's format.
type call struct {
	ID        string          `json:"id"` // event Id: the PBX call id of the customer call
	Source    string          `json:"source"`
	CallIDs   []string        `json:"call_ids"` // every PBX call id of its legs
	Direction Direction       `json:"direction"`
	Remote    string          `json:"remote,omitempty"`
	RemoteRaw string          `json:"remote_raw,omitempty"`
	Anonymous bool            `json:"anonymous,omitempty"`
	Referrer  string          `json:"referrer,omitempty"`
	Ignore    string          `json:"ignore,omitempty"` // why the call is not reported
	Phase     phase           `json:"phase"`
	Agent     string          `json:"agent,omitempty"`     // agent on the call now
	LastRang  string          `json:"last_rang,omitempty"` // last agent that rang
	Transfers int             `json:"transfers,omitempty"`
	Legs      map[string]*leg `json:"legs"`
	Seen      []string        `json:"seen"`            // recent dedup keys
	EndAt     time.Time       `json:"end_at,omitzero"` // pending end: Disconnected due then
	Cause     string          `json:"cause,omitempty"` // cause of the pending end
	Done      time.Time       `json:"done,omitzero"`   // when the call was finished (tombstone)
	Updated   time.Time       `json:"updated"`         // last activity (our clock)
	LastSeq   uint64          `json:"last_seq"`        // last signal sequence folded in
}

// maxSeen bounds the dedup keys kept per call.
const maxSeen = 128

// machine folds signals into calls. It does no I/O and is not safe for
// concurrent use: the tracker owns it.
type machine struct {
	pol     Policies
	numbers Numbers
	dir     Directory
	calls   map[string]*call  // by call key
	aliases map[string]string // source|pbx call id → call key
	// warn receives number problems worth a log line.
	warn func(msg string, args ...any)
}

func newMachine(pol Policies, numbers Numbers, dir Directory) *machine {
	return &machine{
		pol: pol, numbers: numbers, dir: dir,
		calls:   map[string]*call{},
		aliases: map[string]string{},
		warn:    func(string, ...any) {},
	}
}

func aliasKey(source, callID string) string { return source + "|" + callID }

// callKey is the journal key of a call: JetStream KV keys allow a limited
// alphabet, PBX call ids do not.
func callKey(source, callID string) string {
	h := sha256.Sum256([]byte(aliasKey(source, callID)))
	return "c" + hex.EncodeToString(h[:16])
}

// restore adds a persisted call.
func (m *machine) restore(c *call) {
	if c.Legs == nil {
		c.Legs = map[string]*leg{}
	}
	k := callKey(c.Source, c.ID)
	m.calls[k] = c
	for _, id := range c.CallIDs {
		m.aliases[aliasKey(c.Source, id)] = k
	}
}

// result is what folding one signal or one tick produced.
type result struct {
	events  []Envelope
	changed []string // call keys to persist
	deleted []string // call keys to delete
	outcome string
}

// apply folds one signal (stream sequence seq) at our time now.
func (m *machine) apply(s Signal, seq uint64, now time.Time) result {
	key, c := m.find(s, now)
	if c == nil {
		if s.State == Ended {
			return result{outcome: OutcomeUnknown}
		}
		key, c = m.create(s, now)
	}
	switch {
	case seq != 0 && c.LastSeq >= seq:
		return result{outcome: OutcomeReplayed}
	case slices.Contains(c.Seen, s.DedupKey):
		return result{outcome: OutcomeDuplicate}
	case !c.Done.IsZero():
		return result{outcome: OutcomeAfterEnd}
	}
	r := result{outcome: OutcomeApplied, changed: []string{key}}
	c.Seen = append(c.Seen, s.DedupKey)
	if len(c.Seen) > maxSeen {
		c.Seen = slices.Delete(c.Seen, 0, len(c.Seen)-maxSeen)
	}
	if seq != 0 {
		c.LastSeq = seq
	}
	c.Updated = now
	if !slices.Contains(c.CallIDs, s.CallID) {
		c.CallIDs = append(c.CallIDs, s.CallID)
		m.aliases[aliasKey(s.Source, s.CallID)] = key
	}
	m.fillNumbers(c, s)

	agent := m.agent(s)
	legKey := s.LegID
	if legKey == "" {
		legKey = s.Extension
	}
	switch s.State {
	case Ringing, Answered:
		if legKey == "" {
			legKey = "call"
		}
		l := c.Legs[legKey]
		if l != nil && (s.State.rank() < l.State.rank() || (!s.Time.IsZero() && s.Time.Before(l.Time))) {
			r.outcome = OutcomeStale
			return r
		}
		if l == nil {
			l = &leg{Since: now}
			c.Legs[legKey] = l
		}
		if l.State == s.State {
			r.outcome = OutcomeDuplicate
			return r
		}
		l.State, l.Time, l.Agent = s.State, s.Time, agent
		c.EndAt, c.Cause = time.Time{}, ""
		if s.State == Ringing {
			if agent != "" {
				c.LastRang = agent
			}
			return r
		}
		if agent != "" {
			m.answeredBy(c, legKey, agent, now, &r)
		}
	case Transferred:
		if agent == "" {
			return r
		}
		c.EndAt, c.Cause = time.Time{}, ""
		if c.Phase == phaseRinging {
			c.LastRang = agent
			return r
		}
		// The target's leg: the one the signal names, so that its later
		// end closes it; else one per target extension.
		target := s.LegID
		if target == "" {
			target = "xfer:" + s.Extension
		}
		c.Legs[target] = &leg{State: Answered, Agent: agent, Time: s.Time, Since: now}
		m.answeredBy(c, target, agent, now, &r)
	case Ended:
		if legKey == "" {
			for _, l := range c.Legs {
				l.State = Ended
			}
		} else if l := c.Legs[legKey]; l != nil {
			if l.State == Ended {
				r.outcome = OutcomeDuplicate
				return r
			}
			l.State, l.Time = Ended, s.Time
		} else {
			c.Legs[legKey] = &leg{State: Ended, Agent: agent, Time: s.Time, Since: now}
		}
		if !m.active(c) {
			c.EndAt, c.Cause = now.Add(m.pol.TransferWindow), s.Cause
			if m.pol.TransferWindow <= 0 {
				m.finish(key, c, now, &r)
			}
		}
	}
	return r
}

// answeredBy records that agent answered (or took over) the call on leg.
func (m *machine) answeredBy(c *call, legKey, agent string, now time.Time, r *result) {
	switch {
	case c.Phase == phaseRinging:
		c.Phase, c.Agent = phaseAnswered, agent
		// The other legs that were ringing lost: a ring group or queue
		// answered elsewhere. Legs that start ringing later may be a
		// transfer target and stay.
		for k, l := range c.Legs {
			if k != legKey && l.State == Ringing {
				l.State = Ended
			}
		}
		m.emit(c, EventAnswered, now, r)
	case c.Agent != agent:
		c.Agent = agent
		c.Transfers++
		// The previous agent handed the call on: their legs are over, even
		// when the PBX does not say so.
		for k, l := range c.Legs {
			if k != legKey && l.State == Answered && l.Agent != agent {
				l.State = Ended
			}
		}
		m.emit(c, EventTransfer, now, r)
	}
}

// active reports whether any leg of the call is still ringing or answered.
func (m *machine) active(c *call) bool {
	for _, l := range c.Legs {
		if l.State != Ended {
			return true
		}
	}
	return false
}

// tick ends calls whose transfer window or timeout has passed, and forgets
// finished calls once late signals can no longer matter.
func (m *machine) tick(now time.Time) result {
	var r result
	keep := max(time.Hour, 2*m.pol.TransferWindow)
	for k, c := range m.calls {
		switch {
		case !c.Done.IsZero():
			if now.Sub(c.Done) > keep {
				delete(m.calls, k)
				for _, id := range c.CallIDs {
					delete(m.aliases, aliasKey(c.Source, id))
				}
				r.deleted = append(r.deleted, k)
			}
		case !c.EndAt.IsZero() && !now.Before(c.EndAt):
			m.finish(k, c, now, &r)
		case m.pol.CallTimeout > 0 && now.Sub(c.Updated) >= m.pol.CallTimeout:
			c.Cause = "timeout"
			m.finish(k, c, now, &r)
		}
	}
	return r
}

// finish ends the customer call: Disconnected once if it was answered, or
// for a missed inbound call when the policy says so.
func (m *machine) finish(key string, c *call, now time.Time, r *result) {
	c.Done, c.EndAt = now, time.Time{}
	for _, l := range c.Legs {
		l.State = Ended
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
	if !slices.Contains(r.changed, key) {
		r.changed = append(r.changed, key)
	}
}

// emit appends the event for the call's current state, unless the call is
// not to be reported.
func (m *machine) emit(c *call, t EventType, now time.Time, r *result) {
	number := c.Remote
	if c.Anonymous || c.RemoteRaw == "" {
		// Withheld, or no signal ever carried a number.
		number = m.pol.AnonymousNumber
		if number == "" {
			return
		}
	}
	if c.Ignore != "" {
		return
	}
	id := aliasKey(c.Source, c.ID) + "|" + string(t)
	if t == EventTransfer {
		id += fmt.Sprintf("|%d", c.Transfers)
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
		CallKey:    callKey(c.Source, c.ID),
		Source:     c.Source,
		InProgress: t != EventDisconnected,
		Created:    now,
	})
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
// link, or by correlation with a call of the same customer that is ending
// (or still answered) within the transfer window.
func (m *machine) find(s Signal, now time.Time) (string, *call) {
	if k, ok := m.aliases[aliasKey(s.Source, s.CallID)]; ok {
		return k, m.calls[k]
	}
	if s.LinkedCallID != "" {
		if k, ok := m.aliases[aliasKey(s.Source, s.LinkedCallID)]; ok {
			return k, m.calls[k]
		}
	}
	if s.State == Ended || s.Remote == "" || m.pol.TransferWindow <= 0 {
		return "", nil
	}
	remote := m.numbers.Normalize(s.Remote)
	if remote.Kind != phone.External && remote.Kind != phone.Invalid {
		return "", nil
	}
	referrer := m.referrer(s.Dialled)
	agent := m.agent(s)
	var best string
	for k, c := range m.calls {
		if c.Source != s.Source || c.Remote != remote.E164 || c.Referrer != referrer || !c.Done.IsZero() || c.Phase != phaseAnswered {
			continue
		}
		ending := !c.EndAt.IsZero() && now.Before(c.EndAt)
		handover := c.EndAt.IsZero() && agent != "" && agent != c.Agent
		if (ending || handover) && (best == "" || c.Updated.After(m.calls[best].Updated)) {
			best = k
		}
	}
	if best == "" {
		return "", nil
	}
	return best, m.calls[best]
}

// create starts a new call from its first signal.
func (m *machine) create(s Signal, now time.Time) (string, *call) {
	c := &call{
		ID: s.CallID, Source: s.Source, Direction: s.Direction,
		Legs: map[string]*leg{}, Updated: now,
	}
	if c.Direction == "" {
		c.Direction = Inbound
	}
	m.fillNumbers(c, s)
	k := callKey(s.Source, s.CallID)
	m.calls[k] = c
	return k, c
}

// fillNumbers sets the customer's number and the company number the first
// time a signal carries them, and decides whether the call is reported.
func (m *machine) fillNumbers(c *call, s Signal) {
	if c.Referrer == "" && s.Dialled != "" {
		c.Referrer = m.referrer(s.Dialled)
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
		if !m.pol.ReportInternal {
			c.Ignore = "internal"
		}
	case phone.Invalid:
		m.warn("number is not valid; sending it cleaned", "call_id", c.ID, "source", c.Source, "number", n.E164)
	}
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
