package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
	"github.com/voipbridge/voipbridge/route/routetest"
)

// callLogWorld is a bridge with Chatwoot's call log on, against a fake
// Chatwoot account (3) with a phone inbox (4) and two agents whose e-mail
// addresses are in the directory (routeAgentsCSV), and a fake ROBIN.
type callLogWorld struct {
	*testBridge
	cw  *routetest.Chatwoot
	dir string
	env []string
}

func startCallLog(t *testing.T, env ...string) *callLogWorld {
	t.Helper()
	w := &callLogWorld{cw: routetest.NewChatwoot(3, "cw-token"), dir: t.TempDir()}
	w.cw.AddInbox(routetest.ChatwootInbox{ID: 4, Name: "Phone", ChannelType: "Channel::TwilioSms"})
	w.cw.AddAgent(routetest.ChatwootAgent{ID: 31, Name: "Petra", Email: "petra@shop.example", Role: "agent"})
	w.cw.AddAgent(routetest.ChatwootAgent{ID: 32, Name: "Sam", Email: "sam@shop.example", Role: "agent"})
	agents := filepath.Join(t.TempDir(), "agents.csv")
	if err := os.WriteFile(agents, []byte(routeAgentsCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key", APISecret: "test-secret"})
	t.Cleanup(fake.Close)
	w.env = append([]string{
		"CHATWOOT_URL=" + routetest.Start(t, w.cw),
		"CHATWOOT_ACCOUNT_ID=3",
		"CHATWOOT_API_TOKEN=cw-token",
		"CHATWOOT_INBOX_ID=4",
		"CHATWOOT_TIMEOUT=1s",
		"EXTENSIONS_FILE=" + agents,
		"TRANSFER_WINDOW=0s",
		"ROBIN_BREAKER_INTERVAL=200ms",
		"ROBIN_RETRY_MAX=1s",
	}, env...)
	w.testBridge = startBridgeWith(t, fake, w.dir, w.env...)
	return w
}

// restart stops the bridge and starts it again on the same journal.
func (w *callLogWorld) restart(t *testing.T) {
	t.Helper()
	w.Stop(t)
	w.testBridge = startBridgeWith(t, w.Robin, w.dir, w.env...)
}

// post sends one generic webhook signal of call from the number.
func (w *callLogWorld) post(t *testing.T, call, event, from, ext string) {
	t.Helper()
	body := fmt.Sprintf(`{"call_id":%q,"event":%q,"from":%q,"to":"+31858770023","extension":%q}`, call, event, from, ext)
	if st := w.Post(t, "/v1/webhooks/generic", body); st != http.StatusAccepted {
		t.Fatalf("webhook %s %s: %d", call, event, st)
	}
}

// waitNotes waits until Chatwoot holds n messages, and checks that each is
// a private note.
func (w *callLogWorld) waitNotes(t *testing.T, n int) []routetest.ChatwootMessage {
	t.Helper()
	eventually(t, fmt.Sprintf("%d notes in Chatwoot", n), func() bool { return len(w.cw.Messages()) >= n })
	msgs := w.cw.Messages()
	for _, m := range msgs {
		if !m.Private || m.MessageType != 1 {
			t.Errorf("message %+v: want a private note (outgoing, private)", m)
		}
	}
	return msgs
}

// TestChatwootCallLog: a call answered by Petra and transferred to Sam,
// and a missed call, from one number become four private notes on one
// conversation in the inbox, of one contact created with the E.164 number;
// after a restart the next call's notes go to the same conversation, and
// neither contact nor conversation is created again. ROBIN gets its events
// as before.
func TestChatwootCallLog(t *testing.T) {
	w := startCallLog(t)
	const caller = "+31612345678"
	// A contact whose number contains the caller's: the search finds it,
	// the exact match leaves it.
	w.cw.AddContact(routetest.ChatwootContact{ID: 1, Name: "Someone else", PhoneNumber: caller + "9"})
	w.post(t, "t1", "ringing", "0612345678", "201")
	w.post(t, "t1", "answered", "0612345678", "201")
	w.post(t, "t1", "transferred", "0612345678", "202")
	w.post(t, "t1", "ended", "0612345678", "")
	w.post(t, "m1", "ringing", caller, "201")
	w.post(t, "m1", "ringing", caller, "202")
	w.post(t, "m1", "ended", caller, "")
	msgs := w.waitNotes(t, 4)
	w.WaitEvents(t, 4) // Answered, Transfer, Disconnected; the missed call's Disconnected

	contacts := w.cw.Contacts()
	if len(contacts) != 2 || contacts[1].PhoneNumber != caller {
		t.Fatalf("contacts %+v: want one created with the caller's E.164 number", contacts)
	}
	convs := w.cw.Conversations()
	if len(convs) != 1 || convs[0].ContactID != contacts[1].ID || convs[0].InboxID != 4 || convs[0].Status != "open" {
		t.Fatalf("conversations %+v: want one, open, of the new contact in inbox 4", convs)
	}
	wants := []string{
		"Call from +31612345678 to +31858770023 answered by Petra (201) at ",
		"Call transferred from Petra (201) to Sam (202) at ",
		"Call ended at ",
		"Missed call from +31612345678 to +31858770023 at ",
	}
	for i, m := range msgs {
		if m.Conversation != convs[0].DisplayID || !strings.HasPrefix(m.Content, wants[i]) {
			t.Errorf("note %d %+v: want %q… on conversation %d", i, m, wants[i], convs[0].DisplayID)
		}
	}
	if !strings.Contains(msgs[2].Content, "last with Sam (202)") || !strings.Contains(msgs[3].Content, "rang Petra (201), Sam (202)") {
		t.Errorf("notes %q, %q: want who had the call last and who rang", msgs[2].Content, msgs[3].Content)
	}

	w.restart(t)
	w.post(t, "c3", "answered", caller, "202")
	w.post(t, "c3", "ended", caller, "")
	msgs = w.waitNotes(t, 6)
	for _, m := range msgs[4:] {
		if m.Conversation != convs[0].DisplayID {
			t.Errorf("note after the restart %+v: want it on conversation %d", m, convs[0].DisplayID)
		}
	}
	if c, v := w.cw.Requests("contacts"), w.cw.Requests("conversations"); c != 1 || v != 1 || len(w.cw.Contacts()) != 2 || len(w.cw.Conversations()) != 1 {
		t.Errorf("%d contact and %d conversation creations; want one each", c, v)
	}
	if n := w.cw.Requests("contacts/search"); n != 1 {
		t.Errorf("%d contact searches, want 1 (the contact is remembered)", n)
	}
	eventually(t, "the call log's stream to drain", func() bool {
		return metricValue(t, w.testBridge, `voipbridge_queue_depth{priority="normal",sink="chatwoot"}`) == "0"
	})
	if v := metricValue(t, w.testBridge, `voipbridge_deliveries_total{reason="ok",sink="chatwoot",status="2xx"}`); v != "2" {
		t.Errorf("chatwoot deliveries since the restart %q, want 2", v)
	}
	if v := metricValue(t, w.testBridge, `voipbridge_chatwoot_requests_total{endpoint="messages",status="2xx"}`); v != "2" {
		t.Errorf("notes posted since the restart %q, want 2", v)
	}
	if code, checks := readyz(t, w.testBridge); code != http.StatusOK || checks["delivery_chatwoot"] != "ok" {
		t.Errorf("readyz %d %v; want delivery_chatwoot ok", code, checks)
	}
	if n := len(w.cw.Messages()); n != 6 {
		t.Errorf("%d notes, want 6", n)
	}
}

// TestChatwootDeadLetterReplay: Chatwoot's 422 for a number that is not
// E.164 dead-letters the event for sink chatwoot with Chatwoot's message;
// a note Chatwoot refused (400) and that an operator replays goes to
// Chatwoot only: ROBIN does not get the event again.
func TestChatwootDeadLetterReplay(t *testing.T) {
	w := startCallLog(t, "ADMIN_TOKEN=adm", "DELIVERY_WORKERS=1")
	admin := func(method, path string) (int, map[string]json.RawMessage) {
		t.Helper()
		req, _ := http.NewRequest(method, w.URL+path, nil)
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
	type deadLetter struct {
		ID     uint64 `json:"id"`
		CallID string `json:"call_id"`
		Sink   string `json:"sink"`
		Status int    `json:"status"`
		Body   string `json:"body"`
		Reason string `json:"reason"`
	}
	chatwootLetters := func() []deadLetter {
		var list, out []deadLetter
		_, body := admin("GET", "/v1/deadletters")
		_ = json.Unmarshal(body["deadletters"], &list)
		for _, dl := range list {
			if dl.Sink == "chatwoot" {
				out = append(out, dl)
			}
		}
		return out
	}

	// Nineteen digits: no number anywhere, sent on as it came.
	w.post(t, "bad1", "ringing", "0123456789012345678", "201")
	w.post(t, "bad1", "ended", "0123456789012345678", "")
	var dls []deadLetter
	eventually(t, "the dead letter for chatwoot", func() bool { dls = chatwootLetters(); return len(dls) == 1 })
	if dl := dls[0]; dl.CallID != "bad1" || dl.Status != 422 || dl.Body != "Phone number should be in e164 format" || dl.Reason != "permanent" {
		t.Fatalf("dead letter %+v: want Chatwoot's 422 and its message", dl)
	}
	if n := len(w.cw.Contacts()); n != 0 {
		t.Fatalf("%d contacts", n)
	}

	// Chatwoot refuses everything for a while (a proxy's 400).
	w.cw.SetStatus(http.StatusBadRequest)
	w.post(t, "ok1", "answered", "+31612345678", "201")
	eventually(t, "the second dead letter for chatwoot", func() bool { dls = chatwootLetters(); return len(dls) == 2 })
	w.cw.SetStatus(0)
	robinBefore := len(w.WaitEvents(t, 2)) // bad1's Disconnected, ok1's Answered
	if st, body := admin("POST", fmt.Sprintf("/v1/deadletters/%d/replay", dls[1].ID)); st != http.StatusOK {
		t.Fatalf("replay: %d %s", st, body["error"])
	}
	msgs := w.waitNotes(t, 1)
	if len(msgs) != 1 || !strings.Contains(msgs[0].Content, "answered by Petra (201)") {
		t.Fatalf("notes after the replay %+v", msgs)
	}
	// A missed call after the replay: once ROBIN has it, it would have had
	// a replayed Answered before it (one worker, answers first).
	w.post(t, "mark", "ringing", "+31687654321", "201")
	w.post(t, "mark", "ended", "+31687654321", "")
	got := w.WaitEvents(t, robinBefore+1)
	if len(got) != robinBefore+1 || got[robinBefore].Event.ID != "mark" {
		t.Fatalf("ROBIN got %+v after the replay; want only the missed call", got[robinBefore-1:])
	}
	if left := chatwootLetters(); len(left) != 1 || left[0].CallID != "bad1" {
		t.Errorf("dead letters after the replay %+v; want bad1's", left)
	}
}

// TestChatwootRateLimited: rack-attack's 429 pauses the call log only:
// register-event and the follow-ups go on at once, /readyz names the pause
// as degraded, and the notes follow when Chatwoot lets them.
func TestChatwootRateLimited(t *testing.T) {
	w := startCallLog(t, "MISSED_CALL_CHANNEL=voipbridge-missed", "ROBIN_API_SECRET=test-secret")
	// Two requests per client every 3 seconds, with Retry-After.
	w.cw.SetThrottle(2, 3*time.Second, true)
	w.post(t, "r1", "answered", "+31612345678", "201")
	w.post(t, "r1", "ended", "+31612345678", "")
	w.WaitEvents(t, 2)
	eventually(t, "readyz to name the call log's pause", func() bool {
		code, checks := readyz(t, w.testBridge)
		paused := strings.Contains(checks["delivery_chatwoot"], "rate_limited")
		if paused && (code != http.StatusOK || checks["delivery"] != "ok" || checks["delivery_followups"] != "ok") {
			t.Fatalf("readyz during Chatwoot's 429 = %d %v; want 200 with register-event and follow-ups ok", code, checks)
		}
		return paused
	})
	start := time.Now()
	w.post(t, "r2", "ringing", "+31687654321", "202")
	w.post(t, "r2", "ended", "+31687654321", "")
	w.WaitEvents(t, 3)
	waitMessages(t, w.Robin, 1)
	if took := time.Since(start); took > time.Second {
		t.Errorf("register-event and the follow-up took %v while Chatwoot throttled", took)
	}
	if v := metricValue(t, w.testBridge, `voipbridge_delivery_paused{reason="rate_limited",sink="robin"}`); v == "1" {
		t.Error("register-event paused")
	}
	if v, _ := strconv.Atoi(metricValue(t, w.testBridge, `voipbridge_deliveries_total{reason="rate_limited",sink="chatwoot",status="4xx"}`)); v < 1 {
		t.Errorf("%d deliveries to Chatwoot rate limited, want at least one", v)
	}
	w.cw.SetThrottle(3000, time.Minute, false)
	w.waitNotes(t, 3)
	eventually(t, "the call log's stream to drain", func() bool {
		return metricValue(t, w.testBridge, `voipbridge_queue_depth{priority="normal",sink="chatwoot"}`) == "0"
	})
	if n := len(w.cw.Messages()); n != 3 {
		t.Errorf("%d notes, want 3", n)
	}
}

// TestChatwootDownDoesNotDelayRobin: while Chatwoot hangs (the call log's
// request waiting for its timeout, then timed out), then answers 503 (the
// call log's breaker open), each call's events reach ROBIN within a
// second; the notes arrive, once each, when Chatwoot is back.
func TestChatwootDownDoesNotDelayRobin(t *testing.T) {
	// Ten new callers cost 60 requests, the failed ones counted: more
	// than the default rate limit allows in a minute.
	w := startCallLog(t, "CHATWOOT_RATE_LIMITS=1000/1m")
	var worst time.Duration
	events := 0
	calls := func(n int) {
		t.Helper()
		for range n {
			call, from := fmt.Sprint("d", events/2), fmt.Sprintf("+3161234%04d", events/2)
			start := time.Now()
			w.post(t, call, "answered", from, "201")
			w.post(t, call, "ended", from, "")
			events += 2
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			if _, err := w.Robin.WaitEvents(ctx, events); err != nil {
				t.Fatal(err)
			}
			cancel()
			worst = max(worst, time.Since(start))
		}
	}
	w.cw.SetDelay(time.Hour)
	calls(3) // the call log's first request hangs
	eventually(t, "the call log's request to time out", func() bool {
		return metricValue(t, w.testBridge, `voipbridge_deliveries_total{reason="retryable",sink="chatwoot",status="error"}`) != ""
	})
	calls(2)
	w.cw.SetDelay(0)
	w.cw.SetStatus(http.StatusServiceUnavailable)
	eventually(t, "readyz to name Chatwoot's outage", func() bool {
		code, checks := readyz(t, w.testBridge)
		if code != http.StatusOK || checks["delivery"] != "ok" {
			t.Fatalf("readyz during Chatwoot's outage = %d %v; want 200 with register-event ok", code, checks)
		}
		return strings.Contains(checks["delivery_chatwoot"], "circuit breaker open")
	})
	calls(5)
	t.Logf("slowest call at ROBIN while Chatwoot hung or answered 503: %v", worst.Round(time.Millisecond))
	if worst > time.Second {
		t.Errorf("a call took %v to reach ROBIN while Chatwoot was down", worst)
	}
	if n := len(w.cw.Messages()); n != 0 {
		t.Fatalf("%d notes during the outage", n)
	}
	w.cw.SetStatus(0)
	w.waitNotes(t, 20)
	eventually(t, "the call log's stream to drain", func() bool {
		return metricValue(t, w.testBridge, `voipbridge_queue_depth{priority="normal",sink="chatwoot"}`) == "0"
	})
	if n := len(w.cw.Messages()); n != 20 {
		t.Errorf("%d notes, want 20: one per event", n)
	}
	if n := len(w.cw.Contacts()); n != 10 {
		t.Errorf("%d contacts, want 10", n)
	}
}

// TestChatwootAssign: with CHATWOOT_ASSIGN the conversation is assigned
// to the agent who answered, then to the one who took the transfer
// (Chatwoot's agent with the directory's e-mail address).
func TestChatwootAssign(t *testing.T) {
	w := startCallLog(t, "CHATWOOT_ASSIGN=true")
	w.post(t, "a1", "answered", "+31612345678", "201")
	w.waitNotes(t, 1)
	if a := w.cw.Conversations()[0].Assignee; a == nil || a.Email != "petra@shop.example" {
		t.Fatalf("assignee %+v, want Petra", a)
	}
	w.post(t, "a1", "transferred", "+31612345678", "202")
	w.waitNotes(t, 2)
	if a := w.cw.Conversations()[0].Assignee; a == nil || a.Email != "sam@shop.example" {
		t.Fatalf("assignee %+v, want Sam", a)
	}
}

// TestChatwootCallLogConfig: the call log's settings are checked with
// clear errors; CHATWOOT_CALL_LOG=false turns it off and leaves routing's
// Chatwoot settings alone.
func TestChatwootCallLogConfig(t *testing.T) {
	base := []string{"ROBIN_API_KEY=k", "WEBHOOK_TOKEN=t"}
	chatwoot := []string{"CHATWOOT_URL=https://chat.example", "CHATWOOT_ACCOUNT_ID=3", "CHATWOOT_API_TOKEN=tok"}
	for _, c := range []struct {
		name string
		env  []string
		want []string // in the error; none: valid
		on   bool
	}{
		{"on", append(chatwoot, "CHATWOOT_INBOX_ID=4"), nil, true},
		{"routing only", chatwoot, nil, false},
		{"off", append(chatwoot, "CHATWOOT_INBOX_ID=4", "CHATWOOT_CALL_LOG=false"), nil, false},
		{"no url", []string{"CHATWOOT_INBOX_ID=4"}, []string{"CHATWOOT_INBOX_ID is set but CHATWOOT_URL is not"}, false},
		{"no token", append(chatwoot[:2:2], "CHATWOOT_INBOX_ID=4"), []string{"CHATWOOT_API_TOKEN"}, false},
		{"bad values", append(chatwoot, "CHATWOOT_INBOX_ID=phone", "CHATWOOT_RATE_LIMITS=lots", "CHATWOOT_TIMEOUT=0s"),
			[]string{`CHATWOOT_INBOX_ID "phone"`, "CHATWOOT_RATE_LIMITS", "CHATWOOT_TIMEOUT"}, false},
		{"assign alone", append(chatwoot, "CHATWOOT_ASSIGN=true"), []string{"CHATWOOT_ASSIGN is set but CHATWOOT_INBOX_ID is not"}, false},
		{"assign off", append(chatwoot, "CHATWOOT_INBOX_ID=4", "CHATWOOT_CALL_LOG=false", "CHATWOOT_ASSIGN=true"), []string{"CHATWOOT_CALL_LOG is false"}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := LoadConfig(append(append([]string{}, base...), c.env...))
			for _, want := range c.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v, want %q in it", err, want)
				}
			}
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("config: %v", err)
				}
				if on := cfg.Sinks.callLog(&cfg); on != c.on {
					t.Errorf("call log on = %v, want %v", on, c.on)
				}
			}
		})
	}
}
