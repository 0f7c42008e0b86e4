package bridge

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/robin/robintest"
	"github.com/voipbridge/voipbridge/sip/siptest"
)

// shapeWindow is TRANSFER_WINDOW in these tests: long enough for the legs of
// one call to follow each other on a loaded machine (milliseconds apart
// here), short enough to keep the suite quick.
const shapeWindow = time.Second

// shapeRig is one fake PBX playing a B2BUA (every phone's leg a dialog with
// a Call-ID of its own, the caller's number and the DID on each) and one
// bridge watching 201 and 202 on it, for one customer.
type shapeRig struct {
	pbx      *siptest.PBX
	tb       *testBridge
	env      []string
	customer string
}

func startShapeRig(t *testing.T, customer string) *shapeRig {
	t.Helper()
	pbx := siptest.Start(t, siptest.Options{Username: sipUser, Password: sipPass})
	r := &shapeRig{pbx: pbx, customer: customer, env: []string{
		"SIP_SERVER=" + pbx.Addr(), "SIP_TRANSPORT=udp", "SIP_DOMAIN=" + pbx.Domain(),
		"SIP_LISTEN=127.0.0.1:0", "SIP_USERNAME=" + sipUser, "SIP_PASSWORD=" + sipPass,
		"SIP_EXTENSIONS=201,202", "SIP_SUBSCRIBE_RATE=-1", "TRANSFER_WINDOW=" + shapeWindow.String(),
	}}
	r.tb = startBridge(t, r.env...)
	r.subscribed(t)
	return r
}

func (r *shapeRig) subscribed(t *testing.T) {
	t.Helper()
	waitUntil(t, "201 and 202 subscribed", func() bool { return r.pbx.Subscribed("201") > 0 && r.pbx.Subscribed("202") > 0 })
}

// ring makes the customer's call ring ext on a dialog of its own and waits
// until the bridge acknowledged (journaled) the NOTIFY: a phone rings for a
// while before anything else happens to it.
func (r *shapeRig) ring(t *testing.T, ext string) *siptest.Leg {
	t.Helper()
	l := r.pbx.Inbound(ext, national(r.customer), "0201234567")
	r.delivered(t, l)
	return l
}

func (r *shapeRig) delivered(t *testing.T, l *siptest.Leg) {
	t.Helper()
	waitUntil(t, "NOTIFY for "+l.Ext+" acknowledged", l.Delivered)
}

// expect waits until ROBIN holds every event of calls, lets TRANSFER_WINDOW
// and then some pass so that a stray event (a phantom missed call, a second
// Disconnected) would arrive, and checks ROBIN got exactly calls: each
// call's events in order, nothing else, nothing flagged.
func (r *shapeRig) expect(t *testing.T, calls ...[]wantEvent) {
	t.Helper()
	total := 0
	for _, c := range calls {
		total += len(c)
	}
	r.tb.WaitEvents(t, total)
	time.Sleep(shapeWindow + 500*time.Millisecond) // an absence can only be waited for
	got := r.tb.Robin.Events()
	for _, c := range calls {
		if d := cmp.Diff(c, eventsOf(forCall(got, c[0].ID))); d != "" {
			t.Errorf("events at ROBIN for %s (-want +got):\n%s", c[0].ID, d)
		}
	}
	if len(got) != total {
		t.Errorf("ROBIN got %d events, want %d:\n%+v", len(got), total, eventsOf(got))
	}
	flagged(t, got)
}

func flagged(t *testing.T, got []robintest.Received) {
	t.Helper()
	for _, r := range got {
		if r.Duplicate || r.OutOfOrder {
			t.Errorf("ROBIN flagged %+v", r.Event)
		}
	}
}

// TestSIPB2BUAShapesEndToEnd plays what a B2BUA PBX shows over dialog
// events, where nothing links the dialogs of one customer call: a ring
// group, a caller giving up on it, a hunt group after a busy phone, and the
// cases that must stay apart (a redial after the window, two calls from one
// number at once). Each runs on a bridge of its own so that ROBIN's events
// can be checked exactly.
func TestSIPB2BUAShapesEndToEnd(t *testing.T) {
	t.Run("ring group answered by one phone", func(t *testing.T) {
		t.Parallel()
		r := startShapeRig(t, "+31612347001")
		g := r.pbx.RingGroup(national(r.customer), "0201234567", "201", "202")
		r.delivered(t, g.Legs[1])
		won := g.Answer("202") // 201 is cancelled
		r.tb.WaitEvents(t, 1)
		won.Hangup("remote-bye")
		r.expect(t, inbound(g.Legs[0].CallID, "202", r.customer, "Answered", "Disconnected"))
	})
	t.Run("ring group the caller gives up on", func(t *testing.T) {
		t.Parallel()
		r := startShapeRig(t, "+31612347002")
		g := r.pbx.RingGroup(national(r.customer), "0201234567", "201", "202")
		r.delivered(t, g.Legs[1])
		g.Cancel()
		// One missed call (MISSED_CALLS=report, the default), with the
		// last phone that rang.
		r.expect(t, inbound(g.Legs[0].CallID, "202", r.customer, "Disconnected"))
	})
	t.Run("hunt group after a busy phone", func(t *testing.T) {
		t.Parallel()
		r := startShapeRig(t, "+31612347003")
		busy := r.pbx.Inbound("201", national(r.customer), "0201234567")
		busy.Reject()
		r.delivered(t, busy)
		next := r.ring(t, "202")
		next.Answer()
		r.tb.WaitEvents(t, 1)
		next.Hangup("remote-bye")
		r.expect(t, inbound(busy.CallID, "202", r.customer, "Answered", "Disconnected"))
	})
	t.Run("redial after the window is a new call", func(t *testing.T) {
		t.Parallel()
		r := startShapeRig(t, "+31612347004")
		first := r.ring(t, "201")
		first.Answer()
		r.tb.WaitEvents(t, 1)
		first.Hangup("remote-bye")
		ended := time.Now()
		r.tb.WaitEvents(t, 2)
		time.Sleep(time.Until(ended.Add(shapeWindow * 3 / 2))) // the caller redials 1.5 windows later
		second := r.ring(t, "201")
		second.Answer()
		r.tb.WaitEvents(t, 3)
		second.Hangup("remote-bye")
		r.expect(t,
			inbound(first.CallID, "201", r.customer, "Answered", "Disconnected"),
			inbound(second.CallID, "201", r.customer, "Answered", "Disconnected"))
	})
	t.Run("a second call from one number first seen answered stays a call of its own", func(t *testing.T) {
		t.Parallel()
		r := startShapeRig(t, "+31612347006")
		a := r.ring(t, "201")
		a.Answer()
		r.tb.WaitEvents(t, 1)
		b := r.pbx.InboundAnswered("202", national(r.customer), "0201234567") // a is still going
		r.delivered(t, b)
		r.tb.WaitEvents(t, 2) // b's Answered, once the window passed
		b.Hangup("remote-bye")
		r.tb.WaitEvents(t, 3)
		a.Hangup("remote-bye")
		r.expect(t,
			inbound(a.CallID, "201", r.customer, "Answered", "Disconnected"),
			inbound(b.CallID, "202", r.customer, "Answered", "Disconnected"))
	})
	t.Run("a hand-over on a new dialog with no link is a transfer", func(t *testing.T) {
		t.Parallel()
		r := startShapeRig(t, "+31612347007")
		a := r.ring(t, "201")
		a.Answer()
		r.tb.WaitEvents(t, 1)
		b := r.pbx.InboundAnswered("202", national(r.customer), "0201234567")
		r.delivered(t, b)
		a.Hangup("local-bye") // the PBX let the first agent go
		r.tb.WaitEvents(t, 2)
		b.Hangup("remote-bye")
		r.expect(t, inbound(a.CallID, "201", r.customer, "Answered", "Transfer@202", "Disconnected@202"))
	})
	t.Run("two calls from one number at once", func(t *testing.T) {
		t.Parallel()
		r := startShapeRig(t, "+31612347005")
		a := r.ring(t, "201")
		a.Answer()
		r.tb.WaitEvents(t, 1)
		b := r.ring(t, "202") // a is still going
		b.Answer()
		r.tb.WaitEvents(t, 2)
		b.Hangup("remote-bye")
		r.tb.WaitEvents(t, 3)
		a.Hangup("remote-bye")
		r.expect(t,
			inbound(a.CallID, "201", r.customer, "Answered", "Disconnected"),
			inbound(b.CallID, "202", r.customer, "Answered", "Disconnected"))
	})
}

// TestSIPCallEndedWhileBridgeDown: the bridge remembers dialogs only in
// memory and the PBX forgets a dialog once it ended, so a call that ends
// while the bridge is stopped is simply absent from the first NOTIFY after
// the restart. That NOTIFY's snapshot is what ends it.
func TestSIPCallEndedWhileBridgeDown(t *testing.T) {
	r := startShapeRig(t, "+31612347006")
	call := r.ring(t, "201")
	call.Answer()
	r.tb.WaitEvents(t, 1)
	r.tb.Stop(t) // graceful: the bridge unsubscribes
	waitUntil(t, "unsubscribed", func() bool { return r.pbx.Subscribed("201") == 0 && r.pbx.Subscribed("202") == 0 })
	call.Hangup("remote-bye") // nobody is told
	if n := len(r.tb.Robin.Events()); n != 1 {
		t.Fatalf("ROBIN got %d events while the bridge was down, want 1", n)
	}

	r.tb = startBridgeWith(t, r.tb.Robin, r.tb.Dir, r.env...)
	r.subscribed(t)
	r.expect(t, inbound(call.CallID, "201", r.customer, "Answered", "Disconnected"))
}
