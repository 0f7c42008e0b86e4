package voipgrid

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/voipbridge/voipbridge/pbx"
	"strconv"
	"strings"
	"time"
)

// Status is the canonical name of a notification's status.
type Status string

// The statuses the handler turns into signals. Voys documents created and
// ringing; the others are the names VoIPGRID's call tracking uses and are
// also accepted under the aliases listed in statusAliases.
const (
	StatusCreated      Status = "created"
	StatusRinging      Status = "ringing"
	StatusInProgress   Status = "in-progress"
	StatusWarmTransfer Status = "warm-transfer"
	StatusColdTransfer Status = "cold-transfer"
	StatusEnded        Status = "ended"
	// StatusUnknown labels every status the handler does not know. Such a
	// notification is accepted (2xx), logged and counted, never journaled.
	StatusUnknown Status = "unknown"
)

// statusAliases maps the spellings seen in Voys's help pages ("Answered",
// "Warm transfer", "Hang-up") and in VoIPGRID's code to the canonical names.
var statusAliases = map[string]Status{
	"created":        StatusCreated,
	"ringing":        StatusRinging,
	"in-progress":    StatusInProgress,
	"in_progress":    StatusInProgress,
	"answered":       StatusInProgress,
	"warm-transfer":  StatusWarmTransfer,
	"warm_transfer":  StatusWarmTransfer,
	"cold-transfer":  StatusColdTransfer,
	"cold_transfer":  StatusColdTransfer,
	"blind-transfer": StatusColdTransfer,
	"ended":          StatusEnded,
	"hangup":         StatusEnded,
	"hang-up":        StatusEnded,
}

// ParseStatus returns the canonical status for a notification's status
// string, or StatusUnknown.
func ParseStatus(s string) Status {
	if st, ok := statusAliases[strings.ToLower(strings.TrimSpace(s))]; ok {
		return st
	}
	return StatusUnknown
}

// Notification is one call notification as the platform POSTs it (version
// v2). Fields the platform leaves out or sends as null are empty.
type Notification struct {
	CallID string `json:"call_id"`
	// Timestamp is when the platform generated the notification, ISO 8601.
	Timestamp string `json:"timestamp"`
	Status    string `json:"status"`
	Version   string `json:"version"`
	// Direction is "inbound" or "outbound" (created is only sent inbound).
	Direction string `json:"direction"`
	// Reason says why a call ended (cacofonisk's hangup reasons: completed,
	// no-answer, busy, answered-elsewhere, rejected, cancelled, failed).
	Reason      string      `json:"reason"`
	Caller      Party       `json:"caller"`
	Destination Destination `json:"destination"`
}

// Party is the caller, or one target of the destination.
type Party struct {
	// Number is the phone number (E.164 with "+" on Voys).
	Number string `json:"number"`
	Name   string `json:"name"`
	// AccountNumber is the VoIPGRID phone account (a number, or null).
	AccountNumber pbx.FlexString `json:"account_number"`
	// UserNumbers are the internal extension numbers of the account's user:
	// what the directory maps to an agent.
	UserNumbers []pbx.FlexString `json:"user_numbers"`
	UserEmails  []string         `json:"user_emails"`
}

// Destination is where the call goes: the dialled number and, once phones
// ring, the targets. Some notifications may describe the answering user on
// the destination itself, so it carries a party's fields too.
type Destination struct {
	Party
	Targets []Party `json:"targets"`
}

// Extension returns the party's first internal extension number, or "" when
// the party is not a user of the platform (a customer, a mobile number).
func (p Party) Extension() string {
	for _, u := range p.UserNumbers {
		if s := strings.TrimSpace(string(u)); s != "" {
			return s
		}
	}
	return ""
}

// ErrNoCallID is returned by Decode for a notification without call_id.
var ErrNoCallID = errors.New("call_id is missing")

// Decode parses one notification body. It fails on malformed JSON and on a
// missing call_id; unknown fields and unknown statuses are not errors.
func Decode(body []byte) (Notification, error) {
	var n Notification
	if err := json.Unmarshal(body, &n); err != nil {
		return Notification{}, fmt.Errorf("malformed JSON: %w", err)
	}
	n.CallID = strings.TrimSpace(n.CallID)
	if n.CallID == "" {
		return Notification{}, ErrNoCallID
	}
	return n, nil
}

// timestampLayouts are tried in order; Voys sends RFC 3339 with or without
// fractional seconds ("2023-09-01T13:41:25.972110+00:00").
var timestampLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05.999999999",
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999",
}

// ParseTimestamp parses a notification timestamp. Times without a zone are
// taken as UTC, the zone Voys uses in every published example.
func ParseTimestamp(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	for _, l := range timestampLayouts {
		if t, err := time.Parse(l, s); err == nil {
			return t.UTC(), true
		}
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 && f < 1e11 {
		sec := int64(f)
		return time.Unix(sec, int64((f-float64(sec))*1e9)).UTC(), true
	}
	return time.Time{}, false
}
