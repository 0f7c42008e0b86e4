package board

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

const testToken = "s3cret-admin-token-for-tests"

// fakeBridge feeds a board: one live call, its events, one dead letter.
type fakeBridge struct {
	mu       sync.Mutex
	calls    []events.LiveCall
	changed  chan struct{}
	dead     []events.StoredDeadLetter
	replayed []uint64
}

func newFakeBridge() *fakeBridge {
	env := events.Envelope{MsgID: "generic|c1|0|Answered", Source: "generic", Created: time.Now(),
		Event: events.Event{ID: "c1", Type: events.EventAnswered, PhoneNumber: "+31612345678", PhoneExtension: "201", Direction: "Inbound", PhoneReferrer: "+31858770023"}}
	return &fakeBridge{
		changed: make(chan struct{}),
		calls: []events.LiveCall{{Key: "generic|c1", Source: "generic", CallID: "c1-0612345678", Direction: events.Inbound,
			Customer: "+31612345678", DID: "+31858770023", State: "answered", Agent: "201", Extensions: []string{"201"}, Started: time.Now()}},
		dead: []events.StoredDeadLetter{{ID: 7, DeadLetter: events.DeadLetter{Envelope: env, Status: 400, Reason: "permanent",
			Body: `{"message":"PhoneNumber +31 6 1234 5678 is not valid"}`, Time: time.Now()}}},
	}
}

func (f *fakeBridge) feeds() Feeds {
	return Feeds{
		Live: func() ([]events.LiveCall, <-chan struct{}) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return append([]events.LiveCall(nil), f.calls...), f.changed
		},
		Pending: func(int) []events.PendingEvent { return nil },
		Health: func(context.Context) Health {
			return Health{Intake: true, DeadLetters: uint64(len(f.dead)), Sinks: []SinkHealth{{Name: "robin", State: "ok", Breaker: "closed"}},
				Quota: []QuotaWindow{{Window: "1m", Used: 12, Limit: 180, Reserve: 18}}}
		},
		DeadLetters: func(context.Context, int) ([]events.StoredDeadLetter, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			return append([]events.StoredDeadLetter(nil), f.dead...), nil
		},
		Replay: func(_ context.Context, id uint64) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			for i, d := range f.dead {
				if d.ID == id {
					f.replayed = append(f.replayed, id)
					f.dead = append(f.dead[:i], f.dead[i+1:]...)
					return nil
				}
			}
			return events.ErrNoDeadLetter
		},
	}
}

// setChanged replaces the live calls and signals the change.
func (f *fakeBridge) setCalls(calls []events.LiveCall) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = calls
	close(f.changed)
	f.changed = make(chan struct{})
}

// serve starts a board on a real HTTP server on loopback.
func serve(t *testing.T, o Options, f *fakeBridge) (*Board, *httptest.Server) {
	t.Helper()
	b := New(o)
	mux := http.NewServeMux()
	if err := b.Mount(mux, f.feeds()); err != nil {
		t.Fatal(err)
	}
	b.Committed([]events.Envelope{f.dead[0].Envelope})
	b.Delivered(events.DeliveryOutcome{Sink: "robin", Env: f.dead[0].Envelope, Outcome: "permanent", Status: 400,
		Error: "register event: 400: PhoneNumber +31612345678 is not valid", At: time.Now()})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return b, srv
}

// client never follows redirects, so a test sees the 303 of a login.
func client() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}
}

func do(t *testing.T, method, u string, body io.Reader, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func login(t *testing.T, srv *httptest.Server, token string, header ...string) *http.Response {
	t.Helper()
	h := append([]string{"Content-Type", "application/x-www-form-urlencoded", "Origin", srv.URL}, header...)
	resp, _ := do(t, http.MethodPost, srv.URL+"/v1/board/login", strings.NewReader(url.Values{"token": {token}}.Encode()), h...)
	return resp
}

func sessionOf(t *testing.T, resp *http.Response) *http.Cookie {
	t.Helper()
	for _, c := range resp.Cookies() {
		if c.Name == SessionCookie {
			return c
		}
	}
	return nil
}

// TestBoardLogin: the board needs a login; the form sets an HttpOnly,
// SameSite=Strict cookie that holds no token; the token is taken from the
// form's body only, never from a URL.
func TestBoardLogin(t *testing.T) {
	_, srv := serve(t, Options{Token: testToken}, newFakeBridge())

	resp, body := do(t, http.MethodGet, srv.URL+"/", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<form method="post" action="/v1/board/login"`) || strings.Contains(body, "calls-body") {
		t.Fatalf("GET / without a session: %d, want the login form:\n%s", resp.StatusCode, body)
	}
	for _, path := range []string{"/v1/board", "/v1/board/stream", "/v1/board?token=" + testToken, "/v1/board/stream?token=" + testToken} {
		if resp, _ := do(t, http.MethodGet, srv.URL+path, nil); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("GET %s without a session: %d, want 401", path, resp.StatusCode)
		}
	}
	if _, body := do(t, http.MethodGet, srv.URL+"/?token="+testToken, nil); strings.Contains(body, "calls-body") {
		t.Error("GET /?token=…: the token in a URL opened the board")
	}
	if resp, _ := do(t, http.MethodGet, srv.URL+"/v1/board/login?token="+testToken, nil); resp.StatusCode == http.StatusOK || sessionOf(t, resp) != nil {
		t.Errorf("GET /v1/board/login?token=…: %d, want no login by URL", resp.StatusCode)
	}

	bad := login(t, srv, "wrong")
	if bad.StatusCode != http.StatusUnauthorized || sessionOf(t, bad) != nil {
		t.Fatalf("login with a wrong token: %d, cookie %v", bad.StatusCode, sessionOf(t, bad))
	}
	if resp := login(t, srv, testToken, "Origin", "http://evil.example"); resp.StatusCode != http.StatusForbidden || sessionOf(t, resp) != nil {
		t.Fatalf("login from another site's page: %d, want 403 and no cookie", resp.StatusCode)
	}

	ok := login(t, srv, testToken)
	c := sessionOf(t, ok)
	if ok.StatusCode != http.StatusSeeOther || ok.Header.Get("Location") != "/" || c == nil {
		t.Fatalf("login: %d to %q, cookie %v", ok.StatusCode, ok.Header.Get("Location"), c)
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || strings.Contains(c.Value, testToken) {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/, no token inside", c)
	}
	cookie := c.Name + "=" + c.Value
	resp, body = do(t, http.MethodGet, srv.URL+"/", nil, "Cookie", cookie)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "calls-body") || strings.Contains(body, testToken) {
		t.Fatalf("GET / with the session: %d\n%s", resp.StatusCode, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	resp, body = do(t, http.MethodGet, srv.URL+"/v1/board", nil, "Cookie", cookie)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"admin":true`) || !strings.Contains(body, `"calls":{"total":1`) {
		t.Fatalf("GET /v1/board with the session: %d\n%s", resp.StatusCode, body)
	}

	// A cookie that was tampered with, or signed for another token, is nobody's.
	other, _ := serve(t, Options{Token: "another-token"}, newFakeBridge())
	for name, v := range map[string]string{
		"tampered":         c.Value[:len(c.Value)-2] + "AA",
		"other token":      other.newSession(),
		"no signature":     strings.Split(c.Value, ".")[0],
		"the token itself": testToken,
	} {
		if resp, _ := do(t, http.MethodGet, srv.URL+"/v1/board", nil, "Cookie", SessionCookie+"="+v); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s cookie: %d, want 401", name, resp.StatusCode)
		}
	}

	resp, _ = do(t, http.MethodPost, srv.URL+"/v1/board/logout", nil, "Cookie", cookie, "Origin", srv.URL)
	if c := sessionOf(t, resp); resp.StatusCode != http.StatusSeeOther || c == nil || c.MaxAge >= 0 {
		t.Fatalf("logout: %d, cookie %+v: want it cleared", resp.StatusCode, c)
	}
}

// TestBoardSessionExpires: a session ends SessionTTL after the login.
func TestBoardSessionExpires(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	b, srv := serve(t, Options{Token: testToken, Now: clock}, newFakeBridge())
	v := b.newSession()
	if resp, _ := do(t, http.MethodGet, srv.URL+"/v1/board", nil, "Cookie", SessionCookie+"="+v); resp.StatusCode != http.StatusOK {
		t.Fatalf("fresh session: %d", resp.StatusCode)
	}
	mu.Lock()
	now = now.Add(SessionTTL + time.Second)
	mu.Unlock()
	if resp, _ := do(t, http.MethodGet, srv.URL+"/v1/board", nil, "Cookie", SessionCookie+"="+v); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired session: %d, want 401", resp.StatusCode)
	}
}

// TestBoardAllowCIDRs: addresses in BOARD_ALLOW_CIDRS see the board
// without logging in, but cannot replay; others cannot see it.
func TestBoardAllowCIDRs(t *testing.T) {
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	elsewhere := []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	for _, tt := range []struct {
		name   string
		o      Options
		status int
		admin  bool
	}{
		{"allowed, no token", Options{Allow: loopback}, http.StatusOK, false},
		{"allowed, token set", Options{Allow: loopback, Token: testToken}, http.StatusOK, false},
		{"not allowed, no token", Options{Allow: elsewhere}, http.StatusForbidden, false},
		{"not allowed, token set", Options{Allow: elsewhere, Token: testToken}, http.StatusUnauthorized, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeBridge()
			_, srv := serve(t, tt.o, f)
			resp, body := do(t, http.MethodGet, srv.URL+"/v1/board", nil)
			if resp.StatusCode != tt.status {
				t.Fatalf("GET /v1/board: %d, want %d", resp.StatusCode, tt.status)
			}
			if resp.StatusCode == http.StatusOK && !strings.Contains(body, `"admin":false`) {
				t.Fatalf("an allowed address is no admin: %s", body)
			}
			resp, _ = do(t, http.MethodGet, srv.URL+"/", nil)
			if want := map[int]int{http.StatusOK: 200, http.StatusUnauthorized: 200, http.StatusForbidden: 403}[tt.status]; resp.StatusCode != want {
				t.Fatalf("GET /: %d, want %d", resp.StatusCode, want)
			}
			resp, _ = do(t, http.MethodPost, srv.URL+"/v1/board/deadletters/7/replay", nil, "Origin", srv.URL, RequestHeader, "1")
			if resp.StatusCode != http.StatusUnauthorized || len(f.replayed) != 0 {
				t.Fatalf("replay without logging in: %d, replayed %v", resp.StatusCode, f.replayed)
			}
		})
	}
}

// TestBoardReplayNeedsSameOrigin: a replay needs the session cookie, the
// board's own origin and its request header; a page of another site that
// makes the browser send the cookie gets nothing done.
func TestBoardReplayNeedsSameOrigin(t *testing.T) {
	f := newFakeBridge()
	_, srv := serve(t, Options{Token: testToken}, f)
	c := sessionOf(t, login(t, srv, testToken))
	cookie := c.Name + "=" + c.Value
	replay := srv.URL + "/v1/board/deadletters/7/replay"
	for _, tt := range []struct {
		name   string
		header []string
		status int
	}{
		{"no cookie", []string{"Origin", srv.URL, RequestHeader, "1"}, http.StatusUnauthorized},
		{"no origin", []string{"Cookie", cookie, RequestHeader, "1"}, http.StatusForbidden},
		{"other origin", []string{"Cookie", cookie, "Origin", "http://evil.example", RequestHeader, "1"}, http.StatusForbidden},
		{"cross-site fetch", []string{"Cookie", cookie, "Origin", "null", "Sec-Fetch-Site", "cross-site", RequestHeader, "1"}, http.StatusForbidden},
		{"no request header", []string{"Cookie", cookie, "Origin", srv.URL}, http.StatusForbidden},
		{"wrong bearer", []string{"Authorization", "Bearer nope"}, http.StatusUnauthorized},
	} {
		if resp, _ := do(t, http.MethodPost, replay, nil, tt.header...); resp.StatusCode != tt.status {
			t.Errorf("%s: %d, want %d", tt.name, resp.StatusCode, tt.status)
		}
	}
	if len(f.replayed) != 0 {
		t.Fatalf("replayed %v by refused requests", f.replayed)
	}
	resp, body := do(t, http.MethodPost, replay, nil, "Cookie", cookie, "Origin", srv.URL, RequestHeader, "1")
	if resp.StatusCode != http.StatusOK || len(f.replayed) != 1 || f.replayed[0] != 7 {
		t.Fatalf("replay from the board: %d %s, replayed %v", resp.StatusCode, body, f.replayed)
	}
	if resp, _ := do(t, http.MethodPost, replay, nil, "Cookie", cookie, "Origin", srv.URL, RequestHeader, "1"); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("replaying it again: %d, want 404", resp.StatusCode)
	}
}

// TestBoardMasksNumbers: with BOARD_MASK_NUMBERS, no customer number
// reaches the browser, whether in the snapshot or the stream, the call id
// or ROBIN's answer; the last four digits and the company number do.
func TestBoardMasksNumbers(t *testing.T) {
	_, srv := serve(t, Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Mask: true, Region: "NL"}, newFakeBridge())
	_, snapshot := do(t, http.MethodGet, srv.URL+"/v1/board", nil)
	stream := readStream(t, srv.URL+"/v1/board/stream", "health")
	for name, body := range map[string]string{"snapshot": snapshot, "stream": stream} {
		for _, digits := range []string{"612345678", "0612345678", "6 1234 5678", "12345678", "1234 5678"} {
			if strings.Contains(body, digits) {
				t.Errorf("%s holds %q:\n%s", name, digits, body)
			}
		}
		for _, want := range []string{"•••• 5678", `"masked":true`, "085 877 0023"} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q:\n%s", name, want, body)
			}
		}
	}
	_, unmasked := serve(t, Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Region: "NL"}, newFakeBridge())
	if _, body := do(t, http.MethodGet, unmasked.URL+"/v1/board", nil); !strings.Contains(body, `"caller":"06 12345678","e164":"+31612345678"`) {
		t.Errorf("unmasked: want the number for reading and in E.164:\n%s", body)
	}
}

// readStream reads the board's stream until it has sent the part named
// last, and returns what it read.
func readStream(t *testing.T, u, last string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var out strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		out.WriteString(sc.Text() + "\n")
		if sc.Text() == "event: "+last {
			sc.Scan()
			out.WriteString(sc.Text() + "\n")
			return out.String()
		}
	}
	t.Fatalf("stream ended before %q: %v\n%s", last, sc.Err(), out.String())
	return ""
}

// openStream opens the board's stream for at most 20s and returns its
// lines.
func openStream(t *testing.T, base string) *bufio.Scanner {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/board/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	return sc
}

// TestBoardStreamOutlivesServerTimeouts: the stream goes on past the
// server's read and write timeouts (HTTP_READ_TIMEOUT, HTTP_WRITE_TIMEOUT),
// and ends when the bridge drains.
func TestBoardStreamOutlivesServerTimeouts(t *testing.T) {
	done := make(chan struct{})
	f := newFakeBridge()
	b := New(Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Done: done, KeepAlive: 20 * time.Millisecond, WriteTimeout: 200 * time.Millisecond})
	mux := http.NewServeMux()
	if err := b.Mount(mux, f.feeds()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ReadTimeout, srv.Config.WriteTimeout = 200*time.Millisecond, 200*time.Millisecond
	srv.Start()
	t.Cleanup(srv.Close)

	sc := openStream(t, srv.URL)
	start := time.Now()
	moved := false
	for sc.Scan() {
		if time.Since(start) > time.Second && !moved {
			// Well past both timeouts: a change must still arrive.
			moved = true
			f.setCalls(nil)
		}
		if moved && strings.HasPrefix(sc.Text(), `data: {"meta":{"total":0`) {
			break
		}
	}
	if !moved || sc.Err() != nil {
		t.Fatalf("the stream ended after %s: %v", time.Since(start), sc.Err())
	}
	close(done)
	for sc.Scan() {
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("the stream did not end cleanly when the bridge drained: %v", err)
	}
}

// TestBoardShowsCallsAndDeliveries: the model the page draws, from the
// tracker's and the dispatcher's hooks.
func TestBoardShowsCallsAndDeliveries(t *testing.T) {
	f := newFakeBridge()
	b, srv := serve(t, Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Region: "NL", MaxCalls: 2}, f)
	env := func(id string, typ events.EventType) events.Envelope {
		return events.Envelope{MsgID: "generic|" + id + "|0|" + string(typ), Source: "generic", Created: time.Now(),
			Event: events.Event{ID: id, Type: typ, PhoneNumber: "+3225550177", PhoneExtension: "202", Direction: "Inbound"}}
	}
	b.Committed([]events.Envelope{env("x1", events.EventAnswered), env("x2", events.EventAnswered)})
	b.Delivered(events.DeliveryOutcome{Sink: "robin", Env: env("x1", events.EventAnswered), Outcome: "delivered", Latency: 40 * time.Millisecond, Age: 90 * time.Millisecond, At: time.Now()})
	b.Delivered(events.DeliveryOutcome{Sink: "robin", Env: env("x2", events.EventAnswered), Outcome: "retryable", Status: 503, Error: "503 maintenance", At: time.Now()})
	f.setCalls(append(f.calls,
		events.LiveCall{Key: "generic|x1", Source: "generic", CallID: "x1", Direction: events.Inbound, Customer: "+3225550177", State: "ringing", Started: time.Now()},
		events.LiveCall{Key: "generic|x2", Source: "generic", CallID: "x2", Direction: events.Outbound, Customer: "+3225550177", State: "ringing", Started: time.Now()}))

	_, body := do(t, http.MethodGet, srv.URL+"/v1/board", nil)
	for _, want := range []string{
		`"total":3,"hidden":1`,                         // three calls, two shown
		`"caller":"+32 2 555 01 77"`,                   // a foreign number in international format
		`"did":"085 877 0023"`,                         // the company number in national format
		`"state":"delivered","latency_ms":40`,          // x1 delivered
		`"state":"queued","reason":"retrying"`,         // x2 waits after a failure
		`"state":"dead","reason":"register event: 400`, // c1 dead-lettered
		`"dead_letter":7`,                              // with the id to replay
		`"window":"1m","used":12,"limit":180,"reserve":18`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("snapshot lacks %s:\n%s", want, body)
		}
	}
}

// TestBoardStreamSendsChangedRows: after the whole calls part, a stream
// gets only the rows that changed and the keys of those gone, so a board of
// hundreds of calls costs a row per change.
func TestBoardStreamSendsChangedRows(t *testing.T) {
	f := newFakeBridge()
	var calls []events.LiveCall
	for i := range 100 {
		calls = append(calls, events.LiveCall{Key: fmt.Sprint("generic|k", i), Source: "generic", CallID: fmt.Sprint("k", i),
			Direction: events.Inbound, Customer: "+31201234567", State: "ringing", Started: time.Unix(1700000000+int64(i), 0)})
	}
	f.setCalls(calls)
	_, srv := serve(t, Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, f)
	sc := openStream(t, srv.URL)
	next := func(event string) string {
		t.Helper()
		for sc.Scan() {
			if sc.Text() == "event: "+event && sc.Scan() {
				return strings.TrimPrefix(sc.Text(), "data: ")
			}
		}
		t.Fatalf("no %s event: %v", event, sc.Err())
		return ""
	}
	if full := next("calls"); strings.Count(full, `"key"`) != 100 {
		t.Fatalf("the first calls part holds %d rows, want 100", strings.Count(full, `"key"`))
	}
	changed := append([]events.LiveCall(nil), calls[1:]...)
	changed[41].State, changed[41].Agent = "answered", "201"
	f.setCalls(changed)
	var d struct {
		Meta struct {
			Total int `json:"total"`
		} `json:"meta"`
		Upsert []json.RawMessage `json:"upsert"`
		Remove []string          `json:"remove"`
	}
	if err := json.Unmarshal([]byte(next("calls-delta")), &d); err != nil {
		t.Fatal(err)
	}
	// k0 left the live view: it shows as ended (and leaves after
	// EndedFor); k42 was answered; the 98 others are not sent again.
	rows := fmt.Sprintf("%s", d.Upsert)
	if d.Meta.Total != 99 || len(d.Upsert) != 2 || len(d.Remove) != 0 ||
		!strings.Contains(rows, `"call_id":"k0"`) || !strings.Contains(rows, `"state":"ended"`) ||
		!strings.Contains(rows, `"call_id":"k42"`) || !strings.Contains(rows, `"state":"answered","agent":"201"`) {
		t.Fatalf("delta: total %d, rows %s, removed %v", d.Meta.Total, d.Upsert, d.Remove)
	}
}

// TestBoardEndedCalls: a call that leaves the live view shows as ended for
// EndedFor, when the board saw it go; a board polled after a long pause
// does not invent the moment a call ended.
func TestBoardEndedCalls(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	f := newFakeBridge()
	_, srv := serve(t, Options{Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Now: clock, EndedFor: 8 * time.Second}, f)
	poll := func() string {
		_, body := do(t, http.MethodGet, srv.URL+"/v1/board", nil)
		return body
	}
	poll()
	f.setCalls(nil)
	advance(time.Second)
	if body := poll(); !strings.Contains(body, `"state":"ended"`) || !strings.Contains(body, `"total":0`) {
		t.Fatalf("a second after the end: want the call shown as ended:\n%s", body)
	}
	advance(8 * time.Second)
	if body := poll(); strings.Contains(body, `"state":"ended"`) {
		t.Fatalf("after EndedFor: want the call gone:\n%s", body)
	}

	f.setCalls(newFakeBridge().calls)
	poll()
	f.setCalls(nil)
	advance(time.Minute)
	if body := poll(); strings.Contains(body, `"state":"ended"`) {
		t.Fatalf("polled a minute after the last look: the call's end is unknown, want it gone:\n%s", body)
	}
}
