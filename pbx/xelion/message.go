package xelion

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/voipbridge/voipbridge/pbx"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/voipbridge/voipbridge/events"
)

// The notification types the source subscribes to, as Xelion names them.
const (
	NewCallEvent         = "newCallEvent"
	CallConnectedEvent   = "callConnectedEvent"
	CallTransferredEvent = "callTransferredEvent"
	CallHungUpEvent      = "callHungUpEvent"
	MissedCallEvent      = "missedCallEvent"
	ChannelHungUpEvent   = "channelHungUpEvent"
)

// Subscriptions lists the notification types requested on every connection.
var Subscriptions = []string{
	NewCallEvent, CallConnectedEvent, CallTransferredEvent,
	CallHungUpEvent, MissedCallEvent, ChannelHungUpEvent,
}

// NotificationRequest subscribes to (Toggle true) or unsubscribes from one
// notification type; it is a WebSocket Message of messageType
// "notificationRequest".
type NotificationRequest struct {
	MessageType      string `json:"messageType"`
	NotificationType string `json:"notificationType"`
	OID              string `json:"oid,omitempty"`
	Toggle           bool   `json:"toggle"`
}

// Message is one WebSocket message from the server. Notifications carry
// their type and object; other messages (the echo of a test message) are
// ignored.
type Message struct {
	MessageType      string          `json:"messageType"`
	NotificationType string          `json:"notificationType"`
	Notification     json.RawMessage `json:"notification"`
}

// Ref is a reference to a Xelion object (an addressable, a phone line).
type Ref struct {
	OID        pbx.FlexString `json:"oid"`
	CommonName string         `json:"commonName"`
	ObjectType string         `json:"objectType"`
}

// CallEvent is the notification object of the call events (and, as assumed
// here, of callTransferredEvent).
type CallEvent struct {
	CallID pbx.FlexString `json:"callId"`
	// Initiation says how the call was initiated (for example "outgoing").
	Initiation string `json:"initiation"`
	// CallDirection is Inbound, Outbound or NotAvailable where Xelion sends it.
	CallDirection string `json:"callDirection"`
	// Date is when the call was initiated (a local time without zone).
	Date              string         `json:"date"`
	CallerPhoneNumber string         `json:"callerPhoneNumber"`
	CallerName        string         `json:"callerName"`
	CallerAddressable *Ref           `json:"callerAddressable"`
	CalleePhoneNumber string         `json:"calleePhoneNumber"`
	CalleeName        string         `json:"calleeName"`
	CalleeAddressable *Ref           `json:"calleeAddressable"`
	Duration          pbx.FlexString `json:"duration"`
}

// Event is one decoded call notification.
type Event struct {
	Type string
	Call CallEvent
}

// Reasons a message is not used, the label of the dropped counter.
const (
	reasonJSON         = "bad_json"
	reasonNoType       = "no_type"
	reasonUnknownType  = "unknown_type"
	reasonNoCallID     = "no_call_id"
	reasonDuplicate    = "duplicate"
	reasonUnknownCall  = "unknown_call"
	reasonNoParty      = "no_party"
	reasonNoTarget     = "no_transfer_target"
	reasonConsult      = "consultation"
	reasonAfterEnd     = "after_end"
	reasonNoChange     = "no_change"
	reasonNotification = "not_notification"
)

// DecodeError says why a message could not be used; Reason is the metric label.
type DecodeError struct {
	Reason string
	Err    error
}

func (e *DecodeError) Error() string {
	if e.Err == nil {
		return "xelion message: " + e.Reason
	}
	return fmt.Sprintf("xelion message: %s: %v", e.Reason, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// ErrNotNotification is returned by Decode for a well-formed message that is
// not a notification (a test echo, an answer to a request).
var ErrNotNotification = &DecodeError{Reason: reasonNotification}

// Decode parses one WebSocket message into a call event. It returns
// ErrNotNotification for other messages and a *DecodeError for anything it
// cannot use: malformed JSON, a notification of a type not subscribed to, a
// call event without callId.
func Decode(data []byte) (Event, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Event{}, &DecodeError{Reason: reasonJSON, Err: err}
	}
	if m.NotificationType == "" {
		if m.MessageType != "" && !strings.EqualFold(m.MessageType, "notification") {
			return Event{}, ErrNotNotification
		}
		return Event{}, &DecodeError{Reason: reasonNoType}
	}
	known := false
	for _, t := range Subscriptions {
		if t == m.NotificationType {
			known = true
		}
	}
	if !known {
		return Event{}, &DecodeError{Reason: reasonUnknownType, Err: fmt.Errorf("notification type %q", clip(m.NotificationType))}
	}
	var c CallEvent
	if len(bytes.TrimSpace(m.Notification)) == 0 {
		return Event{}, &DecodeError{Reason: reasonNoCallID, Err: errors.New("no notification object")}
	}
	if err := json.Unmarshal(m.Notification, &c); err != nil {
		return Event{}, &DecodeError{Reason: reasonJSON, Err: err}
	}
	c.CallID = pbx.FlexString(strings.TrimSpace(string(c.CallID)))
	if c.CallID == "" {
		return Event{}, &DecodeError{Reason: reasonNoCallID}
	}
	return Event{Type: m.NotificationType, Call: c}, nil
}

// party is one side of a call event.
type party struct {
	number, name string
	ref          *Ref
}

// ident is what identifies the party to the directory: its addressable's
// OID, else its phone number.
func (p party) ident() string {
	if p.ref != nil {
		if oid := strings.TrimSpace(string(p.ref.OID)); oid != "" {
			return oid
		}
	}
	return strings.TrimSpace(p.number)
}

func (c CallEvent) caller() party {
	return party{number: strings.TrimSpace(c.CallerPhoneNumber), name: c.CallerName, ref: c.CallerAddressable}
}

func (c CallEvent) callee() party {
	return party{number: strings.TrimSpace(c.CalleePhoneNumber), name: c.CalleeName, ref: c.CalleeAddressable}
}

// direction of the call as Xelion states it; internal is true for a call
// Xelion marks internal (reported as inbound to the callee).
func (c CallEvent) direction() (dir events.Direction, internal bool) {
	switch strings.ToLower(strings.TrimSpace(c.Initiation)) {
	case "outgoing", "outbound":
		return events.Outbound, false
	case "incoming", "inbound":
		return events.Inbound, false
	case "internal":
		return events.Inbound, true
	}
	switch strings.ToLower(strings.TrimSpace(c.CallDirection)) {
	case "outbound", "outgoing":
		return events.Outbound, false
	case "internal":
		return events.Inbound, true
	}
	return events.Inbound, false
}

// local and remote return the company's side and the other side of the call.
func (c CallEvent) local() party {
	if d, _ := c.direction(); d == events.Outbound {
		return c.caller()
	}
	return c.callee()
}

func (c CallEvent) remote() party {
	if d, _ := c.direction(); d == events.Outbound {
		return c.callee()
	}
	return c.caller()
}

// Session answers of the REST API.

// LoginResponse is the answer to me/login and me/renew.
type LoginResponse struct {
	Authentication string `json:"authentication"`
	RenewalToken   string `json:"renewalToken"`
	// ValidUntil is when the token expires, "2017-03-09 11:08:51" in the
	// server's local time in Xelion's examples.
	ValidUntil    string `json:"validUntil"`
	Version       string `json:"version"`
	ServerVersion string `json:"serverVersion"`
}

// ObjectResponse is a REST answer wrapping one value, like the WebSocket URL
// of me/websocket ({"object": "wss://…"}).
type ObjectResponse struct {
	Object string `json:"object"`
}

// Credentials is the body of me/login.
type Credentials struct {
	UserName  string `json:"userName"`
	Password  string `json:"password"`
	UserSpace string `json:"userSpace"`
	ClientID  string `json:"clientId,omitempty"`
}

var validUntilLayouts = []string{
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04:05.999999999",
	"2006-01-02T15:04:05.999999999",
}

// ParseValidUntil parses a token expiry. A time with a zone is taken as it
// is; one without (Xelion's examples) is read in loc.
func ParseValidUntil(s string, loc *time.Location) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	for _, l := range validUntilLayouts {
		if t, err := time.ParseInLocation(l, s, loc); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// clip bounds a string from the server before it reaches a log or an error.
func clip(s string) string {
	const max = 64
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
