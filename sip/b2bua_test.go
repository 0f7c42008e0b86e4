package sip_test

import (
	"testing"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/sip/siptest"
)

// TestB2BUARingGroupAndBusyPhone: the fake PBX plays a B2BUA's ring group
// (a dialog with a Call-ID of its own per phone, the caller on each) and a
// busy phone; the monitor reports each dialog as a leg of its own call with
// the PBX's cause, the group's legs in the order they rang.
func TestB2BUARingGroupAndBusyPhone(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Username: user, Password: pass})
	h := start(t, pbx, []string{"201", "202"}, nil)
	g := pbx.RingGroup("0612345678", "0201234567", "201", "202")
	a, b := g.Legs[0], g.Legs[1]
	if a.CallID == b.CallID || a.ID == b.ID || a.Ext != "201" || b.Ext != "202" {
		t.Fatalf("ring group legs %+v and %+v, want a dialog and a Call-ID per phone", a, b)
	}
	waitFor(t, "both ringing", func() bool { return len(h.rec.unique()) == 2 })
	if got := h.rec.unique(); got[0].LegID != a.ID+"@201" {
		t.Errorf("first ringing leg %s, want 201's", got[0].LegID)
	}
	if won := g.Answer("202"); won != b {
		t.Fatalf("Answer returned %+v", won)
	}
	b.Hangup("remote-bye")
	busy := pbx.Inbound("201", "0612345678", "0201234567")
	busy.Reject()
	h.expect(t, []events.Signal{
		sig(a, events.Ringing, ""), sig(a, events.Ended, "cancelled"), sig(busy, events.Ringing, ""), sig(busy, events.Ended, "rejected"),
		sig(b, events.Ringing, ""), sig(b, events.Answered, ""), sig(b, events.Ended, "remote-bye"),
	})
}
