package presence

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// testKey is the API key of every test; it must never appear in a log line,
// an error, an answer or a metric.
const testKey = "S3cret-presence-KEY"

// env is a cache in front of a fake ROBIN without a socket, for use inside a
// testing/synctest bubble (or outside one).
type env struct {
	fake   *robintest.Server
	client *robin.Client
	cache  *Cache
	logs   *syncBuffer
}

type envOption func(*Options)

func withQuota(q Quota) envOption     { return func(o *Options) { o.Quota = q } }
func withBreaker(b Breaker) envOption { return func(o *Options) { o.Breaker = b } }
func withAsker(wrap func(Asker) Asker) envOption {
	return func(o *Options) { o.Asker = wrap(o.Asker) }
}

// newEnv starts a fake ROBIN (no socket) and a cache with cfg in front of it.
// The cache and the fake are closed when the test ends; inside a synctest
// bubble, call env.close before the bubble's function returns.
func newEnv(t *testing.T, cfg Config, opts ...envOption) *env {
	t.Helper()
	fake := robintest.New(robintest.Options{APIKey: testKey})
	client, err := robin.NewClient(robin.Config{
		APIURL: fake.URL(), PresenceURL: fake.PresenceURL(), APIKey: testKey,
		HTTPClient: fake.Client(), Timeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	numbers, err := phone.New(phone.Options{Region: "NL"})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	o := Options{
		Config:  cfg,
		Asker:   client,
		Numbers: numbers,
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Redact:  client.Redact,
	}
	for _, opt := range opts {
		opt(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return &env{fake: fake, client: client, cache: c, logs: logs}
}

func (e *env) close() {
	e.cache.Close()
	e.fake.Close()
}

// presenceRequests returns the requests the fake saw on its presence endpoint.
func (e *env) presenceRequests() []robintest.Request {
	var out []robintest.Request
	for _, r := range e.fake.Requests() {
		if r.Endpoint == robintest.EndpointPresence {
			out = append(out, r)
		}
	}
	return out
}

func (e *env) lookup(t *testing.T, channel, referrer string) (Answer, error) {
	t.Helper()
	return e.cache.Lookup(context.Background(), channel, referrer)
}

// mustOnline fails unless the look-up answers without error with the given
// presence and result.
func (e *env) must(t *testing.T, channel, referrer string, online bool, want Result) Answer {
	t.Helper()
	a, err := e.lookup(t, channel, referrer)
	if err != nil {
		t.Fatalf("Lookup(%q, %q): %v", channel, referrer, err)
	}
	if a.Online != online || a.Result != want {
		t.Fatalf("Lookup(%q, %q) = online %v, result %s; want online %v, result %s (answer %+v)",
			channel, referrer, a.Online, a.Result, online, want, a)
	}
	return a
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// noKey fails when s contains the API key in any form it could take.
func noKey(t *testing.T, what, s string) {
	t.Helper()
	for _, f := range []string{testKey, "S3cret-presence"} {
		if strings.Contains(s, f) {
			t.Errorf("%s leaks the API key: %q", what, s)
		}
	}
}

// askerFunc adapts a function to Asker.
type askerFunc func(ctx context.Context, channel, referrer string) (bool, error)

func (f askerFunc) Presence(ctx context.Context, channel, referrer string) (bool, error) {
	return f(ctx, channel, referrer)
}
