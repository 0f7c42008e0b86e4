package xelion

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/events/eventstest"
	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
)

// replay folds journaled signals through the tracker's call model, without
// CALL_TIMEOUT: only the signals end a call.
func replay(t *testing.T, sigs []events.Signal) []events.Event {
	t.Helper()
	pol := eventstest.Policies()
	pol.CallTimeout = 0
	return eventstest.ReplayWith(t, pol, xeliontest.TransferAnnaOID+":201,"+xeliontest.TransferBertOID+":202", sigs)
}

// agentEvent is a helpdesk event reduced to its type and agent.
type agentEvent struct{ Type, Ext string }

func agentEvents(evs []events.Event) []agentEvent {
	out := make([]agentEvent, 0, len(evs))
	for _, e := range evs {
		out = append(out, agentEvent{string(e.Type), e.PhoneExtension})
	}
	return out
}

// TestAttendedTransferShapes plays Xelion's attended transfer from the fake
// server through a running source with its transfer event in every shape
// the source reads, and in shapes it cannot read, and folds the journaled
// signals through the tracker's model: the helpdesk gets Answered for 201,
// Transfer to 202 and, at the customer's hang-up only, Disconnected for
// 202. With the transfer event unreadable the consultation's end (Anna→Bert,
// twice) must not end the call: the customer still talks to 202. The
// source only translates each Xelion call id; the tracker joins them.
func TestAttendedTransferShapes(t *testing.T) {
	want := []agentEvent{{"Answered", "201"}, {"Transfer", "202"}, {"Disconnected", "202"}}
	shapes := []struct {
		name  string
		shape xeliontest.TransferShape
	}{
		{"CallEvent shape", xeliontest.TransferCallEvent},
		{"transferred and consultation calls", xeliontest.TransferCalls},
		{"call ids only", xeliontest.TransferIDs},
		{"empty object", xeliontest.TransferEmpty},
		{"unknown fields", xeliontest.TransferUnknown},
	}
	endings := []xeliontest.TransferOptions{
		{},
		{FinalUnderConsultation: true},
		{ConnectedUnderConsultation: true},
	}
	for _, sh := range shapes {
		for _, o := range endings {
			t.Run(fmt.Sprintf("%s/%+v", sh.name, o), func(t *testing.T) {
				t.Parallel()
				h := start(t, xeliontest.Options{}, nil, nil)
				steps := xeliontest.AttendedTransfer(sh.shape, o)
				if err := h.fake.Play(h.ctx(t), steps); err != nil {
					t.Fatal(err)
				}
				sigs := h.settle(t)
				checkSignals(t, sigs)
				if d := cmp.Diff(want, agentEvents(replay(t, sigs))); d != "" {
					t.Fatalf("helpdesk events (-want +got):\n%s\nsignals: %+v", d, briefs(sigs))
				}
				// The call ends with the customer's hang-up, the last message,
				// and not before: its signal ends Bert's leg, and without it
				// the call is still going.
				last := sigs[len(sigs)-1]
				if last.State != events.Ended || last.Extension != xeliontest.TransferBertOID {
					t.Fatalf("the last signal is not the end of Bert's leg: %+v", briefs(sigs))
				}
				for _, e := range replay(t, sigs[:len(sigs)-1]) {
					if e.Type == events.EventDisconnected {
						t.Fatalf("Disconnected before the customer hung up: signals %+v", briefs(sigs))
					}
				}
				unreadable := sh.shape == xeliontest.TransferEmpty || sh.shape == xeliontest.TransferUnknown
				if n := h.counter(t, "voipbridge_xelion_messages_dropped_total", "reason", reasonTransfer); (n == 1) != unreadable {
					t.Errorf("unreadable transfers counted %v", n)
				}
			})
		}
	}
}
