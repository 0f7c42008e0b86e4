package bridge

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
)

// voipgridScript is a whole call from testdata/voipgrid/calls.
type voipgridScript struct {
	Description   string            `json:"description"`
	Notifications []json.RawMessage `json:"notifications"`
	Want          []events.Signal   `json:"want"`
	WantEvents    []struct {
		Type  string `json:"type"`
		Agent string `json:"agent"`
	} `json:"want_events"`
}

func loadVoIPGRIDScript(t *testing.T, name string) voipgridScript {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "voipgrid", "calls", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var sc voipgridScript
	if err := json.Unmarshal(b, &sc); err != nil {
		t.Fatal(err)
	}
	return sc
}

// wantEvents derives the helpdesk's events from the script: extensions 201
// and 202 are agents under their own numbers.
func (sc voipgridScript) wantEvents() []wantEvent {
	first := sc.Want[0]
	var out []wantEvent
	for _, e := range sc.WantEvents {
		out = append(out, wantEvent{e.Type, first.CallID, e.Agent, first.Remote, first.Dialled, events.DirectionLabel(first.Direction)})
	}
	return out
}

func startVoIPGRIDBridge(t *testing.T) *testBridge {
	t.Helper()
	return startBridge(t, "VOIPGRID_ENABLED=true", "EXTENSIONS=201,202")
}

// postToken posts as the platform does: the token in the URL, no headers
// but the content type. It returns the status and the answer.
func postToken(t *testing.T, tb *testBridge, body []byte) (int, string) {
	t.Helper()
	resp, err := http.Post(tb.URL+"/v1/webhooks/voipgrid/"+tb.Token, "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestVoIPGRIDCallsEndToEnd posts every call script through the guard, the
// journal, the tracker and the dispatcher to the fake ROBIN.
func TestVoIPGRIDCallsEndToEnd(t *testing.T) {
	for _, name := range []string{"answered", "missed", "cold-transfer", "warm-transfer", "outbound"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sc := loadVoIPGRIDScript(t, name)
			tb := startVoIPGRIDBridge(t)
			for i, n := range sc.Notifications {
				if code, body := postToken(t, tb, n); code != http.StatusOK {
					t.Fatalf("notification %d: %d %s", i, code, body)
				}
			}
			want := sc.wantEvents()
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

// TestVoIPGRIDDuplicatesAndReordering: every notification twice, and the
// first two swapped (ringing before created): the helpdesk gets the same
// events as for the call in order, each once.
func TestVoIPGRIDDuplicatesAndReordering(t *testing.T) {
	sc := loadVoIPGRIDScript(t, "cold-transfer")
	tb := startVoIPGRIDBridge(t)
	order := []int{1, 0, 0, 1, 2, 2, 3, 3, 4, 5, 4, 5}
	for _, i := range order {
		if code, body := postToken(t, tb, sc.Notifications[i]); code != http.StatusOK {
			t.Fatalf("notification %d: %d %s", i, code, body)
		}
	}
	want := sc.wantEvents()
	tb.WaitEvents(t, len(want))
	got := tb.Settle(t)
	if d := cmp.Diff(want, eventsOf(got)); d != "" {
		t.Fatalf("events at ROBIN (-want +got):\n%s", d)
	}
	for _, r := range got {
		if r.Duplicate || r.OutOfOrder {
			t.Fatalf("ROBIN flagged %+v", r.Event)
		}
	}
}

// TestVoIPGRIDLateAnswer: Alice's answer arrives after the warm transfer to
// Bob. The helpdesk still gets the call as it happened: answered by Alice,
// transferred to Bob, ended with Bob.
func TestVoIPGRIDLateAnswer(t *testing.T) {
	sc := loadVoIPGRIDScript(t, "warm-transfer")
	tb := startVoIPGRIDBridge(t)
	for _, i := range []int{0, 1, 3, 2, 4} {
		if code, body := postToken(t, tb, sc.Notifications[i]); code != http.StatusOK {
			t.Fatalf("notification %d: %d %s", i, code, body)
		}
	}
	want := sc.wantEvents()
	tb.WaitEvents(t, len(want))
	if d := cmp.Diff(want, eventsOf(tb.Settle(t))); d != "" {
		t.Fatalf("events at ROBIN (-want +got):\n%s", d)
	}
}

// TestVoIPGRIDAnswers: what the platform gets back through the bridge.
func TestVoIPGRIDAnswers(t *testing.T) {
	tb := startVoIPGRIDBridge(t)
	tests := []struct {
		name string
		body string
		code int
		has  string
	}{
		{"unknown status", `{"call_id":"u1","status":"parked","timestamp":"2024-03-05T10:00:00+00:00"}`, http.StatusAccepted, "unknown status"},
		{"malformed", `{"call_id":`, http.StatusBadRequest, "malformed JSON"},
		{"no call_id", `{"status":"ringing"}`, http.StatusBadRequest, "call_id is missing"},
	}
	for _, tt := range tests {
		if code, body := postToken(t, tb, []byte(tt.body)); code != tt.code || !strings.Contains(body, tt.has) {
			t.Errorf("%s: %d %s, want %d naming %q", tt.name, code, body, tt.code, tt.has)
		}
	}
	// Without the token the guard refuses, before the handler sees it.
	resp, err := http.Post(tb.URL+"/v1/webhooks/voipgrid", "application/json", strings.NewReader(`{"call_id":"x","status":"created"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("without token: %d", resp.StatusCode)
	}
	if v := threecxMetric(t, tb, "voipbridge_voipgrid_notifications_received_total"); v != 1 {
		t.Errorf("notifications received = %v, want 1 (the unknown status)", v)
	}
	if got := tb.Settle(t); len(got) != 0 {
		t.Errorf("ROBIN got %v", got)
	}
}

// TestVoIPGRIDDisabled: without VOIPGRID_ENABLED the path is not served.
func TestVoIPGRIDDisabled(t *testing.T) {
	tb := startBridge(t)
	if code := tb.Post(t, "/v1/webhooks/voipgrid", `{"call_id":"x","status":"created"}`); code == http.StatusOK || code == http.StatusAccepted {
		t.Errorf("disabled handler answered %d", code)
	}
}
