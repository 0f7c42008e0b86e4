package threecx_test

import (
	"testing"
	"testing/synctest"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

// capturedInbound is the inbound participant captured on 3CX V20: party_did
// is empty, the trunk shows only as party_dn with party_dn_type Wexternalline.
func capturedInbound(status string) map[string]any {
	return map[string]any{
		"id": 8106, "status": status, "dn": "150",
		"party_caller_name": "+49891234567", "party_dn": "10007", "party_caller_id": "0891234567",
		"party_did": "", "device_id": "sip:150@127.0.0.1:5483", "party_dn_type": "Wexternalline",
		"direct_control": false, "originated_by_dn": "ROUTER", "originated_by_type": "Wroutepoint",
		"referred_by_dn": "", "referred_by_type": "None", "on_behalf_of_dn": "", "on_behalf_of_type": "None",
		"callid": 1264, "legid": 4,
	}
}

// TestLineAndDID: every signal of a call names the trunk it came in on
// (Signal.Line, for DID_MAP) and carries the dialled number when any
// participant of the call shows one.
func TestLineAndDID(t *testing.T) {
	R, A, E := events.Ringing, events.Answered, events.Ended
	noDID := func(s *events.Signal) { s.Dialled = "" }
	viaQueue := func(status string) map[string]any {
		p := capturedInbound(status)
		p["party_dn"], p["party_dn_type"], p["party_caller_id"] = "800", "Wqueue", "0891234567"
		return p
	}
	trunk := threecxtest.TrunkParticipant("10007", 8105, 1264, "ROUTER", "Wroutepoint", "0301234567")
	tests := []struct {
		name  string
		steps []map[string]any // upserts; nil: remove 150's participant
		// reconnect: the upserts are lost and the source learns them from
		// the snapshot after a dropped socket.
		reconnect bool
		want      []events.Signal
	}{{
		// As captured: no DID anywhere; the line is the agent's party.
		name:  "captured",
		steps: []map[string]any{capturedInbound("Ringing"), capturedInbound("Connected"), nil},
		want:  []events.Signal{sig("1264", "8106", "150", R, noDID), sig("1264", "8106", "150", A, noDID), sig("1264", "8106", "150", E, noDID)},
	}, {
		// The trunk is monitored and its participant carries the DID; the
		// agent's party is a queue, so only the call tells line and DID.
		// The trunk's participant itself is no leg.
		name:  "trunk participant first",
		steps: []map[string]any{trunk, viaQueue("Ringing"), viaQueue("Connected"), nil},
		want:  []events.Signal{sig("1264", "8106", "150", R), sig("1264", "8106", "150", A), sig("1264", "8106", "150", E)},
	}, {
		// The trunk's participant shows up after the agent rang: the line
		// comes with the next signal.
		name:  "trunk participant later",
		steps: []map[string]any{viaQueue("Ringing"), trunk, viaQueue("Connected"), nil},
		want: []events.Signal{
			sig("1264", "8106", "150", R, noDID, func(s *events.Signal) { s.Line = "" }),
			sig("1264", "8106", "150", A), sig("1264", "8106", "150", E),
		},
	}, {
		// In a snapshot every participant is read before any signal: the
		// agent's first signal has line and DID although the trunk's
		// participant comes later in the list.
		name:      "snapshot",
		steps:     []map[string]any{viaQueue("Connected"), threecxtest.TrunkParticipant("10007", 8199, 1264, "ROUTER", "Wroutepoint", "0301234567"), nil},
		reconnect: true,
		want:      []events.Signal{sig("1264", "8106", "150", A), sig("1264", "8106", "150", E)},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := startHarness(t, setup{dns: []threecxtest.DN{
					{DN: "150", Type: "Wextension"}, {DN: "800", Type: "Wqueue"}, {DN: "10007", Type: threecxtest.TrunkType},
				}})
				for i, st := range tt.steps {
					d := threecxtest.Send
					if tt.reconnect && st != nil {
						d = threecxtest.Lose
					}
					if st == nil {
						if tt.reconnect {
							h.srv.DropConnections()
							h.settle()
						}
						h.srv.Remove("150", "8106", threecxtest.Send)
					} else if err := h.srv.Upsert(st, d); err != nil {
						t.Fatalf("step %d: %v", i, err)
					}
					h.settle()
				}
				h.stop()
				checkSignals(t, h.journal.all(), tt.want)
			})
		})
	}
}
