package bridge

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/xelion"
	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
)

const xelionPassword = "xelion-e2e-pw-Jh2q"

// xelionAgents maps the Xelion users of the scripts (by OID) to the ROBIN
// extensions of the bridge's directory.
var xelionAgents = map[string]string{"1650938": "201", "1650940": "202"}

func xelionEnv(url string) []string {
	return []string{
		"XELION_URL=" + url,
		"XELION_USERNAME=admin",
		"XELION_PASSWORD=" + xelionPassword,
		"XELION_USERSPACE=e2e",
		"EXTENSIONS=1650938:201,1650940:202",
	}
}

// startXelionBridge starts a fake Xelion on loopback and a bridge that
// follows it, and waits until the source has subscribed.
func startXelionBridge(t *testing.T, opts xeliontest.Options, env ...string) (*testBridge, *xeliontest.Server) {
	t.Helper()
	opts.Password = xelionPassword
	fake := xeliontest.New(opts)
	fake.Start()
	// Cleanups run last-in first-out: the bridge (registered by startBridge
	// below) stops before the fake.
	t.Cleanup(fake.Close)
	tb := startBridge(t, append(xelionEnv(fake.URL), env...)...)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := fake.WaitConnected(ctx, 1, xelion.Subscriptions...); err != nil {
		t.Fatalf("the Xelion source did not subscribe: %v", err)
	}
	return tb, fake
}

// xelionWant derives the events the helpdesk should get from a script: its
// want_events name the agents by Xelion OID, its signals give the call id,
// the customer's number and the company number.
func xelionWant(t *testing.T, sc xeliontest.Script) []wantEvent {
	t.Helper()
	var sigs []events.Signal
	if err := json.Unmarshal(sc.Want, &sigs); err != nil || len(sigs) == 0 {
		t.Fatalf("script signals: %v", err)
	}
	first := sigs[0]
	var out []wantEvent
	for _, e := range sc.WantEvents {
		ext, ok := xelionAgents[e.Agent]
		if !ok {
			t.Fatalf("script names agent %q outside the directory", e.Agent)
		}
		out = append(out, wantEvent{e.Type, first.CallID, ext, first.Remote, first.Dialled, events.DirectionLabel(first.Direction)})
	}
	return out
}

// TestXelionCallsEndToEnd plays every Xelion call script from the fake
// server through the real pipeline (source, journal, tracker, dispatcher)
// to the fake ROBIN, including the socket drop and the session expiry.
func TestXelionCallsEndToEnd(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "testdata", "xelion", "calls", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no scripts: %v", err)
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".json"), func(t *testing.T) {
			// Every subtest has its own fake Xelion, bridge, journal and
			// fake ROBIN, so they can run side by side.
			t.Parallel()
			sc, err := xeliontest.LoadScript(f)
			if err != nil {
				t.Fatal(err)
			}
			want := xelionWant(t, sc)
			tb, fake := startXelionBridge(t, xeliontest.Options{})
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			if err := fake.Play(ctx, sc.Steps); err != nil {
				t.Fatal(err)
			}
			tb.WaitEvents(t, len(want))
			got := tb.Settle(t)
			if d := cmp.Diff(want, eventsOf(got)); d != "" {
				t.Fatalf("%s\nevents at ROBIN (-want +got):\n%s", sc.Description, d)
			}
			for _, r := range got {
				if r.Duplicate || r.OutOfOrder {
					t.Fatalf("ROBIN flagged %+v", r.Event)
				}
			}
		})
	}
}

// TestXelionReadiness: /readyz reports the Xelion source, goes not ready
// when the server is gone, and neither it nor /metrics shows the password.
func TestXelionReadiness(t *testing.T) {
	tb, fake := startXelionBridge(t, xeliontest.Options{})
	// The fake sees the subscriptions before the source has read the running
	// calls and calls itself connected: wait for that.
	threecxWaitUntil(t, "/readyz reports Xelion connected", func() bool {
		code, body := threecxGet(t, tb.URL+"/readyz")
		return code == http.StatusOK && strings.Contains(body, `"xelion":"ok"`)
	})
	if v := threecxMetric(t, tb, "voipbridge_xelion_connected"); v != 1 {
		t.Errorf("voipbridge_xelion_connected = %v", v)
	}
	fake.Close()
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last /readyz: %s", last)
		}
	})
	threecxWaitUntil(t, "/readyz reports Xelion down", func() bool {
		code, body := threecxGet(t, tb.URL+"/readyz")
		last = body
		// Webhook intake is not the Xelion connection: /readyz stays 200.
		return code == http.StatusOK && strings.Contains(body, `"xelion":"degraded: `) && strings.Contains(body, "Xelion")
	})
	for _, path := range []string{"/readyz", "/metrics"} {
		if _, body := threecxGet(t, tb.URL+path); strings.Contains(body, xelionPassword) {
			t.Errorf("%s shows the Xelion password", path)
		}
	}
}

func TestXelionConfig(t *testing.T) {
	base := []string{"DATA_DIR=x", "ROBIN_API_KEY=k", "WEBHOOK_TOKEN=t"}
	if _, err := LoadConfig(base); err != nil {
		t.Fatalf("without Xelion: %v", err)
	}
	cfg, err := LoadConfig(append(base, "XELION_URL=https://xelion.example.nl", "XELION_USERNAME=admin", "XELION_PASSWORD=s"))
	if err != nil {
		t.Fatalf("complete Xelion settings: %v", err)
	}
	if cfg.Xelion.Tenant != "master" || cfg.Xelion.TimeZone != "Europe/Amsterdam" {
		t.Errorf("defaults: %+v", cfg.Xelion)
	}
	_, err = LoadConfig(append(base, "XELION_PASSWORD=hunter2-xelion", "XELION_TIMEZONE=Mars/Olympus"))
	for _, name := range []string{"XELION_URL", "XELION_USERNAME", "XELION_TIMEZONE"} {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("want every problem, %s missing: %v", name, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the password: %v", err)
	}
	file := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(file, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err = LoadConfig(append(base, "XELION_URL=https://xelion.example.nl", "XELION_USERNAME=admin", "XELION_PASSWORD_FILE="+file))
	if err != nil || cfg.Xelion.Password != "from-file" {
		t.Errorf("XELION_PASSWORD_FILE: %q, %v", cfg.Xelion.Password, err)
	}
}

// xelionCall rewrites a script's notifications into those of another call:
// its callId, the customer's number and the agent's OID.
func xelionCall(t *testing.T, steps []xeliontest.Step, callID, customer, agentOID string) []xeliontest.Step {
	t.Helper()
	out := make([]xeliontest.Step, 0, len(steps))
	for _, st := range steps {
		var m map[string]any
		if err := json.Unmarshal(st.Notification, &m); err != nil {
			t.Fatal(err)
		}
		n := m["notification"].(map[string]any)
		n["callId"], n["callerPhoneNumber"] = callID, customer
		n["calleeAddressable"].(map[string]any)["oid"] = agentOID
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, xeliontest.Step{Notification: b})
	}
	return out
}

// TestXelionHangUpWhileDisconnected: two answered calls; while the bridge's
// WebSocket is down one of them hangs up, and Xelion never sends that
// hang-up. Once the bridge reconnects it reads the running calls and ROBIN
// gets that call's Disconnected right away, not at CALL_TIMEOUT (4h); the
// call still running is not ended until its own hang-up.
func TestXelionHangUpWhileDisconnected(t *testing.T) {
	sc, err := xeliontest.LoadScript(filepath.Join("..", "testdata", "xelion", "calls", "answered.json"))
	if err != nil {
		t.Fatal(err)
	}
	const gone, stays, dave = "1709632800.101", "1709632800.202", "+31687654321"
	staySteps := xelionCall(t, sc.Steps, stays, dave, "1650940")
	tb, fake := startXelionBridge(t, xeliontest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := fake.Play(ctx, append(append([]xeliontest.Step{}, sc.Steps[:2]...), staySteps[:2]...)); err != nil {
		t.Fatal(err)
	}
	tb.WaitEvents(t, 2)

	fake.RefuseWebsockets(1 << 20)
	fake.Drop(false)
	if err := fake.WaitFor(ctx, func(st xeliontest.Stats) bool { return st.RefusedWebsockets > 0 }); err != nil {
		t.Fatalf("the bridge did not try to reconnect: %v", err)
	}
	if !fake.HangUp(gone) {
		t.Fatalf("call %s was not running on the fake", gone)
	}
	fake.RefuseWebsockets(0)
	got := tb.WaitEvents(t, 3)
	last := got[len(got)-1].Event
	if last.Type != "Disconnected" || last.ID != gone || last.PhoneExtension != "201" {
		t.Fatalf("after the reconnect ROBIN got %+v, want the Disconnected of %s on 201", last, gone)
	}
	// The resync counts the calls it ends before journaling them: B, had it
	// been ended too, would be counted by now.
	if n := threecxMetric(t, tb, "voipbridge_xelion_resync_ended_calls_total"); n != 1 {
		t.Errorf("voipbridge_xelion_resync_ended_calls_total = %v, want 1: only the call hung up while disconnected", n)
	}

	if err := fake.Play(ctx, staySteps[2:]); err != nil {
		t.Fatal(err)
	}
	got = tb.WaitEvents(t, 4)
	byCall := map[string][]wantEvent{}
	for _, e := range eventsOf(got) {
		byCall[e.ID] = append(byCall[e.ID], e)
	}
	want := map[string][]wantEvent{
		gone:  {{"Answered", gone, "201", "+31612345678", "+31152511401", "Inbound"}, {"Disconnected", gone, "201", "+31612345678", "+31152511401", "Inbound"}},
		stays: {{"Answered", stays, "202", dave, "+31152511401", "Inbound"}, {"Disconnected", stays, "202", dave, "+31152511401", "Inbound"}},
	}
	if d := cmp.Diff(want, byCall); d != "" {
		t.Fatalf("events at ROBIN (-want +got):\n%s", d)
	}
	for _, r := range got {
		if r.Duplicate || r.OutOfOrder {
			t.Fatalf("ROBIN flagged %+v", r.Event)
		}
	}
}

// TestXelionAttendedTransferShapes plays Xelion's attended transfer with its
// transfer event in the CallEvent shape, in the assumed CallTransferredEvent
// shapes and in shapes nobody can read, through the whole pipeline: ROBIN
// gets Answered for 201, Transfer to 202 and Disconnected for 202, in that
// order. Before the fix an unreadable transfer event let the end of the
// consultation (Anna→Bert) end the call: Disconnected for 201 while the
// customer was still talking to 202, and the real hang-up dropped.
func TestXelionAttendedTransferShapes(t *testing.T) {
	shapes := map[string]xeliontest.TransferShape{
		"callevent": xeliontest.TransferCallEvent,
		"calls":     xeliontest.TransferCalls,
		"ids":       xeliontest.TransferIDs,
		"empty":     xeliontest.TransferEmpty,
		"unknown":   xeliontest.TransferUnknown,
	}
	const id, customer, dialled = xeliontest.TransferCallID, xeliontest.TransferCustomer, "+31152511401"
	want := []wantEvent{
		{"Answered", id, "201", customer, dialled, "Inbound"},
		{"Transfer", id, "202", customer, dialled, "Inbound"},
		{"Disconnected", id, "202", customer, dialled, "Inbound"},
	}
	for name, shape := range shapes {
		for _, o := range []xeliontest.TransferOptions{{}, {FinalUnderConsultation: true}} {
			t.Run(fmt.Sprintf("%s/final-under-consultation=%v", name, o.FinalUnderConsultation), func(t *testing.T) {
				t.Parallel()
				tb, fake := startXelionBridge(t, xeliontest.Options{})
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				defer cancel()
				if err := fake.Play(ctx, xeliontest.AttendedTransfer(shape, o)); err != nil {
					t.Fatal(err)
				}
				got := tb.WaitEvents(t, len(want))
				if d := cmp.Diff(want, eventsOf(got)[:len(want)]); d != "" {
					t.Fatalf("events at ROBIN (-want +got):\n%s", d)
				}
				for _, r := range got {
					if r.Duplicate || r.OutOfOrder {
						t.Fatalf("ROBIN flagged %+v", r.Event)
					}
				}
			})
		}
	}
}

// TestXelionBackAfterOutage: with the bridge's settings, the Xelion server
// going down briefly costs no more than a second after it is back, and the
// call that hung up meanwhile gets its Disconnected from the resync.
func TestXelionBackAfterOutage(t *testing.T) {
	sc, err := xeliontest.LoadScript(filepath.Join("..", "testdata", "xelion", "calls", "answered.json"))
	if err != nil {
		t.Fatal(err)
	}
	tb, fake := startXelionBridge(t, xeliontest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if err := fake.Play(ctx, sc.Steps[:2]); err != nil {
		t.Fatal(err)
	}
	tb.WaitEvents(t, 1)
	fake.Down()
	if err := fake.WaitFor(ctx, func(st xeliontest.Stats) bool { return st.RefusedWhileDown >= 1 }); err != nil {
		t.Fatalf("the bridge did not retry: %v", err)
	}
	const gone = "1709632800.101"
	if !fake.HangUp(gone) {
		t.Fatalf("call %s was not running on the fake", gone)
	}
	back := fake.Up()
	if err := fake.WaitConnected(ctx, 2, xelion.Subscriptions...); err != nil {
		t.Fatal(err)
	}
	if late := fake.Stats().LastHandshake.Sub(back); late > time.Second {
		t.Errorf("the bridge reconnected %v after Xelion was back, want within 1s", late)
	}
	got := tb.WaitEvents(t, 2)
	if last := got[1].Event; last.Type != "Disconnected" || last.ID != gone {
		t.Fatalf("after the outage ROBIN got %+v, want the Disconnected of %s", last, gone)
	}
}
