package bridge

import (
	"testing"

	"github.com/voipbridge/voipbridge/sip/siptest"
)

// startWindow0Rig is a bridge with TRANSFER_WINDOW=0 watching 201 and 202.
func startWindow0Rig(t *testing.T, customer string, env ...string) *shapeRig {
	t.Helper()
	pbx := siptest.Start(t, siptest.Options{Username: sipUser, Password: sipPass})
	r := &shapeRig{pbx: pbx, customer: customer, env: append([]string{
		"SIP_SERVER=" + pbx.Addr(), "SIP_TRANSPORT=udp", "SIP_DOMAIN=" + pbx.Domain(),
		"SIP_LISTEN=127.0.0.1:0", "SIP_USERNAME=" + sipUser, "SIP_PASSWORD=" + sipPass,
		"SIP_EXTENSIONS=201,202", "SIP_SUBSCRIBE_RATE=-1", "TRANSFER_WINDOW=0s",
	}, env...)}
	r.tb = startBridge(t, r.env...)
	r.subscribed(t)
	return r
}

// TestSIPTransfersWithoutWindow: with TRANSFER_WINDOW=0 a transfer still
// gives Answered, Transfer, Disconnected under the first call's id when the
// new dialog is seen while the agent's is up: an attended transfer
// (<replaces>, the new dialog starts answered), or a blind one whose target
// rings before the agent's dialog ends (same Call-ID, or <replaces>). A
// blind transfer whose new dialog is seen only after the agent's dialog
// ended cannot be joined without a window, whatever links it: the model
// reports Disconnected the moment the only leg ends and does not reopen an
// ended call; such PBXs need TRANSFER_WINDOW (the 2s default covers them,
// see TestSIPCallsEndToEnd).
func TestSIPTransfersWithoutWindow(t *testing.T) {
	t.Run("blind, same call-id, ringing before the agent hangs up", func(t *testing.T) {
		t.Parallel()
		r := startWindow0Rig(t, "+31612349001")
		a := r.ring(t, "201")
		a.Answer()
		r.tb.WaitEvents(t, 1)
		b := a.BlindTransfer("202", siptest.TransferOptions{RingFirst: true})
		r.delivered(t, b)
		b.Answer()
		r.tb.WaitEvents(t, 2)
		b.Hangup("remote-bye")
		r.expect(t, inbound(a.CallID, "201", r.customer, "Answered", "Transfer@202", "Disconnected@202"))
	})
	t.Run("blind, new call-id with replaces, ringing before the agent hangs up", func(t *testing.T) {
		t.Parallel()
		r := startWindow0Rig(t, "+31612349002")
		a := r.ring(t, "201")
		a.Answer()
		r.tb.WaitEvents(t, 1)
		b := a.BlindTransfer("202", siptest.TransferOptions{NewCallID: true, Replaces: true, RingFirst: true})
		r.delivered(t, b)
		b.Answer()
		r.tb.WaitEvents(t, 2)
		b.Hangup("remote-bye")
		r.expect(t, inbound(a.CallID, "201", r.customer, "Answered", "Transfer@202", "Disconnected@202"))
	})
	t.Run("attended, replaces", func(t *testing.T) {
		t.Parallel()
		r := startWindow0Rig(t, "+31612349003")
		a := r.ring(t, "201")
		a.Answer()
		r.tb.WaitEvents(t, 1)
		b := a.AttendedTransfer("202")
		r.delivered(t, a)
		r.tb.WaitEvents(t, 2)
		b.Hangup("remote-bye")
		r.expect(t, inbound(a.CallID, "201", r.customer, "Answered", "Transfer@202", "Disconnected@202"))
	})
}

// TestSIPInternalCallReportedOnce: with INTERNAL_CALLS=report a call from
// 201 to 202 is one call at ROBIN, from the callee's side (202 the agent,
// 201 the number, inbound), whichever extension's NOTIFYs arrive first.
func TestSIPInternalCallReportedOnce(t *testing.T) {
	for _, tc := range []struct {
		name        string
		calleeFirst bool
	}{{"caller's notifies first", false}, {"callee's notifies first", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := startWindow0Rig(t, "", "INTERNAL_CALLS=report")
			c := r.pbx.Internal("201", "202", tc.calleeFirst)
			c.Answer()
			r.tb.WaitEvents(t, 1)
			c.Hangup("local-bye")
			id := c.Caller.CallID
			r.expect(t, []wantEvent{{"Answered", id, "202", "201", "", "Inbound"}, {"Disconnected", id, "202", "201", "", "Inbound"}})
		})
	}
}
