package bridge

import (
	"bufio"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

const threecxSecret = "3cx-api-key-e2e"

// startThreeCXBridge starts a fake 3CX on loopback with the script's DNs and
// a bridge that follows it. The scripts' numbers are German (as in the
// captured payloads), hence PHONE_REGION=DE.
func startThreeCXBridge(t *testing.T, sc *threecxtest.Script, env ...string) (*testBridge, *threecxtest.Server) {
	t.Helper()
	srv := threecxtest.New(threecxtest.Options{ClientID: "bridge", ClientSecret: threecxSecret})
	srv.Load(sc)
	base := srv.StartHTTP()
	// Cleanups run last-in first-out: the bridge (registered by startBridge
	// below) stops before the fake.
	t.Cleanup(srv.Close)
	tb := startBridge(t, append(threecxEnv(base), env...)...)
	threecxWaitUntil(t, "the 3CX source is connected", func() bool { return threecxMetric(t, tb, "voipbridge_threecx_connected") == 1 })
	return tb, srv
}

func threecxEnv(base string) []string {
	return []string{
		"THREECX_URL=" + base,
		"THREECX_CLIENT_ID=bridge",
		"THREECX_CLIENT_SECRET=" + threecxSecret,
		"PHONE_REGION=DE",
	}
}

// play performs the script's steps, after each waiting until the source has
// handled every message the fake sent (and, after down/up, until it noticed).
func playThreeCX(t *testing.T, tb *testBridge, srv *threecxtest.Server, sc *threecxtest.Script) {
	t.Helper()
	for i, st := range sc.Steps {
		if err := srv.Apply(st); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		switch st.Op {
		case "down":
			threecxWaitUntil(t, "the source noticed the PBX went down", func() bool { return threecxMetric(t, tb, "voipbridge_threecx_connected") == 0 })
		case "up":
			threecxWaitUntil(t, "the source reconnected", func() bool { return threecxMetric(t, tb, "voipbridge_threecx_connected") == 1 })
		}
		queued := float64(srv.Stats().Queued)
		threecxWaitUntil(t, "the source handled step "+strconv.Itoa(i), func() bool {
			return threecxMetric(t, tb, "voipbridge_threecx_messages_processed_total") >= queued
		})
	}
}

// TestThreeCXCallsEndToEnd plays whole 3CX calls from the fake PBX through
// the real pipeline (source, journal, tracker, dispatcher) to the fake ROBIN.
func TestThreeCXCallsEndToEnd(t *testing.T) {
	const (
		customer = "+49891234567"
		did      = "+49301234567"
	)
	in := func(typ, id, ext string) wantEvent { return wantEvent{typ, id, ext, customer, did, "Inbound"} }
	tests := []struct {
		script string
		want   []wantEvent
	}{
		{"answered_inbound", []wantEvent{in("Answered", "1264", "150"), in("Disconnected", "1264", "150")}},
		// MISSED_CALLS=report: one Disconnected with the last agent that rang.
		{"missed_inbound", []wantEvent{in("Disconnected", "1264", "151")}},
		{"blind_transfer", []wantEvent{in("Answered", "1264", "150"), in("Transfer", "1264", "151"), in("Disconnected", "1264", "151")}},
		{"attended_transfer", []wantEvent{in("Answered", "1264", "150"), in("Transfer", "1264", "151"), in("Disconnected", "1264", "151")}},
		// The call continues under the consultation's callid 1270; the
		// helpdesk keeps seeing call 1264.
		{"attended_transfer_consult_callid", []wantEvent{in("Answered", "1264", "150"), in("Transfer", "1264", "151"), in("Disconnected", "1264", "151")}},
		{"outbound", []wantEvent{{"Answered", "1265", "150", customer, "", "Outbound"}, {"Disconnected", "1265", "150", customer, "", "Outbound"}}},
		{"queue_answered", []wantEvent{in("Answered", "1300", "150"), in("Disconnected", "1300", "150")}},
		{"drop_during_call", []wantEvent{in("Answered", "1264", "150"), in("Disconnected", "1264", "150")}},
		{"transfer_while_disconnected", []wantEvent{in("Answered", "1264", "150"), in("Transfer", "1264", "151"), in("Disconnected", "1264", "151")}},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			// Every subtest has its own fake PBX, bridge, journal and fake
			// ROBIN, so they can run side by side.
			t.Parallel()
			sc, err := threecxtest.LoadScript(filepath.Join("..", "testdata", "threecx", "calls", tt.script+".json"))
			if err != nil {
				t.Fatal(err)
			}
			tb, srv := startThreeCXBridge(t, sc)
			playThreeCX(t, tb, srv, sc)
			tb.WaitEvents(t, len(tt.want))
			got := tb.Settle(t)
			if d := cmp.Diff(tt.want, eventsOf(got)); d != "" {
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

// TestThreeCXRestart: a call that ends while the bridge is stopped gets its
// Disconnected from the first snapshot after the restart (the source's open
// legs survive in the journal's key-value store), not hours later from the
// call timeout.
func TestThreeCXRestart(t *testing.T) {
	sc := &threecxtest.Script{DNs: []threecxtest.DN{{DN: "150", Type: "Wextension"}}}
	tb, srv := startThreeCXBridge(t, sc)
	call := map[string]any{
		"dn": "150", "id": 8106, "callid": 1264, "status": "Ringing", "party_dn_type": "Wexternalline",
		"party_caller_id": "0891234567", "party_did": "0301234567", "originated_by_dn": "ROUTER",
	}
	for _, status := range []string{"Ringing", "Connected"} {
		call["status"] = status
		if err := srv.Upsert(call, threecxtest.Send); err != nil {
			t.Fatal(err)
		}
	}
	tb.WaitEvents(t, 1)
	tb.Stop(t)
	srv.Remove("150", "8106", threecxtest.Send)

	tb2 := startBridgeWith(t, tb.Robin, tb.Dir, threecxEnv(srv.URL())...)
	tb2.WaitEvents(t, 2)
	want := []wantEvent{
		{"Answered", "1264", "150", "+49891234567", "+49301234567", "Inbound"},
		{"Disconnected", "1264", "150", "+49891234567", "+49301234567", "Inbound"},
	}
	if d := cmp.Diff(want, eventsOf(tb2.Settle(t))); d != "" {
		t.Fatalf("events at ROBIN (-want +got):\n%s", d)
	}
}

// TestThreeCXReconnectAfterOutage: the fake 3CX goes away for a moment (it
// refuses the source's first attempts) and comes back; the bridge is
// connected again within a second of that, measured between the fake's own
// "up" and its accepting the WebSocket, and a call placed right after is
// reported.
func TestThreeCXReconnectAfterOutage(t *testing.T) {
	sc := &threecxtest.Script{DNs: []threecxtest.DN{{DN: "150", Type: "Wextension"}}}
	tb, srv := startThreeCXBridge(t, sc)
	srv.SetDown(true)
	threecxWaitUntil(t, "the source noticed the PBX went down", func() bool { return threecxMetric(t, tb, "voipbridge_threecx_connected") == 0 })
	threecxWaitUntil(t, "the PBX refused three attempts", func() bool { return srv.Stats().Refused >= 3 })
	srv.SetDown(false)
	threecxWaitUntil(t, "the source reconnected", func() bool { return threecxMetric(t, tb, "voipbridge_threecx_connected") == 1 })
	st := srv.Stats()
	if blind := st.LastAccept.Sub(st.LastUp); blind < 0 || blind > time.Second {
		t.Errorf("the source reconnected %v after the PBX came back, want within 1s", blind)
	}
	call := map[string]any{
		"dn": "150", "id": 8106, "callid": 1264, "status": "Ringing", "party_dn_type": "Wexternalline", "party_dn": "10007",
		"party_caller_id": "0891234567", "party_did": "0301234567", "originated_by_dn": "ROUTER",
	}
	for _, status := range []string{"Ringing", "Connected"} {
		call["status"] = status
		if err := srv.Upsert(call, threecxtest.Send); err != nil {
			t.Fatal(err)
		}
	}
	tb.WaitEvents(t, 1)
	srv.Remove("150", "8106", threecxtest.Send)
	tb.WaitEvents(t, 2)
	want := []wantEvent{
		{"Answered", "1264", "150", "+49891234567", "+49301234567", "Inbound"},
		{"Disconnected", "1264", "150", "+49891234567", "+49301234567", "Inbound"},
	}
	if d := cmp.Diff(want, eventsOf(tb.Settle(t))); d != "" {
		t.Fatalf("events at ROBIN (-want +got):\n%s", d)
	}
}

// TestThreeCXDIDMap: 3CX V20 leaves party_did empty (as captured), so the
// company number comes from DID_MAP by the trunk the call came in on; a
// trunk the map does not name gives no PhoneReferrer.
func TestThreeCXDIDMap(t *testing.T) {
	sc := &threecxtest.Script{DNs: []threecxtest.DN{{DN: "150", Type: "Wextension"}}}
	tb, srv := startThreeCXBridge(t, sc, "DID_MAP=threecx:10007=+31858770023")
	for i, trunk := range []string{"10007", "10008"} {
		call := map[string]any{
			"dn": "150", "id": 8106 + i, "callid": 1264 + i, "party_dn_type": "Wexternalline", "party_dn": trunk,
			"party_caller_name": "+49891234567", "party_caller_id": "0891234567", "party_did": "",
			"originated_by_dn": "ROUTER", "originated_by_type": "Wroutepoint",
		}
		for _, status := range []string{"Ringing", "Connected"} {
			call["status"] = status
			if err := srv.Upsert(call, threecxtest.Send); err != nil {
				t.Fatal(err)
			}
		}
		tb.WaitEvents(t, 2*i+1)
		srv.Remove("150", strconv.Itoa(8106+i), threecxtest.Send)
		tb.WaitEvents(t, 2*i+2)
	}
	want := []wantEvent{
		{"Answered", "1264", "150", "+49891234567", "+31858770023", "Inbound"},
		{"Disconnected", "1264", "150", "+49891234567", "+31858770023", "Inbound"},
		{"Answered", "1265", "150", "+49891234567", "", "Inbound"},
		{"Disconnected", "1265", "150", "+49891234567", "", "Inbound"},
	}
	if d := cmp.Diff(want, eventsOf(tb.Settle(t))); d != "" {
		t.Fatalf("events at ROBIN (-want +got):\n%s", d)
	}
}

// TestThreeCXReadiness: /readyz reports the 3CX source, and neither it nor
// /metrics shows the 3CX secret.
func TestThreeCXReadiness(t *testing.T) {
	sc := &threecxtest.Script{DNs: []threecxtest.DN{{DN: "150", Type: "Wextension"}}}
	tb, srv := startThreeCXBridge(t, sc)
	if code, body := threecxGet(t, tb.URL+"/readyz"); code != http.StatusOK || !strings.Contains(body, `"threecx":"ok"`) {
		t.Fatalf("/readyz while connected: %d %s", code, body)
	}
	srv.SetDown(true)
	threecxWaitUntil(t, "/readyz reports 3CX down", func() bool {
		code, body := threecxGet(t, tb.URL+"/readyz")
		// Webhook intake is not the 3CX connection: /readyz stays 200.
		return code == http.StatusOK && strings.Contains(body, `"threecx":"degraded: `) && strings.Contains(body, "3CX")
	})
	for _, path := range []string{"/readyz", "/metrics"} {
		if _, body := threecxGet(t, tb.URL+path); strings.Contains(body, threecxSecret) {
			t.Errorf("%s shows the 3CX secret", path)
		}
	}
	srv.SetDown(false)
	threecxWaitUntil(t, "/readyz reports 3CX up again", func() bool {
		code, _ := threecxGet(t, tb.URL+"/readyz")
		return code == http.StatusOK
	})
}

func TestThreeCXConfig(t *testing.T) {
	base := []string{"DATA_DIR=x", "ROBIN_API_KEY=k", "WEBHOOK_TOKEN=t"}
	if _, err := LoadConfig(base); err != nil {
		t.Fatalf("without 3CX: %v", err)
	}
	cfg, err := LoadConfig(append(base, "THREECX_URL=https://pbx.example.com", "THREECX_CLIENT_ID=900", "THREECX_CLIENT_SECRET=s", "THREECX_QUEUE_DNS=800,801"))
	if err != nil {
		t.Fatalf("complete 3CX settings: %v", err)
	}
	if d := cmp.Diff([]string{"800", "801"}, cfg.ThreeCX.QueueDNs); d != "" {
		t.Errorf("THREECX_QUEUE_DNS (-want +got):\n%s", d)
	}
	_, err = LoadConfig(append(base, "THREECX_URL=https://pbx.example.com", "THREECX_CLIENT_SECRET=hunter2"))
	if err == nil || !strings.Contains(err.Error(), "THREECX_CLIENT_ID") || strings.Contains(err.Error(), "hunter2") {
		t.Errorf("missing client id: %v", err)
	}
	if _, err := LoadConfig(append(base, "THREECX_CLIENT_ID=900")); err == nil || !strings.Contains(err.Error(), "THREECX_URL") {
		t.Errorf("client id without URL: %v", err)
	}
}

// waitUntil polls cond with a generous deadline: the machine may be busy.
func threecxWaitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func threecxGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		sb.WriteString(sc.Text())
		sb.WriteByte('\n')
	}
	return resp.StatusCode, sb.String()
}

// metricValue sums every series of the named metric on /metrics.
func threecxMetric(t *testing.T, tb *testBridge, name string) float64 {
	t.Helper()
	_, body := threecxGet(t, tb.URL+"/metrics")
	var sum float64
	for line := range strings.SplitSeq(body, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		fields := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
