package bridge

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestBoardConfig: BOARD_ALLOW_CIDRS is checked at start-up.
func TestBoardConfig(t *testing.T) {
	base := []string{"ROBIN_API_KEY=k", "WEBHOOK_TOKEN=t"}
	if _, err := LoadConfig(append(base, "BOARD_ALLOW_CIDRS=10.0.0.0/8, 192.0.2.7", "BOARD_MASK_NUMBERS=true")); err != nil {
		t.Fatalf("valid board settings: %v", err)
	}
	_, err := LoadConfig(append(base, "BOARD_ALLOW_CIDRS=10.0.0.0/33,office"))
	if err == nil || !strings.Contains(err.Error(), "BOARD_ALLOW_CIDRS") || strings.Contains(err.Error(), "WEBHOOK_ALLOW_CIDRS") {
		t.Fatalf("bad BOARD_ALLOW_CIDRS: %v", err)
	}
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBoardOnTheAdminListener: the board is where the admin endpoints are
// (ADMIN_ADDR), and off when nobody could see it.
func TestBoardOnTheAdminListener(t *testing.T) {
	tb := startBridge(t, "ADMIN_TOKEN=adm", "ADMIN_ADDR=127.0.0.1:0")
	if st, _ := get(t, tb.URL+"/"); st != http.StatusNotFound {
		t.Errorf("GET / on HTTP_ADDR with ADMIN_ADDR set: %d, want 404", st)
	}
	if st, body := get(t, "http://"+tb.AdminAddr()+"/"); st != http.StatusOK || !strings.Contains(body, `action="/v1/board/login"`) {
		t.Errorf("GET / on ADMIN_ADDR: %d, want the login form:\n%s", st, body)
	}
	if st, _ := get(t, "http://"+tb.AdminAddr()+"/nothing-here"); st != http.StatusNotFound {
		t.Errorf("GET /nothing-here: %d, want 404 (the board answers / only)", st)
	}

	off := startBridge(t)
	if st, _ := get(t, off.URL+"/"); st != http.StatusNotFound {
		t.Errorf("GET / without ADMIN_TOKEN or BOARD_ALLOW_CIDRS: %d, want 404", st)
	}
}

// TestBoardMaskedEndToEnd: a call through the webhook shows on the board of
// an allowed address with the caller's number masked, and an open stream
// ends when the bridge drains, so it does not hold the shutdown.
func TestBoardMaskedEndToEnd(t *testing.T) {
	tb := startBridge(t, "BOARD_ALLOW_CIDRS=127.0.0.0/8,::1/128", "BOARD_MASK_NUMBERS=true")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, tb.URL+"/v1/board/stream", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 64)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()

	tb.Post(t, "/v1/webhooks/generic", generic("m1", "answered", "201"))
	tb.WaitEvents(t, 1)
	deadline := time.After(20 * time.Second)
	var calls, evs string
	for calls == "" || evs == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended early")
			}
			switch {
			case strings.Contains(l, `"call_id":"m1"`) && strings.Contains(l, `"caller":`):
				calls = l
			case strings.Contains(l, `"call_id":"m1"`) && strings.Contains(l, `"state":"delivered"`):
				evs = l
			}
		case <-deadline:
			t.Fatalf("the call and its delivered event did not show: calls %q events %q", calls, evs)
		}
	}
	for _, l := range []string{calls, evs} {
		if strings.Contains(l, "12345678") || !strings.Contains(l, "•••• 5678") {
			t.Errorf("not masked: %s", l)
		}
	}

	stopped := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		tb.Stop(t)
		stopped <- time.Since(start)
	}()
	for range lines { // until the stream ends
	}
	if d := <-stopped; d > 10*time.Second {
		t.Errorf("the bridge took %s to stop with a board open", d)
	}
}
