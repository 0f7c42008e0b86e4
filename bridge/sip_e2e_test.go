package bridge

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/robin/robintest"
	"github.com/voipbridge/voipbridge/sip/siptest"
)

const (
	sipUser = "bridge"
	sipPass = "pbx-secret-7"
	sipDID  = "+31201234567"
)

// sipScenario is one call scripted on the fake PBX and what ROBIN must get
// for it. Scenarios run side by side on their own extensions, each with its
// own customer, so that the tracker's transfer matching (customer number and
// DID within TRANSFER_WINDOW) cannot mix them up.
type sipScenario struct {
	name string
	exts []string
	// before runs before the bridge subscribes (a call already going on).
	before func(p *siptest.PBX, customer string) *siptest.Leg
	// run drives the call; step waits until ROBIN holds n events for the call.
	run  func(p *siptest.PBX, customer string, prior *siptest.Leg, step func(callID string, n int)) (callID string)
	want func(callID, customer string) []wantEvent
}

func national(customer string) string { return "0" + strings.TrimPrefix(customer, "+31") }

func inbound(callID, ext, customer string, types ...string) []wantEvent {
	var out []wantEvent
	for _, typ := range types {
		e := ext
		if i := strings.IndexByte(typ, '@'); i >= 0 {
			typ, e = typ[:i], typ[i+1:]
		}
		out = append(out, wantEvent{typ, callID, e, customer, sipDID, "Inbound"})
	}
	return out
}

func sipScenarios() []sipScenario {
	ring := 60 * time.Millisecond // PBXs report ringing before the answer
	transfer := func(name string, o siptest.TransferOptions, from, to string) sipScenario {
		return sipScenario{
			name: name, exts: []string{from, to},
			run: func(p *siptest.PBX, customer string, _ *siptest.Leg, step func(string, int)) string {
				a := p.InboundNamed(from, national(customer), `Klant "B.V." \ Zuid`, "0201234567")
				time.Sleep(ring)
				a.Answer()
				step(a.CallID, 1)
				b := a.BlindTransfer(to, o)
				time.Sleep(ring)
				b.Answer()
				step(a.CallID, 2)
				b.Hangup("remote-bye")
				return a.CallID
			},
			want: func(id, customer string) []wantEvent {
				return inbound(id, from, customer, "Answered", "Transfer@"+to, "Disconnected@"+to)
			},
		}
	}
	return []sipScenario{
		{
			name: "answered", exts: []string{"201"},
			run: func(p *siptest.PBX, customer string, _ *siptest.Leg, step func(string, int)) string {
				leg := p.Inbound("201", national(customer), "0201234567")
				time.Sleep(ring)
				leg.Answer()
				step(leg.CallID, 1)
				leg.Hangup("remote-bye")
				return leg.CallID
			},
			want: func(id, customer string) []wantEvent { return inbound(id, "201", customer, "Answered", "Disconnected") },
		},
		{
			name: "missed", exts: []string{"202"},
			run: func(p *siptest.PBX, customer string, _ *siptest.Leg, step func(string, int)) string {
				leg := p.Inbound("202", national(customer), "0201234567")
				time.Sleep(ring)
				leg.Cancel()
				return leg.CallID
			},
			want: func(id, customer string) []wantEvent { return inbound(id, "202", customer, "Disconnected") },
		},
		{
			name: "outbound", exts: []string{"203"},
			run: func(p *siptest.PBX, customer string, _ *siptest.Leg, step func(string, int)) string {
				leg := p.Outbound("203", national(customer))
				time.Sleep(ring)
				leg.Answer()
				step(leg.CallID, 1)
				leg.Hangup("local-bye")
				return leg.CallID
			},
			want: func(id, customer string) []wantEvent {
				return []wantEvent{{"Answered", id, "203", customer, "", "Outbound"}, {"Disconnected", id, "203", customer, "", "Outbound"}}
			},
		},
		transfer("blind transfer, same call-id", siptest.TransferOptions{}, "204", "205"),
		transfer("blind transfer, new call-id with replaces", siptest.TransferOptions{NewCallID: true, Replaces: true}, "206", "207"),
		transfer("blind transfer, new call-id unlinked", siptest.TransferOptions{NewCallID: true}, "208", "209"),
		{
			name: "in progress before subscribing", exts: []string{"210"},
			before: func(p *siptest.PBX, customer string) *siptest.Leg {
				leg := p.Inbound("210", national(customer), "0201234567")
				leg.Answer()
				return leg
			},
			run: func(p *siptest.PBX, customer string, prior *siptest.Leg, step func(string, int)) string {
				step(prior.CallID, 1)
				prior.Hangup("remote-bye")
				return prior.CallID
			},
			want: func(id, customer string) []wantEvent { return inbound(id, "210", customer, "Answered", "Disconnected") },
		},
	}
}

// TestSIPCallsEndToEnd drives calls on a fake PBX that demands digest
// authentication, over UDP and over TCP, through the SIP monitor, the
// journal, the tracker and the dispatcher to a fake ROBIN, and checks ROBIN
// gets exactly the right Answered, Transfer and Disconnected events.
func TestSIPCallsEndToEnd(t *testing.T) {
	for _, network := range []string{"udp", "tcp"} {
		t.Run(network, func(t *testing.T) {
			t.Parallel()
			runSIPScenarios(t, network, sipScenarios())
		})
	}
}

func runSIPScenarios(t *testing.T, network string, scenarios []sipScenario) {
	runSIPScenariosStyle(t, network, siptest.Kamailio, scenarios)
}

func runSIPScenariosStyle(t *testing.T, network string, style siptest.Style, scenarios []sipScenario) {
	pbx := siptest.Start(t, siptest.Options{Network: network, Username: sipUser, Password: sipPass, Style: style})
	var exts []string
	customers := make([]string, len(scenarios))
	prior := make([]*siptest.Leg, len(scenarios))
	for i, sc := range scenarios {
		exts = append(exts, sc.exts...)
		customers[i] = fmt.Sprintf("+3161234%04d", 5000+i)
		if sc.before != nil {
			prior[i] = sc.before(pbx, customers[i])
		}
	}
	// TRANSFER_WINDOW is 2 s: a blind transfer shows as one dialog ending and
	// another starting, which on a loaded machine can be more than the
	// harness's 300 ms apart.
	tb := startBridge(t,
		"SIP_SERVER="+pbx.Addr(), "SIP_TRANSPORT="+network, "SIP_DOMAIN="+pbx.Domain(),
		"SIP_LISTEN=127.0.0.1:0", "SIP_USERNAME="+sipUser, "SIP_PASSWORD="+sipPass,
		"SIP_EXTENSIONS="+strings.Join(exts, ","), "SIP_SUBSCRIBE_RATE=-1", "TRANSFER_WINDOW=2s")
	waitUntil(t, "every extension subscribed", func() bool {
		for _, ext := range exts {
			if pbx.Subscribed(ext) == 0 {
				return false
			}
		}
		return true
	})

	step := func(callID string, n int) { // runs on a scenario's goroutine: no t.Fatal here
		deadline := time.Now().Add(30 * time.Second)
		for len(forCall(tb.Robin.Events(), callID)) < n {
			if time.Now().After(deadline) {
				t.Errorf("timed out waiting for %d events for %s", n, callID)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	ids := make([]string, len(scenarios))
	var wg sync.WaitGroup
	for i, sc := range scenarios {
		wg.Go(func() { ids[i] = sc.run(pbx, customers[i], prior[i], step) })
	}
	wg.Wait()

	total := 0
	for i, sc := range scenarios {
		total += len(sc.want(ids[i], customers[i]))
	}
	tb.WaitEvents(t, total)
	time.Sleep(2500 * time.Millisecond) // past TRANSFER_WINDOW: a stray event would show up
	got := tb.Robin.Events()
	for i, sc := range scenarios {
		if d := cmp.Diff(sc.want(ids[i], customers[i]), eventsOf(forCall(got, ids[i]))); d != "" {
			t.Errorf("%s: events at ROBIN (-want +got):\n%s", sc.name, d)
		}
	}
	if len(got) != total {
		t.Errorf("ROBIN got %d events, want %d:\n%+v", len(got), total, eventsOf(got))
	}
	for _, r := range got {
		if r.Duplicate || r.OutOfOrder {
			t.Errorf("ROBIN flagged %+v", r.Event)
		}
	}
}

func forCall(rs []robintest.Received, callID string) []robintest.Received {
	var out []robintest.Received
	for _, r := range rs {
		if r.Event.ID == callID {
			out = append(out, r)
		}
	}
	return out
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
