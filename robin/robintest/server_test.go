package robintest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

func start(t *testing.T, o robintest.Options) *robintest.Server {
	t.Helper()
	s := robintest.NewServer(o)
	t.Cleanup(s.Close)
	return s
}

// httpClient is generous: the tests assert outcomes, not timings.
var httpClient = &http.Client{Timeout: 30 * time.Second}

type answer struct {
	status int
	body   string
	header http.Header
}

// do sends one request and returns the answer; a transport error is returned
// as is. It is safe to call from any goroutine.
func do(t *testing.T, client *http.Client, method, rawURL, user, pass, body string) (answer, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, rawURL, rd)
	if err != nil {
		return answer{}, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if user != "" || pass != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: string(b), header: resp.Header}, nil
}

func register(t *testing.T, s *robintest.Server, body string) answer {
	t.Helper()
	a, err := do(t, httpClient, http.MethodPost, s.URL()+"/voip/registerevent/"+robintest.DefaultAPIKey, "", "", body)
	if err != nil {
		t.Errorf("register: %v", err) // Errorf: also called from other goroutines
	}
	return a
}

func presence(t *testing.T, s *robintest.Server, q url.Values) answer {
	t.Helper()
	a, err := do(t, httpClient, http.MethodGet, s.PresenceURL()+"?"+q.Encode(), "", "", "")
	if err != nil {
		t.Errorf("presence: %v", err)
	}
	return a
}

func eventJSON(id string, typ events.EventType, ext string) string {
	b, _ := json.Marshal(events.Event{ID: id, Type: typ, PhoneNumber: "+31612345678", PhoneExtension: ext, Direction: "Inbound", PhoneReferrer: "+31858770023"})
	return string(b)
}

const validBody = `{"Id":"c1","EventType":"Answered","PhoneNumber":"+31612345678","PhoneExtension":"201","Direction":"Inbound","PhoneReferrer":"+31858770023"}`

func TestRegisterChecks(t *testing.T) {
	tests := []struct {
		name       string
		opts       robintest.Options
		method     string
		key        string
		user, pass string
		body       string
		want       int
		wantBody   string
	}{
		{name: "accepted", body: validBody, want: 201},
		{name: "referrer is optional", body: `{"Id":"c1","EventType":"Disconnected","PhoneNumber":"+31612345678","PhoneExtension":"201","Direction":"Outbound"}`, want: 201},
		{name: "unknown key", key: "other-key", body: validBody, want: 401},
		{name: "unknown key before a bad body", key: "other-key", body: "nonsense", want: 401},
		{name: "basic missing", opts: robintest.Options{RequireBasic: true, APISecret: "pw"}, body: validBody, want: 401},
		{name: "basic wrong secret", opts: robintest.Options{RequireBasic: true, APISecret: "pw"}, user: robintest.DefaultAPIKey, pass: "nope", body: validBody, want: 401},
		{name: "basic wrong user", opts: robintest.Options{RequireBasic: true, APISecret: "pw"}, user: "someone", pass: "pw", body: validBody, want: 401},
		{name: "basic right", opts: robintest.Options{RequireBasic: true, APISecret: "pw"}, user: robintest.DefaultAPIKey, pass: "pw", body: validBody, want: 201},
		{name: "GET", method: http.MethodGet, want: 405},
		{name: "not JSON", body: "Id=c1", want: 400, wantBody: `{"message":"body is not a JSON object"}`},
		{name: "array", body: "[" + validBody + "]", want: 400},
		{name: "null", body: "null", want: 400},
		{name: "two objects", body: validBody + validBody, want: 400},
		{name: "unknown field", body: strings.Replace(validBody, `"Direction"`, `"Foo":1,"Direction"`, 1), want: 400, wantBody: `{"message":"Foo is not a known field"}`},
		{name: "field name in another case", body: strings.Replace(validBody, `"Id"`, `"id"`, 1), want: 400},
		{name: "Id missing", body: strings.Replace(validBody, `"Id":"c1",`, "", 1), want: 400, wantBody: `{"message":"Id is invalid"}`},
		{name: "Id empty", body: strings.Replace(validBody, `"Id":"c1"`, `"Id":""`, 1), want: 400},
		{name: "Id null", body: strings.Replace(validBody, `"Id":"c1"`, `"Id":null`, 1), want: 400},
		{name: "EventType unknown", body: strings.Replace(validBody, `"Answered"`, `"Ringing"`, 1), want: 400, wantBody: `{"message":"EventType is invalid"}`},
		{name: "EventType lower case", body: strings.Replace(validBody, `"Answered"`, `"answered"`, 1), want: 400},
		{name: "PhoneNumber as a number", body: strings.Replace(validBody, `"+31612345678"`, `31612345678`, 1), want: 400, wantBody: `{"message":"PhoneNumber is invalid"}`},
		{name: "PhoneExtension empty", body: strings.Replace(validBody, `"201"`, `""`, 1), want: 400},
		{name: "Direction lower case", body: strings.Replace(validBody, `"Inbound"`, `"inbound"`, 1), want: 400, wantBody: `{"message":"Direction is invalid"}`},
		{name: "PhoneReferrer not a string", body: strings.Replace(validBody, `"+31858770023"`, `31858770023`, 1), want: 400},
		{name: "extension unknown", opts: robintest.Options{Extensions: []string{"202", "203"}}, body: validBody, want: 406},
		{name: "extension known", opts: robintest.Options{Extensions: []string{"201"}}, body: validBody, want: 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, tt.opts)
			key := tt.key
			if key == "" {
				key = robintest.DefaultAPIKey
			}
			method := tt.method
			if method == "" {
				method = http.MethodPost
			}
			a, err := do(t, httpClient, method, s.URL()+"/voip/registerevent/"+key, tt.user, tt.pass, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if a.status != tt.want {
				t.Fatalf("status = %d (%s), want %d", a.status, a.body, tt.want)
			}
			if tt.wantBody != "" && a.body != tt.wantBody {
				t.Errorf("body = %q, want %q", a.body, tt.wantBody)
			}
			wantEvents := 0
			if tt.want == 201 {
				wantEvents = 1
				if a.body != "" {
					t.Errorf("201 body = %q, want empty", a.body)
				}
			}
			if got := len(s.Events()); got != wantEvents {
				t.Errorf("%d events recorded, want %d", got, wantEvents)
			}
			reqs := s.Requests()
			if len(reqs) != 1 || reqs[0].Status != tt.want || reqs[0].Endpoint != robintest.EndpointRegisterEvent {
				t.Errorf("Requests() = %+v, want one register event with status %d", reqs, tt.want)
			}
		})
	}
}

func TestRegisterRecordsEvent(t *testing.T) {
	s := start(t, robintest.Options{})
	if a := register(t, s, validBody); a.status != 201 {
		t.Fatalf("status %d", a.status)
	}
	evs := s.Events()
	want := events.Event{ID: "c1", Type: events.EventAnswered, PhoneNumber: "+31612345678", PhoneExtension: "201", Direction: "Inbound", PhoneReferrer: "+31858770023"}
	if len(evs) != 1 || evs[0].Event != want {
		t.Fatalf("Events() = %+v, want %+v", evs, want)
	}
	if ct := evs[0].Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("recorded Content-Type = %q", ct)
	}
	if evs[0].At.IsZero() {
		t.Errorf("At is zero")
	}
}

func TestUnknownPath(t *testing.T) {
	s := start(t, robintest.Options{})
	a, err := do(t, httpClient, http.MethodPost, s.URL()+"/conversations", "", "", "{}")
	if err != nil || a.status != 404 {
		t.Fatalf("status = %d, %v; want 404", a.status, err)
	}
	if r := s.Requests(); len(r) != 1 || r[0].Endpoint != "" {
		t.Errorf("Requests() = %+v", r)
	}
}

// TestCheckOrder: authentication comes before the fault and the limiter, so
// an unauthenticated request uses no budget; the fault comes before the
// limiter; a bad body is counted.
func TestCheckOrder(t *testing.T) {
	s := start(t, robintest.Options{Limits: []robintest.Limit{{N: 2, Per: time.Hour}}, RequireBasic: true, APISecret: "pw"})
	post := func(user, pass, body string) int {
		a, err := do(t, httpClient, http.MethodPost, s.URL()+"/voip/registerevent/"+robintest.DefaultAPIKey, user, pass, body)
		if err != nil {
			t.Fatal(err)
		}
		return a.status
	}
	k := robintest.DefaultAPIKey
	s.SetFault(robintest.Fault{Status: 503, Count: 1})
	got := []int{
		post(k, "wrong", validBody), // 401: not the fault's, not counted
		post(k, "pw", validBody),    // 503: the fault, not counted
		post(k, "pw", "not json"),   // 400: counted (1)
		post(k, "pw", validBody),    // 201: counted (2)
		post(k, "pw", validBody),    // 429
		post(k, "wrong", validBody), // 401 even when the window is full
	}
	if diff := cmp.Diff([]int{401, 503, 400, 201, 429, 401}, got); diff != "" {
		t.Errorf("statuses (-want +got):\n%s", diff)
	}
	if v := s.Violations(); v != 1 {
		t.Errorf("Violations() = %d, want 1", v)
	}
}

// TestLimiterBurst fires 10 requests at once against 3 per hour (so that
// real time cannot matter): 3 are admitted, 7 refused and counted.
func TestLimiterBurst(t *testing.T) {
	for _, retryAfter := range []bool{true, false} {
		t.Run("RetryAfter="+strconv.FormatBool(retryAfter), func(t *testing.T) {
			s := start(t, robintest.Options{Limits: []robintest.Limit{{N: 3, Per: time.Hour}}, RetryAfter: retryAfter})
			var wg sync.WaitGroup
			answers := make([]answer, 10)
			for i := range answers {
				wg.Go(func() {
					if i%2 == 0 {
						answers[i] = register(t, s, eventJSON("c"+strconv.Itoa(i), events.EventAnswered, "201"))
					} else {
						answers[i] = presence(t, s, url.Values{"apikey": {robintest.DefaultAPIKey}, "Channel": {"Chat"}})
					}
				})
			}
			wg.Wait()
			ok, refused := 0, 0
			for _, a := range answers {
				switch a.status {
				case 201, 200:
					ok++
				case 429:
					refused++
					if a.body != "Too Many Requests" {
						t.Errorf("429 body = %q", a.body)
					}
					ra := a.header.Get("Retry-After")
					if !retryAfter {
						if ra != "" {
							t.Errorf("Retry-After %q sent although disabled", ra)
						}
						continue
					}
					secs, err := strconv.Atoi(ra)
					if err != nil || secs < 3000 || secs > 3600 {
						t.Errorf("Retry-After = %q, want the seconds until the hour window frees", ra)
					}
				default:
					t.Errorf("unexpected status %d", a.status)
				}
			}
			if ok != 3 || refused != 7 {
				t.Errorf("admitted %d, refused %d; want 3 and 7", ok, refused)
			}
			if v := s.Violations(); v != 7 {
				t.Errorf("Violations() = %d, want 7", v)
			}
			flagged := 0
			for _, r := range s.Requests() {
				if r.Violation {
					flagged++
					if r.Status != 429 {
						t.Errorf("violation recorded with status %d", r.Status)
					}
				}
			}
			if flagged != 7 {
				t.Errorf("%d requests flagged as violations, want 7", flagged)
			}
		})
	}
}

func TestFaultStatus(t *testing.T) {
	s := start(t, robintest.Options{})
	s.SetFault(robintest.Fault{Status: 503, Body: "<html>busy</html>", RetryAfter: "5", Count: 2})
	for i := range 2 {
		a := register(t, s, validBody)
		if a.status != 503 || a.body != "<html>busy</html>" || a.header.Get("Retry-After") != "5" {
			t.Fatalf("request %d: %+v, want the 503 fault", i, a)
		}
	}
	if a := register(t, s, validBody); a.status != 201 {
		t.Fatalf("after Count faults: status %d, want 201", a.status)
	}
	if n := len(s.Events()); n != 1 {
		t.Errorf("%d events, want 1 (faulted requests are not accepted)", n)
	}
	var faults []string
	for _, r := range s.Requests() {
		faults = append(faults, r.Fault)
	}
	if diff := cmp.Diff([]string{"status", "status", ""}, faults); diff != "" {
		t.Errorf("Request.Fault (-want +got):\n%s", diff)
	}

	// Count 0 lasts until cleared.
	s.SetFault(robintest.Fault{Status: 401})
	for range 3 {
		if a := register(t, s, validBody); a.status != 401 {
			t.Fatalf("status %d, want the lasting 401", a.status)
		}
	}
	s.SetFault(robintest.Fault{})
	if a := register(t, s, validBody); a.status != 201 {
		t.Fatalf("after clearing: status %d", a.status)
	}
}

func TestFaultEndpoint(t *testing.T) {
	s := start(t, robintest.Options{})
	q := url.Values{"apikey": {robintest.DefaultAPIKey}, "Channel": {"Chat"}}
	s.SetFault(robintest.Fault{Status: 500, Endpoint: robintest.EndpointPresence})
	if a := register(t, s, validBody); a.status != 201 {
		t.Errorf("register under a presence fault: %d", a.status)
	}
	if a := presence(t, s, q); a.status != 500 {
		t.Errorf("presence under a presence fault: %d", a.status)
	}
	s.SetFault(robintest.Fault{Status: 500, Endpoint: robintest.EndpointRegisterEvent})
	if a := presence(t, s, q); a.status != 200 {
		t.Errorf("presence under a register fault: %d", a.status)
	}
	if a := register(t, s, validBody); a.status != 500 {
		t.Errorf("register under a register fault: %d", a.status)
	}
}

func TestFaultReset(t *testing.T) {
	s := start(t, robintest.Options{})
	s.SetFault(robintest.Fault{Reset: true, Count: 1})
	if _, err := do(t, httpClient, http.MethodPost, s.URL()+"/voip/registerevent/"+robintest.DefaultAPIKey, "", "", validBody); err == nil {
		t.Fatal("reset fault: the client got an answer")
	}
	if n := len(s.Events()); n != 0 {
		t.Errorf("%d events recorded under a reset", n)
	}
	if r := s.Requests(); len(r) != 1 || r[0].Fault != "reset" || r[0].Status != 0 {
		t.Errorf("Requests() = %+v", r)
	}
	if a := register(t, s, validBody); a.status != 201 {
		t.Errorf("after the reset: %d", a.status)
	}
}

func TestFaultDropAck(t *testing.T) {
	s := start(t, robintest.Options{})
	s.SetFault(robintest.Fault{DropAck: true, Count: 1})
	if _, err := do(t, httpClient, http.MethodPost, s.URL()+"/voip/registerevent/"+robintest.DefaultAPIKey, "", "", validBody); err == nil {
		t.Fatal("drop-ack fault: the client got an answer")
	}
	if n := len(s.Events()); n != 1 {
		t.Fatalf("%d events recorded, want the accepted one", n)
	}
	if r := s.Requests(); len(r) != 1 || r[0].Fault != "drop-ack" || r[0].Status != 201 {
		t.Errorf("Requests() = %+v", r)
	}
	// The client's retry is then a duplicate.
	if a := register(t, s, validBody); a.status != 201 {
		t.Fatalf("retry: %d", a.status)
	}
	if evs := s.Events(); len(evs) != 2 || !evs[1].Duplicate {
		t.Errorf("the retry after a lost ack is not flagged as a duplicate: %+v", evs)
	}
}

func TestFaultHang(t *testing.T) {
	s := start(t, robintest.Options{})
	s.SetFault(robintest.Fault{Hang: true, Count: 1})
	short := &http.Client{Timeout: 100 * time.Millisecond}
	if a, err := do(t, short, http.MethodPost, s.URL()+"/voip/registerevent/"+robintest.DefaultAPIKey, "", "", validBody); err == nil {
		t.Fatalf("hang fault answered %+v", a)
	}
	if r := s.Requests(); len(r) != 1 || r[0].Fault != "hang" {
		t.Errorf("Requests() = %+v", r)
	}
	if n := len(s.Events()); n != 0 {
		t.Errorf("%d events recorded under a hang", n)
	}
	if a := register(t, s, validBody); a.status != 201 {
		t.Errorf("after the hang: %d", a.status)
	}
}

func TestFlags(t *testing.T) {
	s := start(t, robintest.Options{})
	type sent struct {
		id   string
		typ  events.EventType
		ext  string
		dup  bool
		ooo  bool
		note string
	}
	seq := []sent{
		{"c1", events.EventAnswered, "201", false, false, "answer"},
		{"c1", events.EventTransfer, "202", false, false, "transfer to 202"},
		{"c1", events.EventTransfer, "203", false, false, "transfer on to 203"},
		{"c1", events.EventTransfer, "202", true, false, "transfer to 202 again"},
		{"c1", events.EventAnswered, "201", true, false, "answer again"},
		{"c1", events.EventDisconnected, "203", false, false, "end"},
		{"c1", events.EventDisconnected, "203", true, false, "end again (lost ack)"},
		{"c1", events.EventTransfer, "204", false, true, "transfer after the end"},
		{"c2", events.EventDisconnected, "201", false, false, "missed call"},
		{"c2", events.EventAnswered, "201", false, true, "answer after the end"},
		{"c3", events.EventTransfer, "202", false, true, "transfer before the answer"},
		{"c3", events.EventAnswered, "201", false, false, "late answer"},
	}
	for _, e := range seq {
		if a := register(t, s, eventJSON(e.id, e.typ, e.ext)); a.status != 201 {
			t.Fatalf("%s: status %d", e.note, a.status)
		}
	}
	evs := s.Events()
	var got []sent
	for i, r := range evs {
		got = append(got, sent{r.Event.ID, r.Event.Type, r.Event.PhoneExtension, r.Duplicate, r.OutOfOrder, seq[i].note})
	}
	if diff := cmp.Diff(seq, got, cmp.AllowUnexported(sent{})); diff != "" {
		t.Errorf("flags (-want +got):\n%s", diff)
	}
}

func TestWaitEvents(t *testing.T) {
	s := start(t, robintest.Options{})
	go func() {
		for i := range 3 {
			time.Sleep(10 * time.Millisecond)
			register(t, s, eventJSON("c"+strconv.Itoa(i), events.EventAnswered, "201"))
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	evs, err := s.WaitEvents(ctx, 3)
	if err != nil || len(evs) < 3 {
		t.Fatalf("WaitEvents = %d events, %v", len(evs), err)
	}
	for i, e := range evs[:3] {
		if want := "c" + strconv.Itoa(i); e.Event.ID != want {
			t.Errorf("event %d is %s, want %s (receive order)", i, e.Event.ID, want)
		}
	}

	short, cancel2 := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel2()
	evs, err = s.WaitEvents(short, 4)
	if !errors.Is(err, context.DeadlineExceeded) || len(evs) != 3 {
		t.Errorf("WaitEvents past the deadline = %d events, %v; want 3 and DeadlineExceeded", len(evs), err)
	}

	go func() {
		time.Sleep(10 * time.Millisecond)
		s.Close()
	}()
	if _, err := s.WaitEvents(t.Context(), 10); err == nil {
		t.Errorf("WaitEvents on a closed server returned no error")
	}
}

func TestOnEvent(t *testing.T) {
	s := start(t, robintest.Options{})
	var mu sync.Mutex
	var seen []string
	s.OnEvent(func(r robintest.Received) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Event.ID+"/"+string(r.Event.Type))
	})
	register(t, s, eventJSON("c1", events.EventAnswered, "201"))
	register(t, s, "bad")
	register(t, s, eventJSON("c1", events.EventDisconnected, "201"))
	mu.Lock()
	defer mu.Unlock()
	if diff := cmp.Diff([]string{"c1/Answered", "c1/Disconnected"}, seen); diff != "" {
		t.Errorf("OnEvent calls (-want +got):\n%s", diff)
	}
}

func TestPresence(t *testing.T) {
	s := start(t, robintest.Options{Presence: map[string]bool{"WhatsApp|+31858770023": true}})
	s.SetPresence("Chat", "", true)
	s.SetPresence("Email", "", false)
	k := robintest.DefaultAPIKey
	tests := []struct {
		name string
		q    url.Values
		want int
		body string
	}{
		{"online", url.Values{"apikey": {k}, "Channel": {"Chat"}}, 200, "Online"},
		{"offline", url.Values{"apikey": {k}, "Channel": {"Email"}}, 200, "Offline"},
		{"unset is offline", url.Values{"apikey": {k}, "Channel": {"SMS"}}, 200, "Offline"},
		{"by referrer", url.Values{"apikey": {k}, "Channel": {"WhatsApp"}, "referrer": {"+31858770023"}}, 200, "Online"},
		{"other referrer", url.Values{"apikey": {k}, "Channel": {"WhatsApp"}, "referrer": {"+31200000000"}}, 200, "Offline"},
		{"channel in another case is known, but set per spelling", url.Values{"apikey": {k}, "Channel": {"chat"}}, 200, "Offline"},
		{"channel with spaces", url.Values{"apikey": {k}, "Channel": {"Apple Business Chat"}}, 200, "Offline"},
		{"missing apikey", url.Values{"Channel": {"Chat"}}, 400, ""},
		{"missing Channel", url.Values{"apikey": {k}}, 400, ""},
		{"Channel in lower case is another parameter", url.Values{"apikey": {k}, "channel": {"Chat"}}, 400, ""},
		{"unknown key", url.Values{"apikey": {"nope"}, "Channel": {"Chat"}}, 404, ""},
		{"unknown channel", url.Values{"apikey": {k}, "Channel": {"Voice"}}, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := presence(t, s, tt.q)
			if a.status != tt.want || a.body != tt.body {
				t.Fatalf("presence = %d %q, want %d %q", a.status, a.body, tt.want, tt.body)
			}
			if tt.want == 200 {
				if ct := a.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
					t.Errorf("Content-Type = %q", ct)
				}
			}
		})
	}
	a, err := do(t, httpClient, http.MethodPost, s.PresenceURL()+"?apikey="+k+"&Channel=Chat", "", "", "{}")
	if err != nil || a.status != 405 {
		t.Errorf("POST presence = %d, %v; want 405", a.status, err)
	}
	s.SetPresence("Chat", "", false)
	if a := presence(t, s, url.Values{"apikey": {k}, "Channel": {"Chat"}}); a.body != "Offline" {
		t.Errorf("after SetPresence(false): %q", a.body)
	}
}

func TestListen(t *testing.T) {
	s, err := robintest.Listen("127.0.0.1:0", robintest.Options{APIKey: "k"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	u, err := url.Parse(s.URL())
	if err != nil || u.Hostname() != "127.0.0.1" || u.Port() == "0" {
		t.Fatalf("URL() = %q", s.URL())
	}
	if s.PresenceURL() != s.URL()+"/api/v1" {
		t.Errorf("PresenceURL() = %q", s.PresenceURL())
	}
	a, err := do(t, httpClient, http.MethodPost, s.URL()+"/voip/registerevent/k", "", "", validBody)
	if err != nil || a.status != 201 {
		t.Fatalf("register on Listen: %d, %v", a.status, err)
	}
	if _, err := robintest.Listen(u.Host, robintest.Options{}); err == nil {
		t.Errorf("Listen on a busy address succeeded")
	}
}

func TestLogfKeepsKeyOut(t *testing.T) {
	var mu sync.Mutex
	var lines []string
	s := robintest.NewServer(robintest.Options{APIKey: "sekrit-key-42", Logf: func(f string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		lines = append(lines, fmt.Sprintf(f, a...))
	}})
	_, _ = do(t, httpClient, http.MethodPost, s.URL()+"/voip/registerevent/sekrit-key-42", "", "", validBody)
	_, _ = do(t, httpClient, http.MethodGet, s.PresenceURL()+"?apikey=sekrit-key-42&Channel=Chat", "", "", "")
	s.Close()
	mu.Lock()
	defer mu.Unlock()
	if len(lines) < 2 {
		t.Fatalf("Logf got %d lines, want at least 2", len(lines))
	}
	for _, l := range lines {
		if strings.Contains(l, "sekrit") {
			t.Errorf("log line contains the key: %q", l)
		}
	}
}
