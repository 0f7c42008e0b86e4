package events

import (
	"testing"
	"time"
)

// TestLiveCalls: the tracker's live view follows a call from ringing through
// answered and a transfer to its end, when it leaves the view; every change
// closes the channel Live returned.
func TestLiveCalls(t *testing.T) {
	p := startPipeline(t, t.TempDir(), newRecordingSink())
	waitLive := func(what string, ok func([]LiveCall) bool) []LiveCall {
		t.Helper()
		deadline := time.After(20 * time.Second)
		for {
			calls, changed := p.tr.Live()
			if ok(calls) {
				return calls
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("live view never showed %s; last %+v", what, calls)
			}
		}
	}
	num := func(s *Signal) { s.Remote = "+31612345678"; s.Dialled = "+31858770023" }
	publish(t, p.j, sig(0, "live-1", Ringing, "201", num))
	c := waitLive("the call ringing on 201", func(cs []LiveCall) bool {
		return len(cs) == 1 && cs[0].State == "ringing" && len(cs[0].Extensions) == 1 && cs[0].Extensions[0] == "201"
	})[0]
	if c.CallID != "live-1" || c.Customer != "+31612345678" || c.Source == "" || c.Started.IsZero() {
		t.Errorf("live call %+v: want call id, customer, source and start", c)
	}
	publish(t, p.j, sig(0, "live-1", Answered, "201", num))
	waitLive("the call answered by 201", func(cs []LiveCall) bool {
		return len(cs) == 1 && cs[0].State == "answered" && cs[0].Agent == "201"
	})
	publish(t, p.j, sig(0, "live-1", Answered, "202", num, legID("b")))
	waitLive("the transfer to 202", func(cs []LiveCall) bool {
		return len(cs) == 1 && cs[0].Agent == "202" && cs[0].Transfers == 1
	})
	publish(t, p.j, sig(0, "live-1", Ended, "", num))
	waitLive("the call gone", func(cs []LiveCall) bool { return len(cs) == 0 })
}
