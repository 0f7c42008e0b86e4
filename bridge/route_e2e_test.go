package bridge

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
	"github.com/voipbridge/voipbridge/route/routetest"
)

const routeAgentsCSV = `pbx_id,robin_extension,name,email
201,201,Petra,petra@shop.example
202,202,Sam,sam@shop.example
203,203,Olga,olga@shop.example
`

// routeWorld is a bridge with routing against fakes of the shop, ROBIN
// (events and conversations on one listener) and Chatwoot.
type routeWorld struct {
	*testBridge
	shop     *routetest.Shop
	robin    *routetest.Robin
	chatwoot *routetest.Chatwoot
	dir      string
	env      []string
}

func startRouteWorld(t *testing.T, env ...string) *routeWorld {
	t.Helper()
	w := &routeWorld{
		shop:     routetest.NewShop(),
		robin:    routetest.NewRobin("test-key", "test-secret"),
		chatwoot: routetest.NewChatwoot(3, "cw-token"),
		dir:      t.TempDir(),
	}
	events := robintest.New(robintest.Options{APIKey: "test-key"})
	t.Cleanup(events.Close)
	w.robin.Next = events
	agents := filepath.Join(t.TempDir(), "agents.csv")
	if err := os.WriteFile(agents, []byte(routeAgentsCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	w.env = append([]string{
		"ROBIN_API_URL=" + routetest.Start(t, w.robin),
		"ROBIN_API_SECRET=test-secret",
		"EXTENSIONS_FILE=" + agents,
		"CUSTOMER_LOOKUP_URL=" + routetest.Template(routetest.Start(t, w.shop)),
		"CHATWOOT_URL=" + routetest.Start(t, w.chatwoot),
		"CHATWOOT_ACCOUNT_ID=3",
		"CHATWOOT_API_TOKEN=cw-token",
	}, env...)
	w.testBridge = startBridgeWith(t, events, w.dir, w.env...)
	return w
}

// restart stops the bridge and starts it again on the same journal.
func (w *routeWorld) restart(t *testing.T) {
	t.Helper()
	w.Stop(t)
	w.testBridge = startBridgeWith(t, w.Robin, w.dir, w.env...)
}

// route GETs /v1/route?query with the Bearer token (if any) and returns the
// status and body.
func (w *routeWorld) route(t *testing.T, query, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, w.URL+"/v1/route?"+query, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestRouteEndToEnd: a caller answered by 202 is routed back to 202 from
// the history (also after a restart); other callers are routed by ROBIN
// and Chatwoot; an unknown caller gets 404; ROUTE_TOKEN guards the
// endpoint; the metrics count look-ups and requests.
func TestRouteEndToEnd(t *testing.T) {
	w := startRouteWorld(t, "ROUTE_TOKEN=route-token")
	const robinCaller, cwCaller = "+31201110000", "+31302220000"
	w.shop.Add(routetest.Customer{Email: "ann@customer.example", Phone: robinCaller})
	w.robin.Add(routetest.RobinConversation{GUID: "g-1", State: "Open", StartDateTime: "2024-03-04T10:00:00", Customer: "ann@customer.example",
		Owner: &routetest.RobinOwner{Type: "User", Name: "Petra", EmailAddress: "petra@shop.example"}})
	w.chatwoot.AddContact(routetest.ChatwootContact{ID: 5, Name: "Bob", PhoneNumber: cwCaller})
	w.chatwoot.AddConversation(routetest.ChatwootConversation{DisplayID: 9, ContactID: 5, Status: "open",
		Assignee: &routetest.ChatwootAgent{ID: 1, Email: "olga@shop.example", AvailabilityStatus: "online"}, LastActivityAt: time.Now()})

	for _, p := range []string{generic("r1", "ringing", "202"), generic("r1", "answered", "202"), generic("r1", "ended", "202")} {
		if st := w.Post(t, "/v1/webhooks/generic", p); st != http.StatusAccepted {
			t.Fatalf("webhook: %d", st)
		}
	}
	w.WaitEvents(t, 2)

	if st, _ := w.route(t, "caller=0612345678", ""); st != http.StatusUnauthorized {
		t.Errorf("without the token: %d, want 401", st)
	}
	st, body := w.route(t, "caller=0612345678&did=%2B31858770023", "route-token")
	var j map[string]any
	_ = json.Unmarshal([]byte(body), &j)
	if st != 200 || j["extension"] != "202" || j["via"] != "history" || j["agent"] != "sam@shop.example" || j["conversation"] != "r1" {
		t.Fatalf("returning caller: %d %s", st, body)
	}
	for _, c := range []struct{ caller, ext string }{{robinCaller, "201"}, {cwCaller, "203"}} {
		if st, body := w.route(t, "format=text&caller="+c.caller, "route-token"); st != 200 || body != c.ext {
			t.Errorf("%s: %d %q, want %s", c.caller, st, body, c.ext)
		}
	}
	if st, body := w.route(t, "format=text&caller=0201234567", "route-token"); st != 404 || body != "" {
		t.Errorf("unknown caller: %d %q, want 404 and nothing", st, body)
	}
	// Only robinCaller is known to the shop: one request to ROBIN. The
	// history's answer made asking the helpdesks unnecessary.
	if n := w.robin.Requests("conversations"); n != 1 {
		t.Errorf("%d conversation requests at ROBIN, want 1", n)
	}

	want := map[string]bool{
		`voipbridge_route_lookups_total{outcome="hit",resolver="history"} 1`:                                    true,
		`voipbridge_route_lookups_total{outcome="hit",resolver="robin"} 1`:                                      true,
		`voipbridge_route_lookups_total{outcome="hit",resolver="chatwoot"} 1`:                                   true,
		`voipbridge_helpdesk_requests_total{endpoint="conversations",status="2xx"} 1`:                           true,
		`voipbridge_route_helpdesk_requests_total{endpoint="contacts/search",helpdesk="chatwoot",status="2xx"}`: false,
		`voipbridge_route_answers_total{result="none",via=""} 1`:                                                true,
	}
	got := gatherText(t, w.Bridge)
	for line, exact := range want {
		if exact && !strings.Contains(got, line+"\n") || !exact && !strings.Contains(got, line) {
			t.Errorf("metrics lack %s", line)
		}
	}
	for _, name := range []string{"voipbridge_route_lookup_duration_seconds_bucket", "voipbridge_route_cache_hits_total"} {
		if !strings.Contains(got, name) {
			t.Errorf("metrics lack %s", name)
		}
	}

	// The history is in the journal: a restarted bridge still knows.
	w.restart(t)
	if st, body := w.route(t, "format=text&caller=%2B31612345678", "route-token"); st != 200 || body != "202" {
		t.Errorf("after restart: %d %q, want 202", st, body)
	}
}

// gatherText renders the bridge's metrics in the text format, one sample a
// line.
func gatherText(t *testing.T, b *Bridge) string {
	t.Helper()
	mfs, err := b.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			name := mf.GetName()
			if m.GetHistogram() != nil {
				name += "_bucket"
				v = float64(m.GetHistogram().GetSampleCount())
			}
			fmt.Fprintf(&sb, "%s{%s} %g\n", name, strings.Join(labels, ","), v)
		}
	}
	return sb.String()
}

// TestRouteAllowCIDRs: a caller outside ROUTE_ALLOW_CIDRS is refused.
func TestRouteAllowCIDRs(t *testing.T) {
	tb := startBridge(t, "ROUTE_ALLOW_CIDRS=192.0.2.0/24")
	resp, err := http.Get(tb.URL + "/v1/route?caller=0612345678")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("from 127.0.0.1: %d, want 403", resp.StatusCode)
	}
}

// TestRouteRobinQuotaEndToEnd: with a small quota, call events and ROBIN
// look-ups together never put more requests in a second at ROBIN than the
// quota allows (counted at the fake), and every event arrives.
func TestRouteRobinQuotaEndToEnd(t *testing.T) {
	const perSecond, calls, lookups = 4, 5, 12
	w := startRouteWorld(t, fmt.Sprintf("ROBIN_RATE_LIMITS=%d/1s", perSecond), "ROUTE_ORDER=robin", "DELIVERY_WORKERS=4")
	for i := range lookups {
		num, mail := fmt.Sprintf("+3120111%04d", i), fmt.Sprintf("c%d@customer.example", i)
		w.shop.Add(routetest.Customer{Email: mail, Phone: num})
		w.robin.Add(routetest.RobinConversation{GUID: fmt.Sprint("g", i), State: "Open", Customer: mail,
			Owner: &routetest.RobinOwner{Type: "User", EmailAddress: "petra@shop.example"}})
	}
	var wg sync.WaitGroup
	for i := range calls {
		wg.Go(func() {
			id := fmt.Sprint("q", i)
			for _, p := range []string{generic(id, "answered", "201"), generic(id, "ended", "201")} {
				w.Post(t, "/v1/webhooks/generic", p)
			}
		})
	}
	routed := 0
	var mu sync.Mutex
	for i := range lookups {
		wg.Go(func() {
			if st, _ := w.route(t, fmt.Sprintf("caller=%%2B3120111%04d", i), ""); st == 200 {
				mu.Lock()
				routed++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	w.WaitEvents(t, 2*calls)
	times := w.robin.Times("")
	slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
	for i := range times {
		n := 0
		for j := i; j < len(times) && times[j].Sub(times[i]) < time.Second; j++ {
			n++
		}
		if n > perSecond {
			t.Fatalf("%d requests at ROBIN within a second; the quota is %d/s", n, perSecond)
		}
	}
	if routed == 0 {
		t.Error("no look-up was routed")
	}
	t.Logf("%d requests at ROBIN (%d events, %d conversation look-ups); %d of %d callers routed",
		len(times), 2*calls, w.robin.Requests("conversations"), routed, lookups)
}
