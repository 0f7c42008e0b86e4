// Package events is the domain of voipbridge: the signals sources report, the
// events delivered to the helpdesk, the tracker that turns one into the other,
// the journal that keeps both durable, and the dispatcher that delivers events.
package events

import (
	"fmt"
	"time"
)

// State is what a source says happened to a leg of a call.
type State string

// The states a signal can report. A leg moves ringing → answered → ended;
// transferred says the call was handed to the signal's extension.
const (
	Ringing     State = "ringing"
	Answered    State = "answered"
	Transferred State = "transferred"
	Ended       State = "ended"
)

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	switch s {
	case Ringing, Answered, Transferred, Ended:
		return true
	}
	return false
}

// rank orders leg states so that stale signals can be recognised.
func (s State) rank() int {
	switch s {
	case Ringing:
		return 1
	case Answered, Transferred:
		return 2
	case Ended:
		return 3
	}
	return 0
}

// Direction is the direction of a customer call as the PBX sees it.
type Direction string

// Directions of a call.
const (
	Inbound  Direction = "inbound"
	Outbound Direction = "outbound"
)

// Valid reports whether d is a known direction.
func (d Direction) Valid() bool { return d == Inbound || d == Outbound }

// Signal is one observation reported by a PBX source, before any call logic.
// Sources keep numbers raw; the tracker normalises them and decides what is an
// event. A signal is journaled before the PBX gets its acknowledgement.
type Signal struct {
	// Source names the feed that produced the signal ("generic", "sip", "threecx", ...).
	Source string `json:"source"`
	// CallID is the PBX's identifier of the call this signal belongs to.
	CallID string `json:"call_id"`
	// LegID identifies one leg (one extension's dialog or channel) inside the call;
	// empty means the extension identifies the leg.
	LegID string `json:"leg_id,omitempty"`
	// LinkedCallID, when set, names another PBX call this one continues
	// (a transfer that changed the call id and said so).
	LinkedCallID string `json:"linked_call_id,omitempty"`
	// Extension is the PBX identifier of the agent's device or user on this leg.
	// For State Transferred it is the extension the call was handed to.
	Extension string `json:"extension,omitempty"`
	// Remote is the raw number of the party outside the company.
	Remote string `json:"remote,omitempty"`
	// Dialled is the raw company number of the call: the DID an inbound caller
	// dialled, or the line an outbound call went out on.
	Dialled string `json:"dialled,omitempty"`
	// Direction of the customer call.
	Direction Direction `json:"direction"`
	// State is what happened.
	State State `json:"state"`
	// Cause is the PBX's reason, if it gave one (for example "cancelled", "replaced").
	Cause string `json:"cause,omitempty"`
	// Time is when the PBX says it happened (or when the source observed it).
	Time time.Time `json:"time"`
	// DedupKey identifies the observation: the same key twice is one signal.
	DedupKey string `json:"dedup_key"`
}

// Validate reports the first field that makes the signal unusable.
func (s *Signal) Validate() error {
	switch {
	case s.Source == "":
		return fmt.Errorf("signal: source is empty")
	case s.CallID == "":
		return fmt.Errorf("signal: call_id is empty")
	case !s.State.Valid():
		return fmt.Errorf("signal: state %q is not one of ringing, answered, transferred, ended", s.State)
	case s.Direction != "" && !s.Direction.Valid():
		return fmt.Errorf("signal: direction %q is not inbound or outbound", s.Direction)
	case s.DedupKey == "":
		return fmt.Errorf("signal: dedup_key is empty")
	case s.Time.IsZero():
		return fmt.Errorf("signal: time is zero")
	}
	return nil
}
