package bridge

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/events/eventstest"
	"github.com/voipbridge/voipbridge/pbx/webhook"
)

// teeJournal journals into the real journal and keeps what it accepted.
type teeJournal struct {
	j    *events.Journal
	mu   sync.Mutex
	sigs []events.Signal
}

func (t *teeJournal) PublishSignal(ctx context.Context, s events.Signal) error {
	if err := t.j.PublishSignal(ctx, s); err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.sigs = append(t.sigs, s)
	return nil
}

type profileEvent struct {
	Type      string `json:"type"`
	ID        string `json:"id"`
	Ext       string `json:"ext"`
	Direction string `json:"direction"`
}

type profileScenario struct {
	Requests []struct {
		Method      string          `json:"method"`
		ContentType string          `json:"content_type"`
		Query       string          `json:"query"`
		Body        json.RawMessage `json:"body"`
		Status      int             `json:"status"`
	} `json:"requests"`
	Events []profileEvent `json:"events"`
}

// profileTestEnv is a sourceEnv with a real journal, a mux and the guard,
// as the bridge builds it.
func profileTestEnv(t *testing.T) (*sourceEnv, *http.ServeMux) {
	t.Helper()
	j, err := events.OpenJournal(t.Context(), events.JournalOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	mux := http.NewServeMux()
	return &sourceEnv{
		Journal: j, Log: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(),
		mux: mux, guard: &webhook.Guard{Token: "s3cret"},
	}, mux
}

// TestProfileScenariosEndToEnd posts each built-in profile's fixtures
// (pbx/webhook/testdata/profiles) through the guard into a real journal
// and folds what was journaled through the tracker's call model: a K2M call
// answered then ended gives Answered, Disconnected; an attended transfer a
// Transfer; a 3CX CRM lookup and report of an inbound call Answered,
// Disconnected; a missed call its one Disconnected.
func TestProfileScenariosEndToEnd(t *testing.T) {
	files, err := filepath.Glob("../pbx/webhook/testdata/profiles/*/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	ps, err := webhook.LoadProfiles("")
	if err != nil {
		t.Fatal(err)
	}
	checked := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var sc profileScenario
		if err := json.Unmarshal(b, &sc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if sc.Events == nil {
			continue
		}
		source := filepath.Base(filepath.Dir(f))
		name := source + "/" + strings.TrimSuffix(filepath.Base(f), ".json")
		checked[source] = true
		t.Run(name, func(t *testing.T) {
			env, mux := profileTestEnv(t)
			tee := &teeJournal{j: env.Journal}
			clock := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
			var mu sync.Mutex
			now := func() time.Time {
				mu.Lock()
				defer mu.Unlock()
				clock = clock.Add(time.Second)
				return clock.Add(-time.Second)
			}
			mountWebhookProfiles(ps, tee, env.Log, webhook.NewProfileMetrics(nil), now, env.Webhook)
			for i, r := range sc.Requests {
				body := string(r.Body)
				if len(r.Body) > 0 && r.Body[0] == '"' {
					_ = json.Unmarshal(r.Body, &body)
				}
				target := "/v1/webhooks/" + source + "/s3cret"
				if r.Query != "" {
					target += "?" + r.Query
				}
				req := httptest.NewRequest(r.Method, target, strings.NewReader(body))
				if r.ContentType != "" {
					req.Header.Set("Content-Type", r.ContentType)
				}
				w := httptest.NewRecorder()
				mux.ServeHTTP(w, req)
				if w.Code != r.Status {
					t.Fatalf("request %d: %d %s, want %d", i, w.Code, w.Body, r.Status)
				}
			}
			var got []profileEvent
			for _, e := range eventstest.Replay(t, "", tee.sigs) {
				got = append(got, profileEvent{string(e.Type), e.ID, e.PhoneExtension, e.Direction})
			}
			if d := cmp.Diff(sc.Events, got); d != "" {
				t.Fatalf("events (-want +got):\n%s", d)
			}
		})
	}
	for _, s := range []string{"k2m", "komplit", "3cx-crm"} {
		if !checked[s] {
			t.Errorf("no scenario with events for %s", s)
		}
	}
}

// TestWebhookProfilesMounted: startWebhookProfiles mounts the built-in
// profiles and those of WEBHOOK_PROFILES_DIR behind the guard, and a
// directory with a broken profile stops the start.
func TestWebhookProfilesMounted(t *testing.T) {
	pdir := t.TempDir()
	if err := os.WriteFile(filepath.Join(pdir, "acme.json"), []byte(`{"source":"acme","accept":["query"],
		"fields":{"call_id":"uuid","event":"state","remote":"caller","extension":"agent"},
		"events":{"RING":"ringing","UP":"answered","DOWN":"ended"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	env, mux := profileTestEnv(t)
	if err := startWebhookProfiles(pdir, env); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, target, ctype, body string
		status                      int
	}{
		{"GET", "/v1/webhooks/acme/s3cret?uuid=u1&state=UP&caller=0612345678&agent=201", "", "", 202},
		{"GET", "/v1/webhooks/acme?uuid=u1&state=UP", "", "", 401},
		{"POST", "/v1/webhooks/acme/s3cret", "application/json", `{"uuid":"u1"}`, 405},
		{"POST", "/v1/webhooks/k2m/s3cret", "application/json", `{"Event":"ringing","Callerid":"0612345678","User":"202","Usertype":"ext","Id":"1_1-0"}`, 202},
		{"GET", "/v1/webhooks/3cx-crm/s3cret?event=lookup&Number=0612345678", "", "", 200},
		{"POST", "/v1/webhooks/komplit/wrong", "application/json", `{}`, 401},
	} {
		req := httptest.NewRequest(tc.method, tc.target, strings.NewReader(tc.body))
		if tc.ctype != "" {
			req.Header.Set("Content-Type", tc.ctype)
		}
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, req)
		if w.Code != tc.status {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.target, w.Code, w.Body, tc.status)
		}
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "broken.json"), []byte(`{"source":"broken","fields":{}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	env2, _ := profileTestEnv(t)
	if err := startWebhookProfiles(bad, env2); err == nil || !strings.Contains(err.Error(), "broken.json") {
		t.Fatalf("a broken profile: %v", err)
	}
}
