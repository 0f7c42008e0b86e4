package threecx_test

import (
	"fmt"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/events/eventstest"
	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

// callEvents is what the helpdesk gets for each script of TestCalls, its
// signals folded through the tracker: the source only translates, so a
// transfer to a new callid (referred by 150) is joined to 150's call there.
var callEvents = map[string][]string{
	"answered_inbound":                 {"Answered 1264 150", "Disconnected 1264 150"},
	"missed_inbound":                   {"Disconnected 1264 151"},
	"blind_transfer":                   {"Answered 1264 150", "Transfer 1264 151", "Disconnected 1264 151"},
	"attended_transfer":                {"Answered 1264 150", "Transfer 1264 151", "Disconnected 1264 151"},
	"attended_transfer_consult_callid": {"Answered 1264 150", "Transfer 1264 151", "Disconnected 1264 151"},
	"outbound":                         {"Answered 1265 150", "Disconnected 1265 150"},
	"queue_answered":                   {"Answered 1300 150", "Disconnected 1300 150"},
	"drop_during_call":                 {"Answered 1264 150", "Disconnected 1264 150"},
	"transfer_while_disconnected":      {"Answered 1264 150", "Transfer 1264 151", "Disconnected 1264 151"},
	// Another caller on 151 while 150 has a call: a call of its own,
	// missed.
	"sequence_gap":         {"Answered 1264 150", "Disconnected 1264 150", "Disconnected 1266 151"},
	"duplicates_reordered": {"Answered 1264 150", "Disconnected 1264 150"},
	"late_upsert":          {"Disconnected 1264 150"},
	"token_expiry":         {"Answered 1264 150", "Disconnected 1264 150"},
	"garbage":              {"Answered 1264 150", "Disconnected 1264 150"},
}

// TestCalls plays whole calls from testdata/threecx/calls on the fake PBX and
// checks that the source journals exactly the signals of each call, and
// what the tracker makes of them.
func TestCalls(t *testing.T) {
	R, A, E := events.Ringing, events.Answered, events.Ended
	tests := []struct {
		script string
		want   []events.Signal
	}{{
		script: "answered_inbound",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8106", "150", E),
		},
	}, {
		script: "missed_inbound",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8107", "151", R),
			sig("1264", "8106", "150", E),
			sig("1264", "8107", "151", E),
		},
	}, {
		// The new leg on 151 rings before 150's leg ends, so the call never
		// looks finished; 151's answer on the same callid is the transfer.
		script: "blind_transfer",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8108", "151", R, referred("150")),
			sig("1264", "8106", "150", E),
			sig("1264", "8108", "151", A, referred("150")),
			sig("1264", "8108", "151", E, referred("150")),
		},
	}, {
		// The consultation between 150 and 151 (callid 1270) is internal and
		// makes no signals.
		script: "attended_transfer",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8112", "151", A, referred("150")),
			sig("1264", "8106", "150", E),
			sig("1264", "8112", "151", E, referred("150")),
		},
	}, {
		script: "attended_transfer_consult_callid",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1270", "8111", "151", A, referred("150")),
			sig("1264", "8106", "150", E),
			sig("1270", "8111", "151", E, referred("150")),
		},
	}, {
		script: "outbound",
		want: []events.Signal{
			sig("1265", "8107", "150", R, outbound),
			sig("1265", "8107", "150", A, outbound),
			sig("1265", "8107", "150", E, outbound),
		},
	}, {
		// Connected on the queue is not an answer and the queue leg has no
		// extension; the losing ring leg on 151 just ends.
		script: "queue_answered",
		want: []events.Signal{
			sig("1300", "8120", "", R),
			sig("1300", "8121", "150", R),
			sig("1300", "8122", "151", R),
			sig("1300", "8121", "150", A),
			sig("1300", "8122", "151", E),
			sig("1300", "8120", "", E),
			sig("1300", "8121", "150", E),
		},
	}, {
		// The Remove is never delivered; the snapshot after reconnecting no
		// longer lists the participant, so the call still ends.
		script: "drop_during_call",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8106", "150", E, gone),
		},
	}, {
		// The snapshot shows 151's new leg; its answer must be journaled
		// before 150's end, or the call would look finished.
		script: "transfer_while_disconnected",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8108", "151", A, referred("150")),
			sig("1264", "8106", "150", E, gone),
			sig("1264", "8108", "151", E, referred("150")),
		},
	}, {
		script: "sequence_gap",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1266", "8130", "151", R, remote("0612345678")),
			sig("1264", "8106", "150", E),
			sig("1266", "8130", "151", E, remote("0612345678")),
		},
	}, {
		script: "duplicates_reordered",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8107", "151", R),
			sig("1264", "8107", "151", E),
			sig("1264", "8106", "150", E),
		},
	}, {
		// The participant is gone when its late upsert is fetched (404):
		// its last known state ends.
		script: "late_upsert",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", E, gone),
		},
	}, {
		script: "token_expiry",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8106", "150", E),
		},
	}, {
		script: "garbage",
		want: []events.Signal{
			sig("1264", "8106", "150", R),
			sig("1264", "8106", "150", A),
			sig("1264", "8106", "150", E),
		},
	}}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			sc := loadScript(t, tt.script)
			synctest.Test(t, func(t *testing.T) {
				h := startHarness(t, setup{dns: sc.DNs})
				h.play(sc)
				h.stop()
				checkSignals(t, h.journal.all(), tt.want)
				var got []string
				for _, e := range eventstest.Replay(t, "", h.journal.all()) {
					got = append(got, fmt.Sprintf("%s %s %s", e.Type, e.ID, e.PhoneExtension))
				}
				if d := cmp.Diff(callEvents[tt.script], got); d != "" {
					t.Errorf("events through the tracker (-want +got):\n%s", d)
				}
			})
		})
	}
}

// TestPascalCaseMessages plays calls with the WebSocket members spelled as
// 3CX's documentation writes them (EventType, Entity, AttachedData): the same
// signals as with the samples' snake_case.
func TestPascalCaseMessages(t *testing.T) {
	for _, script := range []string{"answered_inbound", "sequence_gap"} {
		t.Run(script, func(t *testing.T) {
			sc := loadScript(t, script)
			synctest.Test(t, func(t *testing.T) {
				snake := startHarness(t, setup{dns: sc.DNs})
				snake.play(sc)
				snake.stop()
				pascal := startHarness(t, setup{dns: sc.DNs, fake: threecxtest.Options{
					ClientID: testClientID, ClientSecret: testSecret, PascalCase: true,
				}})
				pascal.play(sc)
				pascal.stop()
				if got := pascal.counter("voipbridge_threecx_messages_processed_total"); got == 0 {
					t.Error("no message processed")
				}
				if len(snake.journal.all()) == 0 {
					t.Fatal("no signals")
				}
				checkSignals(t, pascal.journal.all(), snake.journal.all())
			})
		})
	}
}

// TestSequenceGapTakesSnapshot checks that the gap, and only the gap, made
// the source take a second snapshot on the same connection.
func TestSequenceGapTakesSnapshot(t *testing.T) {
	sc := loadScript(t, "sequence_gap")
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, setup{dns: sc.DNs})
		h.play(sc)
		if got := h.counter("voipbridge_threecx_snapshots_total", "reason", "sequence_gap"); got != 1 {
			t.Errorf("snapshots after a sequence gap = %v, want 1", got)
		}
		if got := h.srv.Stats(); got.Snapshots != 2 || got.Connections != 1 {
			t.Errorf("fake saw %d snapshots on %d connections, want 2 on 1", got.Snapshots, got.Connections)
		}
		h.stop()
	})
}

// TestDropReconnects checks that a dropped socket is replaced, with a new
// snapshot, and that the metrics say so.
func TestDropReconnects(t *testing.T) {
	sc := loadScript(t, "drop_during_call")
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, setup{dns: sc.DNs})
		if !h.src.Connected() || h.counter("voipbridge_threecx_connected") != 1 {
			t.Fatal("source is not connected after start")
		}
		h.play(sc)
		st := h.srv.Stats()
		if st.Connections != 2 || st.Snapshots != 2 {
			t.Errorf("fake saw %d connections and %d snapshots, want 2 and 2", st.Connections, st.Snapshots)
		}
		if got := h.counter("voipbridge_threecx_reconnects_total"); got < 1 {
			t.Errorf("reconnects = %v, want at least 1", got)
		}
		if !h.src.Connected() || h.counter("voipbridge_threecx_connected") != 1 {
			t.Error("source is not connected again after the PBX came back")
		}
		h.stop()
		if h.src.Connected() || h.counter("voipbridge_threecx_connected") != 0 {
			t.Error("source still says connected after Run returned")
		}
	})
}

// TestTokenExpiry checks that a revoked token is replaced after one 401 and
// that the message that met the 401 still made its signal (TestCalls checks
// the signals of the same script).
func TestTokenExpiry(t *testing.T) {
	sc := loadScript(t, "token_expiry")
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, setup{dns: sc.DNs})
		h.play(sc)
		st := h.srv.Stats()
		if st.TokensIssued != 2 {
			t.Errorf("tokens issued = %d, want 2 (the first and one after the 401)", st.TokensIssued)
		}
		if st.Unauthorized != 1 {
			t.Errorf("401 answers = %d, want 1", st.Unauthorized)
		}
		if st.Connections != 1 {
			t.Errorf("connections = %d, want 1: a token renewal must not cost the socket", st.Connections)
		}
		h.stop()
		if got := len(h.journal.all()); got != 3 {
			t.Errorf("%d signals, want 3", got)
		}
	})
}

// TestTokenRenewedBeforeExpiry checks that the source renews its token before
// the PBX would refuse it, so that no request meets a 401.
func TestTokenRenewedBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, setup{fake: threecxtest.Options{
			ClientID: testClientID, ClientSecret: testSecret, TokenTTL: 10 * time.Minute,
		}})
		// One call state change every 2 fake minutes for 30 minutes: three
		// token lifetimes.
		for i := range 15 {
			status := "Ringing"
			if i%2 == 1 {
				status = "Connected"
			}
			if err := h.srv.Upsert(map[string]any{
				"dn": "150", "id": 9000 + i/2, "callid": 2000 + i/2, "status": status,
				"party_dn_type": "Wexternalline", "party_caller_id": "0612345678",
			}, threecxtest.Send); err != nil {
				t.Fatal(err)
			}
			h.settle()
		}
		st := h.srv.Stats()
		if st.Unauthorized != 0 {
			t.Errorf("%d requests met a 401; the token should have been renewed before it expired", st.Unauthorized)
		}
		if st.TokensIssued < 3 {
			t.Errorf("tokens issued = %d over three lifetimes, want at least 3", st.TokensIssued)
		}
		h.stop()
		if got := len(h.journal.all()); got != 15 {
			t.Errorf("%d signals, want 15 (8 ringing, 7 answered)", got)
		}
	})
}

// TestGarbageIsCountedAndDropped checks the drop counters and that bad
// messages do not cost the connection.
func TestGarbageIsCountedAndDropped(t *testing.T) {
	sc := loadScript(t, "garbage")
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, setup{dns: sc.DNs})
		h.play(sc)
		for _, reason := range []string{"json", "no_entity", "unknown_type", "bad_entity"} {
			if got := h.counter("voipbridge_threecx_messages_dropped_total", "reason", reason); got != 1 {
				t.Errorf("dropped{reason=%q} = %v, want 1", reason, got)
			}
		}
		if got := h.counter("voipbridge_threecx_messages_received_total", "type", "dtmf"); got != 1 {
			t.Errorf("received{type=dtmf} = %v, want 1", got)
		}
		if got := h.srv.Stats().Connections; got != 1 {
			t.Errorf("connections = %d, want 1: bad messages must not cost the socket", got)
		}
		h.stop()
	})
}

// TestFetchFailureTakesSnapshot: when the GET of a changed participant fails,
// the change is not lost: the source reads a snapshot instead.
func TestFetchFailureTakesSnapshot(t *testing.T) {
	sc := loadScript(t, "answered_inbound")
	synctest.Test(t, func(t *testing.T) {
		h := startHarness(t, setup{dns: sc.DNs})
		for i, st := range sc.Steps {
			if i == 1 {
				h.srv.FailParticipantGets(1)
			}
			if err := h.srv.Apply(st); err != nil {
				t.Fatal(err)
			}
			h.settle()
		}
		if got := h.counter("voipbridge_threecx_snapshots_total", "reason", "fetch_failed"); got != 1 {
			t.Errorf("snapshots after a failed fetch = %v, want 1", got)
		}
		h.stop()
		checkSignals(t, h.journal.all(), []events.Signal{
			sig("1264", "8106", "150", events.Ringing),
			sig("1264", "8106", "150", events.Answered),
			sig("1264", "8106", "150", events.Ended),
		})
	})
}
