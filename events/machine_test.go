package events

import (
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/phone"
)

var t0 = time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)

// step is one line of a call script: a signal at an offset, or a tick.
type step struct {
	at   time.Duration
	tick bool
	sig  Signal
}

func sig(at time.Duration, callID string, st State, ext string, mods ...func(*Signal)) step {
	s := Signal{
		Source: "generic", CallID: callID, Extension: ext, State: st,
		Remote: "0612345678", Dialled: "+31858770023", Direction: Inbound,
		Time: t0.Add(at),
	}
	s.DedupKey = fmt.Sprintf("%s|%s|%s|%s", callID, s.LegID, ext, st)
	for _, m := range mods {
		m(&s)
	}
	return step{at: at, sig: s}
}

func tick(at time.Duration) step { return step{at: at, tick: true} }

func remote(r string) func(*Signal)         { return func(s *Signal) { s.Remote = r } }
func dialled(d string) func(*Signal)        { return func(s *Signal) { s.Dialled = d } }
func outbound(s *Signal)                    { s.Direction = Outbound }
func legID(id string) func(*Signal)         { return func(s *Signal) { s.LegID = id; s.DedupKey += "|" + id } }
func key(k string) func(*Signal)            { return func(s *Signal) { s.DedupKey = k } }
func linked(id string) func(*Signal)        { return func(s *Signal) { s.LinkedCallID = id } }
func pbxTime(d time.Duration) func(*Signal) { return func(s *Signal) { s.Time = t0.Add(d) } }
func referred(ext string) func(*Signal)     { return func(s *Signal) { s.ReferredBy = ext } }

type ev struct {
	Type     EventType
	ID, Ext  string
	Number   string
	Referrer string
	Dir      string
}

// continuing declares the generic source able to continue calls under a new call id.
func continuing(p *Policies) { p.Continuing = map[string]bool{"generic": true} }

func defaultPolicies() Policies {
	return Policies{ReportMissed: true, AnonymousNumber: "anonymous", CallTimeout: 4 * time.Hour, TransferWindow: 10 * time.Second}
}

func newTestMachine(t testing.TB, pol Policies, spec string) *machine {
	t.Helper()
	n, err := phone.New(phone.Options{Region: "NL"})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := extensions.Load(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	return newMachine(pol, n, dir)
}

func run(t *testing.T, m *machine, steps []step) ([]ev, map[string]int) {
	t.Helper()
	var got []ev
	outcomes := map[string]int{}
	for i, s := range steps {
		var r result
		if s.tick {
			r = m.tick(t0.Add(s.at))
		} else {
			r = m.apply(s.sig, uint64(i+1), t0.Add(s.at))
			outcomes[r.outcome]++
		}
		for _, e := range r.events {
			got = append(got, ev{e.Event.Type, e.Event.ID, e.Event.PhoneExtension, e.Event.PhoneNumber, e.Event.PhoneReferrer, e.Event.Direction})
		}
	}
	return got, outcomes
}

const (
	caller = "+31612345678"
	did    = "+31858770023"
)

func TestTrackerRules(t *testing.T) {
	s := time.Second
	tests := []struct {
		name     string
		pol      func(*Policies)
		dir      string
		steps    []step
		want     []ev
		outcomes map[string]int
	}{
		{
			name: "answered call",
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				sig(2*s, "c1", Answered, "201"),
				sig(60*s, "c1", Ended, "201"),
				tick(69 * s), // still inside the transfer window
				tick(71 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c1", "201", caller, did, "Inbound"},
			},
		},
		{
			name: "ring group: losing legs do not end the call, the answer is once",
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				sig(0, "c1", Ringing, "202"),
				sig(0, "c1", Ringing, "203"),
				sig(2*s, "c1", Answered, "202"),
				sig(2*s, "c1", Ended, "201"),
				sig(2*s, "c1", Ended, "203"),
				tick(30 * s),
				sig(60*s, "c1", Ended, "202"),
				tick(80 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "202", caller, did, "Inbound"},
				{EventDisconnected, "c1", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "referral: a new call id referred by an agent continues the call that agent is on",
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				sig(1*s, "c1", Answered, "201"),
				sig(9*s, "c3", Answered, "203", remote("0201234567")),
				sig(20*s, "c2", Ringing, "202", referred("201")),
				sig(25*s, "c2", Answered, "202", referred("201")),
				sig(26*s, "c1", Ended, "201"),
				sig(60*s, "c2", Ended, "202"),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventAnswered, "c3", "203", "+31201234567", did, "Inbound"},
				{EventTransfer, "c1", "202", caller, did, "Inbound"},
				{EventDisconnected, "c1", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "referral: a blind transfer of a withheld number, on a new call id, is one call (nothing to correlate by but the referrer)",
			pol:  continuing,
			steps: []step{
				sig(0, "c1", Ringing, "201", remote("anonymous")),
				sig(1*s, "c1", Answered, "201", remote("anonymous")),
				sig(20*s, "c1", Ended, "201", remote("anonymous")),
				sig(20*s+200*time.Millisecond, "c2", Ringing, "202", remote("anonymous"), referred("201")),
				sig(23*s, "c2", Answered, "202", remote("anonymous"), referred("201")),
				sig(60*s, "c2", Ended, "202", remote("anonymous"), referred("201")),
				tick(80 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", "anonymous", did, "Inbound"},
				{EventTransfer, "c1", "202", "anonymous", did, "Inbound"},
				{EventDisconnected, "c1", "202", "anonymous", did, "Inbound"},
			},
		},
		{
			name: "referral: not to the referrer's call of another customer (its newer call's legs have not all arrived)",
			pol:  continuing,
			steps: []step{
				sig(0, "c1", Answered, "201"),
				sig(10*s, "c1", Ended, "201"), // c1's end is pending (TRANSFER_WINDOW)
				// Another caller's call rang 201 and went on to 202; 202's
				// NOTIFY overtook 201's.
				sig(11*s, "c3", Ringing, "202", remote("0201234567"), referred("201")),
				sig(11*s, "c3", Ringing, "201", remote("0201234567")),
				tick(21 * s),
				sig(30*s, "c3", Ended, "202", remote("0201234567")),
				sig(30*s, "c3", Ended, "201", remote("0201234567")),
				tick(41 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c3", "201", "+31201234567", did, "Inbound"},
			},
		},
		{
			name: "referral: by an extension on no call, or on a call that ended, the call is new",
			steps: []step{
				sig(0, "c1", Answered, "201"),
				sig(10*s, "c1", Ended, "201"),
				sig(20*s, "c2", Answered, "202", referred("201")),
				sig(30*s, "c2", Ended, "202"),
				sig(40*s, "c4", Answered, "204", referred("209")),
				sig(50*s, "c4", Ended, "204"),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c1", "201", caller, did, "Inbound"},
				{EventAnswered, "c2", "202", caller, did, "Inbound"},
				{EventDisconnected, "c2", "202", caller, did, "Inbound"},
				{EventAnswered, "c4", "204", caller, did, "Inbound"},
				{EventDisconnected, "c4", "204", caller, did, "Inbound"},
			},
		},
		{
			name: "referral: while the call's end is pending (a hunt step), the call goes on",
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				sig(5*s, "c1", Ended, "201"),
				sig(6*s, "c2", Ringing, "202", referred("201")),
				sig(8*s, "c2", Answered, "202"),
				sig(30*s, "c2", Ended, "202"),
				tick(60 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "202", caller, did, "Inbound"},
				{EventDisconnected, "c1", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "transfer with the same call id",
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				sig(1*s, "c1", Answered, "201"),
				sig(30*s, "c1", Ringing, "202"),
				sig(35*s, "c1", Answered, "202"),
				sig(35*s, "c1", Ended, "201"),
				tick(60 * s),
				sig(90*s, "c1", Ended, "202"),
				tick(101 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventTransfer, "c1", "202", caller, did, "Inbound"},
				{EventDisconnected, "c1", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "transferred state hands the call on; ended without extension ends it",
			steps: []step{
				sig(0, "c1", Answered, "201"),
				sig(20*s, "c1", Transferred, "202"),
				sig(40*s, "c1", Ended, ""),
				tick(51 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventTransfer, "c1", "202", caller, did, "Inbound"},
				{EventDisconnected, "c1", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "transferred with a leg id: that leg's end ends the call",
			steps: []step{
				sig(0, "c1", Answered, "201", legID("X/201")),
				sig(20*s, "c1", Transferred, "202", legID("X/202")),
				sig(40*s, "c1", Ended, "202", legID("X/202")),
				tick(51 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventTransfer, "c1", "202", caller, did, "Inbound"},
				{EventDisconnected, "c1", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "transfer by correlation: new call id, same caller and DID, within the window",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Answered, "201"),
				sig(30*s, "a", Ended, "201"),
				sig(33*s, "b", Ringing, "202"),
				sig(35*s, "b", Answered, "202"),
				tick(50 * s),
				sig(90*s, "b", Ended, "202"),
				tick(101 * s),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventTransfer, "a", "202", caller, did, "Inbound"},
				{EventDisconnected, "a", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "no correlation after the window: a new call",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Answered, "201"),
				sig(30*s, "a", Ended, "201"),
				tick(41 * s),
				sig(45*s, "b", Answered, "202"),
				sig(50*s, "b", Ended, "202"),
				tick(61 * s),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventDisconnected, "a", "201", caller, did, "Inbound"},
				{EventAnswered, "b", "202", caller, did, "Inbound"},
				{EventDisconnected, "b", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "explicit link continues the call",
			steps: []step{
				sig(0, "a", Answered, "201"),
				sig(10*s, "b", Answered, "202", linked("a"), remote("")),
				sig(10*s, "a", Ended, "201"),
				sig(20*s, "b", Ended, "202"),
				tick(31 * s),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventTransfer, "a", "202", caller, did, "Inbound"},
				{EventDisconnected, "a", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "missed call reported with the last extension that rang",
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				sig(15*s, "c1", Ended, "201"),
				sig(15*s, "c1", Ringing, "202"),
				sig(30*s, "c1", Ended, "202", func(s *Signal) { s.Cause = "cancelled" }),
				tick(41 * s),
			},
			want: []ev{{EventDisconnected, "c1", "202", caller, did, "Inbound"}},
		},
		{
			name: "missed call ignored by policy",
			pol:  func(p *Policies) { p.ReportMissed = false },
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				sig(30*s, "c1", Ended, "201"),
				tick(41 * s),
			},
		},
		{
			name: "outbound call",
			steps: []step{
				sig(0, "o1", Ringing, "201", outbound, remote("020 123 4567"), dialled("+31858770023")),
				sig(5*s, "o1", Answered, "201", outbound, remote("020 123 4567")),
				sig(65*s, "o1", Ended, "201", outbound),
				tick(76 * s),
			},
			want: []ev{
				{EventAnswered, "o1", "201", "+31201234567", did, "Outbound"},
				{EventDisconnected, "o1", "201", "+31201234567", did, "Outbound"},
			},
		},
		{
			name: "unanswered outbound call is not reported",
			steps: []step{
				sig(0, "o1", Ringing, "201", outbound),
				sig(20*s, "o1", Ended, "201", outbound),
				tick(31 * s),
			},
		},
		{
			name: "internal call ignored by default",
			steps: []step{
				sig(0, "i1", Ringing, "201", remote("202")),
				sig(1*s, "i1", Answered, "201", remote("202")),
				sig(9*s, "i1", Ended, "201"),
				tick(20 * s),
			},
			outcomes: map[string]int{OutcomeApplied: 3},
		},
		{
			name: "internal call reported by policy",
			pol:  func(p *Policies) { p.ReportInternal = true },
			steps: []step{
				sig(0, "i1", Answered, "201", remote("202"), dialled("")),
				sig(9*s, "i1", Ended, "201", dialled("")),
				tick(20 * s),
			},
			want: []ev{
				{EventAnswered, "i1", "201", "202", "", "Inbound"},
				{EventDisconnected, "i1", "201", "202", "", "Inbound"},
			},
		},
		{
			name: "internal call 201 → 202 (one call id), the caller's dialog first: once, from the callee's side",
			pol:  func(p *Policies) { p.ReportInternal = true },
			steps: []step{
				sig(0, "i1", Ringing, "201", remote("202"), dialled(""), outbound, legID("d1@201")),
				sig(0, "i1", Ringing, "202", remote("201"), dialled(""), legID("d2@202")),
				sig(2*s, "i1", Answered, "201", remote("202"), dialled(""), outbound, legID("d1@201")),
				sig(2*s, "i1", Answered, "202", remote("201"), dialled(""), legID("d2@202")),
				sig(9*s, "i1", Ended, "201", dialled(""), outbound, legID("d1@201")),
				sig(9*s, "i1", Ended, "202", dialled(""), legID("d2@202")),
			},
			want: []ev{
				{EventAnswered, "i1", "202", "201", "", "Inbound"},
				{EventDisconnected, "i1", "202", "201", "", "Inbound"},
			},
		},
		{
			name: "internal call 201 → 202 (one call id), the callee's dialog first: the same",
			pol:  func(p *Policies) { p.ReportInternal = true },
			steps: []step{
				sig(0, "i1", Ringing, "202", remote("201"), dialled(""), legID("d2@202")),
				sig(0, "i1", Ringing, "201", remote("202"), dialled(""), outbound, legID("d1@201")),
				sig(2*s, "i1", Answered, "202", remote("201"), dialled(""), legID("d2@202")),
				sig(2*s, "i1", Answered, "201", remote("202"), dialled(""), outbound, legID("d1@201")),
				sig(9*s, "i1", Ended, "202", dialled(""), legID("d2@202")),
				sig(9*s, "i1", Ended, "201", dialled(""), outbound, legID("d1@201")),
			},
			want: []ev{
				{EventAnswered, "i1", "202", "201", "", "Inbound"},
				{EventDisconnected, "i1", "202", "201", "", "Inbound"},
			},
		},
		{
			name: "internal call through a B2BUA (a call id per dialog): only the callee's call is reported",
			pol:  func(p *Policies) { p.ReportInternal = true; continuing(p) },
			steps: []step{
				sig(0, "x1", Ringing, "201", remote("202"), dialled(""), outbound, legID("d1@201")),
				sig(0, "x2", Ringing, "202", remote("201"), dialled(""), legID("d2@202")),
				sig(2*s, "x1", Answered, "201", remote("202"), dialled(""), outbound, legID("d1@201")),
				sig(2*s, "x2", Answered, "202", remote("201"), dialled(""), legID("d2@202")),
				sig(9*s, "x1", Ended, "201", dialled(""), outbound, legID("d1@201")),
				sig(9*s, "x2", Ended, "202", dialled(""), legID("d2@202")),
				tick(20 * s),
			},
			want: []ev{
				{EventAnswered, "x2", "202", "201", "", "Inbound"},
				{EventDisconnected, "x2", "202", "201", "", "Inbound"},
			},
		},
		{
			name: "DID_MAP: the company number from the line, else the source's default, when the PBX sends none",
			pol: func(p *Policies) {
				p.DIDMap = map[string]string{"generic:trunk-2": "0858770099", "generic:*": "+31858770011"}
			},
			steps: []step{
				sig(0, "m1", Answered, "201", dialled(""), func(s *Signal) { s.Line = "trunk-2" }),
				sig(1*s, "m2", Answered, "202", dialled(""), remote("0201234567")),
				sig(2*s, "m3", Answered, "203", remote("0301234567")),
			},
			want: []ev{
				{EventAnswered, "m1", "201", caller, "+31858770099", "Inbound"},
				{EventAnswered, "m2", "202", "+31201234567", "+31858770011", "Inbound"},
				{EventAnswered, "m3", "203", "+31301234567", did, "Inbound"},
			},
		},
		{
			name: "anonymous caller gets the configured value",
			steps: []step{
				sig(0, "c1", Answered, "201", remote("sip:anonymous@anonymous.invalid")),
				sig(9*s, "c1", Ended, "201"),
				tick(20 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", "anonymous", did, "Inbound"},
				{EventDisconnected, "c1", "201", "anonymous", did, "Inbound"},
			},
		},
		{
			name: "anonymous caller not reported when ANONYMOUS_NUMBER is empty",
			pol:  func(p *Policies) { p.AnonymousNumber = "" },
			steps: []step{
				sig(0, "c1", Answered, "201", remote("restricted")),
				sig(9*s, "c1", Ended, "201"),
				tick(20 * s),
			},
		},
		{
			name: "duplicates are dropped and counted",
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				sig(1*s, "c1", Answered, "201"),
				sig(1*s, "c1", Answered, "201"),
				sig(2*s, "c1", Answered, "201", key("other-key-same-state")),
				sig(9*s, "c1", Ended, "201"),
				tick(20 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c1", "201", caller, did, "Inbound"},
			},
			outcomes: map[string]int{OutcomeApplied: 3, OutcomeDuplicate: 2},
		},
		{
			name: "answer after the end is dropped",
			steps: []step{
				sig(0, "c1", Answered, "201"),
				sig(9*s, "c1", Ended, "201"),
				tick(20 * s),
				sig(21*s, "c1", Answered, "202", key("late")),
				tick(40 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c1", "201", caller, did, "Inbound"},
			},
			outcomes: map[string]int{OutcomeApplied: 2, OutcomeAfterEnd: 1},
		},
		{
			name: "out of order: ringing after answered is stale; older PBX time is stale",
			steps: []step{
				sig(0, "c1", Answered, "201", pbxTime(2*s)),
				sig(1*s, "c1", Ringing, "201", pbxTime(0)),
				sig(2*s, "c1", Ended, "201", pbxTime(60*s)),
				sig(3*s, "c1", Answered, "201", pbxTime(1*s), key("late-answer")),
				tick(30 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c1", "201", caller, did, "Inbound"},
			},
			outcomes: map[string]int{OutcomeApplied: 2, OutcomeStale: 1, OutcomeAfterEnd: 1},
		},
		{
			name: "sweeper ends an answered call that never reports an end",
			steps: []step{
				sig(0, "c1", Answered, "201"),
				tick(3 * time.Hour),
				tick(4*time.Hour + s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c1", "201", caller, did, "Inbound"},
			},
		},
		{
			name: "sweeper drops an unanswered call silently",
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				tick(4*time.Hour + s),
			},
		},
		{
			name: "unmapped extensions are not agents; renames apply",
			dir:  "1001:203,202",
			steps: []step{
				sig(0, "c1", Ringing, "900"), // a queue
				sig(1*s, "c1", Answered, "900"),
				sig(2*s, "c1", Ringing, "1001"),
				sig(3*s, "c1", Answered, "1001"),
				sig(9*s, "c1", Ended, ""),
				tick(20 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "203", caller, did, "Inbound"},
				{EventDisconnected, "c1", "203", caller, did, "Inbound"},
			},
		},
		{
			name: "generic: transferred then ended by extension closes at once",
			steps: []step{
				sig(0, "c1", Ringing, "201"),
				sig(1*s, "c1", Answered, "201"),
				sig(20*s, "c1", Transferred, "202"),
				sig(40*s, "c1", Ended, "202"),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventTransfer, "c1", "202", caller, did, "Inbound"},
				{EventDisconnected, "c1", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "generic: answered with a leg id, ended with only the extension closes at once",
			steps: []step{
				sig(0, "c1", Answered, "201", legID("L1")),
				sig(40*s, "c1", Ended, "201"),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c1", "201", caller, did, "Inbound"},
			},
		},
		{
			name: "generic: two overlapping calls from one number stay two calls",
			steps: []step{
				sig(0, "A", Answered, "201"),
				sig(10*s, "B", Ringing, "202"),
				sig(11*s, "B", Answered, "202"),
				sig(30*s, "B", Ended, "202"),
				sig(60*s, "A", Ended, "201"),
			},
			want: []ev{
				{EventAnswered, "A", "201", caller, did, "Inbound"},
				{EventAnswered, "B", "202", caller, did, "Inbound"},
				{EventDisconnected, "B", "202", caller, did, "Inbound"},
				{EventDisconnected, "A", "201", caller, did, "Inbound"},
			},
		},
		{
			name: "continuing: two overlapping calls from one number stay two calls",
			pol:  continuing,
			steps: []step{
				sig(0, "A", Answered, "201"),
				sig(10*s, "B", Ringing, "202"),
				sig(11*s, "B", Answered, "202"),
				sig(30*s, "B", Ended, "202"),
				tick(41 * s),
				sig(60*s, "A", Ended, "201"),
				tick(71 * s),
			},
			want: []ev{
				{EventAnswered, "A", "201", caller, did, "Inbound"},
				{EventAnswered, "B", "202", caller, did, "Inbound"},
				{EventDisconnected, "B", "202", caller, did, "Inbound"},
				{EventDisconnected, "A", "201", caller, did, "Inbound"},
			},
		},
		{
			name: "continuing: a B2BUA ring group (a dialog per phone) is one call, no phantom missed call",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Ringing, "201"),
				sig(0, "b", Ringing, "202"),
				sig(3*s, "b", Answered, "202"),
				sig(3*s, "a", Ended, "201", func(s *Signal) { s.Cause = "cancelled" }),
				tick(20 * s),
				sig(60*s, "b", Ended, "202"),
				tick(71 * s),
			},
			want: []ev{
				{EventAnswered, "a", "202", caller, did, "Inbound"},
				{EventDisconnected, "a", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "continuing: ring-all, the caller gives up: one missed call",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Ringing, "201"),
				sig(0, "b", Ringing, "202"),
				sig(20*s, "a", Ended, "201", func(s *Signal) { s.Cause = "cancelled" }),
				sig(20*s, "b", Ended, "202", func(s *Signal) { s.Cause = "cancelled" }),
				tick(40 * s),
			},
			want: []ev{{EventDisconnected, "a", "202", caller, did, "Inbound"}},
		},
		{
			name: "continuing: hunt on busy is one call",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Ringing, "201"),
				sig(0, "a", Ended, "201", func(s *Signal) { s.Cause = "rejected" }),
				sig(1*s, "b", Ringing, "202"),
				sig(3*s, "b", Answered, "202"),
				sig(60*s, "b", Ended, "202"),
				tick(71 * s),
			},
			want: []ev{
				{EventAnswered, "a", "202", caller, did, "Inbound"},
				{EventDisconnected, "a", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "continuing: a blind transfer that rings the target before the first leg ends is one call",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Answered, "201"),
				sig(20*s, "b", Ringing, "202"),
				sig(20*s+300*time.Millisecond, "a", Ended, "201"),
				sig(25*s, "b", Answered, "202"),
				sig(60*s, "b", Ended, "202"),
				tick(71 * s),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventTransfer, "a", "202", caller, did, "Inbound"},
				{EventDisconnected, "a", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "continuing: a redial after the window is a new call",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Answered, "201"),
				sig(30*s, "a", Ended, "201"),
				tick(41 * s),
				sig(42*s, "b", Ringing, "201"),
				sig(43*s, "b", Answered, "201"),
				sig(50*s, "b", Ended, "201"),
				tick(61 * s),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventDisconnected, "a", "201", caller, did, "Inbound"},
				{EventAnswered, "b", "201", caller, did, "Inbound"},
				{EventDisconnected, "b", "201", caller, did, "Inbound"},
			},
		},
		{
			name: "continuing: a leg that starts answered with another agent is a hand-over",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Answered, "201"),
				sig(20*s, "b", Answered, "202"),
				sig(20*s, "a", Ended, "201"),
				sig(50*s, "b", Ended, "202"),
				tick(61 * s),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventTransfer, "a", "202", caller, did, "Inbound"},
				{EventDisconnected, "a", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "continuing, TRANSFER_WINDOW=0: nothing is correlated, a leg that starts answered is a call of its own",
			pol:  func(p *Policies) { continuing(p); p.TransferWindow = 0 },
			steps: []step{
				sig(0, "a", Answered, "201"),
				sig(20*s, "b", Answered, "202"),
				sig(20*s, "a", Ended, "201"),
				sig(50*s, "b", Ended, "202"),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventAnswered, "b", "202", caller, did, "Inbound"},
				{EventDisconnected, "a", "201", caller, did, "Inbound"},
				{EventDisconnected, "b", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "continuing: a second call from one number that starts answered stays a call of its own (its Answered waits the window)",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Answered, "201"),
				sig(20*s, "b", Answered, "202"),
				tick(29 * s), // the first call's agent is still on it
				tick(30 * s), // the window passed: b is a call of its own
				sig(45*s, "b", Ended, "202"),
				tick(56 * s),
				sig(90*s, "a", Ended, "201"),
				tick(101 * s),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventAnswered, "b", "202", caller, did, "Inbound"},
				{EventDisconnected, "b", "202", caller, did, "Inbound"},
				{EventDisconnected, "a", "201", caller, did, "Inbound"},
			},
		},
		{
			name: "continuing: a held call that ends inside the window was a call of its own",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Answered, "201"),
				sig(20*s, "b", Answered, "202"),
				sig(25*s, "b", Ended, "202"),
				tick(36 * s),
				sig(90*s, "a", Ended, "201"),
				tick(101 * s),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventAnswered, "b", "202", caller, did, "Inbound"},
				{EventDisconnected, "b", "202", caller, did, "Inbound"},
				{EventDisconnected, "a", "201", caller, did, "Inbound"},
			},
		},
		{
			name: "a snapshot ends the legs its extension no longer has",
			pol:  continuing,
			steps: []step{
				sig(0, "a", Answered, "201", legID("d1@201")),
				sig(0, "b", Answered, "202", legID("d2@202"), remote("0201234567")),
				{at: 120 * s, sig: Signal{Source: "generic", State: Snapshot, Extension: "201", Open: []string{"d9@201"}, Time: t0.Add(120 * s), DedupKey: "snap1"}},
				tick(131 * s),
			},
			want: []ev{
				{EventAnswered, "a", "201", caller, did, "Inbound"},
				{EventAnswered, "b", "202", "+31201234567", did, "Inbound"},
				{EventDisconnected, "a", "201", caller, did, "Inbound"},
			},
		},
		{
			name: "a call id reused after CALL_ID_REUSE_AFTER is a new call; repeats inside the gap are ignored",
			steps: []step{
				sig(0, "c1", Answered, "201", key("id:1")),
				sig(60*s, "c1", Ended, "201", key("id:2")),
				sig(5*time.Minute, "c1", Answered, "201", key("id:3")),
				sig(2*time.Hour, "c1", Ringing, "202", key("id:1")),
				sig(2*time.Hour+s, "c1", Answered, "202", key("id:2")),
				sig(2*time.Hour+60*s, "c1", Ended, "202", key("id:3")),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventDisconnected, "c1", "201", caller, did, "Inbound"},
				{EventAnswered, "c1", "202", caller, did, "Inbound"},
				{EventDisconnected, "c1", "202", caller, did, "Inbound"},
			},
			outcomes: map[string]int{OutcomeApplied: 5, OutcomeAfterEnd: 1},
		},
		{
			name: "per-call event ids: the same event_id in two calls is two signals",
			steps: []step{
				sig(0, "A", Answered, "201", key("id:1")),
				sig(1*s, "B", Answered, "202", key("id:1"), remote("0201234567")),
				sig(9*s, "A", Ended, "201", key("id:2")),
				sig(9*s, "B", Ended, "202", key("id:2")),
			},
			want: []ev{
				{EventAnswered, "A", "201", caller, did, "Inbound"},
				{EventAnswered, "B", "202", "+31201234567", did, "Inbound"},
				{EventDisconnected, "A", "201", caller, did, "Inbound"},
				{EventDisconnected, "B", "202", "+31201234567", did, "Inbound"},
			},
		},
		{
			name: "ended of a leg of an unknown call is dropped",
			steps: []step{
				sig(0, "zz", Ended, "201"),
			},
			outcomes: map[string]int{OutcomeUnknown: 1},
		},
		{
			name: "the call's end arriving first: what came before it is reported, then the end",
			steps: []step{
				sig(1*s, "c1", Ended, "", pbxTime(60*s)),
				sig(1*s, "c1", Ringing, "201", pbxTime(0)),
				sig(2*s, "c1", Answered, "201", pbxTime(2*s)),
				sig(2*s, "c1", Transferred, "202", pbxTime(30*s)),
				tick(13 * s),
			},
			want: []ev{
				{EventAnswered, "c1", "201", caller, did, "Inbound"},
				{EventTransfer, "c1", "202", caller, did, "Inbound"},
				{EventDisconnected, "c1", "202", caller, did, "Inbound"},
			},
		},
		{
			name: "the call's end arriving first, nothing after it: nothing reported",
			steps: []step{
				sig(0, "zz", Ended, ""),
				tick(30 * s),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pol := defaultPolicies()
			if tt.pol != nil {
				tt.pol(&pol)
			}
			m := newTestMachine(t, pol, tt.dir)
			got, outcomes := run(t, m, tt.steps)
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("events (-want +got):\n%s", d)
			}
			if tt.outcomes != nil {
				if d := cmp.Diff(tt.outcomes, outcomes); d != "" {
					t.Errorf("outcomes (-want +got):\n%s", d)
				}
			}
		})
	}
}

// TestTrackerEventIDsDeterministic: replaying the same signals into a fresh
// machine gives the same journal ids, so the journal stores each event once.
func TestTrackerEventIDsDeterministic(t *testing.T) {
	steps := []step{
		sig(0, "c1", Answered, "201"),
		sig(5*time.Second, "c1", Answered, "202", legID("x")),
		sig(9*time.Second, "c1", Ended, ""),
		tick(30 * time.Second),
	}
	ids := func() []string {
		m := newTestMachine(t, defaultPolicies(), "")
		var out []string
		for i, s := range steps {
			var r result
			if s.tick {
				r = m.tick(t0.Add(s.at))
			} else {
				r = m.apply(s.sig, uint64(i+1), t0.Add(s.at))
			}
			for _, e := range r.events {
				out = append(out, e.MsgID)
			}
		}
		return out
	}
	a, b := ids(), ids()
	if len(a) != 3 {
		t.Fatalf("want 3 events, got %v", a)
	}
	if d := cmp.Diff(a, b); d != "" {
		t.Fatalf("ids differ between runs:\n%s", d)
	}
}
