package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// TestKillNineMidBatch: a burst of calls posted by many clients at once, so
// that the tracker folds them in groups, and SIGKILL the moment the last
// post is acknowledged, with groups still being folded and committed. After
// a restart on the same journal ROBIN gets every event, and at most one
// twice: the one in flight at the kill (delivered, not yet removed; one
// delivery worker). An event is delivered only once the call records of its
// group are saved, so a restart never journals a delivered event again.
func TestKillNineMidBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	fake := robintest.NewServer(robintest.Options{APIKey: "kill-key"})
	defer fake.Close()
	// A slow helpdesk, so that the queue is still long when the bridge dies.
	slow := slowHelpdesk(t, fake, 20*time.Millisecond)
	dir, addr := t.TempDir(), freeAddr(t)
	env := []string{
		"HTTP_ADDR=" + addr, "DATA_DIR=" + dir, "LOG_FORMAT=json",
		"ROBIN_API_URL=" + slow.URL, "ROBIN_PRESENCE_URL=" + slow.URL + "/api/v1", "ROBIN_API_KEY=kill-key",
		"WEBHOOK_TOKEN=kill-token", "DELIVERY_WORKERS=1", "ROBIN_RATE_LIMITS=100000/1s",
	}
	cmd := startProcess(t, bin, addr, env)

	const calls, posters = 400, 16
	var wg sync.WaitGroup
	errs := make(chan error, posters)
	for p := range posters {
		wg.Go(func() {
			client := &http.Client{Timeout: 30 * time.Second}
			for i := p; i < calls; i += posters {
				for _, ev := range []string{"answered", "ended"} {
					body := fmt.Sprintf(`{"call_id":"b%d","event":%q,"from":"+3161234%04d","to":"+31858770023","extension":"201"}`, i, ev, i)
					req, _ := http.NewRequest("POST", "http://"+addr+"/v1/webhooks/generic", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", "Bearer kill-token")
					resp, err := client.Do(req)
					if err != nil {
						errs <- err
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusAccepted {
						errs <- fmt.Errorf("webhook answered %d", resp.StatusCode)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	before := len(fake.Events())
	t.Logf("killed with %d of %d events delivered", before, 2*calls)
	if before >= 2*calls {
		t.Fatalf("every event was delivered before the kill; the test proves nothing")
	}

	cmd = startProcess(t, bin, addr, env)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("after SIGTERM the bridge exited with %v, want 0", err)
		}
	}()
	checkAfterKill(t, fake, addr, "b", calls)
}

// checkAfterKill waits until ROBIN holds both events of each of the calls
// prefix0 … (naming the lost ones if it never does), then until the
// bridge's queue is empty, and checks that at most one event came twice
// (the delivery in flight at the kill) and none out of order.
func checkAfterKill(t *testing.T, fake *robintest.Server, addr, prefix string, calls int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	distinct := func() map[string]int {
		m := map[string]int{}
		for _, r := range fake.Events() {
			m[r.Event.ID+"/"+string(r.Event.Type)]++
		}
		return m
	}
	for len(distinct()) < 2*calls {
		select {
		case <-ctx.Done():
			got := distinct()
			for i := range calls {
				for _, typ := range []string{"Answered", "Disconnected"} {
					if got[fmt.Sprintf("%s%d/%s", prefix, i, typ)] == 0 {
						t.Errorf("lost: %s%d %s", prefix, i, typ)
					}
				}
			}
			t.Fatalf("after the restart ROBIN has %d of %d distinct events", len(got), 2*calls)
		case <-time.After(50 * time.Millisecond):
		}
	}
	// Every event is in; wait for the queue to be empty (no delivery is
	// still to come), then count repeats.
	for !queueEmpty(addr) {
		select {
		case <-ctx.Done():
			t.Fatal("the queue never emptied")
		case <-time.After(50 * time.Millisecond):
		}
	}
	dups := 0
	for k, n := range distinct() {
		if n > 1 {
			dups += n - 1
			t.Logf("received twice: %s", k)
		}
	}
	if dups > 1 {
		t.Errorf("%d repeats; only the event in flight at the kill may repeat", dups)
	}
	for _, r := range fake.Events() {
		if r.OutOfOrder {
			t.Errorf("out of order at ROBIN: %+v", r.Event)
		}
	}
}

// queueEmpty reports whether the bridge at addr says no event waits for delivery.
func queueEmpty(addr string) bool {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := string(b)
	return strings.Contains(m, "\nvoipbridge_queue_depth{priority=\"normal\",sink=\"robin\"} 0\n") &&
		strings.Contains(m, "\nvoipbridge_queue_depth{priority=\"answered\",sink=\"robin\"} 0\n")
}

// slowHelpdesk puts delay in front of every request to fake.
func slowHelpdesk(t *testing.T, fake *robintest.Server, delay time.Duration) *httptest.Server {
	t.Helper()
	target, err := url.Parse(fake.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(delay)
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(slow.Close)
	return slow
}
