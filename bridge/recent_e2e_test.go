package bridge

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/voipbridge/voipbridge/events"
)

// TestRecentSignals: the admin endpoint lists the last signals folded with
// their outcome and the events they made, so "connected, but nothing
// arrives" can be answered by looking; it needs the admin token.
func TestRecentSignals(t *testing.T) {
	tb := startBridge(t, "ADMIN_TOKEN=adm")
	postCalls(t, tb, "rec", 1)
	// An internal call: folded, reported as nothing (INTERNAL_CALLS=ignore).
	if st := tb.Post(t, "/v1/webhooks/generic", `{"call_id":"int1","event":"answered","from":"202","extension":"201"}`); st != http.StatusAccepted {
		t.Fatalf("webhook: %d", st)
	}
	tb.WaitEvents(t, 2)
	get := func(token string) (int, []events.Folded) {
		req, _ := http.NewRequest("GET", tb.URL+"/v1/signals/recent", nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			Signals []events.Folded `json:"signals"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Signals
	}
	if st, _ := get("wrong"); st != http.StatusUnauthorized {
		t.Fatalf("without the admin token: %d", st)
	}
	var got []events.Folded
	waitUntil(t, "three signals folded", func() bool { _, got = get("adm"); return len(got) == 3 })
	want := []struct {
		call, state, outcome string
		events               int
	}{{"rec0", "answered", "applied", 1}, {"rec0", "ended", "applied", 1}, {"int1", "answered", "applied", 0}}
	for i, w := range want {
		g := got[i]
		if g.Signal.CallID != w.call || string(g.Signal.State) != w.state || g.Outcome != w.outcome || len(g.Events) != w.events {
			t.Errorf("signal %d: %+v, want %+v", i, g, w)
		}
	}
}
