package main

import (
	"context"
	"fmt"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
	"github.com/voipbridge/voipbridge/route/routetest"
)

// TestKillNineWithSinks: register-event and the missed-call follow-ups
// behind a slow ROBIN, and the Chatwoot call log behind a slow Chatwoot;
// SIGKILL, restart: nothing lost on any sink, each repeats at most the
// requests it had in flight (one worker each), and Chatwoot's contacts and
// conversations are created once.
func TestKillNineWithSinks(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	fake := robintest.NewServer(robintest.Options{APIKey: "kill-key", APISecret: "kill-secret"})
	defer fake.Close()
	slow := slowHelpdesk(t, fake, 60*time.Millisecond)
	cw := routetest.NewChatwoot(3, "cw-token")
	cw.AddInbox(routetest.ChatwootInbox{ID: 4, Name: "Phone", ChannelType: "Channel::Api"})
	cwURL := routetest.Start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond) // a slow Chatwoot, so the kill finds work in flight
		cw.ServeHTTP(w, r)
	}))
	dir, addr := t.TempDir(), freeAddr(t)
	env := []string{
		"HTTP_ADDR=" + addr, "DATA_DIR=" + dir, "LOG_FORMAT=json",
		"ROBIN_API_URL=" + slow.URL, "ROBIN_PRESENCE_URL=" + slow.URL + "/api/v1", "ROBIN_API_KEY=kill-key", "ROBIN_API_SECRET=kill-secret",
		"WEBHOOK_TOKEN=kill-token", "TRANSFER_WINDOW=0s", "DELIVERY_WORKERS=1", "ROBIN_RATE_LIMITS=1000/1s",
		"MISSED_CALL_CHANNEL=missed",
		"CHATWOOT_URL=" + cwURL, "CHATWOOT_ACCOUNT_ID=3", "CHATWOOT_API_TOKEN=cw-token", "CHATWOOT_INBOX_ID=4",
		"CHATWOOT_RATE_LIMITS=10000/1m",
	}
	cmd := startProcess(t, bin, addr, env)
	const calls = 30
	for i := range calls {
		from := fmt.Sprintf("+3161234%04d", i)
		postWebhook(t, addr, "kill-token", fmt.Sprintf(`{"call_id":"m%d","event":"ringing","from":%q,"to":"+31858770023","extension":"201"}`, i, from))
		postWebhook(t, addr, "kill-token", fmt.Sprintf(`{"call_id":"m%d","event":"ended","from":%q,"to":"+31858770023"}`, i, from))
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(fake.Messages()) < 3 || len(fake.Events()) < 3 || len(cw.Messages()) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("before the kill: %d events, %d messages", len(fake.Events()), len(fake.Messages()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	ev, msg, notesBefore := len(fake.Events()), len(fake.Messages()), len(cw.Messages())
	if ev >= calls && msg >= calls && notesBefore >= calls {
		t.Fatal("every sink delivered everything before the kill; the test proves nothing")
	}
	t.Logf("killed with %d of %d events, %d of %d follow-ups and %d of %d Chatwoot notes delivered", ev, calls, msg, calls, notesBefore, calls)
	cmd = startProcess(t, bin, addr, env)
	defer func() { cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Every call's event, counted by call: a repeat of the request in
	// flight at the kill is one event more, so a count of events alone
	// can be reached while one call is still missing.
	eventRepeats := 0
	seen := map[string]bool{}
	for {
		eventRepeats, seen = 0, map[string]bool{}
		for _, r := range fake.Events() {
			if seen[r.Event.ID] {
				eventRepeats++
			}
			seen[r.Event.ID] = true
		}
		if len(seen) == calls {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("register-event after the restart: %d of %d calls", len(seen), calls)
		}
		time.Sleep(20 * time.Millisecond)
	}
	byID := map[string]int{}
	for {
		byID = map[string]int{}
		for _, m := range fake.Messages() {
			byID[m.MessageExternalIdentifier]++
		}
		if len(byID) == calls {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("follow-ups after the restart: %d of %d", len(byID), calls)
		}
		time.Sleep(20 * time.Millisecond)
	}
	msgRepeats := len(fake.Messages()) - len(byID)
	// Chatwoot: one contact and one conversation per caller, one note per
	// missed call.
	notes := map[int]int{}
	for {
		notes = map[int]int{}
		for _, m := range cw.Messages() {
			if m.Private {
				notes[m.Conversation]++
			}
		}
		if len(notes) == calls {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("Chatwoot notes after the restart: %d conversations of %d have one", len(notes), calls)
		}
		time.Sleep(20 * time.Millisecond)
	}
	noteRepeats := 0
	for _, n := range notes {
		noteRepeats += n - 1
	}
	if c, v := len(cw.Contacts()), len(cw.Conversations()); c != calls || v != calls {
		t.Errorf("Chatwoot has %d contacts and %d conversations, want %d of each (created once)", c, v, calls)
	}
	t.Logf("repeats: %d on register-event, %d on the follow-ups, %d Chatwoot notes", eventRepeats, msgRepeats, noteRepeats)
	if eventRepeats > 1 || msgRepeats > 1 || noteRepeats > 1 {
		t.Errorf("repeats %d, %d and %d: want at most one per sink (one request in flight each at the kill)", eventRepeats, msgRepeats, noteRepeats)
	}
}
