package bridge

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// BenchmarkEventLatency: one op is one generic call, answered and then
// ended, with an idle queue (the next call starts only after the previous
// one's Disconnected arrived). It reports, per event type, percentiles of
// the time from starting the webhook POST (real HTTP on loopback) until the
// fake ROBIN accepted the event (Received.At, taken when the fake records
// it, so there is no polling in the measurement).
//
// TRANSFER_WINDOW keeps its default: the generic source is not a continuing
// source, so Disconnected of an answered call must go out at once anyway.
// The quota is lifted so that it never makes a delivery wait.
func BenchmarkEventLatency(b *testing.B) {
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key"})
	defer fake.Close()
	got := make(chan robintest.Received, 16)
	fake.OnEvent(func(r robintest.Received) { got <- r })
	br, stop := latencyBridge(b, fake, "ROBIN_RATE_LIMITS=100000/1s")
	defer stop()
	post := latencyPoster(b, "http://"+br.Addr()+"/v1/webhooks/generic")

	// call runs one call and returns the two latencies.
	call := func(id string) (answered, disconnected time.Duration) {
		answered = postAndWait(b, post, got, id, "answered", events.EventAnswered)
		disconnected = postAndWait(b, post, got, id, "ended", events.EventDisconnected)
		return answered, disconnected
	}
	// Warm up: the tracker restores, consumers attach, and both HTTP
	// clients get a kept-alive connection before anything is measured.
	for i := range 5 {
		call(fmt.Sprintf("warm%d", i))
	}

	var ans, disc []time.Duration
	i := 0
	for b.Loop() {
		a, d := call(fmt.Sprintf("lat%d", i))
		ans, disc = append(ans, a), append(disc, d)
		i++
	}
	reportPercentiles(b, "answered", ans)
	reportPercentiles(b, "disconnected", disc)
}

// latencyBridge starts a bridge for BenchmarkEventLatency. Unlike
// benchBridge it leaves TRANSFER_WINDOW at its default.
func latencyBridge(b *testing.B, fake *robintest.Server, env ...string) (*Bridge, func()) {
	b.Helper()
	cfg, err := LoadConfig(append([]string{
		"HTTP_ADDR=127.0.0.1:0", "DATA_DIR=" + b.TempDir(), "ROBIN_API_URL=" + fake.URL(),
		"ROBIN_PRESENCE_URL=" + fake.PresenceURL(), "ROBIN_API_KEY=test-key", "WEBHOOK_TOKEN=t",
	}, env...))
	if err != nil {
		b.Fatal(err)
	}
	if cfg.TransferWindow <= 0 {
		b.Fatalf("TRANSFER_WINDOW is %s: the benchmark is meant to run with a window", cfg.TransferWindow)
	}
	br, err := New(context.Background(), cfg, discardLogger())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- br.Run(ctx) }()
	return br, func() {
		cancel()
		if err := <-done; err != nil {
			b.Errorf("bridge stopped with an error: %v", err)
		}
	}
}

// latencyPoster returns a function that posts one generic webhook body
// and fails the benchmark unless the bridge answers 202.
func latencyPoster(b *testing.B, url string) func(body string) {
	client := &http.Client{Timeout: 10 * time.Second}
	return func(body string) {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer t")
		resp, err := client.Do(req)
		if err != nil {
			b.Fatalf("post: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("post %s: status %d", body, resp.StatusCode)
		}
	}
}

// postAndWait posts webhook event ev of call id and waits until the fake
// ROBIN accepted want for that call; it returns the time from the start of
// the POST to the acceptance.
func postAndWait(b *testing.B, post func(string), got <-chan robintest.Received, id, ev string, want events.EventType) time.Duration {
	body := fmt.Sprintf(`{"call_id":%q,"event":%q,"from":"+31612345678","to":"+31858770023","extension":"201"}`, id, ev)
	start := time.Now()
	post(body)
	select {
	case r := <-got:
		if r.Event.ID != id || r.Event.Type != want || r.Duplicate || r.OutOfOrder {
			b.Fatalf("after %s of %s the fake ROBIN got %s of %s (duplicate %t, out of order %t)",
				ev, id, r.Event.Type, r.Event.ID, r.Duplicate, r.OutOfOrder)
		}
		return r.At.Sub(start)
	case <-time.After(10 * time.Second):
		b.Fatalf("%s of %s did not reach the fake ROBIN within 10s", want, id)
	}
	return 0
}

// reportPercentiles reports p50, p90 and p99 of ds in milliseconds.
func reportPercentiles(b *testing.B, name string, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	for _, p := range []int{50, 90, 99} {
		// Nearest rank: the smallest sample with at least p% at or below it.
		i := (p*len(ds)+99)/100 - 1
		b.ReportMetric(float64(ds[max(i, 0)])/float64(time.Millisecond), fmt.Sprintf("%s-p%d-ms", name, p))
	}
}
