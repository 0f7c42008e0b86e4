package events

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// consulting marks a signal as agent 201's leg calling ext (a consultation
// when 201 is on a call), with that extension's number as the party.
func consulting(ext string) func(*Signal) {
	return func(s *Signal) {
		s.Consulting, s.Remote, s.Direction = ext, "+3115251"+ext+"0", Outbound
		s.DedupKey += "|consulting"
	}
}

func cause(c string) func(*Signal) {
	return func(s *Signal) { s.Cause = c; s.DedupKey += "|" + c }
}

// TestConsultations: the first half of an attended transfer, an agent on a
// call calling another, in every way a PBX may go on from there. The
// customer call is T (customer to 201); 201's consultation of 202 is C.
func TestConsultations(t *testing.T) {
	s := time.Second
	answered := []step{
		sig(0, "T", Ringing, "201"),
		sig(1*s, "T", Answered, "201"),
	}
	consult := []step{
		sig(10*s, "C", Ringing, "201", legID("C/201"), consulting("202")),
		sig(12*s, "C", Answered, "201", legID("C/201"), consulting("202")),
	}
	consultEnds := []step{ // Xelion sends it twice
		sig(31*s, "C", Ended, "201", legID("C/201"), consulting("202")),
		sig(31*s, "C", Ended, "201", legID("C/201"), consulting("202")),
	}
	script := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	answer := ev{EventAnswered, "T", "201", caller, did, "Inbound"}
	transfer := ev{EventTransfer, "T", "202", caller, did, "Inbound"}
	tests := []struct {
		name  string
		steps []step
		want  []ev
	}{
		{
			name: "transfer reported on the customer's call",
			steps: script(answered, consult, []step{
				sig(30*s, "T", Transferred, "202"),
				sig(30*s, "T", Ended, "201"),
			}, consultEnds, []step{sig(90*s, "T", Ended, "202")}),
			want: []ev{answer, transfer, {EventDisconnected, "T", "202", caller, did, "Inbound"}},
		},
		{
			name: "transfer reported on the consultation",
			steps: script(answered, consult, []step{
				sig(30*s, "C", Transferred, "201", legID("C/201"), consulting("202")),
				sig(30*s, "T", Ended, "201"),
			}, consultEnds, []step{sig(90*s, "T", Ended, "202")}),
			want: []ev{answer, transfer, {EventDisconnected, "T", "202", caller, did, "Inbound"}},
		},
		{
			name: "unconfirmed transfer, then the consulting agent leaves: the consulted agent has the customer; the end comes under the consultation's id",
			steps: script(answered, consult, []step{
				sig(30*s, "C", Transferred, "201", legID("C/201"), consulting("202"), cause(CauseUnconfirmed)),
				sig(30*s, "T", Ended, "201"),
			}, consultEnds, []step{sig(90*s, "C", Ended, "202", legID("C/202/2"))}),
			want: []ev{answer, transfer, {EventDisconnected, "T", "202", caller, did, "Inbound"}},
		},
		{
			name: "unconfirmed transfer; the end comes under a call id never seen",
			steps: script(answered, consult, []step{
				sig(30*s, "C", Transferred, "201", legID("C/201"), consulting("202"), cause(CauseUnconfirmed)),
				sig(30*s, "T", Ended, "201"),
			}, consultEnds, []step{sig(90*s, "X3", Ended, "202", legID("X3/202"))}),
			want: []ev{answer, transfer, {EventDisconnected, "T", "202", caller, did, "Inbound"}},
		},
		{
			name: "no transfer reported: the consulted agent seen with the customer has the call",
			steps: script(answered, consult, []step{
				sig(30*s, "T", Ended, "201"),
			}, []step{
				sig(32*s, "C", Answered, "202", legID("C/202/2")),
				sig(90*s, "C", Ended, "202", legID("C/202/2")),
			}),
			want: []ev{answer, transfer, {EventDisconnected, "T", "202", caller, did, "Inbound"}},
		},
		{
			name:  "consultation cancelled: 201 goes back to the customer",
			steps: script(answered, consult, consultEnds, []step{sig(90*s, "T", Ended, "201")}),
			want:  []ev{answer, {EventDisconnected, "T", "201", caller, did, "Inbound"}},
		},
		{
			name:  "the customer hangs up during the consultation: the call ends with the consultation",
			steps: script(answered, consult, []step{sig(20*s, "T", Ended, "201")}, consultEnds),
			want:  []ev{answer, {EventDisconnected, "T", "201", caller, did, "Inbound"}},
		},
		{
			name: "unconfirmed transfer, but the consultation ends first: it was not this one",
			steps: script(answered, consult, []step{
				sig(30*s, "C", Transferred, "201", legID("C/201"), consulting("202"), cause(CauseUnconfirmed)),
			}, consultEnds, []step{sig(90*s, "T", Ended, "201")}),
			want: []ev{answer, {EventDisconnected, "T", "201", caller, did, "Inbound"}},
		},
		{
			name:  "an agent on no call calling another is the agent's own call",
			steps: script(consult, []step{sig(31*s, "C", Ended, "201", legID("C/201"), consulting("202"))}),
			want: []ev{
				{EventAnswered, "C", "201", "+31152512020", did, "Outbound"},
				{EventDisconnected, "C", "201", "+31152512020", did, "Outbound"},
			},
		},
		{
			name: "calling the customer back is not a consultation",
			steps: script(answered, []step{
				sig(10*s, "C", Ringing, "201", legID("C/201"), consulting("202"), remote(caller)),
			}),
			want: []ev{answer},
		},
		{
			name: "a blind transfer carried on under a new call id is one call",
			steps: script(answered, []step{
				sig(30*s, "T", Transferred, "202"),
				sig(31*s, "T", Ended, "201"),
				sig(32*s, "N", Ringing, "202"),
				sig(35*s, "N", Answered, "202"),
				sig(90*s, "N", Ended, "202"),
			}),
			want: []ev{answer, transfer, {EventDisconnected, "T", "202", caller, did, "Inbound"}},
		},
		{
			name: "a second call of the customer to an agent who answered the first is a call of its own",
			steps: script(answered, []step{
				sig(30*s, "N", Ringing, "201"),
				sig(35*s, "N", Ended, "201"),
				tick(50 * s),
			}),
			want: []ev{answer, {EventDisconnected, "N", "201", caller, did, "Inbound"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMachine(t, defaultPolicies(), "")
			got, _ := run(t, m, tt.steps)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
		})
	}
}
