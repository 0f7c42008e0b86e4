package presence

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// get sends GET target to the cache's handler with the given Accept header.
func get(t *testing.T, h http.Handler, target, accept string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, target, nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Result()
}

func body(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func decode(t *testing.T, resp *http.Response) jsonAnswer {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q; want application/json", ct)
	}
	var j jsonAnswer
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return j
}

// TestHandlerText: by default the answer is text/plain Online or Offline
// without a newline, with the stale marker, Age and no-store.
func TestHandlerText(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, testConfig)
		defer e.close()
		e.fake.SetPresence("Chat", "", true)

		resp := get(t, e.cache, "/v1/presence?channel=chat", "")
		if got := body(t, resp); resp.StatusCode != 200 || got != "Online" {
			t.Fatalf("GET = %d %q; want 200 Online", resp.StatusCode, got)
		}
		for name, want := range map[string]string{
			"Content-Type": "text/plain; charset=utf-8", "Cache-Control": "no-store", HeaderStale: "false", "Age": "0",
			"Vary": "Accept", HeaderFallback: "",
		} {
			if got := resp.Header.Get(name); got != want {
				t.Errorf("%s: %q; want %q", name, got, want)
			}
		}
		time.Sleep(7 * time.Second)
		resp = get(t, e.cache, "/v1/presence?Channel=Chat&referrer=", "text/plain")
		if got := body(t, resp); got != "Online" || resp.Header.Get("Age") != "7" {
			t.Errorf("GET with Channel= after 7s: %q, Age %q; want Online, Age 7", got, resp.Header.Get("Age"))
		}
		resp = get(t, e.cache, "/v1/presence?channel=SMS", "")
		if got := body(t, resp); got != "Offline" {
			t.Errorf("GET SMS = %q; want Offline", got)
		}
	})
}

// TestHandlerJSON: application/json (by Accept or format=json) gets the
// JSON answer.
func TestHandlerJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, testConfig)
		defer e.close()
		e.fake.SetPresence("WhatsApp", "+31858770023", true)
		now := time.Now().UTC().Format(checkedAtLayout)

		for _, tc := range []struct{ target, accept string }{
			{"/v1/presence?channel=WhatsApp&referrer=0858770023", "application/json"},
			{"/v1/presence?channel=WhatsApp&referrer=%2B31858770023&format=json", ""},
			{"/v1/presence?channel=whatsapp&referrer=%2B31+85+877+0023", "text/html, application/json;q=0.9, */*;q=0.1"},
		} {
			resp := get(t, e.cache, tc.target, tc.accept)
			want := jsonAnswer{Channel: "WhatsApp", Referrer: "+31858770023", Status: "Online", CheckedAt: now}
			if diff := cmp.Diff(want, decode(t, resp)); diff != "" || resp.StatusCode != 200 {
				t.Errorf("GET %s (Accept %q): %d (-want +got):\n%s", tc.target, tc.accept, resp.StatusCode, diff)
			}
		}
		resp := get(t, e.cache, "/v1/presence?channel=Chat&format=text", "application/json")
		if got := body(t, resp); got != "Offline" {
			t.Errorf("format=text with Accept JSON: %q; want text Offline", got)
		}
		resp = get(t, e.cache, "/v1/presence?channel=Chat&format=xml", "")
		if resp.StatusCode != 400 || !strings.Contains(body(t, resp), "format") {
			t.Errorf("format=xml: %d; want 400 naming format", resp.StatusCode)
		}
	})
}

// TestWantsJSON: content negotiation by the Accept header.
func TestWantsJSON(t *testing.T) {
	for accept, want := range map[string]bool{
		"":                                     false,
		"application/json":                     true,
		"Application/JSON":                     true,
		"text/plain":                           false,
		"*/*":                                  false,
		"application/json, text/plain":         false, // a tie goes to text
		"text/plain;q=0.5, application/json":   true,
		"application/json;q=0.4, text/*;q=0.5": false,
		"application/*":                        true,
		"application/json;q=0":                 false,
		"text/html":                            false,
		"application/json;q=bogus":             true,
		"text/plain;q=0, */*":                  true,
		"application/xml, */*;q=0.1":           false,
	} {
		if got := wantsJSON(accept); got != want {
			t.Errorf("wantsJSON(%q) = %v; want %v", accept, got, want)
		}
	}
}

// TestHandlerErrors: 400 names the valid channels, 404 carries ROBIN's
// reason, 503 says why presence is unknown, 405 for other methods.
func TestHandlerErrors(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig
		cfg.ExtraChannels = []string{"Pigeon"}
		e := newEnv(t, cfg)
		defer e.close()

		resp := get(t, e.cache, "/v1/presence?channel=Telegram", "")
		txt := body(t, resp)
		if resp.StatusCode != 400 || !strings.Contains(txt, "Telegram") || !strings.Contains(txt, "Email, Chat, WhatsApp") || !strings.Contains(txt, "Pigeon") {
			t.Errorf("unknown channel: %d %q; want 400 naming the valid channels", resp.StatusCode, txt)
		}
		j := decode(t, get(t, e.cache, "/v1/presence?channel=", "application/json"))
		if len(j.Channels) != len(DocumentedChannels)+1 || !strings.Contains(j.Error, "missing") {
			t.Errorf("missing channel, JSON: %+v; want the error and the channel list", j)
		}
		for _, q := range []string{"channel=Chat;referrer=x", "channel=%zz", "referrer=a%00b&channel=Chat", strings.Repeat("a=1&", 40) + "channel=Chat"} {
			if resp := get(t, e.cache, "/v1/presence?"+q, ""); resp.StatusCode != 400 {
				t.Errorf("query %q: %d; want 400", q, resp.StatusCode)
			}
		}

		resp = get(t, e.cache, "/v1/presence?channel=pigeon&referrer=loft", "")
		txt = body(t, resp)
		if resp.StatusCode != 404 || !strings.Contains(txt, `"Pigeon"`) || !strings.Contains(txt, "status 404") {
			t.Errorf("unknown at ROBIN: %d %q; want 404 with ROBIN's status", resp.StatusCode, txt)
		}
		j = decode(t, get(t, e.cache, "/v1/presence?channel=pigeon&referrer=loft", "application/json"))
		if j.RobinStatus != 404 || j.Channel != "Pigeon" || j.Referrer != "loft" || j.CheckedAt == "" || j.Status != "" {
			t.Errorf("404 JSON: %+v", j)
		}

		e.fake.SetFault(robintest.Fault{Status: 500, Body: "boom"})
		resp = get(t, e.cache, "/v1/presence?channel=Chat", "")
		txt = body(t, resp)
		if resp.StatusCode != 503 || !strings.Contains(txt, "presence unknown") || !strings.Contains(txt, "status 500: boom") {
			t.Errorf("ROBIN failing, nothing known: %d %q; want 503 saying why", resp.StatusCode, txt)
		}

		req := httptest.NewRequest(http.MethodPost, "/v1/presence?channel=Chat", nil)
		rec := httptest.NewRecorder()
		e.cache.ServeHTTP(rec, req)
		if rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("POST: %d Allow %q; want 405", rec.Code, rec.Header().Get("Allow"))
		}
	})
}

// TestHandlerStaleAndFallback: the markers of a stale answer and of the
// fallback, in headers and JSON.
func TestHandlerStaleAndFallback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig
		cfg.Fallback = FallbackOnline
		e := newEnv(t, cfg)
		defer e.close()
		checked := time.Now().UTC().Format(checkedAtLayout)
		get(t, e.cache, "/v1/presence?channel=Chat", "") // Offline, cached

		e.fake.SetFault(robintest.Fault{Status: 503})
		time.Sleep(cfg.TTL + 5*time.Second)
		resp := get(t, e.cache, "/v1/presence?channel=Chat", "")
		if got := body(t, resp); got != "Offline" || resp.Header.Get(HeaderStale) != "true" || resp.Header.Get("Age") != "20" {
			t.Errorf("stale: %q, %s %q, Age %q; want Offline, stale, Age 20", got, HeaderStale, resp.Header.Get(HeaderStale), resp.Header.Get("Age"))
		}
		j := decode(t, get(t, e.cache, "/v1/presence?channel=Chat", "application/json"))
		if !j.Stale || j.Status != "Offline" || j.CheckedAt != checked || j.Reason == "" || j.Fallback {
			t.Errorf("stale JSON: %+v", j)
		}

		resp = get(t, e.cache, "/v1/presence?channel=SMS", "")
		if got := body(t, resp); got != "Online" || resp.Header.Get(HeaderFallback) != "true" || resp.Header.Get(HeaderStale) != "" || resp.Header.Get("Age") != "" {
			t.Errorf("fallback: %q, headers %v; want Online marked as fallback", got, resp.Header)
		}
		j = decode(t, get(t, e.cache, "/v1/presence?channel=SMS", "application/json"))
		if !j.Fallback || j.Status != "Online" || j.CheckedAt != "" || j.Stale {
			t.Errorf("fallback JSON: %+v", j)
		}
	})
}

// TestMetrics: look-ups are counted by result and timed; ROBIN's latency is
// recorded.
func TestMetrics(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		cfg := testConfig
		cfg.Fallback = FallbackOffline
		e := newEnv(t, cfg, func(o *Options) { o.Registry = reg })
		defer e.close()
		get(t, e.cache, "/v1/presence?channel=Chat", "")     // miss
		get(t, e.cache, "/v1/presence?channel=Chat", "")     // hit
		get(t, e.cache, "/v1/presence?channel=Chat", "")     // hit
		get(t, e.cache, "/v1/presence?channel=Nope", "")     // invalid
		get(t, e.cache, "/v1/presence?channel=Chat&x=%", "") // invalid query
		e.fake.SetFault(robintest.Fault{Status: 503})
		get(t, e.cache, "/v1/presence?channel=SMS", "") // fallback
		time.Sleep(cfg.TTL)
		get(t, e.cache, "/v1/presence?channel=Chat", "") // stale

		m := scrape(t, reg)
		for name, want := range map[string]float64{
			`voipbridge_presence_lookups_total{result="hit"}`:                 2,
			`voipbridge_presence_lookups_total{result="miss"}`:                1,
			`voipbridge_presence_lookups_total{result="invalid"}`:             2,
			`voipbridge_presence_lookups_total{result="fallback"}`:            1,
			`voipbridge_presence_lookups_total{result="stale"}`:               1,
			`voipbridge_presence_lookups_total{result="error"}`:               0,
			`voipbridge_presence_lookup_duration_seconds_count{result="hit"}`: 2,
			`voipbridge_presence_robin_duration_seconds_count`:                3,
			`voipbridge_presence_cache_entries`:                               2,
		} {
			if got, ok := m[name]; !ok || got != want {
				t.Errorf("%s = %v (present %v); want %v", name, got, ok, want)
			}
		}
	})
}

// scrape returns every sample of reg by its name and labels, as the text
// exposition format writes them.
func scrape(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	out := map[string]float64{}
	for line := range strings.SplitSeq(rec.Body.String(), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// TestKeyNeverLeaks: whatever ROBIN answers (its bodies even quote the key),
// the API key appears in no log line, error, answer, header or metric.
func TestKeyNeverLeaks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		cfg := testConfig
		cfg.ExtraChannels = []string{"Pigeon"}
		e := newEnv(t, cfg, func(o *Options) { o.Registry = reg })
		defer e.close()

		faults := []robintest.Fault{
			{Status: 500, Body: "internal error for apikey=" + testKey},
			{Status: 404, Body: "unknown subscription " + testKey},
			{Status: 400, Body: "bad request ?apikey=" + testKey},
			{Status: 401, Body: "key " + testKey + " revoked"},
			{Status: 429, Body: testKey + " over limit"},
			{Status: 200, Body: "Online for " + testKey}, // unexpected body
			{Reset: true},
			{Hang: true},
		}
		var seen strings.Builder
		for i, f := range faults {
			e.fake.SetFault(f)
			ref := "ref-" + strconv.Itoa(i)
			for _, accept := range []string{"", "application/json"} {
				resp := get(t, e.cache, "/v1/presence?channel=Chat&referrer="+ref, accept)
				seen.WriteString(body(t, resp))
				for k, v := range resp.Header {
					seen.WriteString(k + ": " + strings.Join(v, ",") + "\n")
				}
			}
			a, err := e.cache.Lookup(context.Background(), "Pigeon", ref)
			seen.WriteString(a.Reason)
			if err != nil {
				seen.WriteString(err.Error())
			}
			time.Sleep(cfg.TTL + time.Second)
			resp := get(t, e.cache, "/v1/presence?channel=Chat&referrer="+ref, "application/json") // stale or held
			seen.WriteString(body(t, resp))
			time.Sleep(15 * time.Second) // let a hanging request end
		}
		if !strings.Contains(seen.String(), "[redacted]") {
			t.Errorf("no answer quoted ROBIN's (redacted) body; the test does not see what it should:\n%s", seen.String())
		}
		noKey(t, "answers and errors", seen.String())
		synctest.Wait() // log lines come from the goroutines that asked ROBIN
		noKey(t, "logs", e.logs.String())
		rec := httptest.NewRecorder()
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		noKey(t, "metrics", rec.Body.String())
		if e.logs.String() == "" {
			t.Error("nothing was logged; the test does not exercise the logs")
		}
	})
}
