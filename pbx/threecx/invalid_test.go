package threecx_test

import (
	"strconv"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

// TestInvalidSignalDropped: a callid the journal refuses (control or bidi
// characters, too long) costs its own signals and nothing else. Each is
// dropped once, counted and logged without the value; the connection stays,
// a snapshot does not derive them again, the store never keeps the leg, a
// transfer from that agent's call is journaled without a link to it, and
// the next call on the same extension goes through whole.
func TestInvalidSignalDropped(t *testing.T) {
	R, A, E := events.Ringing, events.Answered, events.Ended
	tests := []struct {
		name, callID string
	}{
		{"escape", "12\x1b[31m64"},
		{"bidi", "12\u202e64"},
		{"too long", strings.Repeat("9", events.MaxIDBytes+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				store := newMemStore()
				h := startHarness(t, setup{
					dns:   []threecxtest.DN{{DN: "150", Type: "Wextension"}, {DN: "151", Type: "Wextension"}},
					store: store,
				})
				dropped := func(want float64, when string) {
					t.Helper()
					if got := h.counter("voipbridge_threecx_signals_dropped_total", "reason", "invalid"); got != want {
						t.Errorf("%s: signals_dropped{reason=invalid} = %v, want %v", when, got, want)
					}
				}
				upsert := func(fields map[string]any) {
					t.Helper()
					fields["party_dn_type"], fields["party_dn"] = "Wexternalline", "10007"
					fields["party_caller_id"] = "0891234567"
					fields["party_did"] = "0301234567"
					if err := h.srv.Upsert(fields, threecxtest.Send); err != nil {
						t.Fatal(err)
					}
					h.settle()
				}

				upsert(map[string]any{"dn": "150", "id": 8200, "status": "Ringing", "callid": tt.callID})
				dropped(1, "ringing")
				if n := store.len(); n != 0 {
					t.Errorf("the store keeps %d legs of an unusable call, want 0", n)
				}
				// A new connection takes a snapshot that still lists the
				// participant: the book remembers it was handled.
				h.srv.DropConnections()
				h.settle()
				dropped(1, "after a snapshot")
				upsert(map[string]any{"dn": "150", "id": 8200, "status": "Connected", "callid": tt.callID})
				dropped(2, "answered")
				// 150 hands the call to 151 under a new callid: the signal
				// names 150 as the referrer, and the tracker, which never
				// saw the unusable call, makes it a call of its own.
				upsert(map[string]any{"dn": "151", "id": 8300, "status": "Ringing", "callid": "2000", "referred_by_dn": "150"})
				h.srv.Remove("150", "8200", threecxtest.Send)
				h.settle()
				dropped(3, "ended")
				h.srv.Remove("151", "8300", threecxtest.Send)
				h.settle()
				h.play(loadScript(t, "answered_inbound"))

				if got := h.srv.Stats().Connections; got != 2 {
					t.Errorf("connections = %d, want 2 (the one drop of the test): an invalid signal must not cost the connection", got)
				}
				if n := store.len(); n != 0 {
					t.Errorf("%d legs left in the store after every call ended", n)
				}
				h.stop()
				checkSignals(t, h.journal.all(), []events.Signal{
					sig("2000", "8300", "151", R, referred("150")),
					sig("2000", "8300", "151", E, referred("150")),
					sig("1264", "8106", "150", R),
					sig("1264", "8106", "150", A),
					sig("1264", "8106", "150", E),
				})
				logs := h.logs.String()
				// The drops are minutes apart, so none is held back by the
				// once-a-minute limit.
				if n := strings.Count(logs, "3CX signal dropped"); n != 3 {
					t.Errorf("%d drop lines, want 3:\n%s", n, logs)
				}
				if !strings.Contains(logs, "field=call_id") {
					t.Errorf("the drop line does not name the field:\n%s", logs)
				}
				quoted := strconv.Quote(tt.callID)
				if strings.Contains(logs, tt.callID) || strings.Contains(logs, quoted[1:len(quoted)-1]) {
					t.Errorf("the log shows the unusable callid:\n%s", logs)
				}
			})
		})
	}
}
