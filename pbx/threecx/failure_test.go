package threecx_test

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/threecx"
	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

// TestJournalFailureResyncs checks that a signal the journal refused is not
// lost: the source drops the connection, reconnects and derives the signal
// again from the snapshot.
func TestJournalFailureResyncs(t *testing.T) {
	R, A, E := events.Ringing, events.Answered, events.Ended
	tests := []struct {
		fail events.State
		want []events.Signal
	}{{
		fail: A,
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8106", "150", E),
		},
	}, {
		// The Remove cannot be read again; the snapshot no longer lists the
		// participant, so the end comes from the diff.
		fail: E,
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8106", "150", E, gone),
		},
	}}
	for _, tt := range tests {
		t.Run(string(tt.fail), func(t *testing.T) {
			sc := loadScript(t, "answered_inbound")
			synctest.Test(t, func(t *testing.T) {
				h := startHarness(t, setup{dns: sc.DNs})
				h.journal.failOnce(tt.fail)
				h.play(sc)
				if got := h.srv.Stats().Connections; got != 2 {
					t.Errorf("connections = %d, want 2: a journal failure must replace the connection", got)
				}
				h.stop()
				checkSignals(t, h.journal.all(), tt.want)
			})
		})
	}
}

// TestBadCredentials checks that refused credentials are retried with a
// growing backoff, logged once (without the secret) and never crash Run.
func TestBadCredentials(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, setup{fake: threecxtest.Options{ClientID: testClientID, ClientSecret: "another-secret"}})
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if h.src.Connected() {
			t.Error("connected with wrong credentials")
		}
		// Backoff from 1s doubling to 1m with up to half taken off: between
		// 11 and 26 attempts fit into 10 minutes. Without backoff there
		// would be thousands.
		if n := h.srv.Stats().TokenRequests; n < 8 || n > 30 {
			t.Errorf("%d token requests in 10 minutes, want 8 to 30", n)
		}
		if n := strings.Count(h.logs.String(), "refused the API credentials"); n != 1 {
			t.Errorf("the credential error was logged %d times, want once:\n%s", n, h.logs.String())
		}
		h.stop()
	})
}

// TestDNTypes checks which participants count as agents: extensions do;
// queues do not, whether the snapshot, a later GET of the DN or
// THREECX_QUEUE_DNS says so; a DN of unknown type does.
func TestDNTypes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, setup{
			dns:    []threecxtest.DN{{DN: "150", Type: "Wextension"}, {DN: "800", Type: "Wqueue"}, {DN: "900", Type: ""}, {DN: "901", Type: ""}},
			config: func(c *threecx.Config) { c.QueueDNs = []string{" 900 "} },
		})
		// 810 is added to the integration after the bridge connected.
		h.srv.SetDN("810", "Wqueue")
		for i, dn := range []string{"150", "800", "810", "900", "901"} {
			if err := h.srv.Upsert(map[string]any{
				"dn": dn, "id": 7000 + i, "callid": 1400 + i, "status": "Connected",
				"party_dn_type": "Wexternalline", "party_caller_id": "0612345678", "originated_by_dn": "ROUTER",
			}, threecxtest.Send); err != nil {
				t.Fatal(err)
			}
			h.settle()
		}
		h.stop()
		var got []string
		for _, s := range h.journal.all() {
			got = append(got, s.CallID+" "+s.Extension+" "+string(s.State))
		}
		want := []string{"1400 150 answered", "1401  ringing", "1402  ringing", "1403  ringing", "1404 901 answered"}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("signals %q, want %q", got, want)
		}
	})
}

// TestRestart: a call that ends while the bridge is not running still ends
// at the first snapshot after the restart, when the source has a Store.
// Without one (the control case) it cannot: 3CX replays nothing.
func TestRestart(t *testing.T) {
	R, A, E := events.Ringing, events.Answered, events.Ended
	for _, withStore := range []bool{true, false} {
		t.Run(map[bool]string{true: "store", false: "no store"}[withStore], func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := setup{dns: []threecxtest.DN{{DN: "150", Type: "Wextension"}, {DN: "151", Type: "Wextension"}}}
				store := newMemStore()
				if withStore {
					s.store = store
				}
				h := startHarness(t, s)
				base := map[string]any{
					"callid": 1264, "party_dn_type": "Wexternalline", "party_dn": "10007", "party_caller_id": "0891234567",
					"party_did": "0301234567", "originated_by_dn": "ROUTER",
				}
				upsert := func(fields map[string]any) {
					t.Helper()
					for k, v := range base {
						if _, ok := fields[k]; !ok {
							fields[k] = v
						}
					}
					if err := h.srv.Upsert(fields, threecxtest.Send); err != nil {
						t.Fatal(err)
					}
					h.settle()
				}
				upsert(map[string]any{"dn": "150", "id": 8106, "status": "Ringing"})
				upsert(map[string]any{"dn": "151", "id": 8107, "status": "Ringing"})
				upsert(map[string]any{"dn": "150", "id": 8106, "status": "Connected"})
				h.stopSource()
				// While the bridge is down, 151 stops ringing and the call ends.
				h.srv.Remove("151", "8107", threecxtest.Send)
				h.srv.Remove("150", "8106", threecxtest.Send)
				h.startSource()
				h.settle()
				h.stop()
				want := []events.Signal{
					sig("1264", "8106", "150", R),
					sig("1264", "8107", "151", R),
					sig("1264", "8106", "150", A),
				}
				if withStore {
					want = append(want, sig("1264", "8106", "150", E, gone), sig("1264", "8107", "151", E, gone))
					if n := store.len(); n != 0 {
						t.Errorf("%d legs left in the store after every call ended", n)
					}
				}
				checkSignals(t, h.journal.all(), want)
			})
		})
	}
}
