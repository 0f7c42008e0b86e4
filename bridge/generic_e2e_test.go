package bridge

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

type wantEvent struct {
	Type, ID, Ext, Number, Referrer, Direction string
}

func eventsOf(rs []robintest.Received) []wantEvent {
	var out []wantEvent
	for _, r := range rs {
		e := r.Event
		out = append(out, wantEvent{string(e.Type), e.ID, e.PhoneExtension, e.PhoneNumber, e.PhoneReferrer, e.Direction})
	}
	return out
}

func generic(callID, event, ext string, extra ...string) string {
	s := fmt.Sprintf(`{"call_id":%q,"event":%q,"extension":%q,"from":"0612345678","to":"+31858770023"`, callID, event, ext)
	for i := 0; i+1 < len(extra); i += 2 {
		s += fmt.Sprintf(",%q:%q", extra[i], extra[i+1])
	}
	return s + "}"
}

// TestGenericCallsEndToEnd: whole calls through the webhook, the journal,
// the tracker and the dispatcher to the fake ROBIN.
func TestGenericCallsEndToEnd(t *testing.T) {
	tb := startBridge(t)
	posts := []string{
		generic("a1", "ringing", "201"),
		generic("a1", "answered", "201"),
		generic("t1", "ringing", "202", "from", "+31 20 123 4567"),
		generic("t1", "answered", "202", "from", "+31 20 123 4567"),
		generic("t1", "transferred", "203", "from", "+31 20 123 4567"),
		generic("a1", "ended", "201"),
		generic("t1", "ended", "", "from", "+31 20 123 4567"),
		generic("m1", "ringing", "201", "leg_id", "x", "from", "0031 6 8765 4321"),
		generic("m1", "ended", "", "from", "0031 6 8765 4321"),
		`{"call_id":"o1","event":"answered","direction":"outbound","from":"+31858770023","to":"010 765 4321","extension":"204"}`,
		`{"call_id":"o1","event":"ended","direction":"outbound","from":"+31858770023","to":"010 765 4321","extension":"204"}`,
	}
	for _, p := range posts {
		if st := tb.Post(t, "/v1/webhooks/generic", p); st != http.StatusAccepted {
			t.Fatalf("POST %s: %d", p, st)
		}
	}
	tb.WaitEvents(t, 8)
	got := tb.Settle(t)
	byCall := map[string][]wantEvent{}
	for _, e := range eventsOf(got) {
		byCall[e.ID] = append(byCall[e.ID], e)
	}
	want := map[string][]wantEvent{
		"a1": {{"Answered", "a1", "201", "+31612345678", "+31858770023", "Inbound"}, {"Disconnected", "a1", "201", "+31612345678", "+31858770023", "Inbound"}},
		"t1": {{"Answered", "t1", "202", "+31201234567", "+31858770023", "Inbound"}, {"Transfer", "t1", "203", "+31201234567", "+31858770023", "Inbound"}, {"Disconnected", "t1", "203", "+31201234567", "+31858770023", "Inbound"}},
		"m1": {{"Disconnected", "m1", "201", "+31687654321", "+31858770023", "Inbound"}},
		"o1": {{"Answered", "o1", "204", "+31107654321", "+31858770023", "Outbound"}, {"Disconnected", "o1", "204", "+31107654321", "+31858770023", "Outbound"}},
	}
	if d := cmp.Diff(want, byCall); d != "" {
		t.Fatalf("events at ROBIN (-want +got):\n%s", d)
	}
	for _, r := range got {
		if r.Duplicate || r.OutOfOrder {
			t.Fatalf("ROBIN flagged %+v", r)
		}
	}
}

// TestGenericRepeatChangesNothing: the same event_id (or the same body) twice
// is accepted twice and reported once.
func TestGenericRepeatChangesNothing(t *testing.T) {
	tb := startBridge(t)
	for range 3 {
		if st := tb.Post(t, "/v1/webhooks/generic", generic("r1", "answered", "201", "event_id", "same")); st != 202 {
			t.Fatal(st)
		}
		if st := tb.Post(t, "/v1/webhooks/generic", generic("r1", "answered", "202")); st != 202 {
			t.Fatal(st)
		}
	}
	tb.WaitEvents(t, 2)
	got := eventsOf(tb.Settle(t))
	want := []wantEvent{{"Answered", "r1", "201", "+31612345678", "+31858770023", "Inbound"}, {"Transfer", "r1", "202", "+31612345678", "+31858770023", "Inbound"}}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

// TestOpsEndpoints: health, readiness and metrics answer, and the API key
// appears in none of them.
func TestOpsEndpoints(t *testing.T) {
	tb := startBridge(t)
	tb.Post(t, "/v1/webhooks/generic", generic("k1", "answered", "201"))
	tb.WaitEvents(t, 1)
	for path, want := range map[string]int{"/healthz": 200, "/readyz": 200, "/metrics": 200} {
		resp, err := http.Get(tb.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
		if strings.Contains(string(body), "test-key") {
			t.Fatalf("%s shows the API key", path)
		}
		if path == "/metrics" {
			for _, m := range []string{`voipbridge_signals_total{outcome="applied",source="generic"} 1`, `voipbridge_events_total{type="Answered"} 1`, "voipbridge_queue_depth", `voipbridge_build_info{version="dev"} 1`, "voipbridge_tracker_lag_signals"} {
				if !strings.Contains(string(body), m) {
					t.Errorf("metrics lack %q", m)
				}
			}
		}
	}
}
