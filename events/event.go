package events

import "time"

// EventType is the kind of event the helpdesk takes.
type EventType string

// The three event types of ROBIN's register-event endpoint.
const (
	EventAnswered     EventType = "Answered"
	EventTransfer     EventType = "Transfer"
	EventDisconnected EventType = "Disconnected"
)

// Event is one call event for the helpdesk: exactly the fields ROBIN's
// register-event endpoint documents, plus bookkeeping that is never sent.
type Event struct {
	// ID is the PBX's call id of the customer call; stable across transfers and restarts.
	ID string `json:"Id"`
	// Type is Answered, Transfer or Disconnected.
	Type EventType `json:"EventType"`
	// PhoneNumber is the customer's number in E.164 (or the configured anonymous value).
	PhoneNumber string `json:"PhoneNumber"`
	// PhoneExtension is the agent's ROBIN extension.
	PhoneExtension string `json:"PhoneExtension"`
	// Direction is "Inbound" or "Outbound".
	Direction string `json:"Direction"`
	// PhoneReferrer is the company number of the call (DID or line), omitted when unknown.
	PhoneReferrer string `json:"PhoneReferrer,omitempty"`
}

// Envelope is an event as journaled: the event plus what the dispatcher needs.
type Envelope struct {
	Event Event `json:"event"`
	// MsgID is the deterministic journal id (dedup key) of the event.
	MsgID string `json:"msg_id"`
	// CallKey groups the events of one customer call (for per-call ordering).
	CallKey string `json:"call_key"`
	// Source is the feed the call came from.
	Source string `json:"source"`
	// InProgress is true when the call was still going on when the event was made
	// (an Answered the agent is waiting for).
	InProgress bool `json:"in_progress,omitempty"`
	// Created is when the tracker emitted the event.
	Created time.Time `json:"created"`
	// Call describes the call for sinks beyond register-event (follow-ups,
	// call logs); it is never sent to ROBIN's register-event.
	Call *CallSummary `json:"call,omitempty"`
}

// CallSummary is what the tracker knows of a call when it emits an event.
type CallSummary struct {
	// Customer is the caller (inbound) or the number called (outbound),
	// E.164 where it could be read; empty when Anonymous.
	Customer  string `json:"customer,omitempty"`
	Anonymous bool   `json:"anonymous,omitempty"`
	// DID is the number the customer dialled, where known.
	DID string `json:"did,omitempty"`
	// Rang are the PBX extensions that had a leg of the call, in order.
	Rang []string `json:"rang,omitempty"`
	// Missed: a Disconnected of a call no agent answered.
	Missed   bool      `json:"missed,omitempty"`
	Internal bool      `json:"internal,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Answered time.Time `json:"answered,omitzero"`
	Ended    time.Time `json:"ended,omitzero"`
}

// DirectionLabel returns the Direction value ROBIN expects.
func DirectionLabel(d Direction) string {
	if d == Outbound {
		return "Outbound"
	}
	return "Inbound"
}
