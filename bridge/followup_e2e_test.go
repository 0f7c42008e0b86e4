package bridge

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// waitMessages waits until the fake ROBIN accepted n Channel API messages.
func waitMessages(t *testing.T, fake *robintest.Server, n int) []robintest.Message {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if m := fake.Messages(); len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d Channel API messages: got %+v", n, fake.Messages())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMissedCallFollowUps: three missed calls from one number become three
// messages in one ROBIN conversation (on the custom channel); the call in
// which that caller reaches an agent adds one closing message; an anonymous
// missed call makes none; register-event gets its events as before.
func TestMissedCallFollowUps(t *testing.T) {
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key", APISecret: "test-secret"})
	t.Cleanup(fake.Close)
	tb := startBridgeWith(t, fake, t.TempDir(), "MISSED_CALL_CHANNEL=voipbridge-missed", "ROBIN_API_SECRET=test-secret", "TRANSFER_WINDOW=0s")
	post := func(call, event, from, ext string) {
		t.Helper()
		body := fmt.Sprintf(`{"call_id":%q,"event":%q,"from":%q,"to":"+31858770023","extension":%q}`, call, event, from, ext)
		if st := tb.Post(t, "/v1/webhooks/generic", body); st != http.StatusAccepted {
			t.Fatalf("webhook %s %s: %d", call, event, st)
		}
	}
	for i := range 3 {
		id := fmt.Sprint("missed-", i)
		post(id, "ringing", "+31612345678", "201")
		post(id, "ringing", "+31612345678", "202")
		post(id, "ended", "+31612345678", "")
	}
	post("anon-1", "ringing", "anonymous", "201")
	post("anon-1", "ended", "anonymous", "")
	msgs := waitMessages(t, fake, 3)
	for i, m := range msgs {
		if m.ConversationExternalIdentifier != "+31612345678" || m.RelationExternalIdentifier != "+31612345678" ||
			m.ChannelAccountExternalIdentifier != "voipbridge-missed" || m.Subject != "Missed call" {
			t.Errorf("message %d: %+v; want the caller's number as conversation and relation on the channel", i, m)
		}
		if !strings.Contains(m.Content, "Missed call from +31612345678") || !strings.Contains(m.Content, "rang 201, 202") || !strings.Contains(m.Content, "+31858770023") {
			t.Errorf("message %d content %q: want the caller, the number dialled and the extensions that rang", i, m.Content)
		}
	}
	// The caller gets through.
	post("back-1", "ringing", "+31612345678", "203")
	post("back-1", "answered", "+31612345678", "203")
	post("back-1", "ended", "+31612345678", "")
	msgs = waitMessages(t, fake, 4)
	last := msgs[3]
	if last.ConversationExternalIdentifier != "+31612345678" || !strings.Contains(last.Content, "took a call from +31612345678") || !strings.Contains(last.Content, "203") {
		t.Errorf("closing message %+v: want who took the call, on the same conversation", last)
	}
	// Register-event is unchanged: the missed calls' Disconnected and the
	// answered call's events.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := fake.WaitEvents(ctx, 3+1+2); err != nil {
		t.Fatal(err)
	}
	// A later answered call from the same number sends nothing more: the
	// follow-up is closed.
	post("back-2", "answered", "+31612345678", "201")
	post("back-2", "ended", "+31612345678", "")
	if _, err := fake.WaitEvents(ctx, 3+1+2+2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the follow-up stream to drain", func() bool {
		return metricValue(t, tb, `voipbridge_queue_depth{priority="normal",sink="followups"}`) == "0"
	})
	if n := len(fake.Messages()); n != 4 {
		t.Errorf("%d Channel API messages, want 4 (anonymous and closed follow-ups send none): %+v", n, fake.Messages())
	}
	for _, m := range fake.Messages() {
		if m.Duplicate {
			t.Errorf("duplicate message %+v", m)
		}
	}
}

// TestFollowUpsDoNotHoldBackRegisterEvent: with the Channel API failing,
// register-event deliveries go on at once; the follow-up arrives when the
// Channel API is back.
func TestFollowUpsDoNotHoldBackRegisterEvent(t *testing.T) {
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key", APISecret: "test-secret"})
	t.Cleanup(fake.Close)
	fake.SetFault(robintest.Fault{Status: 503, Endpoint: robintest.EndpointMessages})
	tb := startBridgeWith(t, fake, t.TempDir(), "MISSED_CALL_CHANNEL=voipbridge-missed", "ROBIN_API_SECRET=test-secret",
		"TRANSFER_WINDOW=0s", "ROBIN_BREAKER_INTERVAL=200ms", "ROBIN_RETRY_MAX=1s")
	body := func(call, event string) string {
		return fmt.Sprintf(`{"call_id":%q,"event":%q,"from":"+31612345678","to":"+31858770023","extension":"201"}`, call, event)
	}
	tb.Post(t, "/v1/webhooks/generic", body("m1", "ringing"))
	tb.Post(t, "/v1/webhooks/generic", body("m1", "ended"))
	start := time.Now()
	for i := range 5 {
		id := fmt.Sprint("a", i)
		tb.Post(t, "/v1/webhooks/generic", body(id, "answered"))
		tb.Post(t, "/v1/webhooks/generic", body(id, "ended"))
	}
	tb.WaitEvents(t, 1+10)
	t.Logf("register-event delivered 11 events in %v while the Channel API answered 503", time.Since(start).Round(time.Millisecond))
	if n := len(fake.Messages()); n != 0 {
		t.Fatalf("%d messages accepted during the Channel API's outage", n)
	}
	eventually(t, "readyz to name the follow-ups' outage", func() bool {
		code, checks := readyz(t, tb)
		if code != http.StatusOK || checks["delivery"] != "ok" {
			t.Fatalf("readyz during the Channel API outage = %d %v; want 200 with register-event ok", code, checks)
		}
		return strings.HasPrefix(checks["delivery_followups"], "degraded")
	})
	fake.SetFault(robintest.Fault{})
	waitMessages(t, fake, 1)
}

// metricValue reads one sample of the bridge's /metrics by its full name
// and labels ("" when absent).
func metricValue(t *testing.T, tb *testBridge, sample string) string {
	t.Helper()
	resp, err := http.Get(tb.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}
