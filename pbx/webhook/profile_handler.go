package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/voipbridge/voipbridge/events"
)

// Results of a profile request, the label of the requests counter.
const (
	ResultJournaled   = "journaled"
	ResultIgnored     = "ignored"
	ResultRefused     = "refused"
	ResultUnavailable = "unavailable"
)

// ProfileMetrics counts the requests of every profile. One is shared by
// all profiles of a bridge; its labels are the profile's source and a
// fixed result, never an id or an event name.
type ProfileMetrics struct {
	requests *prometheus.CounterVec
}

// NewProfileMetrics registers the profile counters with reg (nil: none).
func NewProfileMetrics(reg prometheus.Registerer) *ProfileMetrics {
	return &ProfileMetrics{requests: promauto.With(reg).NewCounterVec(prometheus.CounterOpts{
		Name: "voipbridge_webhook_profile_requests_total",
		Help: "Requests to webhook profiles, by profile source and result (journaled; ignored: an event the profile does not map, answered 202; refused: 400/405/415; unavailable: the journal failed, 503).",
	}, []string{"source", "result"})}
}

// ProfileOptions is what a ProfileHandler needs; Journal is required.
type ProfileOptions struct {
	Journal Journal
	Logger  *slog.Logger
	Metrics *ProfileMetrics
	// Now is the clock for requests without a time (default time.Now).
	Now func() time.Time
}

// ProfileHandler serves one profile at /v1/webhooks/{source}. It answers:
//   - 202 {"status":"accepted"} (or the profile's reply, 200 by default)
//     once every signal of the request is journaled;
//   - 202 {"status":"ignored"} for an event the profile does not map or
//     maps to ignore: nothing is journaled, the request is counted;
//   - 400 {"error":..., "field":...} naming the tool's field that is
//     missing or unusable: nothing is journaled;
//   - 405 for a method and 415 for a content type the profile does not
//     accept;
//   - 503 when the journal is unavailable (retry later; a repeat of the
//     same request gives the same signals, which the journal stores once).
//
// Authentication is the job of the Guard in front of it.
type ProfileHandler struct {
	p       *Profile
	journal Journal
	log     *slog.Logger
	m       *ProfileMetrics
	now     func() time.Time
	ids     *madeIDs
}

// NewProfileHandler returns the handler of profile p.
func NewProfileHandler(p *Profile, o ProfileOptions) *ProfileHandler {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	m := o.Metrics
	if m == nil {
		m = NewProfileMetrics(nil)
	}
	return &ProfileHandler{p: p, journal: o.Journal, log: log.With("source", p.Source), m: m, now: now, ids: &madeIDs{m: map[string][]madeID{}}}
}

// Methods lists the HTTP methods the profile is served on.
func (p *Profile) Methods() []string {
	var out []string
	if p.accepts(EncodingJSON) || p.accepts(EncodingForm) {
		out = append(out, http.MethodPost)
	}
	if p.accepts(EncodingQuery) {
		out = append(out, http.MethodGet)
	}
	return out
}

func (h *ProfileHandler) count(result string) {
	h.m.requests.WithLabelValues(h.p.Source, result).Inc()
}

func (h *ProfileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, status, msg := h.read(r)
	if status != 0 {
		h.count(ResultRefused)
		h.log.Warn("webhook profile: request refused", "status", status, "problem", msg, "remote", r.RemoteAddr)
		WriteError(w, status, msg)
		return
	}
	now := h.now()
	res, err := h.translate(req, now)
	if err != nil {
		var fe *events.FieldError
		if !errors.As(err, &fe) {
			fe = &events.FieldError{Field: "body", Problem: err.Error()}
		}
		h.count(ResultRefused)
		h.log.Warn("webhook profile: payload refused", "field", fe.Field, "problem", fe.Problem, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": fe.Error(), "field": fe.Field})
		return
	}
	if len(res.sigs) == 0 {
		h.count(ResultIgnored)
		h.log.Debug("webhook profile: event ignored", "event", printable(res.event))
		body := map[string]string{"status": "ignored"}
		if e := printable(res.event); e != "" {
			body["event"] = e
		}
		writeJSON(w, http.StatusAccepted, body)
		return
	}
	for _, s := range res.sigs {
		if err := h.journal.PublishSignal(r.Context(), s); err != nil {
			h.count(ResultUnavailable)
			h.log.Error("webhook profile: journal unavailable", "call_id", s.CallID, "err", err)
			WriteJournalError(w, err)
			return
		}
	}
	h.count(ResultJournaled)
	if res.made != nil {
		res.made()
	}
	if res.reply != nil {
		ct := res.reply.ContentType
		if ct == "" {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.WriteHeader(cmpOr(res.reply.Status, http.StatusOK))
		_, _ = io.WriteString(w, res.reply.Body)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusAccepted)
	_, _ = io.WriteString(w, acceptedBody)
}

func cmpOr(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// printable returns v when it can be echoed and logged, else "".
func printable(v string) string {
	if len(v) > 64 || events.CheckText(v, 64) != "" {
		return ""
	}
	return v
}

// request is a request's fields, flattened to text.
type request struct {
	vals  map[string]string // as sent
	lower map[string]string // by lower-case name
	dedup string            // digest of the request's content
}

func (q *request) set(k, v string) {
	if _, ok := q.vals[k]; ok {
		return
	}
	q.vals[k] = v
	if _, ok := q.lower[strings.ToLower(k)]; !ok {
		q.lower[strings.ToLower(k)] = v
	}
}

func (q *request) raw(name string) (string, bool) {
	if v, ok := q.vals[name]; ok {
		return v, true
	}
	v, ok := q.lower[strings.ToLower(name)]
	return v, ok
}

// read decodes the request in one of the profile's encodings; a non-zero
// status is the refusal.
func (h *ProfileHandler) read(r *http.Request) (*request, int, string) {
	q := &request{vals: map[string]string{}, lower: map[string]string{}}
	tag := h.p.Source + "\n"
	switch r.Method {
	case http.MethodGet:
		if !h.p.accepts(EncodingQuery) {
			return nil, http.StatusMethodNotAllowed, "GET is not accepted by this profile"
		}
		v, err := url.ParseQuery(r.URL.RawQuery)
		if err != nil {
			return nil, http.StatusBadRequest, "query is not valid URL encoding"
		}
		for k, vs := range v {
			q.set(k, vs[0])
		}
		q.dedup = hashOf([]byte(tag + canonicalQuery(v)))
		return q, 0, ""
	case http.MethodPost:
	default:
		return nil, http.StatusMethodNotAllowed, r.Method + " is not accepted"
	}
	body, err := bodyBytes(r.Body)
	if err != nil {
		return nil, http.StatusBadRequest, "could not read the body"
	}
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	isJSON := mt == "application/json" || strings.HasSuffix(mt, "+json") ||
		// Some add-ons send JSON as text/plain or without a type.
		((mt == "" || mt == "text/plain") && bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")))
	switch {
	case isJSON && h.p.accepts(EncodingJSON):
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		var obj map[string]any
		if err := dec.Decode(&obj); err != nil {
			return nil, http.StatusBadRequest, "body is not a JSON object: " + jsonProblem(err)
		}
		if dec.More() {
			return nil, http.StatusBadRequest, "body holds more than one JSON value"
		}
		if obj == nil {
			return nil, http.StatusBadRequest, "body is not a JSON object"
		}
		flatten(q, "", obj, 0)
		q.dedup = hashOf(append([]byte(tag), body...))
	case mt == "application/x-www-form-urlencoded" && h.p.accepts(EncodingForm):
		v, err := url.ParseQuery(string(body))
		if err != nil {
			return nil, http.StatusBadRequest, "body is not valid form encoding"
		}
		for k, vs := range v {
			q.set(k, vs[0])
		}
		q.dedup = hashOf([]byte(tag + canonicalQuery(v)))
	default:
		var ok []string
		if h.p.accepts(EncodingJSON) {
			ok = append(ok, "application/json")
		}
		if h.p.accepts(EncodingForm) {
			ok = append(ok, "application/x-www-form-urlencoded")
		}
		return nil, http.StatusUnsupportedMediaType, "content type must be " + strings.Join(ok, " or ")
	}
	return q, 0, ""
}

// flatten turns a JSON object into fields; nested objects are "a.b",
// lists are left out (recording file lists and the like).
func flatten(q *request, prefix string, obj map[string]any, depth int) {
	for k, v := range obj {
		name := prefix + k
		switch v := v.(type) {
		case string:
			q.set(name, v)
		case json.Number:
			q.set(name, v.String())
		case bool:
			q.set(name, fmt.Sprint(v))
		case nil:
			q.set(name, "")
		case map[string]any:
			if depth < 4 {
				flatten(q, name+".", v, depth+1)
			}
		}
	}
}

// translation is what a request means.
type translation struct {
	event string
	sigs  []events.Signal
	reply *Reply
	made  func() // remembers a made call id, once journaled
}

// get returns the value of a generic field, and whether the profile maps it.
func (h *ProfileHandler) get(q *request, c *EventCase, field string) (string, bool) {
	spec, ok := c.Fields[field]
	if !ok {
		spec, ok = h.p.Fields[field]
	}
	if !ok {
		return "", false
	}
	for _, ref := range spec {
		v, _ := q.raw(ref.Field)
		v = h.clean(v)
		if ref.BeforeLast != "" {
			if i := strings.LastIndex(v, ref.BeforeLast); i > 0 {
				v = v[:i]
			}
		}
		if v != "" {
			return v, true
		}
	}
	return "", true
}

func (h *ProfileHandler) clean(v string) string {
	v = strings.TrimSpace(v)
	if h.p.BlankPlaceholders && len(v) >= 2 && v[0] == '[' && v[len(v)-1] == ']' && !strings.ContainsAny(v[1:len(v)-1], "[]") {
		return ""
	}
	return v
}

// toolField names a generic field as the tool sends it, for a 400.
func (h *ProfileHandler) toolField(c *EventCase, field string) string {
	if spec, ok := c.Fields[field]; ok {
		return spec.names()
	}
	if spec, ok := h.p.Fields[field]; ok {
		return spec.names()
	}
	if field == "call_id" && h.p.MakeCallID != nil {
		var n []string
		for _, f := range h.p.MakeCallID.From {
			n = append(n, h.toolField(c, f))
		}
		return strings.Join(n, ", ")
	}
	return field
}

// stateTime is the generic time field of each state.
var stateTime = map[string]string{"ringing": "start_time", "answered": "answered_time", "ended": "ended_time"}

func (h *ProfileHandler) translate(q *request, now time.Time) (translation, error) {
	none := &EventCase{}
	bad := func(c *EventCase, field, problem string) (translation, error) {
		return translation{}, &events.FieldError{Field: h.toolField(c, field), Problem: problem}
	}
	ev, _ := h.get(q, none, "event")
	if ev == "" {
		return bad(none, "event", "is required")
	}
	res := translation{event: ev}
	rule := h.p.Events[strings.ToLower(ev)]
	var c *EventCase
	for i := range rule {
		if h.matches(q, rule[i].When) {
			c = &rule[i]
			break
		}
	}
	if c == nil || c.Event[0] == ignoreEvent {
		return res, nil
	}

	dir := normDirection(c.Direction)
	if dir == "" {
		if d, _ := h.get(q, c, "direction"); d != "" {
			if dir = normDirection(d); dir == "" {
				return bad(c, "direction", fmt.Sprintf("%q is not inbound or outbound", d))
			}
		}
	}
	times := map[string]time.Time{}
	timeOf := func(field string) (time.Time, bool, error) {
		if t, ok := times[field]; ok {
			return t, true, nil
		}
		v, _ := h.get(q, c, field)
		if v == "" {
			return time.Time{}, false, nil
		}
		t, ok := h.parseTime(v)
		if !ok {
			return time.Time{}, false, &events.FieldError{Field: h.toolField(c, field), Problem: fmt.Sprintf("is not a time like 2026-11-21T10:00:00Z (%q)", clip(v))}
		}
		times[field] = t
		return t, true, nil
	}

	callID, _ := h.get(q, c, "call_id")
	var madeKey string
	var madeAt time.Time
	if callID == "" {
		m := h.p.MakeCallID
		if m == nil {
			return bad(c, "call_id", "is required")
		}
		var parts []string
		for _, f := range m.From {
			v, _ := h.get(q, c, f)
			if p := events.CheckText(v, 128); p != "" {
				return bad(c, f, p)
			}
			parts = append(parts, v)
		}
		madeAt = now
		timed := false
		if m.Time != "" {
			t, ok, err := timeOf(m.Time)
			if err != nil {
				return translation{}, err
			}
			if ok {
				madeAt, timed = t, true
			}
		}
		madeKey = strings.Join(parts, "\x00")
		var found bool
		if callID, found = h.ids.find(madeKey, madeAt, m.window, timed); !found {
			callID = makeCallID(h.p.Source, parts, madeAt)
		}
	}

	from, _ := h.get(q, c, "from")
	to, _ := h.get(q, c, "to")
	remote, _ := h.get(q, c, "remote")
	dialled, _ := h.get(q, c, "dialled")
	if dir == "outbound" {
		from, to = cmpOrS(dialled, from), cmpOrS(remote, to)
	} else {
		from, to = cmpOrS(remote, from), cmpOrS(dialled, to)
	}
	ext, _ := h.get(q, c, "extension")
	eventID, _ := h.get(q, c, "event_id")
	legID, _ := h.get(q, c, "leg_id")
	linked, _ := h.get(q, c, "linked_call_id")
	cause := c.Cause
	if cause == "" {
		cause, _ = h.get(q, c, "cause")
	}

	ended := false
	for _, state := range c.Event {
		// A report made after the call says whether it was answered by
		// its answer time: none, and it never was.
		if v, mapped := h.get(q, c, "answered_time"); state == "answered" && mapped && v == "" {
			continue
		}
		ts := ""
		for _, f := range []string{stateTime[state], "timestamp"} {
			if f == "" {
				continue
			}
			t, ok, err := timeOf(f)
			if err != nil {
				return translation{}, err
			}
			if ok {
				ts = t.Format(time.RFC3339Nano)
				break
			}
		}
		if ts == "" && state == "ringing" && madeKey != "" {
			ts = madeAt.UTC().Format(time.RFC3339Nano)
		}
		id := eventID
		if id != "" && len(c.Event) > 1 {
			id += ":" + state
		}
		p := Payload{
			CallID: callID, Event: state, Direction: dir, From: from, To: to, Extension: ext,
			Timestamp: ts, EventID: id, LegID: legID, LinkedCallID: linked, Cause: cause,
		}
		s, err := p.Signal(q.dedup+":"+state, now)
		if err == nil {
			s.Source = h.p.Source
			err = s.Validate()
		}
		if err != nil {
			var fe *events.FieldError
			if !errors.As(err, &fe) {
				return translation{}, err
			}
			field := payloadToGeneric(fe.Field)
			if field == "timestamp" {
				field = cmpOrS(stateTime[state], field)
			}
			return bad(c, field, fe.Problem)
		}
		res.sigs = append(res.sigs, s)
		ended = ended || state == "ended"
	}
	if c.Reply != "" {
		r := h.p.Replies[c.Reply]
		res.reply = &r
	}
	if madeKey != "" {
		key, id, at := madeKey, callID, madeAt
		res.made = func() {
			h.ids.remember(key, id, at, now, ended)
		}
	}
	return res, nil
}

// payloadToGeneric names a Payload.Signal error's field as a generic
// profile field (they are the same names, but for the dedup key).
func payloadToGeneric(f string) string {
	if f == "source" {
		return "body"
	}
	return f
}

func cmpOrS(v, def string) string {
	if v != "" {
		return v
	}
	return def
}

func (h *ProfileHandler) matches(q *request, when map[string]Strings) bool {
	for field, allowed := range when {
		v, _ := q.raw(field)
		v = h.clean(v)
		ok := false
		for _, a := range allowed {
			if strings.EqualFold(strings.TrimSpace(a), v) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (h *ProfileHandler) parseTime(v string) (time.Time, bool) {
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil && !t.IsZero() {
		return t.UTC(), true
	}
	for _, l := range h.p.TimeLayouts {
		if t, err := time.Parse(l, v); err == nil && !t.IsZero() {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// clip shortens a bad value for an error message.
func clip(v string) string {
	if len(v) > 40 {
		v = v[:40] + "…"
	}
	return strings.ToValidUTF8(v, "?")
}

// makeCallID names a call by the profile, its values and its start.
func makeCallID(source string, parts []string, at time.Time) string {
	var b strings.Builder
	b.WriteString(source)
	for _, p := range parts {
		b.WriteByte(':')
		b.WriteString(cmpOrS(p, "anonymous"))
	}
	b.WriteByte(':')
	b.WriteString(at.UTC().Format("20060102T150405Z"))
	return b.String()
}

// madeIDs remembers made call ids, so that two requests of one call (a
// lookup at ring time, a report after the end) get the same one. A call
// whose end was journaled is matched only by requests that carry their own
// start time (a repeated report), never by a lookup: the next call of the
// same number is a call of its own. It is memory only: after a restart the report makes an id of its own, and the
// ringing call of the lookup ends only at CALL_TIMEOUT.
type madeIDs struct {
	mu sync.Mutex
	m  map[string][]madeID
	n  int
}

type madeID struct {
	id      string
	ended   bool
	at      time.Time // the call's start (or the first request's arrival)
	touched time.Time
}

// maxMadeIDs bounds the memory; the oldest are forgotten first.
const maxMadeIDs = 10000

func (m *madeIDs) find(key string, at time.Time, window time.Duration, timed bool) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	best, found := "", false
	var bestGap time.Duration
	for _, e := range m.m[key] {
		if e.ended && !timed {
			continue
		}
		gap := at.Sub(e.at)
		if gap < 0 {
			gap = -gap
		}
		if gap <= window && (!found || gap < bestGap) {
			best, bestGap, found = e.id, gap, true
		}
	}
	return best, found
}

func (m *madeIDs) remember(key, id string, at, now time.Time, ended bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, e := range m.m[key] {
		if e.id == id {
			m.m[key][i].touched = now
			m.m[key][i].ended = e.ended || ended
			return
		}
	}
	m.m[key] = append(m.m[key], madeID{id: id, ended: ended, at: at, touched: now})
	m.n++
	for m.n > maxMadeIDs {
		m.dropOldest()
	}
}

func (m *madeIDs) dropOldest() {
	var ok bool
	var k, id string
	var t time.Time
	for key, es := range m.m {
		for _, e := range es {
			if !ok || e.touched.Before(t) {
				ok, k, id, t = true, key, e.id, e.touched
			}
		}
	}
	if !ok {
		m.n = 0
		return
	}
	for i, e := range m.m[k] {
		if e.id == id {
			m.m[k] = append(m.m[k][:i], m.m[k][i+1:]...)
			m.n--
			break
		}
	}
	if len(m.m[k]) == 0 {
		delete(m.m, k)
	}
}
