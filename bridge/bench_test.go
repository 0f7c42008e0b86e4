package bridge

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// benchBridge starts a bridge for a benchmark (testing.B has no t.Context
// helpers of startBridge's shape, so it is built here).
func benchBridge(b *testing.B, fake *robintest.Server) (*Bridge, func()) {
	b.Helper()
	cfg, err := LoadConfig([]string{
		"HTTP_ADDR=127.0.0.1:0", "DATA_DIR=" + b.TempDir(), "ROBIN_API_URL=" + fake.URL(),
		"ROBIN_PRESENCE_URL=" + fake.PresenceURL(), "ROBIN_API_KEY=test-key", "WEBHOOK_TOKEN=t", "TRANSFER_WINDOW=0s", "ROBIN_RATE_LIMITS=100000/1s",
	})
	if err != nil {
		b.Fatal(err)
	}
	br, err := New(context.Background(), cfg, discardLogger())
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { br.Run(ctx); close(done) }()
	return br, func() { cancel(); <-done }
}

func postSignal(h http.Handler, body string) int {
	r := httptest.NewRequest("POST", "/v1/webhooks/generic", strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Authorization", "Bearer t")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// BenchmarkWebhookToEventJournaled: one op is one webhook signal through the
// HTTP handler into the journal (fsynced), folded by the tracker, with its
// event journaled. Every other signal ends a call, so each op yields one event.
func BenchmarkWebhookToEventJournaled(b *testing.B) {
	for _, par := range []int{1, 16} {
		b.Run(fmt.Sprintf("posters=%d", par), func(b *testing.B) {
			fake := robintest.NewServer(robintest.Options{APIKey: "test-key"})
			defer fake.Close()
			br, stop := benchBridge(b, fake)
			defer stop()
			start := br.tracker.Applied()
			var n atomic.Int64
			b.ReportAllocs()
			b.SetParallelism(par)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					ev := "answered"
					if i%2 == 0 {
						ev = "ended"
					}
					body := fmt.Sprintf(`{"call_id":"b%d","event":%q,"from":"+31612345678","to":"+31858770023","extension":"201"}`, (i+1)/2, ev)
					if code := postSignal(br.mux, body); code != http.StatusAccepted {
						b.Errorf("status %d", code)
						return
					}
				}
			})
			for br.tracker.Applied() < start+uint64(n.Load()) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signals/s")
		})
	}
}

// BenchmarkWebhookToRobinLatency: one op is the time from posting an answer
// to the webhook (over loopback HTTP) until the fake ROBIN received the
// Answered event, with an empty queue.
func BenchmarkWebhookToRobinLatency(b *testing.B) {
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key"})
	defer fake.Close()
	got := make(chan struct{}, 1)
	fake.OnEvent(func(robintest.Received) { got <- struct{}{} })
	br, stop := benchBridge(b, fake)
	defer stop()
	url := "http://" + br.Addr() + "/v1/webhooks/generic"
	b.ResetTimer()
	for i := range b.N {
		body := fmt.Sprintf(`{"call_id":"l%d","event":"answered","from":"+31612345678","extension":"201"}`, i)
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer t")
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusAccepted {
			b.Fatalf("post: %v %v", err, resp)
		}
		resp.Body.Close()
		select {
		case <-got:
		case <-time.After(10 * time.Second):
			b.Fatal("event did not arrive")
		}
	}
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
