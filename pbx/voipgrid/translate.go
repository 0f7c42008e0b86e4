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
