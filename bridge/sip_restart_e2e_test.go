package bridge

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/sip/siptest"
)

// TestSIPPBXRestartEndToEnd restarts the PBX under a running bridge and
// places a call 5 s later: the call reaches ROBIN because the keep-alive
// (SIP_KEEPALIVE=500ms) noticed the restart and every extension
// re-subscribed. SIP_EXPIRES is an hour, so no refresh (due after 45
// minutes) can explain the recovery. Over UDP the PBX stays down until the
// bridge saw a keep-alive go unanswered (a real PBX takes seconds to
// restart); over TCP it also comes straight back, which only the closed
// connection tells.
func TestSIPPBXRestartEndToEnd(t *testing.T) {
	for _, tc := range []struct {
		name, network string
		waitGone      bool // restart only once the bridge saw the PBX not answering
	}{
		{"udp", "udp", true},
		{"tcp", "tcp", true},
		{"tcp immediate", "tcp", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pbx := siptest.Start(t, siptest.Options{Network: tc.network, Username: sipUser, Password: sipPass})
			tb := startBridge(t,
				"SIP_SERVER="+pbx.Addr(), "SIP_TRANSPORT="+tc.network, "SIP_DOMAIN="+pbx.Domain(),
				"SIP_LISTEN=127.0.0.1:0", "SIP_USERNAME="+sipUser, "SIP_PASSWORD="+sipPass,
				"SIP_EXTENSIONS=201,202", "SIP_SUBSCRIBE_RATE=-1", "SIP_EXPIRES=3600", "SIP_KEEPALIVE=500ms")
			subscribed := func() bool { return pbx.Subscribed("201") > 0 && pbx.Subscribed("202") > 0 }
			waitUntil(t, "201 and 202 subscribed", subscribed)
			before := len(pbx.Subscribes())
			// The second keep-alive goes out only once the first was answered.
			waitUntil(t, "two keep-alives", func() bool { return pbx.Options() >= 2 })

			pbx.Stop()
			if tc.waitGone {
				waitUntil(t, "a keep-alive failure", func() bool { return metric(t, tb, "voipbridge_sip_keepalive_failures_total") > 0 })
			}
			restarted := time.Now()
			if err := pbx.Start(); err != nil {
				t.Fatal(err)
			}
			waitUntil(t, "201 and 202 subscribed again", subscribed)
			if took := time.Since(restarted); took > 5*time.Second {
				t.Errorf("re-subscribed %s after the restart, want within 5s", took.Round(time.Millisecond))
			}
			for _, s := range pbx.Subscribes()[before:] {
				if s.InDialog && s.Status == 200 {
					t.Errorf("a refresh succeeded on a restarted PBX: %+v", s)
				}
			}

			time.Sleep(time.Until(restarted.Add(5 * time.Second))) // the call comes 5 s after the restart
			customer := "+31612348001"
			call := pbx.Inbound("201", national(customer), "0201234567")
			call.Answer()
			tb.WaitEvents(t, 1)
			call.Hangup("remote-bye")
			got := tb.WaitEvents(t, 2)
			if d := cmp.Diff(inbound(call.CallID, "201", customer, "Answered", "Disconnected"), eventsOf(got)); d != "" {
				t.Errorf("events at ROBIN (-want +got):\n%s", d)
			}
			flagged(t, got)
			if n := metric(t, tb, "voipbridge_sip_pbx_restarts_total"); n != 1 {
				t.Errorf("voipbridge_sip_pbx_restarts_total = %v, want 1", n)
			}
			if n := metric(t, tb, "voipbridge_sip_restart_resubscriptions_total"); n != 2 {
				t.Errorf("voipbridge_sip_restart_resubscriptions_total = %v, want 2 (201 and 202)", n)
			}
		})
	}
}

// metric reads one unlabelled series from the bridge's /metrics.
func metric(t *testing.T, tb *testBridge, name string) float64 {
	t.Helper()
	resp, err := http.Get(tb.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("%s not in /metrics", name)
	return 0
}
