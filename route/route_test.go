package route

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/route/routetest"
)

// got is what a test compares of an answer.
type got struct {
	Extension, Agent, Via, Conversation string
	Result                              Result
}

func summary(a Answer) got {
	return got{a.Extension, a.Agent, a.Via, a.Conversation, a.Result}
}

func TestRouteHistoryHit(t *testing.T) {
	w := newWorld(t, loopback(t))
	r := w.router(t, Config{}, ViaHistory, ViaRobin, ViaChatwoot)
	now := time.Now()
	w.history.Record([]events.Envelope{
		answered("c1", caller, "301", now.Add(-time.Hour)),
		// Anonymous and internal callers are not recorded.
		answered("c2", "anonymous", "302", now),
		answered("c3", "201", "302", now),
	})
	a := r.Lookup(context.Background(), callerLocal)
	if diff := cmp.Diff(got{"301", petra, ViaHistory, "c1", ResultHit}, summary(a)); diff != "" {
		t.Fatalf("answer (-want +got):\n%s", diff)
	}
	if d := time.Since(a.Since); d < time.Hour || d > time.Hour+time.Minute {
		t.Errorf("since %s ago, want an hour", d)
	}
	if n := w.shop.Requests("") + w.robin.Requests("") + w.chatwoot.Requests(""); n != 0 {
		t.Errorf("a history hit cost %d helpdesk requests, want 0", n)
	}

	// A transfer moves the caller to the agent who had them last; an
	// older event seen again (a replay after restart) changes nothing.
	w2 := newWorld(t, loopback(t))
	r2 := w2.router(t, Config{}, ViaHistory)
	tr := answered("c4", caller, "303", now)
	tr.Event.Type = events.EventTransfer
	w2.history.Record([]events.Envelope{answered("c4", caller, "302", now.Add(-time.Minute)), tr})
	w2.history.Record([]events.Envelope{answered("c4", caller, "302", now.Add(-time.Minute))})
	if a := r2.Lookup(context.Background(), caller); a.Extension != "303" {
		t.Errorf("after a transfer to 303: %+v, want extension 203", a)
	}
}

func TestRouteHistoryTTLAndDirectory(t *testing.T) {
	w := newWorld(t, loopback(t))
	w.history = NewHistory(HistoryOptions{Agents: w.agents, TTL: 24 * time.Hour})
	r := w.router(t, Config{}, ViaHistory)
	w.history.Record([]events.Envelope{
		answered("old", caller, "301", time.Now().Add(-25*time.Hour)),
		answered("gone", "+31201234567", "399", time.Now()),
	})
	for _, num := range []string{caller, "+31201234567"} {
		if a := r.Lookup(context.Background(), num); a.Extension != "" || a.Result != ResultNone {
			t.Errorf("%s: %+v, want no agent", num, a)
		}
	}
}

// TestRouteHistoryDurable checks that records reach the store and are read
// back by a new History (a restart).
func TestRouteHistoryDurable(t *testing.T) {
	w := newWorld(t, loopback(t))
	store := &memStore{m: map[string][]byte{}}
	h := NewHistory(HistoryOptions{Store: store, Agents: w.agents})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	h.Record([]events.Envelope{answered("c1", caller, "302", time.Now())})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	h2 := NewHistory(HistoryOptions{Store: store, Agents: w.agents})
	m, err := h2.Resolve(context.Background(), caller)
	if err != nil || m.Extension != "302" {
		t.Fatalf("after restart: %+v, %v; want extension 202", m, err)
	}
}

func TestRouteRobinHit(t *testing.T) {
	w := newWorld(t, loopback(t))
	w.robin.Add(openRobin("old", sam, "2024-01-02T10:00:00"))
	w.robin.Add(openRobin("new", petra, "2024-03-04T10:00:00"))
	archived := openRobin("archived", olga, "2024-05-06T10:00:00")
	archived.State = "Archived"
	w.robin.Add(archived)
	r := w.router(t, Config{}, ViaHistory, ViaRobin, ViaChatwoot)
	a := r.Lookup(context.Background(), "0031612345678")
	if diff := cmp.Diff(got{"301", petra, ViaRobin, "new", ResultHit}, summary(a)); diff != "" {
		t.Fatalf("answer (-want +got):\n%s", diff)
	}
	// The second look-up is the cache's: no request.
	if a := r.Lookup(context.Background(), caller); a.Result != ResultCached || a.Extension != "301" {
		t.Fatalf("second look-up: %+v", a)
	}
	if s, c := w.shop.Requests(""), w.robin.Requests("conversations"); s != 1 || c != 1 {
		t.Errorf("shop %d, ROBIN %d requests; want 1 each", s, c)
	}
	if n := w.chatwoot.Requests(""); n != 0 {
		t.Errorf("Chatwoot asked %d times after ROBIN named the agent", n)
	}
}

func TestRouteChatwootHit(t *testing.T) {
	w := newWorld(t, loopback(t))
	var queries []string
	var mu sync.Mutex
	inner := w.chatwoot
	spy := http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.URL.RawQuery)
		mu.Unlock()
		inner.ServeHTTP(rw, r)
	})
	// Two contacts whose numbers contain the caller's: the search finds
	// both, only the exact one counts.
	inner.AddContact(routetest.ChatwootContact{ID: 11, Name: "Nick", PhoneNumber: caller})
	inner.AddContact(routetest.ChatwootContact{ID: 12, Name: "Anna", PhoneNumber: caller + "9"})
	now := time.Now()
	inner.AddConversation(routetest.ChatwootConversation{DisplayID: 1, ContactID: 11, Status: "resolved", Assignee: agent(3, olga, "online"), LastActivityAt: now})
	inner.AddConversation(routetest.ChatwootConversation{DisplayID: 2, ContactID: 11, Status: "open", Assignee: agent(2, sam, "busy"), LastActivityAt: now.Add(-time.Hour)})
	inner.AddConversation(routetest.ChatwootConversation{DisplayID: 3, ContactID: 12, Status: "open", Assignee: agent(1, petra, "online"), LastActivityAt: now})

	hc, u := w.client(spy)
	cw, err := NewChatwoot(context.Background(), ChatwootOptions{URL: u, AccountID: "7", Token: cwToken, HTTPClient: hc,
		SkipOffline: true, Wait: time.Second, Numbers: w.numbers, Agents: w.agents})
	if err != nil {
		t.Fatal(err)
	}
	r, err := New(Options{Resolvers: []Resolver{w.history, cw}, Numbers: w.numbers})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	a := r.Lookup(context.Background(), callerLocal)
	if diff := cmp.Diff(got{"302", sam, ViaChatwoot, "2", ResultHit}, summary(a)); diff != "" {
		t.Fatalf("answer (-want +got):\n%s", diff)
	}
	if inner.Requests("contacts/search") != 1 || inner.Requests("contact conversations") != 1 {
		t.Errorf("requests: %d searches, %d conversation lists; want 1 and 1 (only the exact contact)",
			inner.Requests("contacts/search"), inner.Requests("contact conversations"))
	}
	if len(queries) == 0 || !strings.Contains(queries[0], "q=%2B31612345678") {
		t.Errorf("search query %q: want the number with + escaped as %%2B", queries)
	}
}

func TestRouteSkips(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name   string
		setup  func(w *world)
		order  []string
		reason string
	}{
		{"chatwoot assignee offline", func(w *world) {
			w.chatwoot.AddContact(routetest.ChatwootContact{ID: 11, Name: "Nick", PhoneNumber: caller})
			w.chatwoot.AddConversation(routetest.ChatwootConversation{DisplayID: 5, ContactID: 11, Status: "open", Assignee: agent(1, petra, "offline"), LastActivityAt: now})
		}, []string{ViaChatwoot}, "offline"},
		{"chatwoot conversation unassigned", func(w *world) {
			w.chatwoot.AddContact(routetest.ChatwootContact{ID: 11, Name: "Nick", PhoneNumber: caller})
			w.chatwoot.AddConversation(routetest.ChatwootConversation{DisplayID: 5, ContactID: 11, Status: "open", LastActivityAt: now})
		}, []string{ViaChatwoot}, "no assignee"},
		{"chatwoot assignee not in the directory", func(w *world) {
			w.chatwoot.AddContact(routetest.ChatwootContact{ID: 11, Name: "Nick", PhoneNumber: caller})
			w.chatwoot.AddConversation(routetest.ChatwootConversation{DisplayID: 5, ContactID: 11, Status: "open", Assignee: agent(9, stranger, "online"), LastActivityAt: now})
		}, []string{ViaChatwoot}, "not in the directory"},
		{"robin owner not in the directory", func(w *world) {
			w.robin.Add(openRobin("g1", stranger, "2024-03-04T10:00:00"))
		}, []string{ViaRobin}, "not in the directory"},
		{"robin conversation owned by nobody", func(w *world) {
			c := openRobin("g1", petra, "2024-03-04T10:00:00")
			c.Owner = nil
			w.robin.Add(c)
		}, []string{ViaRobin}, "no open conversation has an owner"},
		{"no conversation anywhere", func(w *world) {}, []string{ViaHistory, ViaRobin, ViaChatwoot}, "no open conversation"},
		{"caller unknown to the shop", func(w *world) {
			w.shop = routetest.NewShop()
		}, []string{ViaRobin}, "no customer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t, loopback(t))
			tt.setup(w)
			r := w.router(t, Config{}, tt.order...)
			srv := httptest.NewServer(r)
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/v1/route?caller=" + caller)
			if err != nil {
				t.Fatal(err)
			}
			var j jsonAnswer
			_ = json.NewDecoder(resp.Body).Decode(&j)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || j.Extension != "" || !strings.Contains(j.Reason, tt.reason) {
				t.Fatalf("status %d, %+v; want 404 with a reason containing %q", resp.StatusCode, j, tt.reason)
			}
			// The text form is empty, for call flows that read the body as
			// the extension.
			resp, err = http.Get(srv.URL + "/v1/route?format=text&caller=" + caller)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound || len(b) != 0 || resp.Header.Get("X-Route-Reason") == "" {
				t.Errorf("text: status %d, body %q, reason %q", resp.StatusCode, b, resp.Header.Get("X-Route-Reason"))
			}
		})
	}
}

func TestRouteHandler(t *testing.T) {
	w := newWorld(t, loopback(t))
	r := w.router(t, Config{}, ViaHistory)
	w.history.Record([]events.Envelope{answered("c1", caller, "301", time.Now().Add(-90*time.Second))})
	srv := httptest.NewServer(r)
	defer srv.Close()
	get := func(q string) (int, http.Header, string) {
		t.Helper()
		resp, err := http.Get(srv.URL + "/v1/route?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	// A PBX sends the + unescaped; form decoding would make it a space.
	status, h, body := get("caller=+31612345678&did=0858770023")
	var j map[string]any
	if err := json.Unmarshal([]byte(body), &j); err != nil || status != 200 || h.Get("Content-Type") != "application/json" {
		t.Fatalf("JSON: %d %q %v", status, body, err)
	}
	age, _ := j["age_s"].(float64)
	delete(j, "age_s")
	want := map[string]any{"extension": "301", "pbx_id": "201", "agent": petra, "via": "history", "conversation": "c1",
		"caller": caller, "did": "+31858770023"}
	if diff := cmp.Diff(want, j, cmpopts.EquateEmpty()); diff != "" || age < 89 || age > 120 {
		t.Errorf("JSON (-want +got):\n%s\nage_s %v", diff, age)
	}
	if status, h, body := get("format=text&caller=06+1234+5678"); status != 200 || body != "301" || !strings.HasPrefix(h.Get("Content-Type"), "text/plain") {
		t.Errorf("text: %d %q %q", status, body, h.Get("Content-Type"))
	}
	if status, _, body := get("format=text"); status != 400 || body != "" {
		t.Errorf("no caller, text: %d %q; want 400 and an empty body", status, body)
	}
	if status, _, body := get(""); status != 400 || !strings.Contains(body, "caller is required") {
		t.Errorf("no caller: %d %q", status, body)
	}
	if status, _, body := get("caller=anonymous"); status != 404 || !strings.Contains(body, "anonymous") {
		t.Errorf("anonymous: %d %q", status, body)
	}
	if status, _, _ := get("caller=1&format=xml"); status != 400 {
		t.Errorf("format=xml: %d", status)
	}
	resp, err := http.Post(srv.URL+"/v1/route?caller=1", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

// TestRouteOneFlight sends 200 look-ups for one caller at once: they share
// one request per helpdesk.
func TestRouteOneFlight(t *testing.T) {
	w := newWorld(t, loopback(t))
	// ROBIN knows no open conversation, so Chatwoot is asked too.
	w.chatwoot.AddContact(routetest.ChatwootContact{ID: 11, Name: "Nick", PhoneNumber: caller})
	w.chatwoot.AddConversation(routetest.ChatwootConversation{DisplayID: 4, ContactID: 11, Status: "open", Assignee: agent(1, olga, "online"), LastActivityAt: time.Now()})
	// Slow enough that every look-up arrives while the flight is out.
	for _, f := range []interface{ SetDelay(time.Duration) }{w.shop, w.robin, w.chatwoot} {
		f.SetDelay(50 * time.Millisecond)
	}
	r := w.router(t, Config{Timeout: 5 * time.Second}, ViaHistory, ViaRobin, ViaChatwoot)
	var wg sync.WaitGroup
	answers := make([]Answer, 200)
	for i := range answers {
		wg.Go(func() { answers[i] = r.Lookup(context.Background(), caller) })
	}
	wg.Wait()
	for i, a := range answers {
		if a.Extension != "303" || a.Via != ViaChatwoot {
			t.Fatalf("look-up %d: %+v", i, a)
		}
	}
	counts := map[string]int{
		"shop":                  w.shop.Requests(""),
		"robin":                 w.robin.Requests(""),
		"chatwoot search":       w.chatwoot.Requests("contacts/search"),
		"chatwoot conversation": w.chatwoot.Requests("contact conversations"),
	}
	want := map[string]int{"shop": 1, "robin": 1, "chatwoot search": 1, "chatwoot conversation": 1}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("requests for 200 look-ups (-want +got):\n%s", diff)
	}
}

// TestRouteRobinFailures: ROBIN refusing the credentials, or answering
// something that is not the documented JSON, is a failure (404 with the
// reason, nothing cached as "none"), and a 401 does not open the breaker.
func TestRouteRobinFailures(t *testing.T) {
	w := newWorld(t, loopback(t))
	w.robin.Add(openRobin("g1", petra, "2024-03-04T10:00:00"))
	w.robin.Secret = "another-secret"
	r := w.router(t, Config{}, ViaRobin)
	a := r.Lookup(context.Background(), caller)
	if a.Extension != "" || a.Result != ResultError || !strings.Contains(a.Reason, "status 401") {
		t.Errorf("wrong secret: %+v", a)
	}
	if st := w.breaker.State(); st != "closed" {
		t.Errorf("breaker %s after a 401", st)
	}
	if strings.Contains(a.Reason, robinSecret) || strings.Contains(a.Reason, robinKey) {
		t.Errorf("reason shows a credential: %q", a.Reason)
	}

	w2 := newWorld(t, loopback(t))
	garbage := http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(rw, "<html>maintenance</html>") })
	rc, ru := w2.client(garbage)
	res := w2.robinResolver(t, time.Second)
	cl, err := robin.NewClient(robin.Config{APIURL: ru, APIKey: robinKey, APISecret: robinSecret, HTTPClient: rc})
	if err != nil {
		t.Fatal(err)
	}
	res.Conversations = cl
	if _, err := res.Resolve(context.Background(), caller); err == nil || errors.Is(err, ErrNoMatch) || !errors.Is(err, robin.ErrUnexpectedBody) {
		t.Errorf("HTML answer: %v, want a failure", err)
	}
}
