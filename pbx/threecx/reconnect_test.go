package threecx_test

import (
	"regexp"
	"testing"
	"testing/synctest"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

var backAfter = regexp.MustCompile(`msg="3CX connection back after ([0-9.hmsµ]+)"`)

// TestReconnectAfterOutage: when the PBX comes back after an outage, the
// source is connected again within a second for a short outage (an eighth
// of the outage for a long one, at most 15s), measured from the fake's own
// clock: when it came up and when it accepted the WebSocket. Each outage is
// logged once, with its length, when it ends.
func TestReconnectAfterOutage(t *testing.T) {
	for _, tt := range []struct {
		outage, within time.Duration
	}{
		{500 * time.Millisecond, time.Second},
		{6 * time.Second, time.Second},
		{40 * time.Second, 5 * time.Second},
		{10 * time.Minute, 15 * time.Second},
	} {
		t.Run(tt.outage.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startHarness(t, setup{dns: []threecxtest.DN{{DN: "150", Type: "Wextension"}}})
				h.srv.SetDown(true)
				time.Sleep(tt.outage)
				h.srv.SetDown(false)
				time.Sleep(time.Minute)
				synctest.Wait()
				st, up := h.srv.Stats(), h.src.Connected()
				h.stop()
				if st.Connections != 2 || !up {
					t.Fatalf("%d connections, connected=%v; want 2 and connected", st.Connections, up)
				}
				if blind := st.LastAccept.Sub(st.LastUp); blind < 0 || blind > tt.within {
					t.Errorf("the source reconnected %v after the PBX came back, want within %v", blind, tt.within)
				}
				logs := h.logs.String()
				m := backAfter.FindAllStringSubmatch(logs, -1)
				if len(m) != 1 {
					t.Fatalf("%d lines about the connection coming back, want 1:\n%s", len(m), logs)
				}
				if d, err := time.ParseDuration(m[0][1]); err != nil || d < tt.outage || d > tt.outage+tt.within+100*time.Millisecond {
					t.Errorf("logged outage %q, want %v to %v", m[0][1], tt.outage, tt.outage+tt.within)
				}
			})
		})
	}
}

// TestCallRightAfterOutage: a call that rings and ends within seconds of the
// PBX coming back after a 6s outage is reported. With the wait doubling to a
// minute, the source was still away when such a call had come and gone, and
// 3CX does not replay it.
func TestCallRightAfterOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, setup{dns: []threecxtest.DN{{DN: "150", Type: "Wextension"}}})
		h.srv.SetDown(true)
		time.Sleep(6 * time.Second)
		h.srv.SetDown(false)
		time.Sleep(time.Second)
		if err := h.srv.Upsert(map[string]any{
			"id": 8106, "dn": "150", "callid": 1264, "status": "Ringing", "party_dn_type": "Wexternalline",
			"party_caller_id": "0891234567", "party_did": "0301234567", "party_dn": "10007",
		}, threecxtest.Send); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Second)
		h.srv.Remove("150", "8106", threecxtest.Send)
		h.settle()
		h.stop()
		checkSignals(t, h.journal.all(), []events.Signal{
			sig("1264", "8106", "150", events.Ringing),
			sig("1264", "8106", "150", events.Ended),
		})
	})
}
