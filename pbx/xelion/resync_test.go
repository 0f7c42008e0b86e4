package xelion

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
)

// A second customer, for a call beside the answered script's.
var dave = &party{number: "+31687654321"}

// callSteps are the notifications of an inbound call from customer to
// agent: ringing and answered, and its hang-up on its own.
func callSteps(id string, customer, agent *party) (answered, hangUp []xeliontest.Step) {
	return []xeliontest.Step{
			{Notification: notification(NewCallEvent, id, customer, agent, "incoming")},
			{Notification: notification(CallConnectedEvent, id, customer, agent, "incoming")},
		}, []xeliontest.Step{
			{Notification: notification(CallHungUpEvent, id, customer, agent, "incoming")},
		}
}

// disconnectWhile drops the source's WebSocket, keeps it from reconnecting
// until it has tried at least once, runs away (the PBX changing while
// nobody listens) and lets it reconnect.
func (h *harness) disconnectWhile(t *testing.T, away func()) {
	t.Helper()
	refused := h.fake.Stats().RefusedWebsockets
	h.fake.RefuseWebsockets(1 << 20)
	h.fake.Drop(false)
	if err := h.fake.WaitFor(h.ctx(t), func(st xeliontest.Stats) bool { return st.RefusedWebsockets > refused }); err != nil {
		t.Fatalf("the source did not try to reconnect: %v", err)
	}
	away()
	h.fake.RefuseWebsockets(0)
}

func ofCall(sigs []events.Signal, id string) []events.Signal {
	return slices.DeleteFunc(slices.Clone(sigs), func(s events.Signal) bool { return s.CallID != id })
}

// TestSourceEndsCallsGoneWhileDisconnected: two answered calls; while the
// WebSocket is down one of them hangs up and Xelion never tells. After the
// reconnect the source finds it missing from the running calls and
// journals its end, as a hang-up would, with cause "gone"; the other call
// still runs, is not ended, and ends normally with its hang-up later.
func TestSourceEndsCallsGoneWhileDisconnected(t *testing.T) {
	sc := loadScripts(t)["answered"]
	const gone, stays = "1709632800.101", "1709632800.202"
	stayAnswered, stayHangUp := callSteps(stays, dave, bert)
	h := start(t, xeliontest.Options{}, nil, nil)
	ctx := h.ctx(t)
	if err := h.fake.Play(ctx, append(slices.Clone(sc.Steps[:2]), stayAnswered...)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "both calls answered", func() bool { return len(h.j.signals()) == 4 })

	h.disconnectWhile(t, func() {
		if !h.fake.HangUp(gone) {
			t.Fatalf("call %s was not running on the fake", gone)
		}
	})
	got := h.settle(t)
	checkSignals(t, got)
	if diff := cmp.Diff(goneSignals(t, sc), ofCall(got, gone), ignoreTimeKey); diff != "" {
		t.Errorf("the call hung up while disconnected (-want +got):\n%s", diff)
	}
	if states := briefs(ofCall(got, stays)); len(states) != 2 || states[1].State != events.Answered {
		t.Errorf("the call still running: %v, want ringing and answered only", states)
	}
	if st := h.fake.Stats(); st.Connections != 2 || st.ActiveChannelRequests != 2 {
		t.Errorf("stats %+v, want the running calls read on each of the 2 connections", st)
	}
	if n := h.counter(t, "voipbridge_xelion_resync_total", "result", resyncOK); n != 2 {
		t.Errorf("resync{result=ok} = %v, want 2", n)
	}
	if n := h.counter(t, "voipbridge_xelion_resync_ended_calls_total"); n != 1 {
		t.Errorf("resync_ended_calls = %v, want 1", n)
	}
	if !strings.Contains(h.logs.String(), "xelion calls ended while disconnected") {
		t.Error("the calls ended by the resync were not logged")
	}

	if err := h.fake.Play(ctx, stayHangUp); err != nil {
		t.Fatal(err)
	}
	got = ofCall(h.settle(t), stays)
	if b := briefs(got); len(b) != 3 || b[2].State != events.Ended || b[2].Cause != "" {
		t.Errorf("the running call's own hang-up: %v, want its leg ended without cause", b)
	}
}

// goneSignals is what the answered script's call gives when a resync ends
// it: its ring and answer, then its leg's end with cause gone, by the leg's
// identity alone (see translator.gone); the tracker ends the call.
func goneSignals(t *testing.T, sc xeliontest.Script) []events.Signal {
	t.Helper()
	want := wantSignals(t, sc)
	want[2].Cause, want[2].Extension = CauseGone, ""
	return want
}

// TestSourceResyncFailure: the running calls cannot be read after a
// reconnect. The source warns, counts it and goes on reading events; the
// next reconnect reads them and ends the call then.
func TestSourceResyncFailure(t *testing.T) {
	sc := loadScripts(t)["answered"]
	const id = "1709632800.101"
	h := start(t, xeliontest.Options{}, nil, nil)
	if err := h.fake.Play(h.ctx(t), sc.Steps[:2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ringing and answered", func() bool { return len(h.j.signals()) == 2 })
	h.fake.RefuseActiveChannels(1)
	h.disconnectWhile(t, func() { h.fake.HangUp(id) })
	if got := ofCall(h.settle(t), id); len(got) != 2 {
		t.Errorf("signals %v, want none after the answer while the running calls are unknown", briefs(got))
	}
	if n := h.counter(t, "voipbridge_xelion_resync_total", "result", resyncError); n != 1 {
		t.Errorf("resync{result=error} = %v, want 1", n)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "xelion running calls not read") || !strings.Contains(logs, "HTTP 503") {
		t.Errorf("the failure was not logged with its error:\n%s", logs)
	}

	h.fake.Drop(false)
	got := ofCall(h.settle(t), id)
	if b := briefs(got); len(b) != 3 || b[2].Cause != CauseGone || b[2].State != events.Ended {
		t.Errorf("after the next reconnect: %v, want the leg ended, cause gone", b)
	}
	if n := h.counter(t, "voipbridge_xelion_resync_total", "result", resyncOK); n != 2 {
		t.Errorf("resync{result=ok} = %v, want 2 (start, second reconnect)", n)
	}
	if !strings.Contains(h.logs.String(), "xelion running calls read again") {
		t.Error("the recovery was not logged")
	}
}

// TestSourceResyncJournalFailure: the journal fails on the end the resync
// produced. The source keeps it, journals it when the journal works
// again, and does not produce it twice.
func TestSourceResyncJournalFailure(t *testing.T) {
	sc := loadScripts(t)["answered"]
	const id = "1709632800.101"
	broken := make(chan struct{})
	fixed := make(chan struct{})
	j := &recorder{fail: func() error {
		select {
		case <-fixed:
			return nil
		case <-broken:
			return errors.New("journal unavailable")
		default:
			return nil
		}
	}}
	h := start(t, xeliontest.Options{}, j, nil)
	if err := h.fake.Play(h.ctx(t), sc.Steps[:2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ringing and answered", func() bool { return len(j.signals()) == 2 })
	close(broken)
	h.disconnectWhile(t, func() { h.fake.HangUp(id) })
	waitFor(t, "retries of the resync's end", func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.attempts >= 6
	})
	close(fixed)
	got := ofCall(h.settle(t), id)
	checkSignals(t, got)
	if diff := cmp.Diff(goneSignals(t, sc), got, ignoreTimeKey); diff != "" {
		t.Errorf("signals (-want +got):\n%s", diff)
	}
}

// TestTranslatorGone: which live calls a list of running calls ends, and
// with which signals.
func TestTranslatorGone(t *testing.T) {
	const x, x2, y = "300.1", "300.2", "300.3"
	answered := []step{{NewCallEvent, x, cust, anna, ""}, {CallConnectedEvent, x, cust, anna, ""}}
	tests := []struct {
		name    string
		steps   []step
		running []string
		want    []brief
		notUsed bool
	}{
		{
			name: "an answered call no longer running ends its leg (the tracker ends the call)", steps: answered, running: []string{},
			want: []brief{{x, x + "/1650938/1", events.Ended, CauseGone}},
		},
		{
			name: "a running call is not ended", steps: answered, running: []string{x},
			want: []brief{},
		},
		{
			name: "a ringing ring group ends every phone",
			steps: []step{
				{NewCallEvent, x, cust, anna, ""}, {NewCallEvent, x, cust, bert, ""},
			},
			running: []string{},
			want: []brief{
				{x, x + "/1650938/1", events.Ended, CauseGone},
				{x, x + "/1650940/1", events.Ended, CauseGone},
			},
		},
		{
			name: "a call no longer running ends its leg while another call of its agent runs on (the tracker decides whether that one carries the customer)",
			steps: append(slices.Clone(answered),
				step{NewCallEvent, x2, anna, bert, ""}, step{CallConnectedEvent, x2, anna, bert, ""}),
			running: []string{x2},
			want:    []brief{{x, x + "/1650938/1", events.Ended, CauseGone}},
		},
		{
			name: "of two calls only the one not running ends",
			steps: append(slices.Clone(answered),
				step{NewCallEvent, y, dave, carla, ""}, step{CallConnectedEvent, y, dave, carla, ""}),
			running: []string{y},
			want:    []brief{{x, x + "/1650938/1", events.Ended, CauseGone}},
		},
		{
			name: "an ended call is not ended again",
			steps: append(slices.Clone(answered),
				step{CallHungUpEvent, x, cust, anna, ""}),
			running: []string{},
			want:    []brief{},
		},
		{
			name: "a call first seen by a hang-up ends its live legs",
			steps: []step{
				{CallHungUpEvent, x, cust, anna, ""}, {CallConnectedEvent, x, cust, bert, ""},
			},
			running: []string{},
			want:    []brief{{x, x + "/1650940/1", events.Ended, CauseGone}},
		},
		{
			name: "a list naming no call the source knows is not used", steps: answered, running: []string{"SIP/wes-000001d8"},
			want: []brief{}, notUsed: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clock{t0}
			tr := newTranslator(c.Now)
			for i, s := range tt.steps {
				ev, err := Decode(notification(s.typ, s.callID, s.caller, s.callee, "incoming"))
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				tr.apply(ev)
			}
			running := map[string]bool{}
			for _, id := range tt.running {
				running[id] = true
			}
			sigs, ended, ok := tr.gone(running)
			if ok == tt.notUsed {
				t.Fatalf("used = %v, want %v", ok, !tt.notUsed)
			}
			checkSignals(t, sigs)
			if diff := cmp.Diff(tt.want, briefs(sigs)); diff != "" {
				t.Errorf("signals (-want +got):\n%s", diff)
			}
			calls := map[string]bool{}
			for _, s := range sigs {
				calls[s.CallID] = true
			}
			if ended != len(calls) {
				t.Errorf("ended = %d, want %d", ended, len(calls))
			}
			if again, _, _ := tr.gone(running); len(again) != 0 {
				t.Errorf("a second reading of the same list gave %v", briefs(again))
			}
		})
	}
}

// TestGoneThenHangUp: a hang-up queued on the socket behind the list that
// already ended its call gives nothing more.
func TestGoneThenHangUp(t *testing.T) {
	tr := newTranslator((&clock{t0}).Now)
	for _, typ := range []string{NewCallEvent, CallConnectedEvent} {
		ev, _ := Decode(notification(typ, "300.1", cust, anna, "incoming"))
		tr.apply(ev)
	}
	if sigs, _, _ := tr.gone(map[string]bool{}); len(sigs) != 1 {
		t.Fatalf("gone gave %v", briefs(sigs))
	}
	ev, _ := Decode(notification(CallHungUpEvent, "300.1", cust, anna, "incoming"))
	if out := tr.apply(ev); len(out.signals) != 0 || out.drop != reasonAfterEnd {
		t.Errorf("hang-up after the resync: %v, drop %q; want nothing, after_end", briefs(out.signals), out.drop)
	}
}

func TestDecodeActiveChannels(t *testing.T) {
	// Xelion's example answer (resources/communications_active_channels).
	const example = `{"data":[
		{"object":{"callId":"SIP/wes-000001d8","channelId":"SIP/wes-000001d8","state":"CONNECTED","name":"Wesley Klasen","role":"CALLER","phone":"wes","twinChannel":false}},
		{"object":{"callId":"SIP/wes-000001d8","channelId":"SIP/arno-000001d9","state":"CONNECTED","name":"Arno Janssen","role":"CALLEE","phone":"arno","twinChannel":false}}],
		"meta":{"links":[{"rel":"refresh","href":"https://xelion.nl/api/v1/master/communications/active_channels","method":"GET"}]}}`
	tests := []struct {
		name, in string
		want     []string
		err      bool
	}{
		{"xelion's example", example, []string{"SIP/wes-000001d8"}, false},
		{"no channels", `{"data":[],"meta":{}}`, []string{}, false},
		{"a numeric call id, padded ids", `{"data":[{"object":{"callId":1709632800.101}},{"object":{"callId":" 7 "}}]}`, []string{"1709632800.101", "7"}, false},
		{"no data list", `{"meta":{}}`, nil, true},
		{"a null data list", `{"data":null}`, nil, true},
		{"an entry without call id", `{"data":[{"object":{"callId":"1"}},{"object":{"channelId":"2"}}]}`, nil, true},
		{"an entry without object", `{"data":[{}]}`, nil, true},
		{"not JSON", `<html>`, nil, true},
		{"empty", ``, nil, true},
		{"a list, not the list answer", `[{"callId":"1"}]`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeActiveChannels([]byte(tt.in))
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if tt.err {
				return
			}
			var ids []string
			for id := range got {
				ids = append(ids, id)
			}
			slices.Sort(ids)
			if diff := cmp.Diff(tt.want, ids, cmpEmpty); diff != "" {
				t.Errorf("call ids (-want +got):\n%s", diff)
			}
		})
	}
}

// cmpEmpty treats a nil and an empty slice alike.
var cmpEmpty = cmp.Transformer("nonil", func(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
})
