package bridge

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/webhook"
)

// TestWebhookRequestsMetric: every webhook request is counted once by
// source and the status it got, whether the guard refused it (401, 403,
// 413, 400) or the source answered (202, 503).
func TestWebhookRequestsMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	g := &webhook.Guard{Token: "tok", MaxBody: 1024, Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Observe: webhookRequests(reg)}
	src := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if string(body) == "journal down" {
			webhook.WriteJournalError(w, context.DeadlineExceeded)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	h := g.Wrap("generic", src)
	do := func(remote, token, body string) int {
		req := httptest.NewRequest(http.MethodPost, "/v1/webhooks/generic", strings.NewReader(body))
		req.RemoteAddr = remote + ":40000"
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, r := range []struct {
		remote, token, body string
		want                int
	}{
		{"127.0.0.1", "tok", "{}", 202},
		{"127.0.0.1", "tok", "{}", 202},
		{"127.0.0.1", "wrong", "{}", 401},
		{"192.0.2.7", "tok", "{}", 403},
		{"127.0.0.1", "tok", strings.Repeat("x", 2000), 413},
		{"127.0.0.1", "tok", "journal down", 503},
	} {
		if got := do(r.remote, r.token, r.body); got != r.want {
			t.Errorf("%+v: status %d", r, got)
		}
	}
	want := map[string]float64{"generic 202": 2, "generic 401": 1, "generic 403": 1, "generic 413": 1, "generic 503": 1}
	if diff := cmp.Diff(want, counts(t, reg, "voipbridge_webhook_requests_total", "source", "status")); diff != "" {
		t.Errorf("voipbridge_webhook_requests_total (-want +got):\n%s", diff)
	}
}

// TestOperatorMetricsEndToEnd: through a whole bridge, webhooks are counted
// by source and status, an event's way from the journal to ROBIN's 2xx and
// each helpdesk request's latency are observed, and the quota's windows
// are labelled as ROBIN_RATE_LIMITS spells them.
func TestOperatorMetricsEndToEnd(t *testing.T) {
	tb := startBridge(t, "ROBIN_RATE_LIMITS=1000/1s,50000/24h,60000/2d")
	if st := tb.Post(t, "/v1/webhooks/generic", generic("m1", "answered", "201")); st != http.StatusAccepted {
		t.Fatalf("webhook: %d", st)
	}
	req, _ := http.NewRequest(http.MethodPost, tb.URL+"/v1/webhooks/generic", strings.NewReader(generic("m1", "ended", "201")))
	req.Header.Set("Authorization", "Bearer not-the-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get(tb.URL + "/v1/presence?channel=chat")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	tb.WaitEvents(t, 1)

	// The dispatcher observes the delivery once ROBIN's answer is in,
	// just after the fake counted the event: wait for it.
	waitUntil(t, "a delivery latency observed", func() bool {
		return histogramCount(t, tb.reg, "voipbridge_delivery_latency_seconds", "") >= 1
	})
	if diff := cmp.Diff(map[string]float64{"generic 202": 1, "generic 401": 1},
		counts(t, tb.reg, "voipbridge_webhook_requests_total", "source", "status")); diff != "" {
		t.Errorf("voipbridge_webhook_requests_total (-want +got):\n%s", diff)
	}
	for _, ep := range []string{"registerevent", "presence"} {
		if n := histogramCount(t, tb.reg, "voipbridge_helpdesk_request_duration_seconds", ep); n < 1 {
			t.Errorf("no %s request duration observed", ep)
		}
	}
	if diff := cmp.Diff(map[string]float64{"1s": 1000, "24h": 50000, "2d": 60000},
		quotaLimits(t, tb.reg)); diff != "" {
		t.Errorf("quota windows (-want +got):\n%s", diff)
	}
}

func TestWindowLabels(t *testing.T) {
	got := windowLabels("3/1s, 180/1m,10000/1h,100000/1d")
	want := map[time.Duration]string{time.Second: "1s", time.Minute: "1m", time.Hour: "1h", 24 * time.Hour: "1d"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := windowLabels("100000/24h"); got[24*time.Hour] != "24h" {
		t.Errorf("24h labelled %q", got[24*time.Hour])
	}
}

// TestOnDeliveries: every hook that is set hears every outcome.
func TestOnDeliveries(t *testing.T) {
	if onDeliveries(nil, nil) != nil {
		t.Error("no hooks should give no hook")
	}
	var a, b int
	f := onDeliveries(func(events.DeliveryOutcome) { a++ }, nil, func(events.DeliveryOutcome) { b++ })
	f(events.DeliveryOutcome{})
	f(events.DeliveryOutcome{})
	if a != 2 || b != 2 {
		t.Errorf("hooks called %d and %d times, want 2 and 2", a, b)
	}
}

// counts returns the series of a counter family, keyed by its label values
// joined with spaces.
func counts(t *testing.T, g prometheus.Gatherer, name string, labels ...string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, m := range family(t, g, name) {
		var key []string
		for _, l := range labels {
			key = append(key, label(m, l))
		}
		out[strings.Join(key, " ")] = m.GetCounter().GetValue()
	}
	return out
}

// histogramCount is the number of observations of a histogram, of the
// series whose endpoint label is endpoint ("" for an unlabelled one).
func histogramCount(t *testing.T, g prometheus.Gatherer, name, endpoint string) uint64 {
	t.Helper()
	var n uint64
	for _, m := range family(t, g, name) {
		if label(m, "endpoint") == endpoint {
			n += m.GetHistogram().GetSampleCount()
		}
	}
	return n
}

// quotaLimits is used+remaining of each quota window, by its label.
func quotaLimits(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, name := range []string{"voipbridge_quota_used", "voipbridge_quota_remaining"} {
		for _, m := range family(t, g, name) {
			out[label(m, "window")] += m.GetGauge().GetValue()
		}
	}
	return out
}

func family(t *testing.T, g prometheus.Gatherer, name string) []*dto.Metric {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()
		}
	}
	return nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
