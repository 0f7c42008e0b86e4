package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestCallRecords: a record of a version that kept legs in a map, with a
// hex key, is read and goes on; a record written now reads back the same.
func TestCallRecords(t *testing.T) {
	old := `{"id":"c1","source":"generic","call_ids":["c1"],"direction":"inbound","remote":"+31612345678",
		"remote_raw":"0612345678","referrer":"+31858770023","phase":1,"agent":"202","transfers":1,
		"answered_at":"2026-11-21T10:00:02Z","legs":{"201":{"state":"ended","time":"2026-11-21T10:00:01Z"},
		"202":{"state":"answered","agent":"202","time":"2026-11-21T10:00:05Z"}},
		"started":"2026-11-21T10:00:00Z","updated":"2026-11-21T10:00:05Z","last_seq":7}`
	c, err := decodeCall([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Legs) != 2 || c.Legs[0].ID != "201" || c.Legs[0].Ext != "201" || c.Legs[1].State != Answered || c.Transfers != 1 || c.Phase != phaseAnswered {
		t.Fatalf("old record read as %+v", c)
	}
	m := newTestMachine(t, defaultPolicies(), "")
	m.restore("c0123456789abcdef0123456789abcdef", c)
	r := m.apply(sig(60*time.Second, "c1", Ended, "202").sig, 8, t0.Add(60*time.Second))
	// The old leg of 201 has no state before its end, so the call waits
	// TRANSFER_WINDOW for what may still come.
	r.events = append(r.events, m.tick(t0.Add(80*time.Second)).events...)
	if len(r.events) != 1 || r.events[0].Event.Type != EventDisconnected || r.events[0].Event.PhoneExtension != "202" {
		t.Fatalf("the restored call ended with %+v", r.events)
	}

	// A record written now reads back as it was.
	m = newTestMachine(t, defaultPolicies(), "")
	for i, st := range []step{
		sig(0, "c2", Ringing, "201"), sig(1*time.Second, "c2", Answered, "201"),
		sig(5*time.Second, "c2", Transferred, "202"),
	} {
		m.apply(st.sig, uint64(i+1), t0.Add(st.at))
	}
	k, c2 := m.find(sig(0, "c2", Ringing, "201").sig, t0)
	data, err := json.Marshal(c2)
	if err != nil {
		t.Fatal(err)
	}
	back, err := decodeCall(data)
	if err != nil {
		t.Fatal(err)
	}
	back.key, back.indexed = c2.key, c2.indexed
	if d := cmp.Diff(c2, back, cmp.AllowUnexported(call{}), cmpopts.EquateApproxTime(0)); d != "" {
		t.Errorf("record %s changed on a round trip (-written +read):\n%s", k, d)
	}
	if c2.AgentAt == 0 || c2.AnswerTime == 0 || len(k) != 23 {
		t.Errorf("agent_at %d, answer_at %d, key %q", c2.AgentAt, c2.AnswerTime, k)
	}
}

// TestHeldCall: a call that starts answered beside an answered call of the
// same customer says nothing until the first call's agent leg ends (then
// it was a hand-over: Transfer on the first call) or the window passes
// (then it is a call of its own: Answered), and survives a restart held.
func TestHeldCall(t *testing.T) {
	pol := defaultPolicies()
	continuing(&pol)
	s := time.Second
	m := newTestMachine(t, pol, "")
	types := func(r result) (out []string) {
		for _, e := range r.events {
			out = append(out, string(e.Event.Type)+" "+e.Event.ID+" "+e.Event.PhoneExtension)
		}
		return out
	}
	apply := func(st step) result { return m.apply(st.sig, 0, t0.Add(st.at)) }
	if got := types(apply(sig(0, "a", Answered, "201"))); len(got) != 1 {
		t.Fatalf("first call: %v", got)
	}
	if got := types(apply(sig(20*s, "b", Answered, "202"))); len(got) != 0 {
		t.Fatalf("the second call spoke while held: %v", got)
	}
	// Restart: the held call comes back held, its deadline too.
	m2 := newTestMachine(t, pol, "")
	for k, c := range m.calls {
		data, err := json.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		back, err := decodeCall(data)
		if err != nil {
			t.Fatal(err)
		}
		m2.restore(k, back)
	}
	if got := types(m2.tick(t0.Add(29 * s))); len(got) != 0 {
		t.Fatalf("released before the window passed: %v", got)
	}
	if got := types(m2.tick(t0.Add(31 * s))); !cmp.Equal(got, []string{"Answered b 202"}) {
		t.Fatalf("after the window: %v", got)
	}

	// The same start, and then the first agent's leg ends: a hand-over.
	m = newTestMachine(t, pol, "")
	apply(sig(0, "a", Answered, "201"))
	apply(sig(20*s, "b", Answered, "202"))
	if got := types(apply(sig(21*s, "a", Ended, "201"))); !cmp.Equal(got, []string{"Transfer a 202"}) {
		t.Fatalf("hand-over: %v", got)
	}
	if got := types(m.tick(t0.Add(40 * s))); len(got) != 0 {
		t.Fatalf("a handed-over call was released too: %v", got)
	}
	apply(sig(50*s, "b", Ended, "202"))
	if got := types(m.tick(t0.Add(61 * s))); !cmp.Equal(got, []string{"Disconnected a 202"}) {
		t.Fatalf("end: %v", got)
	}
}
