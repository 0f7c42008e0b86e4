package bridge

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// postCalls posts n answered-then-ended calls and returns how many events
// they make (two each).
func postCalls(t *testing.T, tb *testBridge, prefix string, n int) int {
	t.Helper()
	for i := range n {
		for _, ev := range []string{"answered", "ended"} {
			body := fmt.Sprintf(`{"call_id":"%s%d","event":%q,"from":"+3161234%04d","to":"+31858770023","extension":"201"}`, prefix, i, ev, i)
			if st := tb.Post(t, "/v1/webhooks/generic", body); st != http.StatusAccepted {
				t.Fatalf("webhook: %d", st)
			}
		}
	}
	return 2 * n
}

// checkOrder fails unless every call's Answered reached ROBIN before its
// Disconnected, and ROBIN flagged nothing as out of order.
func checkOrder(t *testing.T, got []robintest.Received) {
	t.Helper()
	answered := map[string]bool{}
	for _, r := range got {
		switch r.Event.Type {
		case "Answered":
			answered[r.Event.ID] = true
		case "Disconnected":
			if !answered[r.Event.ID] {
				t.Errorf("call %s: Disconnected before Answered", r.Event.ID)
			}
		}
		if r.OutOfOrder {
			t.Errorf("ROBIN flagged out of order: %+v", r.Event)
		}
	}
}

func registerRequests(fake *robintest.Server, since time.Time) []robintest.Request {
	var out []robintest.Request
	for _, r := range fake.Requests() {
		if r.Endpoint == robintest.EndpointRegisterEvent && !r.At.Before(since) {
			out = append(out, r)
		}
	}
	return out
}

func readyz(t *testing.T, tb *testBridge) (int, map[string]string) {
	t.Helper()
	resp, err := http.Get(tb.URL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

func status(t *testing.T, tb *testBridge) Status {
	t.Helper()
	resp, err := http.Get(tb.URL + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s Status
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOutageBreakerProbesAndDrainsInOrder: ROBIN answers 503 for a while; the
// breaker opens, at most one probe per interval reaches ROBIN, /readyz says
// so, and after recovery everything drains, in order per call.
func TestOutageBreakerProbesAndDrainsInOrder(t *testing.T) {
	tb := startBridge(t, "ROBIN_BREAKER_FAILURES=3", "ROBIN_BREAKER_INTERVAL=500ms", "DELIVERY_WORKERS=4")
	tb.Robin.SetFault(robintest.Fault{Status: 503, Body: "maintenance"})
	start := time.Now()
	want := postCalls(t, tb, "out", 10)
	eventually(t, "the breaker to open", func() bool {
		// Intake still works: /readyz stays 200 and names the outage.
		st, body := readyz(t, tb)
		if st != http.StatusOK {
			t.Fatalf("readyz %d during a helpdesk outage: a load balancer would cut off the PBX", st)
		}
		return strings.Contains(body["delivery"], "degraded: helpdesk unreachable: circuit breaker")
	})
	if s := status(t, tb); !s.Intake || s.Delivery.Breaker != "open" || !strings.Contains(s.Delivery.State, "circuit breaker") || s.Delivery.Pending == 0 {
		t.Fatalf("/v1/status during the outage: %+v", s)
	}
	openedAt := time.Now()
	time.Sleep(3 * time.Second)
	during := registerRequests(tb.Robin, openedAt.Add(-time.Millisecond))
	// At most one probe per 500 ms interval, plus attempts already in flight
	// when it opened (one per worker).
	if max := int(time.Since(openedAt)/(500*time.Millisecond)) + 1 + 4; len(during) > max {
		t.Fatalf("%d requests reached ROBIN during 3s of open breaker; want at most %d", len(during), max)
	}
	if before := registerRequests(tb.Robin, start); len(before) == 0 {
		t.Fatal("no request reached ROBIN at all")
	}
	tb.Robin.SetFault(robintest.Fault{})
	got := tb.WaitEvents(t, want)
	checkOrder(t, tb.Settle(t))
	if len(got) != want {
		t.Fatalf("got %d events, want %d", len(got), want)
	}
	eventually(t, "delivery after recovery", func() bool { return status(t, tb).Delivery.State == "ok" })
}

// TestRateLimitedWithRetryAfter: a 429 pauses delivery for Retry-After and is
// not a breaker failure.
func TestRateLimitedWithRetryAfter(t *testing.T) {
	tb := startBridge(t, "ROBIN_BREAKER_FAILURES=1")
	tb.Robin.SetFault(robintest.Fault{Status: 429, RetryAfter: "2", Count: 1})
	postCalls(t, tb, "ra", 1)
	got := tb.WaitEvents(t, 2)
	reqs := registerRequests(tb.Robin, time.Time{})
	if len(reqs) < 2 || reqs[0].Status != 429 {
		t.Fatalf("requests: %+v", reqs)
	}
	if gap := reqs[1].At.Sub(reqs[0].At); gap < 1900*time.Millisecond {
		t.Fatalf("retried %v after a 429 with Retry-After: 2", gap)
	}
	if len(got) != 2 {
		t.Fatalf("events: %d", len(got))
	}
	if st := tb.breaker.State(); st != "closed" {
		t.Fatalf("a 429 opened the breaker: %s", st)
	}
}

// TestRateLimitedWithoutRetryAfter: without Retry-After the pause is 60 s;
// /readyz reports it and nothing is sent meanwhile.
func TestRateLimitedWithoutRetryAfter(t *testing.T) {
	tb := startBridge(t)
	tb.Robin.SetFault(robintest.Fault{Status: 429, Count: 1})
	postCalls(t, tb, "nra", 1)
	eventually(t, "the 429", func() bool { return len(registerRequests(tb.Robin, time.Time{})) == 1 })
	time.Sleep(2 * time.Second)
	if n := len(registerRequests(tb.Robin, time.Time{})); n != 1 {
		t.Fatalf("%d requests within 2s of a 429 without Retry-After; want the 60s pause", n)
	}
	st, body := readyz(t, tb)
	if st != http.StatusOK || !strings.Contains(body["delivery"], "rate_limited") {
		t.Fatalf("readyz %d %v", st, body)
	}
	if s := status(t, tb); !strings.Contains(s.Delivery.Paused, "rate_limited") {
		t.Fatalf("/v1/status: %+v", s)
	}
}

// TestAuthFailurePausesThenNewKeyDelivers: a wrong key pauses all delivery
// (one probe a minute, nothing dead-lettered); restarted with the right key,
// the bridge delivers everything it held.
func TestAuthFailurePausesThenNewKeyDelivers(t *testing.T) {
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key"})
	defer fake.Close()
	dir := t.TempDir()
	tb := startBridgeWith(t, fake, dir, "ROBIN_API_KEY=wrong-key", "ADMIN_TOKEN=adm")
	want := postCalls(t, tb, "auth", 3)
	eventually(t, "the 401", func() bool { return len(registerRequests(fake, time.Time{})) >= 1 })
	time.Sleep(300 * time.Millisecond) // attempts already in flight (one per worker) finish
	inFlight := len(registerRequests(fake, time.Time{}))
	time.Sleep(1500 * time.Millisecond)
	reqs := registerRequests(fake, time.Time{})
	if len(reqs) != inFlight || inFlight > 4 {
		t.Fatalf("%d requests before the pause took hold, %d after 1.5s paused; want no new ones", inFlight, len(reqs))
	}
	for _, r := range reqs {
		if r.Status != 401 {
			t.Fatalf("status %d, want 401", r.Status)
		}
	}
	st, body := readyz(t, tb)
	if st != http.StatusOK || !strings.Contains(body["delivery"], "auth") {
		t.Fatalf("readyz %d %v", st, body)
	}
	if dl, _ := tb.journal.DeadLetters(t.Context(), 0); len(dl) != 0 {
		t.Fatalf("an auth failure dead-lettered %d events", len(dl))
	}
	tb.Stop(t)

	tb = startBridgeWith(t, fake, dir, "ROBIN_API_KEY=test-key")
	got := tb.WaitEvents(t, want)
	checkOrder(t, tb.Settle(t))
	if len(got) != want {
		t.Fatalf("after the key was fixed ROBIN got %d events, want %d", len(got), want)
	}
}

// TestLostAcknowledgement: ROBIN accepts an event but the answer is lost; the
// bridge sends it again: at most one duplicate, nothing lost.
func TestLostAcknowledgement(t *testing.T) {
	tb := startBridge(t)
	tb.Robin.SetFault(robintest.Fault{DropAck: true, Count: 1})
	want := postCalls(t, tb, "ack", 2)
	tb.WaitEvents(t, want+1)
	got := tb.Settle(t)
	dups := 0
	seen := map[string]bool{}
	for _, r := range got {
		if r.Duplicate {
			dups++
		}
		seen[r.Event.ID+string(r.Event.Type)] = true
	}
	if dups != 1 || len(seen) != want || len(got) != want+1 {
		t.Fatalf("got %d events (%d distinct, %d duplicates); want %d distinct and exactly the one duplicate", len(got), len(seen), dups, want)
	}
}

// TestDeadLetterReplay: a rejected event is dead-lettered with ROBIN's
// answer, listed by the admin API, and delivered when replayed.
func TestDeadLetterReplay(t *testing.T) {
	tb := startBridge(t, "ADMIN_TOKEN=adm")
	tb.Robin.SetFault(robintest.Fault{Status: 400, Body: `{"message":"PhoneNumber is invalid"}`, Count: 1})
	postCalls(t, tb, "dl", 1)
	tb.WaitEvents(t, 1) // the Disconnected goes on
	admin := func(method, path string) (int, map[string]json.RawMessage) {
		req, _ := http.NewRequest(method, tb.URL+path, nil)
		req.Header.Set("Authorization", "Bearer adm")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]json.RawMessage
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	var list []struct {
		ID     uint64 `json:"id"`
		CallID string `json:"call_id"`
		Status int    `json:"status"`
		Body   string `json:"body"`
		Reason string `json:"reason"`
	}
	eventually(t, "the dead letter", func() bool {
		_, body := admin("GET", "/v1/deadletters")
		_ = json.Unmarshal(body["deadletters"], &list)
		return len(list) == 1
	})
	if list[0].CallID != "dl0" || list[0].Status != 400 || !strings.Contains(list[0].Body, "PhoneNumber is invalid") || list[0].Reason != "permanent" {
		t.Fatalf("dead letter %+v", list[0])
	}
	// Without the token: 401, and nothing changes.
	if resp, _ := http.Post(tb.URL+"/v1/deadletters/replay", "", nil); resp.StatusCode != 401 {
		t.Fatalf("replay without token: %d", resp.StatusCode)
	}
	if st, _ := admin("POST", "/v1/deadletters/999/replay"); st != http.StatusNotFound {
		t.Fatalf("replay of an unknown id: %d", st)
	}
	if st, body := admin("POST", fmt.Sprintf("/v1/deadletters/%d/replay", list[0].ID)); st != 200 {
		t.Fatalf("replay: %d %s", st, body["error"])
	}
	got := tb.WaitEvents(t, 2)
	if got[1].Event.ID != "dl0" || got[1].Event.Type != "Answered" {
		t.Fatalf("after the replay ROBIN got %+v", got[1].Event)
	}
	if _, body := admin("GET", "/v1/deadletters"); string(body["deadletters"]) != "[]" {
		t.Fatalf("dead letters after replay: %s", body["deadletters"])
	}
}

// TestAdminOffWithoutToken: without ADMIN_TOKEN the admin API does not exist.
func TestAdminOffWithoutToken(t *testing.T) {
	tb := startBridge(t)
	resp, err := http.Get(tb.URL + "/v1/deadletters")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("GET /v1/deadletters without ADMIN_TOKEN: %d", resp.StatusCode)
	}
}

// TestAuthProbeResumes: while ROBIN refuses the credentials, one probe per
// ROBIN_AUTH_PROBE; when a probe succeeds, delivery resumes by itself.
func TestAuthProbeResumes(t *testing.T) {
	tb := startBridge(t, "ROBIN_AUTH_PROBE=700ms", "DELIVERY_WORKERS=1")
	tb.Robin.SetFault(robintest.Fault{Status: 403})
	want := postCalls(t, tb, "probe", 2)
	time.Sleep(2500 * time.Millisecond)
	refused := len(registerRequests(tb.Robin, time.Time{}))
	if refused < 2 || refused > 5 {
		t.Fatalf("%d requests in 2.5s of 403 with a 700ms probe; want one per probe", refused)
	}
	tb.Robin.SetFault(robintest.Fault{})
	got := tb.WaitEvents(t, want)
	checkOrder(t, tb.Settle(t))
	if len(got) != want {
		t.Fatalf("got %d, want %d", len(got), want)
	}
	eventually(t, "readiness", func() bool { st, _ := readyz(t, tb); return st == http.StatusOK })
}
