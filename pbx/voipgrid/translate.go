package voipgrid

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// SourceName is the Source of every signal this package journals, and the
// source name the directory maps extensions under.
const SourceName = "voipgrid"

// Causes the handler sets itself (the platform's own reasons pass through raw).
const (
	// CauseTransferred ends the leg of an agent who rang or answered before a
	// transfer handed the call to someone else, when that leg was only
	// reported after the transfer (a reordered notification).
	CauseTransferred = "transferred"
)

// note is one notification, decoded and placed in time.
type note struct {
	n      Notification
	status Status
	at     time.Time // the notification's timestamp (or arrival, if it had none)
	key    string    // stable identity of the notification, prefix of its signals' dedup keys
}

// newNote derives the notification's time and identity. A notification
// without a usable timestamp is identified by a hash of its body, so a
// replay of the same body still gives the same dedup keys.
func newNote(n Notification, status Status, body []byte, now time.Time) (note, bool) {
	at, ok := ParseTimestamp(n.Timestamp)
	stamp := strings.TrimSpace(n.Timestamp)
	if ok {
		stamp = at.Format(time.RFC3339Nano)
	} else {
		at = now
		sum := sha256.Sum256(body)
		stamp = "body-" + hex.EncodeToString(sum[:8])
	}
	return note{
		n:      n,
		status: status,
		at:     at,
		key:    SourceName + "|" + n.CallID + "|" + string(status) + "|" + stamp,
	}, ok
}

// direction of the call: as the platform says, else outbound when the caller
// is one of the platform's users.
func (t note) direction() events.Direction {
	switch strings.ToLower(strings.TrimSpace(t.n.Direction)) {
	case "inbound":
		return events.Inbound
	case "outbound":
		return events.Outbound
	}
	if t.n.Caller.Extension() != "" {
		return events.Outbound
	}
	return events.Inbound
}

// agents returns the extensions of the agents a notification is about: for
// an inbound call the destination's targets (or the destination itself when
// it carries user numbers), for an outbound call the caller. Transfers are
// always about the destination: the party the call is handed to.
func (t note) agents() []string {
	if t.direction() == events.Outbound && t.status != StatusWarmTransfer && t.status != StatusColdTransfer {
		if e := t.n.Caller.Extension(); e != "" {
			return []string{e}
		}
		return nil
	}
	var out []string
	for _, p := range t.n.Destination.Targets {
		if e := p.Extension(); e != "" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	if len(out) == 0 {
		if e := t.n.Destination.Extension(); e != "" {
			out = append(out, e)
		}
	}
	return out
}

// base is a signal with the call's fields filled in and no leg.
func (t note) base(state events.State) events.Signal {
	dir := t.direction()
	s := events.Signal{
		Source:    SourceName,
		CallID:    t.n.CallID,
		Direction: dir,
		State:     state,
		Cause:     strings.TrimSpace(t.n.Reason),
		Time:      t.at,
	}
	if dir == events.Inbound {
		s.Remote, s.Dialled = t.n.Caller.Number, t.n.Destination.Number
	} else {
		s.Remote = t.n.Destination.Number
		// The caller's number on an outbound call is the line it went out on,
		// unless it is just the agent's extension.
		if num := t.n.Caller.Number; num != "" && !slices.Contains(t.n.Caller.userNumbers(), num) {
			s.Dialled = num
		}
	}
	return s
}

// legID names an agent's leg of the call; "" is the call itself.
func legID(callID, ext string) string {
	if ext == "" {
		return ""
	}
	return callID + "/" + ext
}

// leg returns a signal for one agent's leg (ext "" is the call itself).
func (t note) leg(state events.State, ext string) events.Signal {
	s := t.base(state)
	s.Extension = ext
	s.LegID = legID(t.n.CallID, ext)
	s.DedupKey = t.key + "|" + legName(s.LegID)
	return s
}

func legName(id string) string {
	if id == "" {
		return "call"
	}
	return id
}

// signals translates one notification on its own, without regard to other
// notifications of the same call.
//
// Signals with an empty LegID and Extension describe the customer's call
// itself: created rings it, and ended ends it with every leg it had. Agent
// legs are "<call_id>/<extension>".
func (t note) signals() []events.Signal {
	agents := t.agents()
	each := func(state events.State) []events.Signal {
		if len(agents) == 0 {
			return []events.Signal{t.leg(state, "")}
		}
		out := make([]events.Signal, 0, len(agents))
		for _, a := range agents {
			out = append(out, t.leg(state, a))
		}
		return out
	}
	switch t.status {
	case StatusCreated:
		return []events.Signal{t.leg(events.Ringing, "")}
	case StatusRinging:
		return each(events.Ringing)
	case StatusInProgress:
		return each(events.Answered)
	case StatusWarmTransfer, StatusColdTransfer:
		switch len(agents) {
		case 0:
			// Handed to a party outside the platform: the call ends for us
			// when the platform says ended.
			return nil
		case 1:
			return []events.Signal{t.leg(events.Transferred, agents[0])}
		default:
			// A blind transfer to a group rings several agents; whoever
			// answers (in-progress) is the one it was handed to.
			return each(events.Ringing)
		}
	case StatusEnded:
		out := make([]events.Signal, 0, len(agents)+1)
		for _, a := range agents {
			out = append(out, t.leg(events.Ended, a))
		}
		return append(out, t.leg(events.Ended, ""))
	}
	return nil
}

// userNumbers returns the party's user numbers as strings.
func (p Party) userNumbers() []string {
	out := make([]string, 0, len(p.UserNumbers))
	for _, u := range p.UserNumbers {
		out = append(out, strings.TrimSpace(string(u)))
	}
	return out
}

// callState is what the handler remembers of one call to keep reordered
// notifications from undoing later ones. It is guarded by mu, held while a
// notification of the call is translated and journaled.
type callState struct {
	ended     bool
	endedAt   time.Time
	endKey    string // dedup key of the call-level ended signal
	endCause  string
	handovers []handover
	lastSeen  time.Time // our clock
}

// handover is a transfer, remembered so that an agent leg reported late (a
// notification older than the transfer arriving after it) is ended at the
// transfer instead of staying open, and the transfer is said again after it.
type handover struct {
	at      time.Time
	key     string
	targets []string
	signal  *events.Signal // the transfer's own signal, for a single target
}

// plan returns the signals to journal for t given what is known of its call,
// and a function that records t in the call's state once they are journaled.
//
// Ordering: the platform POSTs over HTTP, so a notification can arrive after
// a later one. Every signal carries its notification's timestamp, and for an
// older notification the plan adds what keeps the later state in force:
//   - an agent leg older than a transfer that went to someone else is ended
//     at the transfer, and the transfer is said again (a tracker that took
//     the transfer while the call seemed unanswered sees the hand-over now);
//   - anything older than the call's end is followed by the call-level ended
//     again, at the time of the end.
//
// The signals said again carry dedup keys of their own, derived from the
// late notification, so that the tracker does not drop them as repeats.
func (cs *callState) plan(t note) ([]events.Signal, func()) {
	sigs := t.signals()
	var extra []events.Signal
	closed := map[string]bool{}
	again := map[string]bool{}
	for _, s := range sigs {
		if s.Extension == "" || s.State == events.Ended || closed[s.LegID] {
			continue
		}
		for _, h := range cs.handovers {
			if !h.at.After(t.at) || slices.Contains(h.targets, s.Extension) {
				continue
			}
			c := s
			c.State, c.Cause, c.Time = events.Ended, CauseTransferred, h.at
			c.DedupKey = h.key + "|closes|" + s.LegID
			extra = append(extra, c)
			closed[s.LegID] = true
			if h.signal != nil && !again[h.key] {
				a := *h.signal
				a.DedupKey = h.signal.DedupKey + "|after|" + t.key
				extra = append(extra, a)
				again[h.key] = true
			}
			break
		}
	}
	if cs.ended && t.status != StatusEnded && len(sigs) > 0 && t.at.Before(cs.endedAt) {
		c := t.base(events.Ended)
		c.Time, c.Cause = cs.endedAt, cs.endCause
		c.DedupKey = cs.endKey + "|after|" + t.key
		extra = append(extra, c)
	}
	commit := func() {
		switch t.status {
		case StatusEnded:
			if !cs.ended || t.at.After(cs.endedAt) {
				cs.ended, cs.endedAt = true, t.at
				cs.endKey = t.key + "|call"
				cs.endCause = strings.TrimSpace(t.n.Reason)
			}
		case StatusWarmTransfer, StatusColdTransfer:
			if ag := t.agents(); len(ag) > 0 && !slices.ContainsFunc(cs.handovers, func(h handover) bool { return h.key == t.key }) {
				h := handover{at: t.at, key: t.key, targets: ag}
				if len(sigs) == 1 && sigs[0].State == events.Transferred {
					sig := sigs[0]
					h.signal = &sig
				}
				cs.handovers = append(cs.handovers, h)
			}
		}
	}
	return append(sigs, extra...), commit
}
