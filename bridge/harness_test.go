package bridge

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// testBridge is a whole bridge running in-process: embedded journal in a
// temporary directory, HTTP on 127.0.0.1, and a fake ROBIN.
type testBridge struct {
	*Bridge
	Robin *robintest.Server
	// URL is the bridge's HTTP base, e.g. http://127.0.0.1:40123.
	URL string
	// Token is the webhook token.
	Token string
	// Dir is the journal directory (reuse it to restart the bridge).
	Dir string

	cancel context.CancelFunc
	done   chan error
}

// startBridge starts a bridge against a new fake ROBIN. env holds extra
// NAME=value settings that override the defaults (which include
// TRANSFER_WINDOW=300ms, so Disconnected follows the hang-up quickly).
// The bridge and the fake stop when the test ends.
func startBridge(t *testing.T, env ...string) *testBridge {
	t.Helper()
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key"})
	t.Cleanup(fake.Close)
	return startBridgeWith(t, fake, t.TempDir(), env...)
}

// startBridgeWith starts a bridge on an existing fake ROBIN and journal directory.
func startBridgeWith(t *testing.T, fake *robintest.Server, dir string, env ...string) *testBridge {
	t.Helper()
	base := []string{
		"HTTP_ADDR=127.0.0.1:0",
		"DATA_DIR=" + dir,
		"ROBIN_API_URL=" + fake.URL(),
		"ROBIN_PRESENCE_URL=" + fake.PresenceURL(),
		"ROBIN_API_KEY=test-key",
		"WEBHOOK_TOKEN=test-token",
		"TRANSFER_WINDOW=300ms",
		"ROBIN_RATE_LIMITS=1000/1s",
	}
	cfg, err := LoadConfig(append(base, env...))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	var logOut io.Writer = io.Discard
	if testing.Verbose() || os.Getenv("BRIDGE_TEST_LOG") != "" {
		logOut = os.Stderr
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, err := New(t.Context(), cfg, log)
	if err != nil {
		t.Fatalf("start bridge: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb := &testBridge{Bridge: b, Robin: fake, URL: "http://" + b.Addr(), Token: cfg.WebhookToken, Dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { tb.done <- b.Run(ctx) }()
	t.Cleanup(func() { tb.Stop(t) })
	return tb
}

// Stop drains the bridge and waits for it; safe to call twice.
func (tb *testBridge) Stop(t *testing.T) {
	t.Helper()
	if tb.cancel == nil {
		return
	}
	tb.cancel()
	tb.cancel = nil
	select {
	case err := <-tb.done:
		if err != nil {
			t.Errorf("bridge stopped with an error: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Error("bridge did not stop within 30s")
	}
}

// Post sends body to path (JSON, with the webhook token) and returns the status.
func (tb *testBridge) Post(t *testing.T, path, body string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, tb.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tb.Token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// WaitEvents waits until the fake ROBIN accepted at least n events.
func (tb *testBridge) WaitEvents(t *testing.T, n int) []robintest.Received {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	got, err := tb.Robin.WaitEvents(ctx, n)
	if err != nil {
		t.Fatalf("waiting for %d events at the fake ROBIN: got %d: %v", n, len(tb.Robin.Events()), err)
	}
	return got
}

// Settle waits a little and returns everything ROBIN received, so a test
// can assert that nothing more arrived than it expected.
func (tb *testBridge) Settle(t *testing.T) []robintest.Received {
	t.Helper()
	time.Sleep(600 * time.Millisecond)
	return tb.Robin.Events()
}
