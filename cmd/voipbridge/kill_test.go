package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// binDir holds the binary built for this test run; TestMain removes it.
var (
	binDir   string
	binOnce  sync.Once
	binPath  string
	binError error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// buildBinary compiles voipbridge once per test run; every test that runs
// the real binary shares it.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		if binDir, binError = os.MkdirTemp("", "voipbridge-test-"); binError != nil {
			return
		}
		binPath = filepath.Join(binDir, "voipbridge")
		if out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput(); err != nil {
			binError = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binError != nil {
		t.Fatal(binError)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startProcess runs the binary and waits until it answers /healthz.
func startProcess(t *testing.T, bin, addr string, env []string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), env...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The last lines the bridge logged, to say why when it does not come up.
	var mu sync.Mutex
	var tail []string
	go func() {
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			if testing.Verbose() {
				t.Log("bridge:", s.Text())
			}
			mu.Lock()
			tail = append(tail, s.Text())
			if len(tail) > 400 {
				tail = tail[1:]
			}
			mu.Unlock()
		}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			// Where it is stuck: a Go process prints its goroutines on SIGQUIT.
			cmd.Process.Signal(syscall.SIGQUIT)
			_ = cmd.Wait()
			mu.Lock()
			defer mu.Unlock()
			t.Fatalf("bridge did not come up: %v; it logged:\n%s", err, strings.Join(tail, "\n"))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// postWebhook posts a generic webhook body to the bridge at addr and fails
// the test unless it was accepted (journaled).
func postWebhook(t *testing.T, addr, token, body string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/v1/webhooks/generic", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("webhook: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("webhook answered %d", resp.StatusCode)
	}
}

// postCalls posts n answered-then-ended calls with ids prefix0, prefix1, …
// and returns the number of events they make.
func postCalls(t *testing.T, addr, token, prefix string, n int) int {
	t.Helper()
	for i := range n {
		for _, ev := range []string{"answered", "ended"} {
			postWebhook(t, addr, token, fmt.Sprintf(`{"call_id":"%s%d","event":%q,"from":"+3161234%04d","to":"+31858770023","extension":"201"}`, prefix, i, ev, i))
		}
	}
	return 2 * n
}

// TestKillNineLosesNothing starts the real binary, posts a burst of calls,
// kills it with SIGKILL while most events are still undelivered, restarts
// it on the same journal, and checks that ROBIN received every event, at
// most one of them twice (the one in flight at the kill).
func TestKillNineLosesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	fake := robintest.NewServer(robintest.Options{APIKey: "kill-key"})
	defer fake.Close()
	// A slow helpdesk, so that the queue is still long when the bridge dies.
	slow := slowHelpdesk(t, fake, 60*time.Millisecond)

	dir := t.TempDir()
	addr := freeAddr(t)
	env := []string{
		"HTTP_ADDR=" + addr, "DATA_DIR=" + dir, "LOG_FORMAT=json", "LOG_LEVEL=info",
		"ROBIN_API_URL=" + slow.URL, "ROBIN_PRESENCE_URL=" + slow.URL + "/api/v1", "ROBIN_API_KEY=kill-key",
		"WEBHOOK_TOKEN=kill-token", "TRANSFER_WINDOW=0s", "DELIVERY_WORKERS=1",
		"ROBIN_RATE_LIMITS=1000/1s", // the quota is not under test: the slow helpdesk keeps the queue long
	}
	cmd := startProcess(t, bin, addr, env)

	const calls = 60
	postCalls(t, addr, "kill-token", "k", calls)
	// Every post was acknowledged. Let some events through, then kill.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := fake.WaitEvents(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	before := len(fake.Events())
	if before >= 2*calls {
		t.Fatalf("all %d events were delivered before the kill; the test proves nothing", before)
	}
	t.Logf("killed with %d of %d events delivered", before, 2*calls)

	cmd = startProcess(t, bin, addr, env)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Errorf("after SIGTERM the bridge exited with %v, want 0", err)
		}
	}()
	checkAfterKill(t, fake, addr, "k", calls)
}

// TestKillNineDuringOutage: ROBIN is down, the bridge holds the events and is
// killed; restarted, it recovers when ROBIN does and delivers everything,
// in order per call.
func TestKillNineDuringOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	fake := robintest.NewServer(robintest.Options{APIKey: "kill-key"})
	defer fake.Close()
	fake.SetFault(robintest.Fault{Status: 503})
	dir, addr := t.TempDir(), freeAddr(t)
	env := []string{
		"HTTP_ADDR=" + addr, "DATA_DIR=" + dir, "LOG_FORMAT=json",
		"ROBIN_API_URL=" + fake.URL(), "ROBIN_PRESENCE_URL=" + fake.PresenceURL(), "ROBIN_API_KEY=kill-key",
		"WEBHOOK_TOKEN=kill-token", "TRANSFER_WINDOW=0s", "ROBIN_BREAKER_INTERVAL=300ms", "ROBIN_RETRY_MAX=1s",
		"ROBIN_RATE_LIMITS=1000/1s",
	}
	cmd := startProcess(t, bin, addr, env)
	const calls = 20
	postCalls(t, addr, "kill-token", "o", calls)
	time.Sleep(time.Second) // the outage goes on; events wait in the journal
	if n := len(fake.Events()); n != 0 {
		t.Fatalf("%d events accepted during the outage", n)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()

	cmd = startProcess(t, bin, addr, env)
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()
	time.Sleep(500 * time.Millisecond)
	fake.SetFault(robintest.Fault{}) // ROBIN is back
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got, err := fake.WaitEvents(ctx, 2*calls)
	if err != nil {
		t.Fatalf("after recovery ROBIN has %d of %d events: %v", len(fake.Events()), 2*calls, err)
	}
	answered := map[string]bool{}
	for _, r := range got {
		if r.Event.Type == "Answered" {
			answered[r.Event.ID] = true
		} else if !answered[r.Event.ID] {
			t.Errorf("%s: Disconnected before Answered", r.Event.ID)
		}
		if r.Duplicate || r.OutOfOrder {
			t.Errorf("ROBIN flagged %+v (duplicate %v, out of order %v)", r.Event, r.Duplicate, r.OutOfOrder)
		}
	}
}

// TestSIGTERMWithBacklog: SIGTERM while events wait for the quota drains
// promptly and exits 0; what was not delivered is delivered after a restart.
func TestSIGTERMWithBacklog(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	fake := robintest.NewServer(robintest.Options{APIKey: "term-key"})
	defer fake.Close()
	dir, addr := t.TempDir(), freeAddr(t)
	env := []string{
		"HTTP_ADDR=" + addr, "DATA_DIR=" + dir, "LOG_FORMAT=json",
		"ROBIN_API_URL=" + fake.URL(), "ROBIN_PRESENCE_URL=" + fake.PresenceURL(), "ROBIN_API_KEY=term-key",
		"WEBHOOK_TOKEN=tok", "TRANSFER_WINDOW=0s", "ROBIN_RATE_LIMITS=5/1s",
	}
	cmd := startProcess(t, bin, addr, env)
	const calls = 15
	postCalls(t, addr, "tok", "t", calls)
	time.Sleep(time.Second)
	start := time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("after SIGTERM the bridge exited with %v, want 0", err)
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("the bridge did not exit within 20s of SIGTERM")
	}
	before := len(fake.Events())
	t.Logf("drained in %v with %d of %d events delivered", time.Since(start).Round(time.Millisecond), before, 2*calls)
	if before >= 2*calls {
		t.Fatalf("everything was delivered before SIGTERM; the test proves nothing")
	}
	cmd = startProcess(t, bin, addr, env)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := fake.WaitEvents(ctx, 2*calls); err != nil {
		t.Fatalf("after the restart ROBIN has %d of %d: %v", len(fake.Events()), 2*calls, err)
	}
}
