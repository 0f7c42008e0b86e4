package bridge

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// presenceGet GETs path on the bridge with the Accept header and returns
// the status, the body and the header.
func presenceGet(t *testing.T, c *http.Client, url, accept string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// presenceRequests counts the requests the fake ROBIN saw on its presence
// endpoint for channel and referrer.
func presenceRequests(fake *robintest.Server, channel, referrer string) int {
	n := 0
	for _, r := range fake.Requests() {
		if r.Endpoint == robintest.EndpointPresence && r.Query.Get("Channel") == channel && r.Query.Get("referrer") == referrer {
			n++
		}
	}
	return n
}

// TestPresenceEndToEnd: GET /v1/presence through a whole bridge against the
// fake ROBIN: text and JSON answers, 1 000 concurrent look-ups of one key
// costing one request to ROBIN, phone-number referrers in E.164, a 400 for
// an unknown channel, a cached 404, metrics, and no API key anywhere.
func TestPresenceEndToEnd(t *testing.T) {
	tb := startBridge(t, "PRESENCE_EXTRA_CHANNELS=Carrier Pigeon", "PRESENCE_TTL=5m")
	tb.Robin.SetPresence("Chat", "", true)
	tb.Robin.SetPresence("WhatsApp", "+31858770023", true)
	// 1000 look-ups at once over at most 256 connections (an IVR's pool):
	// more connections than HTTP_MAX_CONNS (512) would have those still
	// sending their headers shed, by design.
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	var seen strings.Builder

	st, body, h := presenceGet(t, client, tb.URL+"/v1/presence?channel=chat", "")
	if st != 200 || body != "Online" || h.Get("Content-Type") != "text/plain; charset=utf-8" || h.Get("X-Presence-Stale") != "false" {
		t.Fatalf("GET channel=chat: %d %q %v; want 200 Online as text", st, body, h)
	}
	seen.WriteString(body)

	const n = 1000
	url := tb.URL + "/v1/presence?channel=WhatsApp&referrer=085+877+0023"
	var wg sync.WaitGroup
	var mu sync.Mutex
	bad := map[string]int{}
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			resp, err := client.Do(req)
			if err != nil {
				mu.Lock()
				bad[err.Error()]++
				mu.Unlock()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != "Online" {
				mu.Lock()
				bad[resp.Status+" "+string(b)]++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(bad) > 0 {
		t.Fatalf("of %d concurrent look-ups, these failed: %v", n, bad)
	}
	if got := presenceRequests(tb.Robin, "WhatsApp", "+31858770023"); got != 1 {
		t.Fatalf("%d concurrent look-ups made %d requests to ROBIN; want exactly 1", n, got)
	}

	st, body, _ = presenceGet(t, client, tb.URL+"/v1/presence?channel=whatsapp&referrer=%2B31858770023", "application/json")
	var j struct {
		Channel, Referrer, Status string
		CheckedAt                 string `json:"checked_at"`
		Stale                     bool
	}
	if err := json.Unmarshal([]byte(body), &j); err != nil || st != 200 {
		t.Fatalf("JSON answer %d %q: %v", st, body, err)
	}
	if j.Channel != "WhatsApp" || j.Referrer != "+31858770023" || j.Status != "Online" || j.Stale || j.CheckedAt == "" {
		t.Errorf("JSON answer %+v", j)
	}
	seen.WriteString(body)

	st, body, _ = presenceGet(t, client, tb.URL+"/v1/presence?channel=Telegram", "")
	if st != 400 || !strings.Contains(body, "Apple Business Chat") || !strings.Contains(body, "Carrier Pigeon") {
		t.Errorf("unknown channel: %d %q; want 400 naming the valid channels", st, body)
	}
	seen.WriteString(body)
	for range 3 {
		st, body, _ = presenceGet(t, client, tb.URL+"/v1/presence?channel=carrier+pigeon", "")
		if st != 404 || !strings.Contains(body, "status 404") {
			t.Errorf("channel ROBIN does not know: %d %q; want 404", st, body)
		}
		seen.WriteString(body)
	}
	if got := presenceRequests(tb.Robin, "Carrier Pigeon", ""); got != 1 {
		t.Errorf("ROBIN asked %d times about a channel it does not know; want 1 (cached)", got)
	}

	_, metrics, _ := presenceGet(t, client, tb.URL+"/metrics", "")
	for _, want := range []string{
		`voipbridge_helpdesk_requests_total{endpoint="presence",status="2xx"} 2`,
		`voipbridge_helpdesk_requests_total{endpoint="presence",status="4xx"} 1`,
		`voipbridge_presence_lookups_total{result="invalid"} 1`,
		`voipbridge_presence_robin_duration_seconds_count 3`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Every valid look-up was answered by ROBIN (miss: Chat, Carrier
	// Pigeon, and the WhatsApp look-ups that shared the one request) or by
	// the cache (hit).
	hit, miss := presenceMetric(t, metrics, `voipbridge_presence_lookups_total{result="hit"}`), presenceMetric(t, metrics, `voipbridge_presence_lookups_total{result="miss"}`)
	if hit+miss != 1+n+1+3 || miss < 3 {
		t.Errorf("look-ups: %v hits and %v misses; want %d in all, at least 3 misses", hit, miss, 1+n+1+3)
	}
	seen.WriteString(metrics)
	if strings.Contains(seen.String(), "test-key") {
		t.Errorf("the API key appears in an answer or the metrics")
	}
}

// TestPresenceStaleEndToEnd: when ROBIN starts failing, the bridge serves
// the last answer marked stale, and asks ROBIN about the key at most once
// per TTL.
func TestPresenceStaleEndToEnd(t *testing.T) {
	tb := startBridge(t, "PRESENCE_TTL=1s", "PRESENCE_TIMEOUT=5s")
	tb.Robin.SetPresence("SMS", "shop.example.com", true)
	client := &http.Client{Timeout: 30 * time.Second}
	url := tb.URL + "/v1/presence?channel=SMS&referrer=shop.example.com"
	if st, body, _ := presenceGet(t, client, url, ""); st != 200 || body != "Online" {
		t.Fatalf("GET: %d %q", st, body)
	}
	tb.Robin.SetFault(robintest.Fault{Status: 503, Endpoint: robintest.EndpointPresence})
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		st, body, h := presenceGet(t, client, url, "")
		if h.Get("X-Presence-Stale") == "true" {
			if st != 200 || body != "Online" || h.Get("Age") == "" {
				t.Errorf("stale answer: %d %q Age %q; want 200 Online with an Age", st, body, h.Get("Age"))
			}
			break
		}
		if st != 200 || body != "Online" {
			t.Fatalf("before the TTL ran out: %d %q; want the cached Online", st, body)
		}
		if time.Now().After(deadline) {
			t.Fatal("no stale answer within 20s of ROBIN failing with a 1s TTL")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 20 {
		if st, body, h := presenceGet(t, client, url, ""); st != 200 || body != "Online" || h.Get("X-Presence-Stale") != "true" {
			t.Fatalf("while ROBIN fails: %d %q stale=%q; want stale Online", st, body, h.Get("X-Presence-Stale"))
		}
	}
	// One answer, then at most one failed request per started second.
	elapsed := time.Since(start)
	if got, max := presenceRequests(tb.Robin, "SMS", "shop.example.com"), 2+int(elapsed/time.Second); got > max {
		t.Errorf("%d requests to ROBIN in %s with a 1s TTL; want at most %d", got, elapsed, max)
	}
}

// TestPresenceWarmEndToEnd: with PRESENCE_WARM the bridge asks ROBIN about
// the warm keys before any caller does, and a look-up of one (spelled
// differently) costs no further request. (That a warm key's look-up never
// waits is tested with a fake clock in the presence package.)
func TestPresenceWarmEndToEnd(t *testing.T) {
	// ROBIN knows the answer before the bridge starts: the warm-up asks at
	// once (setting it after the start raced the warm-up, 1 in 12 runs).
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key"})
	t.Cleanup(fake.Close)
	fake.SetPresence("Email", "+31858770023", true)
	tb := startBridgeWith(t, fake, t.TempDir(), "PRESENCE_WARM=Chat,Email|+31 85 877 0023;WebChat")
	warm := func() int {
		return presenceRequests(tb.Robin, "Chat", "+31858770023") + presenceRequests(tb.Robin, "Email", "+31858770023") +
			presenceRequests(tb.Robin, "WebChat", "")
	}
	deadline := time.Now().Add(20 * time.Second)
	for warm() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the warm keys were not asked within 20s; ROBIN saw %d requests", len(tb.Robin.Requests()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	client := &http.Client{Timeout: 30 * time.Second}
	for range 5 {
		if st, body, _ := presenceGet(t, client, tb.URL+"/v1/presence?channel=email&referrer=0858770023", ""); st != 200 || body != "Online" {
			t.Fatalf("warm key: %d %q; want Online", st, body)
		}
	}
	if got := presenceRequests(tb.Robin, "Email", "+31858770023"); got != 1 {
		t.Errorf("ROBIN asked %d times about the warm key; want 1", got)
	}
	if got := len(tb.Robin.Requests()); got != 3 {
		t.Errorf("ROBIN saw %d requests; want the 3 warm keys only", got)
	}
}

// presenceMetric returns the value of the sample named name (with its
// labels) in a text exposition.
func presenceMetric(t *testing.T, metrics, name string) float64 {
	t.Helper()
	for line := range strings.SplitSeq(metrics, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// TestPresenceAllowList: with PRESENCE_ALLOW_CIDRS, a caller outside the
// list gets 403 and costs no request to ROBIN.
func TestPresenceAllowList(t *testing.T) {
	outside := startBridge(t, "PRESENCE_ALLOW_CIDRS=10.0.0.0/8")
	resp, err := http.Get(outside.URL + "/v1/presence?channel=Chat")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("caller outside the list: %d, want 403", resp.StatusCode)
	}
	if n := len(outside.Robin.Requests()); n != 0 {
		t.Fatalf("%d requests reached ROBIN for a refused caller", n)
	}
	inside := startBridge(t, "PRESENCE_ALLOW_CIDRS=127.0.0.0/8,::1")
	resp, err = http.Get(inside.URL + "/v1/presence?channel=Chat")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("caller inside the list: %d, want 200", resp.StatusCode)
	}
	if _, err := LoadConfig([]string{"ROBIN_API_KEY=k", "WEBHOOK_TOKEN=t", "PRESENCE_ALLOW_CIDRS=10.0.0.0/33"}); err == nil || !strings.Contains(err.Error(), "PRESENCE_ALLOW_CIDRS") {
		t.Fatalf("bad CIDR: %v", err)
	}
}
