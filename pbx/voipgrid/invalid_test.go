package voipgrid

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/voipbridge/voipbridge/events"
)

// ringing is a ringing notification of call to the given extensions.
func ringing(t *testing.T, call string, exts ...string) []byte {
	t.Helper()
	targets := []map[string]any{}
	for _, e := range exts {
		targets = append(targets, map[string]any{"number": "+31508009001", "user_numbers": []string{e}})
	}
	b, err := json.Marshal(map[string]any{
		"call_id": call, "timestamp": "2024-03-05T10:00:01+00:00", "status": "ringing", "direction": "inbound",
		"caller":      map[string]any{"number": "+31612345678"},
		"destination": map[string]any{"number": "+31508009000", "targets": targets},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestInvalidSignals: identifiers the journal refuses never get a 503 (the
// platform would retry them forever). A notification none of whose signals
// can be journaled is refused with 400 naming the field and journals
// nothing (an unusable call_id is not even remembered); one with some good
// signals journals those and is
// answered 200 with the dropped fields listed. Either way the drop is
// counted and logged without the value, the same body gets the same answer
// again, and the next call goes through.
func TestInvalidSignals(t *testing.T) {
	longID := strings.Repeat("c", events.MaxIDBytes+1)
	// Fits as a call id, but not inside a dedup key.
	nearlyLongID := strings.Repeat("c", events.MaxIDBytes-16)
	tests := []struct {
		name    string
		body    []byte
		code    int
		field   string
		want    []string // extensions journaled, "" for the call itself
		dropped float64
		bad     string
	}{
		{"escape in call_id", ringing(t, "c-\x1b[31m1", "201"), 400, "call_id", nil, 0, "\x1b[31m"},
		{"bidi in call_id", ringing(t, "c-\u202e1", "201"), 400, "call_id", nil, 0, "c-\u202e1"},
		{"call_id too long", ringing(t, longID, "201"), 400, "call_id", nil, 0, longID},
		{"dedup key too long", ringing(t, nearlyLongID, "201"), 400, "event_id", nil, 1, nearlyLongID},
		{"escape in the only extension", ringing(t, "c-2", "20\x1b[31m1"), 400, "leg_id", nil, 1, "\x1b[31m"},
		{"bidi in one of two extensions", ringing(t, "c-3", "201", "20\u202e2"), 200, "leg_id", []string{"201"}, 1, "20\u202e2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &recorder{fail: func(s events.Signal) error { return s.Validate() }}
			var logs bytes.Buffer
			reg := prometheus.NewRegistry()
			h, err := New(Options{
				Journal:    j,
				Logger:     slog.New(slog.NewJSONHandler(&logs, nil)),
				Registerer: reg,
			})
			if err != nil {
				t.Fatal(err)
			}
			for try := range 2 {
				r := post(t, h, tt.body)
				if r.code != tt.code {
					t.Fatalf("try %d: code = %d %v, want %d", try, r.code, r.body, tt.code)
				}
				switch tt.code {
				case http.StatusBadRequest:
					if r.body["field"] != tt.field || !strings.HasPrefix(r.body["error"].(string), tt.field+": ") {
						t.Errorf("try %d: body = %v, want an error naming %s", try, r.body, tt.field)
					}
				case http.StatusOK:
					dropped, _ := r.body["dropped"].([]any)
					if r.body["signals"] != float64(len(tt.want)) || len(dropped) != 1 || dropped[0].(map[string]any)["field"] != tt.field {
						t.Errorf("try %d: body = %v, want %d signals and one dropped %s", try, r.body, len(tt.want), tt.field)
					}
				}
			}
			var got []string
			for _, s := range j.signals() {
				got = append(got, s.Extension)
			}
			want := append(tt.want, tt.want...) // the same body twice
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("journaled extensions (-want +got):\n%s", diff)
			}
			if got := value(t, h.m.sigDrops.WithLabelValues(reasonInvalid)); got != 2*tt.dropped {
				t.Errorf("signals_dropped{reason=invalid} = %v, want %v", got, 2*tt.dropped)
			}
			wantRejected := 0.0
			if tt.code == http.StatusBadRequest {
				wantRejected = 2
			}
			if got := value(t, h.m.rejected.WithLabelValues(reasonInvalid)); got != wantRejected {
				t.Errorf("rejected{reason=invalid} = %v, want %v", got, wantRejected)
			}
			if got := value(t, h.m.rejected.WithLabelValues(reasonJournal)); got != 0 {
				t.Errorf("rejected{reason=journal} = %v: an invalid signal is not a journal failure", got)
			}
			if n := strings.Count(logs.String(), `"reason":"invalid"`); n != 2 {
				t.Errorf("%d drop lines, want one per notification:\n%s", n, logs.String())
			}
			if !strings.Contains(logs.String(), `"field":"`+tt.field+`"`) {
				t.Errorf("no log line names the field %s:\n%s", tt.field, logs.String())
			}
			escaped, _ := json.Marshal(tt.bad)
			if strings.Contains(logs.String(), tt.bad) || strings.Contains(logs.String(), string(escaped[1:len(escaped)-1])) {
				t.Errorf("the log shows the unusable value:\n%s", logs.String())
			}

			sc := loadScripts(t)["answered"]
			before := len(j.signals())
			for i, n := range sc.Notifications {
				if r := post(t, h, n); r.code != http.StatusOK {
					t.Fatalf("good notification %d after it: %d %v", i, r.code, r.body)
				}
			}
			if diff := cmp.Diff(sc.Want, j.signals()[before:], ignoreKey); diff != "" {
				t.Errorf("the call after it (-want +got):\n%s", diff)
			}
		})
	}
}
