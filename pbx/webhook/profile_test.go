package webhook

import (
	"encoding/json"
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
	dto "github.com/prometheus/client_model/go"

	"github.com/voipbridge/voipbridge/events"
)

// profileFixture is one scenario of testdata/profiles/<source>/: the
// requests a tool sends, what the handler answers, and the signals the
// journal must hold afterwards (bridge/profiles_e2e_test.go checks the
// events they make).
type profileFixture struct {
	Comment  string           `json:"comment"`
	Requests []fixtureRequest `json:"requests"`
	Ignored  int              `json:"ignored"`
	Signals  []fixtureSignal  `json:"signals"`
	Events   json.RawMessage  `json:"events"`
}

type fixtureRequest struct {
	Method      string          `json:"method"`
	ContentType string          `json:"content_type"`
	Query       string          `json:"query"`
	Body        json.RawMessage `json:"body"`
	Status      int             `json:"status"`
	Reply       string          `json:"reply"`
}

// body is the request body: a JSON string is sent as its text (a form),
// anything else as the JSON itself.
func (r fixtureRequest) body(t *testing.T) string {
	if len(r.Body) > 0 && r.Body[0] == '"' {
		var s string
		if err := json.Unmarshal(r.Body, &s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	return string(r.Body)
}

type fixtureSignal struct {
	CallID    string `json:"call_id"`
	State     string `json:"state"`
	Direction string `json:"direction"`
	Extension string `json:"extension,omitempty"`
	Remote    string `json:"remote,omitempty"`
	Dialled   string `json:"dialled,omitempty"`
	Cause     string `json:"cause,omitempty"`
	Time      string `json:"time,omitempty"`
}

// profileClock starts at 2026-11-21T10:00:00Z and moves one second per
// reading, so that signals timed by their arrival are apart.
func profileClock() func() time.Time {
	var mu sync.Mutex
	t := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now := t
		t = t.Add(time.Second)
		return now
	}
}

func builtinProfile(t testing.TB, source string) *Profile {
	t.Helper()
	ps, err := BuiltinProfiles()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Source == source {
			return p
		}
	}
	t.Fatalf("no built-in profile %q", source)
	return nil
}

func profileMux(p *Profile, j Journal, m *ProfileMetrics) http.Handler {
	mux := http.NewServeMux()
	h := (&Guard{Token: "s3cret"}).Wrap(p.Source, NewProfileHandler(p, ProfileOptions{Journal: j, Metrics: m, Now: profileClock()}))
	for _, method := range p.Methods() {
		mux.Handle(method+" /v1/webhooks/"+p.Source, h)
		mux.Handle(method+" /v1/webhooks/"+p.Source+"/{token}", h)
	}
	return mux
}

func sendFixture(t *testing.T, mux http.Handler, source string, r fixtureRequest) *httptest.ResponseRecorder {
	t.Helper()
	path := "/v1/webhooks/" + source + "/s3cret"
	if r.Query != "" {
		path += "?" + r.Query
	}
	return do(mux, r.Method, path, r.ContentType, "", r.body(t))
}

func loadFixtures(t *testing.T) map[string]map[string]profileFixture {
	t.Helper()
	out := map[string]map[string]profileFixture{}
	files, err := filepath.Glob("testdata/profiles/*/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var fx profileFixture
		if err := strictUnmarshal(b, &fx); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		source := filepath.Base(filepath.Dir(f))
		if out[source] == nil {
			out[source] = map[string]profileFixture{}
		}
		out[source][strings.TrimSuffix(filepath.Base(f), ".json")] = fx
	}
	return out
}

// TestProfileFixtures sends every built-in profile's fixtures through the
// handler into a real embedded journal and reads back what it stored.
func TestProfileFixtures(t *testing.T) {
	all := loadFixtures(t)
	for _, source := range []string{"k2m", "komplit", "3cx-crm"} {
		if len(all[source]) == 0 {
			t.Fatalf("profile %s has no fixtures", source)
		}
	}
	for source, fixtures := range all {
		p := builtinProfile(t, source)
		for name, fx := range fixtures {
			t.Run(source+"/"+name, func(t *testing.T) {
				dir := t.TempDir()
				j, err := events.OpenJournal(t.Context(), events.JournalOptions{DataDir: dir})
				if err != nil {
					t.Fatal(err)
				}
				m := NewProfileMetrics(prometheus.NewRegistry())
				mux := profileMux(p, j, m)
				for i, r := range fx.Requests {
					w := sendFixture(t, mux, source, r)
					if w.Code != r.Status {
						t.Fatalf("request %d: got %d %s, want %d", i, w.Code, w.Body, r.Status)
					}
					if r.Reply != "" && w.Body.String() != r.Reply {
						t.Fatalf("request %d: reply %q, want %q", i, w.Body, r.Reply)
					}
				}
				j.Close()
				if got := counterValue(t, m, source, ResultIgnored); int(got) != fx.Ignored {
					t.Errorf("ignored requests counted %v, want %d", got, fx.Ignored)
				}
				got := storedSignals(t, dir)
				var gotF []fixtureSignal
				for i, s := range got {
					if s.Source != source {
						t.Errorf("signal %d has source %q", i, s.Source)
					}
					f := fixtureSignal{CallID: s.CallID, State: string(s.State), Direction: string(s.Direction),
						Extension: s.Extension, Remote: s.Remote, Dialled: s.Dialled, Cause: s.Cause}
					if i < len(fx.Signals) && fx.Signals[i].Time != "" {
						f.Time = s.Time.Format(time.RFC3339)
					}
					gotF = append(gotF, f)
				}
				if d := cmp.Diff(fx.Signals, gotF); d != "" {
					t.Fatalf("journaled signals (-want +got):\n%s", d)
				}
			})
		}
	}
}

// storedSignals reads the signals a closed journal in dir holds.
func storedSignals(t *testing.T, dir string) []events.Signal {
	t.Helper()
	js := jetStreamServer(t, dir)
	st, err := js.Stream(t.Context(), events.SignalsStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []events.Signal
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var s events.Signal
		if err := json.Unmarshal(m.Data, &s); err != nil {
			t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

// TestProfileRefuses: bad input gets 400 naming the tool's field (or 405,
// 415), and nothing is journaled.
func TestProfileRefuses(t *testing.T) {
	const form = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, source, method, ctype, query, body string
		status                                   int
		field                                    string
	}{
		{"k2m without Id", "k2m", "POST", "application/json", "", `{"Event":"incoming","Callerid":"0555","User":"202"}`, 400, "Id"},
		{"k2m without Event", "k2m", "POST", "application/json", "", `{"Callerid":"0555","User":"202","Id":"1_2-1"}`, 400, "Event"},
		{"k2m Id with a control character", "k2m", "POST", "application/json", "", `{"Event":"incoming","User":"202","Id":"1\u0007_2-1"}`, 400, "Id"},
		{"k2m User too long", "k2m", "POST", "application/json", "", `{"Event":"incoming","User":"` + strings.Repeat("2", 65) + `","Id":"1_2-1"}`, 400, "User"},
		{"k2m transfer without User", "k2m", "POST", "application/json", "", `{"Event":"incomingcall_started","Trtype":"Attended","Id":"1_2-2"}`, 400, "User"},
		{"k2m not an object", "k2m", "POST", "application/json", "", `["ringing"]`, 400, ""},
		{"k2m form", "k2m", "POST", form, "", `Event=ringing&Id=1_2-0`, 415, ""},
		{"komplit without chid or id", "komplit", "POST", "application/json", "", `{"event":"incoming","user":"105"}`, 400, "chid or id"},
		{"crm without event", "3cx-crm", "POST", form, "", `Number=0612345678&Agent=201`, 400, "event or CallType"},
		{"crm bad end time", "3cx-crm", "POST", form, "", `CallType=Inbound&Number=0612345678&Agent=201&CallStartTimeUTC=2026-11-21T10:00:00Z&CallEstablishedTimeUTC=2026-11-21T10:00:05Z&CallEndTimeUTC=21.11.2026 10:02`, 400, "CallEndTimeUTC"},
		{"crm number with a newline", "3cx-crm", "GET", "", "event=lookup&Number=06%0A1", "", 400, "Number"},
		{"crm xml", "3cx-crm", "POST", "application/xml", "", `<x/>`, 415, ""},
		{"crm delete", "3cx-crm", "DELETE", "", "", "", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := &recJournal{}
			mux := http.NewServeMux()
			p := builtinProfile(t, tc.source)
			h := NewProfileHandler(p, ProfileOptions{Journal: j, Now: profileClock()})
			mux.Handle("/v1/webhooks/"+tc.source, h)
			path := "/v1/webhooks/" + tc.source
			if tc.query != "" {
				path += "?" + tc.query
			}
			w := do(mux, tc.method, path, tc.ctype, "", tc.body)
			if w.Code != tc.status {
				t.Fatalf("got %d %s, want %d", w.Code, w.Body, tc.status)
			}
			if len(j.sigs) != 0 {
				t.Fatalf("journaled %d signals", len(j.sigs))
			}
			if tc.field != "" {
				var body struct{ Error, Field string }
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Field != tc.field {
					t.Fatalf("answer %s names %q, want %q", w.Body, body.Field, tc.field)
				}
			}
		})
	}
}

// TestProfileUnknownEvent: an event the profile does not map is answered
// 202, not journaled, and counted.
func TestProfileUnknownEvent(t *testing.T) {
	j := &recJournal{}
	m := NewProfileMetrics(prometheus.NewRegistry())
	mux := profileMux(builtinProfile(t, "k2m"), j, m)
	w := do(mux, "POST", "/v1/webhooks/k2m", "application/json", "Bearer s3cret", `{"Event":"parked","User":"202","Id":"1_2-1"}`)
	if w.Code != http.StatusAccepted || !strings.Contains(w.Body.String(), `"ignored"`) || len(j.sigs) != 0 {
		t.Fatalf("got %d %s, %d signals", w.Code, w.Body, len(j.sigs))
	}
	if n := counterValue(t, m, "k2m", ResultIgnored); n != 1 {
		t.Fatalf("ignored counted %v", n)
	}
	if w := do(mux, "POST", "/v1/webhooks/k2m", "application/json", "", `{"Event":"ringing","Id":"1_2-1"}`); w.Code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d", w.Code)
	}
}

// TestProfileCRMRepeats: 3CX repeating a lookup or a report changes
// nothing, and a later call of the same number is a call of its own.
func TestProfileCRMRepeats(t *testing.T) {
	j := &recJournal{}
	mux := profileMux(builtinProfile(t, "3cx-crm"), j, nil)
	lookup := func() {
		t.Helper()
		if w := do(mux, "GET", "/v1/webhooks/3cx-crm/s3cret?event=lookup&Number=0612345678", "", "", ""); w.Code != 200 {
			t.Fatalf("lookup: %d %s", w.Code, w.Body)
		}
	}
	report := func(start, end string) {
		t.Helper()
		body := "CallType=Inbound&Number=0612345678&Agent=201&CallStartTimeUTC=" + start + "&CallEstablishedTimeUTC=" + start + "&CallEndTimeUTC=" + end
		if w := do(mux, "POST", "/v1/webhooks/3cx-crm/s3cret", "application/x-www-form-urlencoded", "", body); w.Code != 202 {
			t.Fatalf("report: %d %s", w.Code, w.Body)
		}
	}
	lookup()
	lookup()
	report("2026-11-21T10:00:01Z", "2026-11-21T10:01:00Z")
	report("2026-11-21T10:00:01Z", "2026-11-21T10:01:00Z")
	lookup() // the same number again, ten seconds later: a new call
	keys := map[string]bool{}
	calls := map[string]bool{}
	for _, s := range j.sigs {
		keys[s.CallID+"/"+s.DedupKey] = true
		calls[s.CallID] = true
	}
	if len(keys) != 4 || len(calls) != 2 {
		t.Fatalf("want 4 distinct signals (ringing, answered, ended; ringing) in 2 calls, got %d in %d: %+v", len(keys), len(calls), j.sigs)
	}
}

func TestLoadProfiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("acme.json", `{"source":"acme","accept":["json","form"],"fields":{"call_id":"uuid","event":"state","remote":"caller","extension":"agent"},"events":{"RING":"ringing","UP":"answered","DOWN":"ended"}}`)
	write("notes.txt", "not a profile")
	ps, err := LoadProfiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range ps {
		names = append(names, p.Source)
	}
	if d := cmp.Diff([]string{"3cx-crm", "acme", "k2m", "komplit"}, names); d != "" {
		t.Fatalf("profiles (-want +got):\n%s", d)
	}
	j := &recJournal{}
	var acme *Profile
	for _, p := range ps {
		if p.Source == "acme" {
			acme = p
		}
	}
	w := do(profileMux(acme, j, nil), "POST", "/v1/webhooks/acme/s3cret", "application/x-www-form-urlencoded", "", "uuid=u1&state=up&caller=0612345678&agent=201")
	if w.Code != 202 || len(j.sigs) != 1 || j.sigs[0].State != events.Answered || j.sigs[0].Source != "acme" {
		t.Fatalf("got %d %s %+v", w.Code, w.Body, j.sigs)
	}

	for name, body := range map[string]string{
		"typo":         `{"source":"x","feilds":{}}`,
		"reserved":     `{"source":"generic","fields":{"call_id":"a","event":"b"},"events":{"x":"ringing"}}`,
		"bad event":    `{"source":"x","fields":{"call_id":"a","event":"b"},"events":{"x":"picked"}}`,
		"bad field":    `{"source":"x","fields":{"call_id":"a","event":"b","caller":"c"},"events":{"x":"ringing"}}`,
		"no call id":   `{"source":"x","fields":{"event":"b"},"events":{"x":"ringing"}}`,
		"bad encoding": `{"source":"x","accept":["xml"],"fields":{"call_id":"a","event":"b"},"events":{"x":"ringing"}}`,
		"bad reply":    `{"source":"x","fields":{"call_id":"a","event":"b"},"events":{"x":{"event":"ringing","reply":"nope"}}}`,
		"upper source": `{"source":"X","fields":{"call_id":"a","event":"b"},"events":{"x":"ringing"}}`,
	} {
		if _, err := ParseProfile([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	write("acme2.json", `{"source":"acme","fields":{"call_id":"a","event":"b"},"events":{"x":"ringing"}}`)
	if _, err := LoadProfiles(dir); err == nil || !strings.Contains(err.Error(), "acme") {
		t.Fatalf("two files for one source: %v", err)
	}
	if _, err := LoadProfiles(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("a missing directory was accepted")
	}
}

func counterValue(t *testing.T, m *ProfileMetrics, source, result string) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.requests.WithLabelValues(source, result).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetCounter().GetValue()
}
