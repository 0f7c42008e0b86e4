package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/voipbridge/voipbridge/events"
)

type recJournal struct {
	mu   sync.Mutex
	sigs []events.Signal
	err  error
}

func (j *recJournal) PublishSignal(_ context.Context, s events.Signal) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	if err := s.Validate(); err != nil {
		return err
	}
	j.sigs = append(j.sigs, s)
	return nil
}

var now = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

func newMux(j Journal, g *Guard) *http.ServeMux {
	return newMuxLog(j, g, nil)
}

func newMuxLog(j Journal, g *Guard, log *slog.Logger) *http.ServeMux {
	mux := http.NewServeMux()
	h := g.Wrap(Source, &Generic{Journal: j, Logger: log, Now: func() time.Time { return now }})
	mux.Handle("POST /v1/webhooks/generic", h)
	mux.Handle("GET /v1/webhooks/generic", h)
	mux.Handle("POST /v1/webhooks/generic/{token}", h)
	return mux
}

func do(mux http.Handler, method, path, ctype, auth, body string, hdr ...string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, path, strings.NewReader(body))
	if ctype != "" {
		r.Header.Set("Content-Type", ctype)
	}
	if auth != "" {
		r.Header.Set("Authorization", auth)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	r.RemoteAddr = "192.0.2.10:5555"
	w := httptest.NewRecorder()
	mux.ServeHTTP(w, r)
	return w
}

const good = `{"call_id":"c1","event":"answered","direction":"inbound","from":"0612345678","to":"+31858770023","extension":"201","timestamp":"2026-11-21T10:00:00Z","event_id":"e1"}`

func TestGenericAccepts(t *testing.T) {
	j := &recJournal{}
	mux := newMux(j, &Guard{Token: "s3cret"})
	w := do(mux, "POST", "/v1/webhooks/generic", "application/json", "Bearer s3cret", good)
	if w.Code != http.StatusAccepted || strings.TrimSpace(w.Body.String()) != `{"status":"accepted"}` {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	want := []events.Signal{{
		Source: "generic", CallID: "c1", Extension: "201", Remote: "0612345678", Dialled: "+31858770023",
		Direction: events.Inbound, State: events.Answered, Time: now, DedupKey: "id:e1",
	}}
	if d := cmp.Diff(want, j.sigs); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

func TestGenericOutboundSwapsNumbers(t *testing.T) {
	j := &recJournal{}
	mux := newMux(j, &Guard{Token: "s3cret"})
	body := `{"call_id":"o1","event":"ringing","direction":"outbound","from":"+31858770023","to":"010 765 4321","extension":"204"}`
	if w := do(mux, "POST", "/v1/webhooks/generic/s3cret", "application/json", "", body); w.Code != http.StatusAccepted {
		t.Fatalf("got %d %s", w.Code, w.Body)
	}
	s := j.sigs[0]
	if s.Remote != "010 765 4321" || s.Dialled != "+31858770023" || s.Direction != events.Outbound || !s.Time.Equal(now) {
		t.Fatalf("signal %+v", s)
	}
	if !strings.HasPrefix(s.DedupKey, "sha256:") {
		t.Fatalf("without event_id the dedup key must be the body hash, got %q", s.DedupKey)
	}
}

func TestGenericGETWithQuery(t *testing.T) {
	j := &recJournal{}
	mux := newMux(j, &Guard{Token: "s3cret"})
	w := do(mux, "GET", "/v1/webhooks/generic?call_id=g1&event=ringing&from=0612345678&extension=201", "", "Bearer s3cret", "")
	if w.Code != http.StatusAccepted || len(j.sigs) != 1 || j.sigs[0].CallID != "g1" {
		t.Fatalf("got %d %s %+v", w.Code, w.Body, j.sigs)
	}
}

func TestGenericErrors(t *testing.T) {
	big := `{"call_id":"` + strings.Repeat("x", 70<<10) + `","event":"ringing"}`
	tests := []struct {
		name, ctype, auth, body, path string
		status                        int
		field                         string
	}{
		{name: "no token", ctype: "application/json", body: good, status: 401},
		{name: "wrong token", ctype: "application/json", auth: "Bearer nope", body: good, status: 401},
		{name: "basic instead of bearer", ctype: "application/json", auth: "Basic czNjcmV0", body: good, status: 401},
		{name: "wrong path token", ctype: "application/json", body: good, path: "/v1/webhooks/generic/nope", status: 401},
		{name: "text body", ctype: "text/plain", auth: "Bearer s3cret", body: good, status: 415},
		{name: "no content type", auth: "Bearer s3cret", body: good, status: 415},
		{name: "too large", ctype: "application/json", auth: "Bearer s3cret", body: big, status: 413},
		{name: "not JSON", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":`, status: 400},
		{name: "empty", ctype: "application/json", auth: "Bearer s3cret", body: ``, status: 400},
		{name: "two values", ctype: "application/json", auth: "Bearer s3cret", body: good + good, status: 400},
		{name: "unknown field", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":"c","event":"ringing","extention":"201"}`, status: 400},
		{name: "wrong type", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":5,"event":"ringing"}`, status: 400},
		{name: "no call id", ctype: "application/json", auth: "Bearer s3cret", body: `{"event":"ringing"}`, status: 400, field: "call_id"},
		{name: "no event", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":"c"}`, status: 400, field: "event"},
		{name: "bad event", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":"c","event":"hangup"}`, status: 400, field: "event"},
		{name: "bad direction", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":"c","event":"ended","direction":"sideways"}`, status: 400, field: "direction"},
		{name: "bad time", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":"c","event":"ended","timestamp":"yesterday"}`, status: 400, field: "timestamp"},
		{name: "zero time", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":"c","event":"ended","timestamp":"0001-01-01T00:00:00Z"}`, status: 400, field: "timestamp"},
		{name: "snapshot", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":"c","event":"snapshot","extension":"201"}`, status: 400, field: "event"},
		{name: "transfer without target", ctype: "application/json", auth: "Bearer s3cret", body: `{"call_id":"c","event":"transferred"}`, status: 400, field: "extension"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &recJournal{}
			mux := newMux(j, &Guard{Token: "s3cret"})
			path := tt.path
			if path == "" {
				path = "/v1/webhooks/generic"
			}
			w := do(mux, "POST", path, tt.ctype, tt.auth, tt.body)
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%s)", w.Code, tt.status, w.Body)
			}
			var resp map[string]string
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil || resp["error"] == "" {
				t.Fatalf("want a JSON error, got %q", w.Body)
			}
			if tt.field != "" && resp["field"] != tt.field {
				t.Fatalf("field %q, want %q (%s)", resp["field"], tt.field, w.Body)
			}
			if strings.Contains(w.Body.String(), "s3cret") {
				t.Fatal("the token leaked into the answer")
			}
			if len(j.sigs) != 0 {
				t.Fatalf("a refused request was journaled: %+v", j.sigs)
			}
		})
	}
}

// TestGenericRefusesBadIdentifiers: a value that would reach a message id,
// a log line or the helpdesk with a control character, a bidi override or
// an unbounded length is refused with 400 naming the field the client sent,
// logged at warn without the value, and never journaled. The marker "ZQX"
// in every bad value must not appear in the log.
func TestGenericRefusesBadIdentifiers(t *testing.T) {
	kinds := []struct {
		name, value, problem string
	}{
		{"NUL", "aZQX\x00b", "U+0000"},
		{"CR LF", "aZQX\r\nX-Injected: 1", "U+000D"},
		{"LF", "aZQX\nb", "U+000A"},
		{"ANSI escape", "aZQX\x1b[31mred\x1b[0m", "U+001B"},
		{"DEL", "aZQX\x7fb", "U+007F"},
		{"C1 control", "aZQX\u0085b", "U+0085"},
		{"right-to-left override", "aZQX\u202egnp.exe", "U+202E"},
		{"right-to-left mark", "aZQX\u200fb", "U+200F"},
		{"isolate", "aZQX\u2067b\u2069", "U+2067"},
		{"zero-width space", "aZQX\u200bb", "U+200B"},
	}
	fields := []struct {
		name string
		max  int // the longest value accepted, in bytes
	}{
		{"call_id", events.MaxIDBytes},
		{"leg_id", events.MaxIDBytes},
		{"linked_call_id", events.MaxIDBytes},
		{"extension", events.MaxExtensionBytes},
		{"referred_by", events.MaxExtensionBytes},
		{"consulting", events.MaxExtensionBytes},
		{"event_id", events.MaxIDBytes - len("id:")},
	}
	type tc struct {
		name, field, value, problem string
	}
	var tests []tc
	for _, f := range fields {
		for _, k := range kinds {
			tests = append(tests, tc{f.name + "/" + k.name, f.name, k.value, k.problem})
		}
		tests = append(tests, tc{f.name + "/one byte too long", f.name, "ZQX" + strings.Repeat("x", f.max-2),
			"is longer than " + strconv.Itoa(f.max) + " bytes"})
		tests = append(tests, tc{f.name + "/too long in multi-byte characters", f.name, "ZQX" + strings.Repeat("é", f.max/2),
			"is longer than " + strconv.Itoa(f.max) + " bytes"})
	}
	for _, tt := range tests {
		for _, method := range []string{"POST", "GET"} {
			t.Run(method+"/"+tt.name, func(t *testing.T) {
				fields := map[string]string{"call_id": "c1", "event": "ringing", "extension": "201"}
				fields[tt.field] = tt.value
				var logs bytes.Buffer
				j := &recJournal{}
				mux := newMuxLog(j, &Guard{Token: "s3cret"}, slog.New(slog.NewTextHandler(&logs, nil)))
				var w *httptest.ResponseRecorder
				if method == "POST" {
					body, err := json.Marshal(fields)
					if err != nil {
						t.Fatal(err)
					}
					w = do(mux, "POST", "/v1/webhooks/generic", "application/json", "Bearer s3cret", string(body))
				} else {
					q := url.Values{}
					for k, v := range fields {
						q.Set(k, v)
					}
					w = do(mux, "GET", "/v1/webhooks/generic?"+q.Encode(), "", "Bearer s3cret", "")
				}
				if w.Code != http.StatusBadRequest {
					t.Fatalf("status %d, want 400 (%s)", w.Code, w.Body)
				}
				var resp map[string]string
				if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
					t.Fatalf("answer is not JSON: %q", w.Body)
				}
				if resp["field"] != tt.field || !strings.HasPrefix(resp["error"], tt.field+": ") || !strings.Contains(resp["error"], tt.problem) {
					t.Fatalf("answer %q, want field %s and a problem with %q", w.Body, tt.field, tt.problem)
				}
				if len(resp) != 2 {
					t.Fatalf("answer %q has more than error and field", w.Body)
				}
				if len(j.sigs) != 0 {
					t.Fatalf("journaled: %+v", j.sigs)
				}
				line := logs.String()
				if strings.Count(line, "\n") != 1 || !strings.Contains(line, "level=WARN") || !strings.Contains(line, "field="+tt.field) {
					t.Fatalf("want one warn line naming %s, got %q", tt.field, line)
				}
				if strings.Contains(line, "ZQX") {
					t.Fatalf("the bad value reached the log: %q", line)
				}
			})
		}
	}
}

// TestGenericAcceptsLimits: values at the limits, printable non-ASCII and
// spaces inside an id are accepted unchanged; only call_id and extension
// lose surrounding white space, as before.
func TestGenericAcceptsLimits(t *testing.T) {
	tests := []struct {
		name   string
		fields map[string]string
		want   func(s events.Signal) bool
	}{
		{"call_id of 256 bytes", map[string]string{"call_id": strings.Repeat("c", 256)},
			func(s events.Signal) bool { return len(s.CallID) == 256 }},
		{"leg_id of 256 bytes", map[string]string{"leg_id": strings.Repeat("l", 256)},
			func(s events.Signal) bool { return len(s.LegID) == 256 }},
		{"linked_call_id of 256 bytes", map[string]string{"linked_call_id": strings.Repeat("k", 256)},
			func(s events.Signal) bool { return len(s.LinkedCallID) == 256 }},
		{"extension of 64 bytes", map[string]string{"extension": strings.Repeat("9", 64)},
			func(s events.Signal) bool { return len(s.Extension) == 64 }},
		{"referred_by of 64 bytes", map[string]string{"referred_by": strings.Repeat("8", 64)},
			func(s events.Signal) bool { return len(s.ReferredBy) == 64 }},
		{"consulting of 64 bytes", map[string]string{"consulting": strings.Repeat("7", 64)},
			func(s events.Signal) bool { return len(s.Consulting) == 64 }},
		{"event_id of 253 bytes", map[string]string{"event_id": strings.Repeat("e", 253)},
			func(s events.Signal) bool { return s.DedupKey == "id:"+strings.Repeat("e", 253) }},
		{"non-ASCII and spaces", map[string]string{"call_id": "Zürich 1", "leg_id": "kanaal 2/Ω", "extension": "receptie"},
			func(s events.Signal) bool {
				return s.CallID == "Zürich 1" && s.LegID == "kanaal 2/Ω" && s.Extension == "receptie"
			}},
		{"call_id and extension trimmed", map[string]string{"call_id": " c9\r\n", "extension": "\t201 "},
			func(s events.Signal) bool { return s.CallID == "c9" && s.Extension == "201" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fields := map[string]string{"call_id": "c1", "event": "ringing", "extension": "201"}
			for k, v := range tt.fields {
				fields[k] = v
			}
			body, _ := json.Marshal(fields)
			j := &recJournal{}
			w := do(newMux(j, &Guard{Token: "s3cret"}), "POST", "/v1/webhooks/generic", "application/json", "Bearer s3cret", string(body))
			if w.Code != http.StatusAccepted || len(j.sigs) != 1 {
				t.Fatalf("got %d %s, %d signals", w.Code, w.Body, len(j.sigs))
			}
			if !tt.want(j.sigs[0]) {
				t.Fatalf("signal %+v", j.sigs[0])
			}
		})
	}
}

// TestGenericInvalidUTF8InQuery: a query parameter is not decoded as JSON,
// so invalid UTF-8 reaches the check as it was sent.
func TestGenericInvalidUTF8InQuery(t *testing.T) {
	j := &recJournal{}
	w := do(newMux(j, &Guard{Token: "s3cret"}), "GET", "/v1/webhooks/generic?call_id=c1&event=ringing&leg_id=a%FFb", "", "Bearer s3cret", "")
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"field":"leg_id"`) || len(j.sigs) != 0 {
		t.Fatalf("got %d %s, %d signals", w.Code, w.Body, len(j.sigs))
	}
}

// TestGenericEventIDPerCall: PBXs number events per call ("1", "2", ...);
// the same event_id in two calls is two signals, each journaled, while a
// repeat within one call is stored once. Checked in the real journal's
// store after it is closed.
func TestGenericEventIDPerCall(t *testing.T) {
	dir := t.TempDir()
	j, err := events.OpenJournal(t.Context(), events.JournalOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	mux := newMux(j, &Guard{Token: "s3cret"})
	post := func(call, ev, id string) {
		t.Helper()
		body := `{"call_id":"` + call + `","event":"` + ev + `","extension":"201","event_id":"` + id + `"}`
		if w := do(mux, "POST", "/v1/webhooks/generic", "application/json", "Bearer s3cret", body); w.Code != http.StatusAccepted {
			t.Fatalf("%s %s: %d %s", call, id, w.Code, w.Body)
		}
	}
	post("A", "ringing", "1")
	post("A", "answered", "2")
	post("B", "ringing", "1")
	post("B", "answered", "2")
	post("A", "answered", "2") // a retry of A's event 2
	j.Close()

	js := jetStreamServer(t, dir)
	st, err := js.Stream(t.Context(), events.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for seq := uint64(1); seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var s events.Signal
		if err := json.Unmarshal(m.Data, &s); err != nil {
			t.Fatal(err)
		}
		got = append(got, s.CallID+"/"+s.DedupKey)
	}
	want := []string{"A/id:1", "A/id:2", "B/id:1", "B/id:2"}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("journaled signals (-want +got):\n%s", d)
	}
}

func TestGenericJournalDown(t *testing.T) {
	j := &recJournal{err: errors.New("nats: no responders")}
	w := do(newMux(j, &Guard{Token: "s3cret"}), "POST", "/v1/webhooks/generic", "application/json", "Bearer s3cret", good)
	if w.Code != http.StatusServiceUnavailable {
		t.Fatalf("got %d, want 503", w.Code)
	}
}

func TestGuardHMACAndAllowList(t *testing.T) {
	sign := func(body string) string {
		m := hmac.New(sha256.New, []byte("k3y"))
		m.Write([]byte(body))
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	j := &recJournal{}
	g := &Guard{Token: "s3cret", HMACSecret: "k3y"}
	mux := newMux(j, g)
	if w := do(mux, "POST", "/v1/webhooks/generic", "application/json", "Bearer s3cret", good); w.Code != 401 {
		t.Fatalf("unsigned: %d", w.Code)
	}
	if w := do(mux, "POST", "/v1/webhooks/generic", "application/json", "Bearer s3cret", good, "X-Signature", sign(good+" ")); w.Code != 401 {
		t.Fatalf("signature of another body: %d", w.Code)
	}
	if w := do(mux, "POST", "/v1/webhooks/generic", "application/json", "Bearer s3cret", good, "X-Signature", sign(good)); w.Code != 202 {
		t.Fatalf("signed: %d %s", w.Code, w.Body)
	}

	allow, err := ParseCIDRs([]string{"10.0.0.0/8", "192.0.2.10"})
	if err != nil {
		t.Fatal(err)
	}
	g2 := &Guard{Token: "s3cret", Allow: allow}
	if !g2.allowed("192.0.2.10:5555") || !g2.allowed("[::ffff:10.1.2.3]:80") || g2.allowed("192.0.2.11:5555") {
		t.Fatal("allow list mismatch")
	}
	g3 := &Guard{Token: "s3cret", Allow: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	if w := do(newMux(j, g3), "POST", "/v1/webhooks/generic", "application/json", "Bearer s3cret", good); w.Code != 403 {
		t.Fatalf("caller outside the allow list: %d", w.Code)
	}
	if _, err := ParseCIDRs([]string{"10.0.0.0/33"}); err == nil {
		t.Fatal("bad CIDR accepted")
	}
}

func FuzzGenericPayload(f *testing.F) {
	f.Add([]byte(good))
	f.Add([]byte(`{"call_id":"c","event":"transferred","extension":"2"}`))
	f.Add([]byte(`{"call_id":"","event":"x","timestamp":"2026-13-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		j := &recJournal{}
		w := do(newMux(j, &Guard{Token: "t"}), "POST", "/v1/webhooks/generic", "application/json", "Bearer t", string(body))
		switch w.Code {
		case http.StatusAccepted:
			if len(j.sigs) != 1 {
				t.Fatalf("202 but %d signals", len(j.sigs))
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			if len(j.sigs) != 0 {
				t.Fatalf("%d but journaled", w.Code)
			}
		default:
			t.Fatalf("unexpected status %d", w.Code)
		}
	})
}

// TestGenericContentTypes: JSON with parameters, in capitals or as a +json
// type is JSON; anything else is refused.
func TestGenericContentTypes(t *testing.T) {
	for ctype, status := range map[string]int{
		"application/json":                  http.StatusAccepted,
		"application/json; charset=utf-8":   http.StatusAccepted,
		"Application/JSON":                  http.StatusAccepted,
		"application/vnd.pbx.event+json":    http.StatusAccepted,
		"application/json; charset":         http.StatusUnsupportedMediaType,
		"application/jsonp":                 http.StatusUnsupportedMediaType,
		"application/x-www-form-urlencoded": http.StatusUnsupportedMediaType,
	} {
		j := &recJournal{}
		if w := do(newMux(j, &Guard{Token: "s3cret"}), "POST", "/v1/webhooks/generic", ctype, "Bearer s3cret", good); w.Code != status {
			t.Errorf("%q: status %d, want %d (%s)", ctype, w.Code, status, w.Body)
		}
	}
}

// TestGuardBody: the handler behind the guard reads the verified body
// whole, whether its length was declared or not, and a declared length
// beyond the limit is refused as before.
func TestGuardBody(t *testing.T) {
	var got []string
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		half := make([]byte, r.ContentLength/2)
		_, _ = io.ReadFull(r.Body, half)
		rest, err := bodyBytes(r.Body)
		again, _ := io.ReadAll(r.Body)
		if err != nil || len(again) != 0 {
			t.Errorf("read %q, then %q (%v)", rest, again, err)
		}
		got = append(got, string(half)+string(rest))
	})
	h := (&Guard{Token: "s3cret", MaxBody: 64}).Wrap(Source, echo)
	for _, tt := range []struct {
		body   string
		length int64
		status int
	}{
		{body: good[:60], length: 60, status: 200},
		{body: good[:60], length: -1, status: 200},
		{body: "", length: 0, status: 200},
		{body: good[:64], length: 64, status: 200},
		{body: good[:65], length: -1, status: http.StatusRequestEntityTooLarge},
		{body: good[:65], length: 65, status: http.StatusRequestEntityTooLarge},
	} {
		got = nil
		r := httptest.NewRequest("POST", "/v1/webhooks/generic", io.NopCloser(strings.NewReader(tt.body)))
		r.ContentLength = tt.length
		r.Header.Set("Authorization", "Bearer s3cret")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tt.status {
			t.Errorf("%d bytes (length %d): status %d, want %d", len(tt.body), tt.length, w.Code, tt.status)
			continue
		}
		if tt.status == 200 && (len(got) != 1 || got[0] != tt.body) {
			t.Errorf("%d bytes (length %d): handler read %q", len(tt.body), tt.length, got)
		}
	}
}
