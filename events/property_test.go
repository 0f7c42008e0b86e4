package events

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// script is one generated call: its signals in PBX-time order, and which
// signal indexes belong to which leg.
type script struct {
	sigs []Signal
	legs map[string][]int
	// consults: the call has a consultation (see Signal.Consulting).
	consults bool
}

// genCall writes a random call: legs ring on several of exts (some with
// leg ids, 900 is no agent), one answers or none does, the call is handed
// on by transferred signals, by a new leg answering (attended), or after a
// consultation under a call id of its own (transferred on either call,
// unconfirmed, or cancelled), and ends leg by leg or as a whole.
func genCall(r *rand.Rand, id string, remote string, start time.Time, exts []string) script {
	sc := script{legs: map[string][]int{}}
	t := start
	n := 0
	add := func(st State, ext, leg string, mods ...func(*Signal)) {
		t = t.Add(time.Duration(1+r.IntN(3000)) * time.Millisecond)
		n++
		s := Signal{Source: "generic", CallID: id, Extension: ext, LegID: leg, State: st, Remote: remote,
			Dialled: did, Direction: Inbound, Time: t, DedupKey: fmt.Sprintf("%s-%d", id, n)}
		for _, m := range mods {
			m(&s)
		}
		sc.sigs = append(sc.sigs, s)
		lk := legKey(s)
		sc.legs[lk] = append(sc.legs[lk], len(sc.sigs)-1)
	}
	exts = slices.Clone(exts)
	r.Shuffle(len(exts), func(i, j int) { exts[i], exts[j] = exts[j], exts[i] })
	type open struct{ ext, leg string }
	var ringing []open
	legOf := func(ext string) string {
		if r.IntN(2) == 0 {
			return id + "/" + ext
		}
		return ""
	}
	for _, e := range exts[:1+r.IntN(3)] {
		o := open{e, legOf(e)}
		add(Ringing, o.ext, o.leg)
		ringing = append(ringing, o)
	}
	var up []open
	if r.IntN(5) > 0 {
		w := ringing[r.IntN(len(ringing))]
		add(Answered, w.ext, w.leg)
		up = append(up, w)
		for _, o := range ringing {
			if o != w && r.IntN(2) == 0 {
				add(Ended, o.ext, o.leg, func(s *Signal) { s.Cause = "cancelled" })
			}
		}
		for k := range r.IntN(3) {
			to := exts[r.IntN(len(exts))]
			switch how := r.IntN(3); {
			case how == 0:
				add(Transferred, to, "")
				up = []open{{to, ""}}
				continue
			case how == 1 && len(up) == 1 && up[0].ext != to:
				// The agent consults to, on a call of its own.
				a := up[0]
				cid := fmt.Sprintf("%s-c%d", id, k)
				cleg := cid + "/" + a.ext
				cm := func(s *Signal) {
					s.CallID, s.Consulting, s.Remote, s.Direction = cid, to, "+3115251"+to+"0", Outbound
				}
				sc.consults = true
				add(Ringing, a.ext, cleg, cm)
				add(Answered, a.ext, cleg, cm)
				switch r.IntN(4) {
				case 0: // the transfer, reported on the customer's call
					add(Transferred, to, "")
					add(Ended, a.ext, a.leg)
					add(Ended, a.ext, cleg, cm)
					up = []open{{to, ""}}
				case 1: // the transfer, reported on the consultation
					add(Transferred, a.ext, cleg, cm)
					add(Ended, a.ext, a.leg)
					add(Ended, a.ext, cleg, cm)
					up = []open{{to, ""}}
				case 2: // a transfer nobody could read, and the agent leaves
					add(Transferred, a.ext, cleg, cm, func(s *Signal) { s.Cause = CauseUnconfirmed })
					add(Ended, a.ext, a.leg)
					add(Ended, a.ext, cleg, cm)
					up = []open{{to, ""}}
				default: // cancelled: the agent goes back to the customer
					add(Ended, a.ext, cleg, cm)
				}
				continue
			}
			o := open{to, legOf(to) + "x"}
			if o.leg == "x" {
				o.leg = ""
			}
			add(Ringing, o.ext, o.leg)
			add(Answered, o.ext, o.leg)
			for _, u := range up {
				if u != o {
					add(Ended, u.ext, u.leg)
				}
			}
			up = []open{o}
		}
	}
	if r.IntN(2) == 0 {
		add(Ended, "", "")
	} else {
		for _, o := range append(up, ringing...) {
			add(Ended, o.ext, o.leg)
		}
		add(Ended, "", "") // whatever is left: the call is over
	}
	return sc
}

// feed runs signals through a fresh machine, each arriving at its PBX time
// (at least at the previous arrival), then ticks past every window.
func feed(t *testing.T, pol Policies, sigs []Signal) []Envelope {
	t.Helper()
	m := newTestMachine(t, pol, "")
	var out []Envelope
	now := t0
	for i, s := range sigs {
		if s.Time.After(now) {
			now = s.Time
		}
		out = append(out, m.tick(now).events...)
		out = append(out, m.apply(s, uint64(i+1), now).events...)
	}
	out = append(out, m.tick(now.Add(pol.TransferWindow+time.Second)).events...)
	return out
}

func checkInvariants(t *testing.T, evs []Envelope) {
	t.Helper()
	byCall := map[string][]Envelope{}
	var order []string
	for _, e := range evs {
		if _, ok := byCall[e.Event.ID]; !ok {
			order = append(order, e.Event.ID)
		}
		byCall[e.Event.ID] = append(byCall[e.Event.ID], e)
	}
	for _, id := range order {
		es := byCall[id]
		var types []EventType
		for _, e := range es {
			types = append(types, e.Event.Type)
		}
		if n := countType(es, EventDisconnected); n != 1 {
			t.Fatalf("call %s: %d Disconnected, want exactly 1: %v", id, n, types)
		}
		if es[len(es)-1].Event.Type != EventDisconnected {
			t.Fatalf("call %s: events after Disconnected: %v", id, types)
		}
		if countType(es, EventTransfer) > 0 && es[0].Event.Type != EventAnswered {
			t.Fatalf("call %s: Transfer before Answered: %v", id, types)
		}
		if countType(es, EventAnswered) > 1 {
			t.Fatalf("call %s: Answered twice: %v", id, types)
		}
		for i := 1; i < len(es); i++ {
			if es[i].Event.Type == EventTransfer && es[i].Event.PhoneExtension == es[i-1].Event.PhoneExtension {
				t.Fatalf("call %s: Transfer to the same agent %s: %v", id, es[i].Event.PhoneExtension, types)
			}
		}
		ids := map[string]bool{}
		for _, e := range es {
			if ids[e.MsgID] {
				t.Fatalf("call %s: message id %s twice", id, e.MsgID)
			}
			ids[e.MsgID] = true
		}
	}
}

func countType(es []Envelope, typ EventType) int {
	n := 0
	for _, e := range es {
		if e.Event.Type == typ {
			n++
		}
	}
	return n
}

// eventKeys renders events for comparison: type, transfer count and agent,
// without the generation in the message id (the PBX time of whichever
// signal arrived first).
func eventKeys(evs []Envelope) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		parts := strings.Split(e.MsgID, "|")
		out[i] = e.Event.ID + " " + strings.Join(parts[3:], "|") + " " + e.Event.PhoneExtension
	}
	return out
}

// TestTrackerProperties checks generated call scripts against the model's
// invariants: exactly one Disconnected per reported call once its legs
// ended, nothing after it, Answered before any Transfer, a Transfer only to
// another agent; the same events whatever the repeats, when two signals of
// one leg that follow each other arrive the other way round (they carry PBX
// time), and whether or not other calls run beside it; the same final agent
// when two starts of different legs arrive the other way round.
func TestTrackerProperties(t *testing.T) {
	cont := defaultPolicies()
	continuing(&cont)
	for _, pol := range []Policies{defaultPolicies(), cont} {
		t.Run(fmt.Sprintf("continuing=%v", pol.Continuing != nil), func(t *testing.T) { properties(t, pol) })
	}
}

// agents are the extensions a generated call rings.
var agents = []string{"201", "202", "203", "900"}

func properties(t *testing.T, pol Policies) {
	for seed := range uint64(2000) {
		r := rand.New(rand.NewPCG(seed, 7))
		sc := genCall(r, fmt.Sprintf("c%d", seed), "0612345678", t0, agents)
		base := feed(t, pol, sc.sigs)
		checkInvariants(t, base)
		if len(base) == 0 && slices.ContainsFunc(sc.sigs, func(s Signal) bool { return s.State == Ringing && s.Extension != "900" }) {
			t.Fatalf("seed %d: a call that rang an agent reported nothing", seed)
		}

		// Repeats: signals sent again, later, with the same key and time.
		rep := slices.Clone(sc.sigs)
		for range 1 + r.IntN(4) {
			i := r.IntN(len(rep))
			j := i + 1 + r.IntN(len(rep)-i)
			rep = slices.Insert(rep, j, rep[i])
		}
		if d := cmp.Diff(eventKeys(base), eventKeys(feed(t, pol, rep))); d != "" {
			t.Fatalf("seed %d: repeats changed the events (-without +with):\n%s", seed, d)
		}

		// Two signals of one leg, next to each other, arriving the other
		// way round (each at the moment the other would have).
		for i := 0; i+1 < len(sc.sigs); i++ {
			if legKey(sc.sigs[i]) != legKey(sc.sigs[i+1]) {
				continue
			}
			re := slices.Clone(sc.sigs)
			re[i], re[i+1] = re[i+1], re[i]
			got := feedAt(t, pol, re, sc.sigs)
			if d := cmp.Diff(eventKeys(base), eventKeys(got)); d != "" {
				t.Fatalf("seed %d: signals %d and %d of leg %s swapped changed the events (-in order +swapped):\n%s", seed, i, i+1, legKey(sc.sigs[i]), d)
			}
		}

		// Two signals of different legs, neither an end, next to each
		// other, arriving the other way round: the events may differ (an
		// Answered sent cannot be taken back when an earlier answer of
		// another agent arrives after it), but the call ends once, with
		// the same agent, and no late answer takes the call back. An end
		// that overtakes a later start is not among them: a call whose
		// last leg ended is reported ended at once, and a leg that starts
		// after that is news the PBX sent too late.
		// Consultations are left out: they come from a source whose
		// signals arrive in order (Xelion's socket), and one that arrives
		// before the answer of its agent is that agent's own call.
		for i := 0; i+1 < len(sc.sigs); i++ {
			a, b := sc.sigs[i], sc.sigs[i+1]
			if legKey(a) == legKey(b) || a.State == Ended || b.State == Ended || a.Consulting != "" || b.Consulting != "" {
				continue
			}
			re := slices.Clone(sc.sigs)
			re[i], re[i+1] = b, a
			got := feedAt(t, pol, re, sc.sigs)
			checkInvariants(t, got)
			if d := cmp.Diff(lastAgents(base), lastAgents(got)); d != "" {
				t.Fatalf("seed %d: %s %s and %s %s swapped changed the agent the call ended with (-in order +swapped):\n%s",
					seed, a.State, legKey(a), b.State, legKey(b), d)
			}
		}

		// Beside another call from another number, interleaved, with the
		// same agents, or other ones when either call has a consultation: an
		// agent answered on two calls at once is taken to consult from the
		// one answered last, which two independent scripts do not respect.
		other := genCall(r, fmt.Sprintf("o%d", seed), "0201234567", t0, agents)
		if sc.consults || other.consults {
			other = genCall(r, fmt.Sprintf("o%d", seed), "0201234567", t0, []string{"301", "302", "303", "901"})
		}
		mixed := slices.Clone(sc.sigs)
		mixed = append(mixed, other.sigs...)
		slices.SortStableFunc(mixed, func(a, b Signal) int { return a.Time.Compare(b.Time) })
		var mine []Envelope
		for _, e := range feed(t, pol, mixed) {
			if id := sc.sigs[0].CallID; e.Event.ID == id || strings.HasPrefix(e.Event.ID, id+"-c") {
				mine = append(mine, e)
			}
		}
		if d := cmp.Diff(eventKeys(base), eventKeys(mine)); d != "" {
			t.Fatalf("seed %d: another call beside it changed the events:\n%s", seed, d)
		}
	}
}

// lastAgents is the agent of each Disconnected.
func lastAgents(evs []Envelope) []string {
	var out []string
	for _, e := range evs {
		if e.Event.Type == EventDisconnected {
			out = append(out, e.Event.ID+" "+e.Event.PhoneExtension)
		}
	}
	return out
}

// feedAt is feed with arrival moments taken from clock (the original order),
// so that a reordered signal arrives when the one it swapped with did.
func feedAt(t *testing.T, pol Policies, sigs, clock []Signal) []Envelope {
	t.Helper()
	m := newTestMachine(t, pol, "")
	var out []Envelope
	now := t0
	for i, s := range sigs {
		if clock[i].Time.After(now) {
			now = clock[i].Time
		}
		out = append(out, m.tick(now).events...)
		out = append(out, m.apply(s, uint64(i+1), now).events...)
	}
	out = append(out, m.tick(now.Add(pol.TransferWindow+time.Second)).events...)
	return out
}
