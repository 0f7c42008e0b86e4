package presence

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/phone"
)

// discardWriter is the cheapest http.ResponseWriter that still keeps
// headers, so the benchmark measures the handler rather than a recorder.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkPresenceCached is one cached look-up through the HTTP handler
// (query parsing, content negotiation, channel and referrer normalisation,
// the cache, metrics, and the answer), without the network.
func BenchmarkPresenceCached(b *testing.B) {
	numbers, err := phone.New(phone.Options{Region: "NL"})
	if err != nil {
		b.Fatal(err)
	}
	var asked int
	c, err := New(Options{
		Config:   Config{TTL: 24 * time.Hour},
		Asker:    askerFunc(func(context.Context, string, string) (bool, error) { asked++; return true, nil }),
		Numbers:  numbers,
		Registry: prometheus.NewRegistry(),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	for _, bc := range []struct{ name, target, accept string }{
		{"text", "/v1/presence?channel=Chat", ""},
		{"text-phone-referrer", "/v1/presence?channel=whatsapp&referrer=085+877+0023", ""},
		{"json", "/v1/presence?channel=Chat", "application/json"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, bc.target, nil)
			if bc.accept != "" {
				req.Header.Set("Accept", bc.accept)
			}
			w := &discardWriter{h: http.Header{}}
			c.ServeHTTP(w, req) // fill the cache
			before := asked
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				c.ServeHTTP(w, req)
			}
			if w.status != http.StatusOK || w.n == 0 || asked != before {
				b.Fatalf("status %d, %d bytes, ROBIN asked %d times during the loop; want 200 from the cache", w.status, w.n, asked-before)
			}
		})
	}
}

// BenchmarkPresenceCachedParallel is BenchmarkPresenceCached/text on every
// core at once (lock contention on the cache).
func BenchmarkPresenceCachedParallel(b *testing.B) {
	c, err := New(Options{
		Config: Config{TTL: 24 * time.Hour},
		Asker:  askerFunc(func(context.Context, string, string) (bool, error) { return true, nil }),
	})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := httptest.NewRequest(http.MethodGet, "/v1/presence?channel=Chat", nil)
	c.ServeHTTP(&discardWriter{h: http.Header{}}, req)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			c.ServeHTTP(w, req)
		}
	})
}
