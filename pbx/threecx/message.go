package threecx

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// EventType is the kind of change a Call Control WebSocket message reports.
type EventType int

// The event types of the 3CX V20 Call Control WebSocket (the official samples'
// EventType enum: Upset, Remove, DTMFstring, PromptPlaybackFinished, Response).
const (
	EventUpsert                 EventType = 0
	EventRemove                 EventType = 1
	EventDTMF                   EventType = 2
	EventPromptPlaybackFinished EventType = 3
	EventResponse               EventType = 4
)

// String returns the metric label of the event type.
func (t EventType) String() string {
	switch t {
	case EventUpsert:
		return "upsert"
	case EventRemove:
		return "remove"
	case EventDTMF:
		return "dtmf"
	case EventPromptPlaybackFinished:
		return "prompt_finished"
	case EventResponse:
		return "response"
	}
	return "unknown"
}

// UnmarshalJSON accepts the numeric event type 3CX sends and, for robustness,
// the enum's names as strings.
func (t *EventType) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		switch strings.ToLower(s) {
		case "upset", "upsert":
			*t = EventUpsert
		case "remove":
			*t = EventRemove
		case "dtmfstring", "dtmf":
			*t = EventDTMF
		case "promptplaybackfinished":
			*t = EventPromptPlaybackFinished
		case "response":
			*t = EventResponse
		default:
			if n, err := strconv.Atoi(s); err == nil {
				*t = EventType(n)
				return nil
			}
			return fmt.Errorf("unknown event_type %q", s)
		}
		return nil
	}
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("event_type: %w", err)
	}
	*t = EventType(n)
	return nil
}

// Message is one decoded Call Control WebSocket message.
type Message struct {
	// Sequence is the server's message counter; valid only when HasSequence.
	Sequence int64
	// HasSequence reports whether the message carried a sequence number.
	HasSequence bool
	// Type is what happened to the entity.
	Type EventType
	// Entity is the path of the entity that changed, e.g.
	// "/callcontrol/150/participants/8106".
	Entity string
}

// Reasons a message or entity is dropped; they are the reason label of the
// drop counter.
const (
	reasonJSON        = "json"
	reasonNoEvent     = "no_event"
	reasonNoEntity    = "no_entity"
	reasonUnknownType = "unknown_type"
	reasonBadEntity   = "bad_entity"
	reasonParticipant = "bad_participant"
	reasonSnapshot    = "bad_snapshot"
)

// DecodeError is a message or payload the source could not use. Reason is a
// short stable label (the metric's reason label); the error never contains
// the payload.
type DecodeError struct {
	Reason string
	Err    error
}

// Error returns the reason and the decoder's complaint, never the payload.
func (e *DecodeError) Error() string {
	if e.Err == nil {
		return "3cx: " + e.Reason
	}
	return "3cx: " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns the decoder's error.
func (e *DecodeError) Unwrap() error { return e.Err }

func decodeErr(reason string, err error) error { return &DecodeError{Reason: reason, Err: err} }

// DecodeMessage decodes one WebSocket message. It returns a *DecodeError for
// anything that is not a usable message; upserts and removes always carry an
// entity path. Message types it does not know are returned with their type so
// that the caller can count and skip them.
//
// Member names are matched without regard to case and underscores: 3CX's
// samples and captured traffic write event_type, entity and attached_data,
// its documentation writes EventType, Entity and AttachedData.
func DecodeMessage(data []byte) (Message, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var top map[string]json.RawMessage
	if err := dec.Decode(&top); err != nil {
		return Message{}, decodeErr(reasonJSON, err)
	}
	if dec.More() {
		return Message{}, decodeErr(reasonJSON, errors.New("trailing data after message"))
	}
	rawSeq, err := member(top, "sequence")
	if err != nil {
		return Message{}, decodeErr(reasonJSON, err)
	}
	rawEvent, err := member(top, "event")
	if err != nil {
		return Message{}, decodeErr(reasonJSON, err)
	}
	var event map[string]json.RawMessage
	if err := json.Unmarshal(orNull(rawEvent), &event); err != nil {
		return Message{}, decodeErr(reasonJSON, fmt.Errorf("event: %w", err))
	}
	rawType, err := member(event, "event_type")
	if err != nil {
		return Message{}, decodeErr(reasonJSON, err)
	}
	if isNull(rawType) {
		return Message{}, decodeErr(reasonNoEvent, nil)
	}
	var m Message
	if err := json.Unmarshal(rawType, &m.Type); err != nil {
		return Message{}, decodeErr(reasonJSON, err)
	}
	rawEntity, err := member(event, "entity")
	if err != nil {
		return Message{}, decodeErr(reasonJSON, err)
	}
	if err := json.Unmarshal(orNull(rawEntity), &m.Entity); err != nil {
		return Message{}, decodeErr(reasonJSON, fmt.Errorf("entity: %w", err))
	}
	if !isNull(rawSeq) {
		var n json.Number
		if err := json.Unmarshal(rawSeq, &n); err != nil {
			return Message{}, decodeErr(reasonJSON, fmt.Errorf("sequence: %w", err))
		}
		if m.Sequence, err = n.Int64(); err != nil {
			return Message{}, decodeErr(reasonJSON, fmt.Errorf("sequence: %w", err))
		}
		m.HasSequence = true
	}
	switch m.Type {
	case EventUpsert, EventRemove:
		if m.Entity == "" {
			return Message{}, decodeErr(reasonNoEntity, nil)
		}
	case EventDTMF, EventPromptPlaybackFinished, EventResponse:
	default:
		return m, decodeErr(reasonUnknownType, fmt.Errorf("event_type %d", int(m.Type)))
	}
	return m, nil
}

// foldName is a member name without case and underscores: event_type,
// EventType and eventType are one name.
func foldName(s string) string {
	return strings.ToLower(strings.ReplaceAll(s, "_", ""))
}

// member returns the member of obj called name (snake_case), found without
// regard to case and underscores, or nil when there is none. The name as
// written wins; two other spellings of it are ambiguous.
func member(obj map[string]json.RawMessage, name string) (json.RawMessage, error) {
	if v, ok := obj[name]; ok {
		return v, nil
	}
	want := foldName(name)
	var found json.RawMessage
	n := 0
	for k, v := range obj {
		if foldName(k) == want {
			found = v
			n++
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("%s is given %d times in different spellings", name, n)
	}
	return found, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

func orNull(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return json.RawMessage("null")
	}
	return raw
}

// ID is a 3CX identifier (participant id, callid, legid). 3CX sends numbers;
// strings are accepted too. The zero ID is empty.
type ID string

// UnmarshalJSON accepts a JSON integer or string.
func (id *ID) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*id = ""
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*id = ID(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return err
	}
	if _, err := n.Int64(); err != nil {
		return fmt.Errorf("id %q is not an integer", n.String())
	}
	*id = ID(n.String())
	return nil
}

// Participant is one party of a call on a monitored DN, as GET
// /callcontrol/{dn}/participants/{id} returns it. Field meanings follow the
// payloads captured on 3CX V20 (see the fixtures in testdata/threecx).
type Participant struct {
	ID               ID     `json:"id"`
	Status           string `json:"status"`
	DN               string `json:"dn"`
	PartyCallerName  string `json:"party_caller_name"`
	PartyDN          string `json:"party_dn"`
	PartyCallerID    string `json:"party_caller_id"`
	PartyDID         string `json:"party_did"`
	DeviceID         string `json:"device_id"`
	PartyDNType      string `json:"party_dn_type"`
	DirectControl    bool   `json:"direct_control"`
	OriginatedByDN   string `json:"originated_by_dn"`
	OriginatedByType string `json:"originated_by_type"`
	ReferredByDN     string `json:"referred_by_dn"`
	ReferredByType   string `json:"referred_by_type"`
	OnBehalfOfDN     string `json:"on_behalf_of_dn"`
	OnBehalfOfType   string `json:"on_behalf_of_type"`
	CallID           ID     `json:"callid"`
	LegID            ID     `json:"legid"`
}

// Participant statuses seen on 3CX V20.
const (
	StatusDialing   = "Dialing"
	StatusRinging   = "Ringing"
	StatusConnected = "Connected"
)

// DN types seen on 3CX V20. Only an extension is an agent.
const (
	TypeExtension    = "Wextension"
	TypeExternalLine = "Wexternalline"
	TypeQueue        = "Wqueue"
	TypeIVR          = "Wivr"
	TypeRoutePoint   = "Wroutepoint"
	TypeRingGroup    = "Wringgroup"
)

// DecodeParticipant decodes one participant object. dn is the DN from the
// entity path; it fills a missing dn field and must match a present one.
//
// Member names are matched like DecodeMessage's: party_did, PartyDid and
// partyDID are one field.
func DecodeParticipant(data []byte, dn string) (Participant, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil {
		return Participant{}, decodeErr(reasonParticipant, err)
	}
	var p Participant
	if obj == nil {
		// JSON null: no participant at all.
		return Participant{}, decodeErr(reasonParticipant, errors.New("no id"))
	}
	if err := p.fill(obj); err != nil {
		return Participant{}, decodeErr(reasonParticipant, err)
	}
	if p.DN == "" {
		p.DN = dn
	}
	if err := p.validate(); err != nil {
		return Participant{}, err
	}
	if dn != "" && p.DN != dn {
		return Participant{}, decodeErr(reasonParticipant, fmt.Errorf("dn %q does not match the entity's dn", p.DN))
	}
	return p, nil
}

// fill sets the fields whose members obj holds, matching names like member.
func (p *Participant) fill(obj map[string]json.RawMessage) error {
	for _, f := range []struct {
		name string
		to   any
	}{
		{"id", &p.ID}, {"status", &p.Status}, {"dn", &p.DN},
		{"party_caller_name", &p.PartyCallerName}, {"party_dn", &p.PartyDN},
		{"party_caller_id", &p.PartyCallerID}, {"party_did", &p.PartyDID},
		{"device_id", &p.DeviceID}, {"party_dn_type", &p.PartyDNType},
		{"direct_control", &p.DirectControl},
		{"originated_by_dn", &p.OriginatedByDN}, {"originated_by_type", &p.OriginatedByType},
		{"referred_by_dn", &p.ReferredByDN}, {"referred_by_type", &p.ReferredByType},
		{"on_behalf_of_dn", &p.OnBehalfOfDN}, {"on_behalf_of_type", &p.OnBehalfOfType},
		{"callid", &p.CallID}, {"legid", &p.LegID},
	} {
		raw, err := member(obj, f.name)
		if err != nil {
			return err
		}
		if raw == nil {
			continue
		}
		if err := json.Unmarshal(raw, f.to); err != nil {
			return fmt.Errorf("%s: %w", f.name, err)
		}
	}
	return nil
}

func (p *Participant) validate() error {
	switch {
	case p.ID == "":
		return decodeErr(reasonParticipant, errors.New("no id"))
	case p.CallID == "":
		return decodeErr(reasonParticipant, errors.New("no callid"))
	case p.DN == "":
		return decodeErr(reasonParticipant, errors.New("no dn"))
	case !validSegment(p.DN) || !validSegment(string(p.ID)):
		return decodeErr(reasonParticipant, errors.New("dn or id is not a path segment"))
	}
	return nil
}

// DNInfo is one monitored DN in a GET /callcontrol snapshot.
type DNInfo struct {
	DN           string        `json:"dn"`
	Type         string        `json:"type"`
	Participants []Participant `json:"participants"`
}

// DecodeSnapshot decodes the answer of GET /callcontrol. A participant that
// is unusable is left out and counted in dropped; the rest of the snapshot
// stands.
func DecodeSnapshot(data []byte) (dns []DNInfo, dropped int, err error) {
	var wire []struct {
		DN           string            `json:"dn"`
		Type         string            `json:"type"`
		Participants []json.RawMessage `json:"participants"`
	}
	if err := json.Unmarshal(data, &wire); err != nil {
		return nil, 0, decodeErr(reasonSnapshot, err)
	}
	for _, w := range wire {
		if !validSegment(w.DN) {
			dropped += len(w.Participants)
			continue
		}
		d := DNInfo{DN: w.DN, Type: w.Type}
		for _, raw := range w.Participants {
			p, err := DecodeParticipant(raw, w.DN)
			if err != nil {
				dropped++
				continue
			}
			d.Participants = append(d.Participants, p)
		}
		dns = append(dns, d)
	}
	return dns, dropped, nil
}

// decodeDNInfo decodes the answer of GET /callcontrol/{dn}; only the type is used.
func decodeDNInfo(data []byte) (DNInfo, error) {
	var d struct {
		DN   string `json:"dn"`
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return DNInfo{}, decodeErr(reasonSnapshot, err)
	}
	return DNInfo{DN: d.DN, Type: d.Type}, nil
}

// ParticipantPath returns the entity path of a participant.
func ParticipantPath(dn string, id ID) string {
	return "/callcontrol/" + dn + "/participants/" + string(id)
}

// ParseEntity splits a participant entity path "/callcontrol/{dn}/participants/{id}".
// ok is false for any other entity (a DN, a device) and for paths that are
// not plain segments, so that an entity can never make the client request
// something outside /callcontrol.
func ParseEntity(entity string) (dn string, id ID, ok bool) {
	rest, found := strings.CutPrefix(entity, "/callcontrol/")
	if !found {
		return "", "", false
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 || parts[1] != "participants" || !validSegment(parts[0]) || !validSegment(parts[2]) {
		return "", "", false
	}
	return parts[0], ID(parts[2]), true
}

// validSegment reports whether s can be used as one path segment as is: DNs
// and ids are short strings of letters, digits and a few punctuation marks.
func validSegment(s string) bool {
	if s == "" || len(s) > 64 || s == "." || s == ".." {
		return false
	}
	for _, r := range s {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r == '-', r == '_', r == '.', r == '+', r == '*':
		default:
			return false
		}
	}
	return true
}
