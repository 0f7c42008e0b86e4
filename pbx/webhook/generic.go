package webhook

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// Source is the name generic webhook signals carry.
const Source = "generic"

// Journal stores signals durably; *events.Journal satisfies it.
type Journal interface {
	PublishSignal(ctx context.Context, s events.Signal) error
}

// Payload is the generic webhook's JSON body (and, for GET, its query
// parameters of the same names).
type Payload struct {
	CallID       string `json:"call_id"`
	Event        string `json:"event"`
	Direction    string `json:"direction,omitempty"`
	From         string `json:"from,omitempty"`
	To           string `json:"to,omitempty"`
	Extension    string `json:"extension,omitempty"`
	Timestamp    string `json:"timestamp,omitempty"`
	EventID      string `json:"event_id,omitempty"`
	LegID        string `json:"leg_id,omitempty"`
	LinkedCallID string `json:"linked_call_id,omitempty"`
	ReferredBy   string `json:"referred_by,omitempty"`
	Consulting   string `json:"consulting,omitempty"`
	Cause        string `json:"cause,omitempty"`
}

// idPrefix marks a dedup key taken from the payload's event_id; a key
// derived from the body is "sha256:…", so the two never meet.
const idPrefix = "id:"

// maxEventIDBytes bounds event_id so that its dedup key ("id:" and the
// event_id) stays within events.MaxIDBytes.
const maxEventIDBytes = events.MaxIDBytes - len(idPrefix)

// Signal turns a payload into a signal. dedup is used as the dedup key when
// the payload has no event_id; now stands in for a missing timestamp. Every
// error is an *events.FieldError naming the payload field as the client
// sent it (event_id, timestamp, event), and a signal returned without error
// passes events.Signal.Validate.
func (p *Payload) Signal(dedup string, now time.Time) (events.Signal, error) {
	s := events.Signal{
		Source: Source, CallID: strings.TrimSpace(p.CallID), LegID: p.LegID, LinkedCallID: p.LinkedCallID,
		Extension: strings.TrimSpace(p.Extension), ReferredBy: strings.TrimSpace(p.ReferredBy), Consulting: strings.TrimSpace(p.Consulting), State: events.State(strings.ToLower(strings.TrimSpace(p.Event))),
		Direction: events.Direction(strings.ToLower(strings.TrimSpace(p.Direction))), Cause: p.Cause,
		DedupKey: dedup, Time: now.UTC(),
	}
	bad := func(field, problem string) (events.Signal, error) {
		return s, &events.FieldError{Field: field, Problem: problem}
	}
	switch {
	case s.CallID == "":
		return bad("call_id", "is required")
	case p.Event == "":
		return bad("event", "is required (ringing, answered, transferred or ended)")
	// A snapshot ends every leg of an extension the source no longer
	// reports; it is for sources that hold the PBX's full view, not for
	// a single webhook request.
	case !s.State.Valid() || s.State == events.Snapshot:
		return bad("event", fmt.Sprintf("%q is not one of ringing, answered, transferred, ended", p.Event))
	case s.Direction == "":
		s.Direction = events.Inbound
	case !s.Direction.Valid():
		return bad("direction", fmt.Sprintf("%q is not inbound or outbound", p.Direction))
	}
	if s.State == events.Transferred && s.Extension == "" {
		return bad("extension", "is required for transferred (the extension the call went to)")
	}
	if p.Timestamp != "" {
		t, err := time.Parse(time.RFC3339Nano, p.Timestamp)
		if err != nil {
			return bad("timestamp", "is not an RFC 3339 time like 2026-11-21T10:00:00Z")
		}
		if t.IsZero() {
			return bad("timestamp", "is the zero time")
		}
		s.Time = t.UTC()
	}
	if s.Direction == events.Outbound {
		s.Remote, s.Dialled = p.To, p.From
	} else {
		s.Remote, s.Dialled = p.From, p.To
	}
	if p.EventID != "" {
		// Checked here rather than as the dedup key, so that the limit
		// and the problem are about the value the client sent.
		if problem := events.CheckText(p.EventID, maxEventIDBytes); problem != "" {
			return bad("event_id", problem)
		}
		s.DedupKey = idPrefix + p.EventID
	}
	if err := s.Validate(); err != nil {
		var fe *events.FieldError
		if !errors.As(err, &fe) {
			return s, err
		}
		return bad(payloadField(fe.Field), fe.Problem)
	}
	return s, nil
}

// payloadField names a signal field as the webhook payload calls it.
func payloadField(signalField string) string {
	switch signalField {
	case "state":
		return "event"
	case "time":
		return "timestamp"
	case "dedup_key":
		return "event_id"
	}
	return signalField
}

// Generic is the handler of /v1/webhooks/generic. It answers 202 only after
// the signal is journaled.
type Generic struct {
	Journal Journal
	Logger  *slog.Logger
	Now     func() time.Time
}

func (g *Generic) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := time.Now
	if g.Now != nil {
		now = g.Now
	}
	log := g.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var p Payload
	var dedup string
	switch r.Method {
	case http.MethodGet:
		q := r.URL.Query()
		p = Payload{
			CallID: q.Get("call_id"), Event: q.Get("event"), Direction: q.Get("direction"),
			From: q.Get("from"), To: q.Get("to"), Extension: q.Get("extension"), Timestamp: q.Get("timestamp"),
			EventID: q.Get("event_id"), LegID: q.Get("leg_id"), LinkedCallID: q.Get("linked_call_id"), ReferredBy: q.Get("referred_by"), Consulting: q.Get("consulting"), Cause: q.Get("cause"),
		}
		dedup = hashOf([]byte(canonicalQuery(q)))
	default:
		if !isJSONType(r.Header.Get("Content-Type")) {
			WriteError(w, http.StatusUnsupportedMediaType, "content type must be application/json")
			return
		}
		body, err := bodyBytes(r.Body)
		if err != nil {
			WriteError(w, http.StatusBadRequest, "could not read the body")
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&p); err != nil {
			WriteError(w, http.StatusBadRequest, "body is not a valid webhook payload: "+jsonProblem(err))
			return
		}
		if dec.More() {
			WriteError(w, http.StatusBadRequest, "body holds more than one JSON value")
			return
		}
		if p.EventID == "" {
			// The dedup key is the payload's event_id when it has one.
			dedup = hashOf(body)
		}
	}
	s, err := p.Signal(dedup, now())
	if err != nil {
		var fe *events.FieldError
		if !errors.As(err, &fe) {
			fe = &events.FieldError{Field: "body", Problem: err.Error()}
		}
		// The bad value itself stays out of the log: it may hold terminal
		// escapes, line breaks or bidi controls. call_id is logged only
		// when it is a usable identifier.
		attrs := []any{"source", Source, "field", fe.Field, "problem", fe.Problem, "remote", r.RemoteAddr}
		if s.CallID != "" && events.CheckText(s.CallID, events.MaxIDBytes) == "" {
			attrs = append(attrs, "call_id", s.CallID)
		}
		log.Warn("webhook: payload refused", attrs...)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fe.Error(), "field": fe.Field})
		return
	}
	if err := g.Journal.PublishSignal(r.Context(), s); err != nil {
		log.Error("webhook: journal unavailable", "source", Source, "call_id", s.CallID, "err", err)
		WriteJournalError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, acceptedBody)
}

// acceptedBody is the 202 answer, as writeJSON would encode it.
const acceptedBody = `{"status":"accepted"}` + "\n"

// isJSONType reports whether a Content-Type header is JSON:
// application/json or a +json type, with any parameters.
func isJSONType(ct string) bool {
	if ct == "application/json" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func hashOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(h[:16])
}

func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		for _, v := range q[k] {
			b.WriteString(k + "=" + v + "&")
		}
	}
	return b.String()
}

// jsonProblem makes a decoder error readable and names the field when it can.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %s must be a %s", te.Field, te.Type)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("invalid JSON at byte %d", se.Offset)
	}
	if errors.Is(err, io.EOF) {
		return "empty body"
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: "); ok {
		return msg
	}
	return err.Error()
}
