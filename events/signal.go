// Package events is the domain of voipbridge: the signals sources report, the
// events delivered to the helpdesk, the tracker that turns one into the other,
// the journal that keeps both durable, and the dispatcher that delivers events.
package events

import (
	"errors"
	"fmt"
	"time"
	"unicode"
	"unicode/utf8"
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
	// Snapshot lists every leg an extension has now (Open); the tracker
	// ends that extension's legs the snapshot no longer holds. A source
	// sends one after it (re)connects and gets a full view from the PBX.
	Snapshot State = "snapshot"
)

// Valid reports whether s is one of the known states.
func (s State) Valid() bool {
	switch s {
	case Ringing, Answered, Transferred, Ended, Snapshot:
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

// CauseUnconfirmed, on a transferred signal of a consultation leg (see
// Signal.Consulting), says the PBX reported a transfer that the source could
// not read: perhaps this consultation became it. If the consulting agent
// then leaves the customer while the consultation is up, the consulted
// agent has the customer; if the consultation ends first, it was not.
const CauseUnconfirmed = "unconfirmed"

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
	// ReferredBy, when set, names the extension that handed this leg its
	// call: it referred or transferred it, the leg acts on its behalf, or
	// it consulted this leg's extension first (an attended transfer that
	// carries on under the consultation's call id). A leg of a call id the
	// tracker does not know yet continues the call that extension is on.
	ReferredBy string `json:"referred_by,omitempty"`
	// Consulting, on an agent's outgoing leg (Extension is that agent),
	// names the extension the agent calls. When the agent is answered on
	// another call, with a customer who is not the party called, the leg
	// is a consultation of that call (the first half of an attended
	// transfer): Consulting's extension gets a consultation leg there,
	// which keeps the call going and whose answer is not the customer's.
	// Transferred on it says the consultation became the transfer (with
	// Cause CauseUnconfirmed: perhaps did); ended ends that leg alone.
	// Otherwise the leg is the agent's own outgoing call.
	Consulting string `json:"consulting,omitempty"`
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
	// DedupKey identifies the observation within its call: the same key
	// twice for one call is one signal.
	DedupKey string `json:"dedup_key"`
	// Open, for State Snapshot, holds the leg ids the extension has now.
	Open []string `json:"open,omitempty"`
	// Line is the PBX's name of the line or trunk the call came in on (or
	// went out on), when it has one: DID_MAP turns it into the company
	// number for PBXs that do not send the dialled number.
	Line string `json:"line,omitempty"`
}

// Limits of the identifiers a signal carries, the same for every source.
const (
	MaxIDBytes        = 256
	MaxExtensionBytes = 64
)

// ErrInvalidSignal wraps every validation error: a source that gets it drops
// the signal (and logs and counts it) instead of retrying.
var ErrInvalidSignal = errors.New("invalid signal")

// FieldError names the field that makes a signal unusable.
type FieldError struct {
	Field, Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap makes every FieldError an ErrInvalidSignal.
func (e *FieldError) Unwrap() error { return ErrInvalidSignal }

// CheckText reports why v cannot be an identifier of at most max bytes:
// not UTF-8, too long, or holding a control, format (bidi) or other
// non-printable character. Such a value would reach a message id, a log
// line or the helpdesk verbatim. It returns "" for a usable value.
func CheckText(v string, max int) string {
	if len(v) > max {
		return fmt.Sprintf("is longer than %d bytes", max)
	}
	if !utf8.ValidString(v) {
		return "is not valid UTF-8"
	}
	for _, r := range v {
		if !unicode.IsPrint(r) && r != ' ' {
			return fmt.Sprintf("holds the character %U, which is not printable", r)
		}
		if unicode.Is(unicode.Bidi_Control, r) {
			return fmt.Sprintf("holds the bidirectional control %U", r)
		}
	}
	return ""
}

// Validate reports the first field that makes the signal unusable, as a
// *FieldError (so errors.Is(err, ErrInvalidSignal)).
func (s *Signal) Validate() error {
	bad := func(field, problem string) error { return &FieldError{field, problem} }
	switch {
	case s.Source == "":
		return bad("source", "is empty")
	case s.CallID == "" && s.State != Snapshot:
		return bad("call_id", "is empty")
	case !s.State.Valid():
		return bad("state", fmt.Sprintf("%q is not one of ringing, answered, transferred, ended, snapshot", s.State))
	case s.State == Snapshot && s.Extension == "":
		return bad("extension", "is required for a snapshot")
	case s.Direction != "" && !s.Direction.Valid():
		return bad("direction", fmt.Sprintf("%q is not inbound or outbound", s.Direction))
	case s.DedupKey == "":
		return bad("dedup_key", "is empty")
	case s.Time.IsZero():
		return bad("time", "is zero")
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"source", s.Source, MaxExtensionBytes},
		{"call_id", s.CallID, MaxIDBytes},
		{"leg_id", s.LegID, MaxIDBytes},
		{"linked_call_id", s.LinkedCallID, MaxIDBytes},
		{"extension", s.Extension, MaxExtensionBytes},
		{"referred_by", s.ReferredBy, MaxExtensionBytes},
		{"consulting", s.Consulting, MaxExtensionBytes},
		{"event_id", s.DedupKey, MaxIDBytes},
		{"line", s.Line, MaxIDBytes},
	} {
		if p := CheckText(f.v, f.max); p != "" {
			return bad(f.name, p)
		}
	}
	for _, id := range s.Open {
		if p := CheckText(id, MaxIDBytes); p != "" {
			return bad("open", p)
		}
	}
	return nil
}

// TextFault reports whether err is Validate refusing an identifier the PBX
// supplied (not printable, or too long, alone or inside a leg id or dedup
// key), rather than a field the source itself got wrong. Sources drop and
// count such signals; their fuzz tests accept them.
func TextFault(s Signal, err error) bool {
	fe, ok := errors.AsType[*FieldError](err)
	if !ok {
		return false
	}
	v, limit := "", MaxIDBytes
	switch fe.Field {
	case "call_id":
		v = s.CallID
	case "leg_id":
		v = s.LegID
	case "linked_call_id":
		v = s.LinkedCallID
	case "event_id":
		v = s.DedupKey
	case "extension":
		v, limit = s.Extension, MaxExtensionBytes
	case "referred_by":
		v, limit = s.ReferredBy, MaxExtensionBytes
	case "consulting":
		v, limit = s.Consulting, MaxExtensionBytes
	default:
		return false
	}
	return CheckText(v, limit) != ""
}
