package voipgrid

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// addSeeds adds every published payload and every notification of the call
// scripts to the corpus.
func addSeeds(f *testing.F) {
	files, _ := filepath.Glob("../../testdata/voipgrid/*.json")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	calls, _ := filepath.Glob("../../testdata/voipgrid/calls/*.json")
	for _, file := range calls {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		var sc struct {
			Notifications []json.RawMessage `json:"notifications"`
		}
		if json.Unmarshal(b, &sc) == nil {
			for _, n := range sc.Notifications {
				f.Add([]byte(n))
			}
		}
	}
	f.Add([]byte(`{"call_id":"x","status":"ended","destination":{"targets":[{"user_numbers":[1,"2",null]}]}}`))
	f.Add([]byte(`{"call_id":"x","status":"in-progress","direction":"outbound","caller":{"user_numbers":["201"],"number":"201"}}`))
	f.Add([]byte(`{"call_id":"x","timestamp":"1693575683.5","status":"warm_transfer","destination":{"user_numbers":["202"]}}`))
}

// FuzzDecode: any body either fails to decode or translates into valid
// signals with distinct dedup keys, whatever came before it for the call.
// Valid but for an identifier the platform sent unusable (see pbxTextFault):
// the handler drops those.
func FuzzDecode(f *testing.F) {
	addSeeds(f)
	f.Add([]byte(`{"call_id":"c\u001b[31m1","status":"ringing","destination":{"targets":[{"user_numbers":["20\u202e1"]}]}}`))
	now := time.Date(2024, 3, 5, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := Decode(body)
		if err != nil {
			return
		}
		if n.CallID == "" {
			t.Fatal("decoded a notification without call_id")
		}
		st := ParseStatus(n.Status)
		if st == StatusUnknown {
			return
		}
		note, _ := newNote(n, st, body, now)
		sigs := note.signals()
		seen := map[string]bool{}
		for _, s := range sigs {
			if err := s.Validate(); err != nil && !events.TextFault(s, err) {
				t.Fatalf("invalid signal %+v: %v", s, err)
			}
			if s.Source != SourceName || s.CallID != n.CallID {
				t.Fatalf("signal %+v does not belong to call %q", s, n.CallID)
			}
			if seen[s.DedupKey] {
				t.Fatalf("dedup key %q twice in %+v", s.DedupKey, sigs)
			}
			seen[s.DedupKey] = true
		}
	})
}

// FuzzHandler: the handler answers every body with one of its documented
// statuses and JSON, and never panics.
func FuzzHandler(f *testing.F) {
	addSeeds(f)
	f.Add(bytes.Repeat([]byte("{"), DefaultMaxBody+1))
	h, err := New(Options{Journal: &recorder{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK, http.StatusAccepted, http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", rec.Body)
		}
	})
}
