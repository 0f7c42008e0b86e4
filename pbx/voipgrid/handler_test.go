package voipgrid

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/events/eventstest"
)

// recorder is a Journal that keeps what it was given. fail, when set,
// decides whether a publish fails.
type recorder struct {
	mu   sync.Mutex
	sigs []events.Signal
	fail func(events.Signal) error
}

func (r *recorder) PublishSignal(_ context.Context, s events.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		if err := r.fail(s); err != nil {
			return err
		}
	}
	r.sigs = append(r.sigs, s)
	return nil
}

func (r *recorder) signals() []events.Signal {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sigs)
}

// script is a whole call from testdata/voipgrid/calls.
type script struct {
	Description   string            `json:"description"`
	Notifications []json.RawMessage `json:"notifications"`
	Want          []events.Signal   `json:"want"`
}

func loadScripts(t *testing.T) map[string]script {
	t.Helper()
	files, err := filepath.Glob("../../testdata/voipgrid/calls/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no call scripts: %v", err)
	}
	out := map[string]script{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var s script
		if err := json.Unmarshal(b, &s); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = s
	}
	return out
}

var fixedNow = time.Date(2024, 3, 5, 12, 0, 0, 0, time.UTC)

func newTestHandler(t *testing.T, j Journal) (*Handler, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := New(Options{
		Journal:    j,
		Logger:     slog.New(slog.DiscardHandler),
		Registerer: reg,
		Now:        func() time.Time { return fixedNow },
	})
	if err != nil {
		t.Fatal(err)
	}
	return h, reg
}

type response struct {
	code int
	body map[string]any
}

func post(t *testing.T, h http.Handler, body []byte) response {
	t.Helper()
	req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var m map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &m); err != nil {
		t.Fatalf("response %d is not JSON: %q", rec.Code, rec.Body.String())
	}
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	return response{rec.Code, m}
}

// ignoreKey compares signals without their dedup keys, which are checked
// on their own.
var ignoreKey = cmpopts.IgnoreFields(events.Signal{}, "DedupKey")

func checkKeys(t *testing.T, sigs []events.Signal) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range sigs {
		if err := s.Validate(); err != nil {
			t.Errorf("invalid signal %+v: %v", s, err)
		}
		if seen[s.DedupKey] {
			t.Errorf("dedup key %q used twice", s.DedupKey)
		}
		seen[s.DedupKey] = true
	}
}

// TestWholeCalls plays every call script in order and checks the signals:
// exactly those in the script, in that order, with distinct dedup keys.
func TestWholeCalls(t *testing.T) {
	for name, sc := range loadScripts(t) {
		t.Run(name, func(t *testing.T) {
			j := &recorder{}
			h, _ := newTestHandler(t, j)
			want := 0
			for i, n := range sc.Notifications {
				r := post(t, h, n)
				if r.code != http.StatusOK {
					t.Fatalf("notification %d: %d %v", i, r.code, r.body)
				}
				got := int(r.body["signals"].(float64))
				want += got
				if len(j.signals()) != want {
					t.Fatalf("notification %d: answered %d signals, journal holds %d of %d", i, got, len(j.signals()), want)
				}
			}
			got := j.signals()
			if diff := cmp.Diff(sc.Want, got, ignoreKey); diff != "" {
				t.Errorf("%s\nsignals (-want +got):\n%s", sc.Description, diff)
			}
			checkKeys(t, got)
		})
	}
}

// TestPublishedPayloads decodes the vendor's own examples.
func TestPublishedPayloads(t *testing.T) {
	tests := []struct {
		file string
		want []events.Signal
	}{
		{"created-2023.json", []events.Signal{{
			Source: SourceName, CallID: "ua9-grq-prd-1693575683.22973164", Direction: events.Inbound,
			State: events.Ringing, Remote: "+31507009920", Dialled: "+31332022074",
			Time: time.Date(2023, 9, 1, 13, 41, 25, 972110000, time.UTC),
		}}},
		{"created-2019.json", []events.Signal{{
			Source: SourceName, CallID: "58f1a078416b-1531150397.972", Direction: events.Inbound,
			State: events.Ringing, Remote: "+31508009008", Dialled: "+31508009000",
			Time: time.Date(2019, 7, 20, 13, 17, 39, 0, time.UTC),
		}}},
		{"ringing-zapier.json", func() []events.Signal {
			base := events.Signal{
				Source: SourceName, CallID: "1234c56789f-0987654.321", Direction: events.Inbound,
				State: events.Ringing, Remote: "+31xxxxxxxxxx", Dialled: "+31xxxxxxxxxx",
				Time: time.Date(2017, 1, 1, 1, 0, 0, 0, time.UTC),
			}
			a, b := base, base
			a.Extension, a.LegID = "678", "1234c56789f-0987654.321/678"
			b.Extension, b.LegID = "789", "1234c56789f-0987654.321/789"
			return []events.Signal{a, b}
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			body, err := os.ReadFile(filepath.Join("../../testdata/voipgrid", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			j := &recorder{}
			h, _ := newTestHandler(t, j)
			if r := post(t, h, body); r.code != http.StatusOK {
				t.Fatalf("%d %v", r.code, r.body)
			}
			if diff := cmp.Diff(tt.want, j.signals(), ignoreKey); diff != "" {
				t.Errorf("signals (-want +got):\n%s", diff)
			}
			checkKeys(t, j.signals())
		})
	}
}

// TestDuplicatePosts posts every notification twice: the repeats journal
// signals with the same dedup keys, so the journal and the tracker keep one.
func TestDuplicatePosts(t *testing.T) {
	for name, sc := range loadScripts(t) {
		t.Run(name, func(t *testing.T) {
			j := &recorder{}
			h, _ := newTestHandler(t, j)
			for _, n := range sc.Notifications {
				for range 2 {
					if r := post(t, h, n); r.code != http.StatusOK {
						t.Fatalf("%d %v", r.code, r.body)
					}
				}
			}
			var once []events.Signal
			seen := map[string]bool{}
			for _, s := range j.signals() {
				if !seen[s.DedupKey] {
					seen[s.DedupKey] = true
					once = append(once, s)
				}
			}
			if diff := cmp.Diff(sc.Want, once, ignoreKey); diff != "" {
				t.Errorf("signals after dropping repeated keys (-want +got):\n%s", diff)
			}
			if len(j.signals()) != 2*len(once) {
				t.Errorf("journaled %d signals, want every one twice (%d)", len(j.signals()), 2*len(once))
			}
		})
	}
}

// replay folds journaled signals through the tracker's call model.
func replay(t *testing.T, sigs []events.Signal) []events.Event {
	t.Helper()
	return eventstest.Replay(t, "", sigs)
}

// TestAnyOrder posts each call's notifications in every order. The handler
// translates each notification on its own and the tracker places it by its
// timestamp, so the helpdesk gets the same events as in order (the
// script's), whatever the order of arrival, as long as the answers
// (in-progress) arrive in order among themselves. Answers that overtake each
// other are reported as they arrive (the first to arrive is the Answered):
// the tracker does not hold events back to reorder them. Then the call
// still gets one Answered first, Transfers only to another agent, and one
// Disconnected, last.
func TestAnyOrder(t *testing.T) {
	for name, sc := range loadScripts(t) {
		t.Run(name, func(t *testing.T) {
			var answers []int
			for i, n := range sc.Notifications {
				var v struct {
					Status string `json:"status"`
				}
				if err := json.Unmarshal(n, &v); err != nil {
					t.Fatal(err)
				}
				if ParseStatus(v.Status) == StatusInProgress {
					answers = append(answers, i)
				}
			}
			var want []events.Event
			{
				j := &recorder{}
				h, _ := newTestHandler(t, j)
				for _, n := range sc.Notifications {
					post(t, h, n)
				}
				want = replay(t, j.signals())
			}
			if len(want) == 0 {
				t.Fatal("the in-order run reports nothing")
			}
			count := 0
			for perm := range permutations(len(sc.Notifications)) {
				count++
				j := &recorder{}
				h, _ := newTestHandler(t, j)
				for _, i := range perm {
					if r := post(t, h, sc.Notifications[i]); r.code != http.StatusOK {
						t.Fatalf("order %v: %d %v", perm, r.code, r.body)
					}
				}
				got := replay(t, j.signals())
				var seen []int
				for _, i := range perm {
					if slices.Contains(answers, i) {
						seen = append(seen, i)
					}
				}
				if slices.IsSorted(seen) {
					if d := cmp.Diff(want, got); d != "" {
						t.Errorf("order %v: events (-in order +this order):\n%s", perm, d)
					}
					continue
				}
				if err := wellFormed(got); err != nil {
					t.Errorf("order %v (answers out of order): %v\n%+v", perm, err, got)
				}
			}
			if count < 6 {
				t.Fatalf("only %d orders tried", count)
			}
		})
	}
}

// wellFormed checks one call's events: Answered first and once, a Transfer
// only to another agent, exactly one Disconnected, last.
func wellFormed(evs []events.Event) error {
	switch {
	case len(evs) == 0:
		return errors.New("no events")
	case evs[len(evs)-1].Type != events.EventDisconnected:
		return errors.New("not ended by Disconnected")
	case len(evs) > 1 && evs[0].Type != events.EventAnswered:
		return errors.New("does not start with Answered")
	}
	for i, e := range evs {
		if e.Type == events.EventDisconnected && i != len(evs)-1 {
			return errors.New("Disconnected before the last event")
		}
		if e.Type == events.EventAnswered && i != 0 {
			return errors.New("Answered twice")
		}
		if e.Type == events.EventTransfer && e.PhoneExtension == evs[i-1].PhoneExtension {
			return fmt.Errorf("Transfer to the agent already on the call (%s)", e.PhoneExtension)
		}
	}
	return nil
}

// permutations yields every order of 0..n-1 (Heap's algorithm).
func permutations(n int) func(yield func([]int) bool) {
	return func(yield func([]int) bool) {
		a := make([]int, n)
		for i := range a {
			a[i] = i
		}
		c := make([]int, n)
		if !yield(slices.Clone(a)) {
			return
		}
		for i := 0; i < n; {
			if c[i] < i {
				if i%2 == 0 {
					a[0], a[i] = a[i], a[0]
				} else {
					a[c[i]], a[i] = a[i], a[c[i]]
				}
				if !yield(slices.Clone(a)) {
					return
				}
				c[i]++
				i = 0
			} else {
				c[i] = 0
				i++
			}
		}
	}
}

// TestUnknownStatus: accepted with 202, counted, journaled as nothing.
func TestUnknownStatus(t *testing.T) {
	j := &recorder{}
	h, reg := newTestHandler(t, j)
	body := []byte(`{"call_id":"c-1","timestamp":"2024-03-05T10:00:00+00:00","status":"parked","direction":"inbound",
		"caller":{"number":"+31612345678"},"destination":{"number":"+31508009000"}}`)
	r := post(t, h, body)
	if r.code != http.StatusAccepted {
		t.Fatalf("code = %d %v, want 202", r.code, r.body)
	}
	if r.body["status"] != "parked" {
		t.Errorf("body = %v", r.body)
	}
	if n := len(j.signals()); n != 0 {
		t.Errorf("journaled %d signals for an unknown status", n)
	}
	if got := value(t, h.m.received.WithLabelValues("unknown")); got != 1 {
		t.Errorf("unknown counter = %v", got)
	}
	// The label is the fixed "unknown", never the platform's string.
	if n := series(t, reg, "voipbridge_voipgrid_notifications_received_total"); n != 7 {
		t.Errorf("received series = %d, want the 7 fixed statuses", n)
	}
}

// TestStatusAliases: the spellings of the help pages map to the same signals.
func TestStatusAliases(t *testing.T) {
	for alias, want := range map[string]Status{
		"Answered": StatusInProgress, "in_progress": StatusInProgress, "Warm_Transfer": StatusWarmTransfer,
		"cold-transfer": StatusColdTransfer, "hang-up": StatusEnded, "HANGUP": StatusEnded, " ringing ": StatusRinging,
		"": StatusUnknown, "voicemail": StatusUnknown,
	} {
		if got := ParseStatus(alias); got != want {
			t.Errorf("ParseStatus(%q) = %q, want %q", alias, got, want)
		}
	}
}

// TestRefused: malformed bodies get a 4xx naming the problem, and nothing is
// journaled.
func TestRefused(t *testing.T) {
	big := `{"call_id":"c-1","status":"ringing","pad":"` + strings.Repeat("x", DefaultMaxBody) + `"}`
	tests := []struct {
		name   string
		method string
		body   string
		code   int
		errHas string
	}{
		{"not JSON", http.MethodPost, `call_id=1`, 400, "malformed JSON"},
		{"truncated", http.MethodPost, `{"call_id":"c-1",`, 400, "malformed JSON"},
		{"empty body", http.MethodPost, ``, 400, "malformed JSON"},
		{"array", http.MethodPost, `[]`, 400, "malformed JSON"},
		{"wrong type", http.MethodPost, `{"call_id":12}`, 400, "malformed JSON"},
		{"no call_id", http.MethodPost, `{"status":"ringing","timestamp":"2024-03-05T10:00:00+00:00"}`, 400, "call_id is missing"},
		{"blank call_id", http.MethodPost, `{"call_id":"  ","status":"ended"}`, 400, "call_id is missing"},
		{"too large", http.MethodPost, big, 413, "larger than"},
		{"GET", http.MethodGet, ``, 405, "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := &recorder{}
			h, _ := newTestHandler(t, j)
			req := httptest.NewRequestWithContext(t.Context(), tt.method, Path, strings.NewReader(tt.body))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.code {
				t.Fatalf("code = %d, want %d (%s)", rec.Code, tt.code, rec.Body)
			}
			var e errorBody
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || !strings.Contains(e.Error, tt.errHas) {
				t.Errorf("body = %s, want an error naming %q", rec.Body, tt.errHas)
			}
			if n := len(j.signals()); n != 0 {
				t.Errorf("journaled %d signals", n)
			}
		})
	}
}

// TestJournalFailure: 503 while the journal fails, nothing remembered; the
// platform's retry then journals the same signals (same keys).
func TestJournalFailure(t *testing.T) {
	sc := loadScripts(t)["answered"]
	var broken bool
	var mu sync.Mutex
	j := &recorder{fail: func(events.Signal) error {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return errors.New("stream unavailable")
		}
		return nil
	}}
	h, _ := newTestHandler(t, j)
	for _, n := range sc.Notifications[:4] {
		if r := post(t, h, n); r.code != http.StatusOK {
			t.Fatalf("%d %v", r.code, r.body)
		}
	}
	mu.Lock()
	broken = true
	mu.Unlock()
	r := post(t, h, sc.Notifications[4]) // ended
	if r.code != http.StatusServiceUnavailable {
		t.Fatalf("code = %d, want 503", r.code)
	}
	if got := value(t, h.m.rejected.WithLabelValues(reasonJournal)); got != 1 {
		t.Errorf("journal rejections = %v", got)
	}
	// The failed end was not remembered: a late ringing is not closed by it.
	late := sc.Notifications[2]
	before := len(j.signals())
	if r := post(t, h, late); r.code != http.StatusServiceUnavailable {
		t.Fatalf("code = %d", r.code)
	}
	mu.Lock()
	broken = false
	mu.Unlock()
	if r := post(t, h, late); r.code != http.StatusOK || r.body["signals"].(float64) != 1 {
		t.Fatalf("late ringing after a failed end: %d %v, want 1 signal", r.code, r.body)
	}
	if r := post(t, h, sc.Notifications[4]); r.code != http.StatusOK {
		t.Fatalf("retry: %d %v", r.code, r.body)
	}
	got := j.signals()[before:]
	keys := map[string]bool{}
	for _, s := range got {
		keys[s.DedupKey] = true
	}
	var want []events.Signal
	want = append(want, sc.Want[2], sc.Want[4], sc.Want[5])
	if diff := cmp.Diff(want, got, ignoreKey); diff != "" {
		t.Errorf("signals after recovery (-want +got):\n%s", diff)
	}
}

// TestNoTimestamp: a notification without a timestamp is placed at its
// arrival, and a replay of the same body keeps its dedup keys.
func TestNoTimestamp(t *testing.T) {
	j := &recorder{}
	h, _ := newTestHandler(t, j)
	body := []byte(`{"call_id":"c-9","status":"ringing","direction":"inbound","caller":{"number":"+31612345678"},
		"destination":{"number":"+31508009000","targets":[{"user_numbers":[201]}]}}`)
	post(t, h, body)
	post(t, h, body)
	got := j.signals()
	if len(got) != 2 || got[0].DedupKey != got[1].DedupKey {
		t.Fatalf("replayed signals %v, want two with one key", got)
	}
	if !got[0].Time.Equal(fixedNow) || got[0].Extension != "201" {
		t.Errorf("signal = %+v, want extension 201 (a number in JSON) at arrival", got[0])
	}
	if v := value(t, h.m.timeless); v != 2 {
		t.Errorf("timeless counter = %v", v)
	}
}

// TestConcurrentCalls journals many calls in parallel (run with -race).
func TestConcurrentCalls(t *testing.T) {
	j := &recorder{}
	h, _ := newTestHandler(t, j)
	srv := httptest.NewServer(h)
	defer srv.Close()
	sc := loadScripts(t)["answered"]
	var wg sync.WaitGroup
	const calls = 20
	for c := range calls {
		wg.Go(func() {
			for _, n := range sc.Notifications {
				var m map[string]any
				_ = json.Unmarshal(n, &m)
				m["call_id"] = fmt.Sprintf("call-%d", c)
				b, _ := json.Marshal(m)
				resp, err := srv.Client().Post(srv.URL+Path, "application/json", bytes.NewReader(b))
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("call %d: %d", c, resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
	if got, want := len(j.signals()), calls*len(sc.Want); got != want {
		t.Errorf("journaled %d signals, want %d", got, want)
	}
	checkKeys(t, j.signals())
}

// value reads a counter.
func value(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// series counts the series of a metric family in reg.
func series(t *testing.T, reg *prometheus.Registry, name string) int {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() == name {
			return len(f.GetMetric())
		}
	}
	return 0
}

func TestNewNeedsJournal(t *testing.T) {
	if _, err := New(Options{}); err == nil {
		t.Fatal("New without a journal succeeded")
	}
}

type discard struct{}

func (discard) PublishSignal(context.Context, events.Signal) error { return nil }

// BenchmarkServeHTTP measures one notification (decode, plan, journal to a
// no-op journal, answer), cycling through a whole answered call.
func BenchmarkServeHTTP(b *testing.B) {
	raw, err := os.ReadFile("../../testdata/voipgrid/calls/answered.json")
	if err != nil {
		b.Fatal(err)
	}
	var sc script
	if err := json.Unmarshal(raw, &sc); err != nil {
		b.Fatal(err)
	}
	h, err := New(Options{Journal: discard{}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	rec := httptest.NewRecorder()
	for i := 0; b.Loop(); i++ {
		body := sc.Notifications[i%len(sc.Notifications)]
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
		rec.Body.Reset()
		h.ServeHTTP(rec, req)
	}
}
