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

// CallEvent is the notification object of the call events (and one of the
// shapes callTransferredEvent is read in: see TransferEvent).
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

// TransferEvent is the other shape callTransferredEvent is read in.
//
// Xelion's NotificationType table names the object of callTransferredEvent
// CallTransferredEvent, a type of its own, and publishes none of its fields
// (nor does any public client or capture found). Its REST counterpart
// joins two running calls, the one handed over and the one it goes to
// (POST me/device/calls/<channel>/transfer, "connect the 2 selected callers
// with each other and hangup the corresponding original calls"). So the
// source reads, besides the CallEvent shape (the fields at the top level),
// an object that names those two calls: the call handed over as
// transferredCall (a CallEvent) or originalCallId, and the call it joins
// (for an attended transfer the consultation) as consultationCall (a
// CallEvent) or newCallId. Every one of these names is assumed, not
// documented. An object in neither shape is unreadable: see
// ErrUnreadableTransfer.
type TransferEvent struct {
	TransferredCall  *CallEvent     `json:"transferredCall"`
	ConsultationCall *CallEvent     `json:"consultationCall"`
	OriginalCallID   pbx.FlexString `json:"originalCallId"`
	NewCallID        pbx.FlexString `json:"newCallId"`
}

// Event is one decoded call notification.
type Event struct {
	Type string
	// Call is the call the event is about; for callTransferredEvent the
	// call handed over, with the party it was handed to as its local party
	// where the event names one.
	Call CallEvent
	// Consultation is, for callTransferredEvent in the TransferEvent shape,
	// the callId of the call the transferred call was joined to, if named.
	Consultation string
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
	reasonAfterEnd     = "after_end"
	reasonNoChange     = "no_change"
	reasonNotification = "not_notification"
	reasonTransfer     = "unreadable_transfer"
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

// Is makes errors.Is match a sentinel of the same reason (ErrNotNotification,
// ErrUnreadableTransfer) whatever the cause attached.
func (e *DecodeError) Is(target error) bool {
	t, ok := target.(*DecodeError)
	return ok && t.Err == nil && t.Reason == e.Reason
}

// ErrNotNotification is returned by Decode for a well-formed message that is
// not a notification (a test echo, an answer to a request).
var ErrNotNotification = &DecodeError{Reason: reasonNotification}

// ErrUnreadableTransfer is returned by Decode for a callTransferredEvent
// whose object is in none of the shapes the source reads (see
// TransferEvent). The source cannot tell which call was transferred to
// whom, but it knows that a transfer happened: see translator.unreadable.
var ErrUnreadableTransfer = &DecodeError{Reason: reasonTransfer}

// Decode parses one WebSocket message into a call event. It returns
// ErrNotNotification for other messages, ErrUnreadableTransfer for a
// transfer event it cannot read, and a *DecodeError for anything else it
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
	if m.NotificationType == CallTransferredEvent {
		return decodeTransfer(m.Notification)
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

// decodeTransfer reads the object of a callTransferredEvent in the
// CallEvent shape (a callId at the top level, as the source read it
// before), or in the TransferEvent shape, either of them possibly wrapped
// in {"object": …} as Xelion's REST answers are.
func decodeTransfer(raw json.RawMessage) (Event, error) {
	var wrap struct {
		Object json.RawMessage `json:"object"`
	}
	if json.Unmarshal(raw, &wrap) == nil && len(bytes.TrimSpace(wrap.Object)) > 0 && string(bytes.TrimSpace(wrap.Object)) != "null" {
		raw = wrap.Object
	}
	unreadable := func(err error) (Event, error) {
		return Event{}, &DecodeError{Reason: reasonTransfer, Err: err}
	}
	var c CallEvent
	var t TransferEvent
	if len(bytes.TrimSpace(raw)) == 0 {
		return unreadable(errors.New("no notification object"))
	}
	if err := json.Unmarshal(raw, &c); err != nil {
		return unreadable(err)
	}
	if err := json.Unmarshal(raw, &t); err != nil {
		return unreadable(err)
	}
	trim := func(v pbx.FlexString) string { return strings.TrimSpace(string(v)) }
	if id := trim(c.CallID); id != "" {
		c.CallID = pbx.FlexString(id)
		return Event{Type: CallTransferredEvent, Call: c}, nil
	}
	ev := Event{Type: CallTransferredEvent}
	if t.TransferredCall != nil {
		ev.Call = *t.TransferredCall
	}
	ev.Call.CallID = pbx.FlexString(trim(ev.Call.CallID))
	if ev.Call.CallID == "" {
		ev.Call.CallID = pbx.FlexString(trim(t.OriginalCallID))
	}
	if t.ConsultationCall != nil {
		ev.Consultation = trim(t.ConsultationCall.CallID)
		// The party the customer is handed to is the consultation's other
		// side: the one that is not the transferred call's agent.
		if target, ok := consulted(*t.ConsultationCall, ev.Call); ok {
			ev.Call.setLocal(target)
		}
	}
	if ev.Consultation == "" {
		ev.Consultation = trim(t.NewCallID)
	}
	if ev.Call.CallID == "" {
		// Only the call it joins is named: the translator knows which
		// customer call that consultation belongs to.
		ev.Call.CallID = pbx.FlexString(ev.Consultation)
	}
	if ev.Call.CallID == "" {
		return unreadable(errors.New("no callId in either shape"))
	}
	return ev, nil
}

// consulted returns the party of the consultation that is not the agent of
// the transferred call: the party the transfer hands the customer to.
func consulted(consult, transferred CallEvent) (party, bool) {
	caller, callee := consult.caller(), consult.callee()
	agent := transferred.local().ident()
	switch {
	case agent != "" && caller.ident() == agent:
		return callee, callee.ident() != ""
	case agent != "" && callee.ident() == agent:
		return caller, caller.ident() != ""
	}
	// An agent's consultation is a call the agent makes: its callee.
	return callee, callee.ident() != ""
}

// setLocal makes p the company's side of the call.
func (c *CallEvent) setLocal(p party) {
	if d, _ := c.direction(); d == events.Outbound {
		c.CallerPhoneNumber, c.CallerName, c.CallerAddressable = p.number, p.name, p.ref
		return
	}
	c.CalleePhoneNumber, c.CalleeName, c.CalleeAddressable = p.number, p.name, p.ref
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
