package threecx_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/threecx"
	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

// recordingJournal keeps every signal it is given. fail, when set, decides
// per signal whether the publish fails.
type recordingJournal struct {
	mu      sync.Mutex
	signals []events.Signal
	fail    func(events.Signal) error
}

func (j *recordingJournal) PublishSignal(_ context.Context, s events.Signal) error {
	if err := s.Validate(); err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.fail != nil {
		if err := j.fail(s); err != nil {
			return err
		}
	}
	j.signals = append(j.signals, s)
	return nil
}

func (j *recordingJournal) all() []events.Signal {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.signals)
}

// syncBuffer is a log sink that tests can read while the source writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

const (
	testClientID = "bridge"
	testSecret   = "s3cr3t-api-key"
)

// harness runs a Source against a fake 3CX on the in-memory network. Use it
// inside a synctest bubble.
type harness struct {
	t       *testing.T
	srv     *threecxtest.Server
	src     *threecx.Source
	journal *recordingJournal
	reg     *prometheus.Registry
	logs    *syncBuffer
	cancel  context.CancelFunc
	done    chan error
	base    string
	client  *http.Client
	setup   setup
}

type setup struct {
	fake   threecxtest.Options
	config func(*threecx.Config)
	dns    []threecxtest.DN
	store  threecx.Store
}

func startHarness(t *testing.T, s setup) *harness {
	t.Helper()
	if s.fake.ClientSecret == "" {
		s.fake.ClientID, s.fake.ClientSecret = testClientID, testSecret
	}
	srv := threecxtest.New(s.fake)
	for _, d := range s.dns {
		srv.SetDN(d.DN, d.Type)
	}
	h := &harness{
		t:       t,
		srv:     srv,
		journal: &recordingJournal{},
		logs:    &syncBuffer{},
	}
	h.base, h.client = srv.StartMemory()
	h.setup = s
	h.startSource()
	return h
}

// startSource starts a new Source (a restart of the bridge: same journal,
// same store, fresh metrics) and waits until it has done what it can.
func (h *harness) startSource() {
	h.t.Helper()
	cfg := threecx.Config{URL: h.base, ClientID: testClientID, ClientSecret: testSecret}
	if h.setup.config != nil {
		h.setup.config(&cfg)
	}
	h.reg = prometheus.NewRegistry()
	src, err := threecx.New(threecx.Options{
		Config:     cfg,
		Journal:    h.journal,
		Logger:     slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: h.reg,
		HTTPClient: h.client,
		Store:      h.setup.store,
	})
	if err != nil {
		h.t.Fatal(err)
	}
	h.src = src
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.done = make(chan error, 1)
	go func() { h.done <- src.Run(ctx) }()
	synctest.Wait()
}

// stopSource stops the running Source and waits for Run to return.
func (h *harness) stopSource() {
	h.t.Helper()
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run returned %v, want nil after cancel", err)
	}
}

// settle lets a couple of fake minutes pass (enough for any reconnect
// backoff) and waits until the source has done everything it can.
func (h *harness) settle() {
	time.Sleep(2 * time.Minute)
	synctest.Wait()
}

// play performs the steps of a script, settling after each.
func (h *harness) play(sc *threecxtest.Script) {
	h.t.Helper()
	if err := h.srv.Play(sc, func(int, threecxtest.Step) { h.settle() }); err != nil {
		h.t.Fatal(err)
	}
}

// stop ends the source and the fake, and checks that no secret was logged.
func (h *harness) stop() {
	h.t.Helper()
	h.stopSource()
	h.srv.Close()
	if logs := h.logs.String(); bytesContains(logs, testSecret) || bytesContains(logs, "fake-token-") {
		h.t.Errorf("the log contains the secret or a token:\n%s", logs)
	}
}

func bytesContains(s, sub string) bool { return bytes.Contains([]byte(s), []byte(sub)) }

func (h *harness) counter(name string, labels ...string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func loadScript(t *testing.T, name string) *threecxtest.Script {
	t.Helper()
	sc, err := threecxtest.LoadScript(filepath.Join("..", "..", "testdata", "threecx", "calls", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

// sig builds an expected signal of the inbound customer 0891234567 on DID
// 0301234567 over trunk 10007 (the scripts' default); options change the
// rest.
func sig(call, leg, ext string, st events.State, opts ...func(*events.Signal)) events.Signal {
	s := events.Signal{
		Source:    "threecx",
		CallID:    call,
		LegID:     leg,
		Extension: ext,
		Remote:    "0891234567",
		Dialled:   "0301234567",
		Direction: events.Inbound,
		State:     st,
		DedupKey:  "threecx:" + call + ":" + leg + ":" + string(st),
		Line:      "10007",
	}
	if st == events.Ended {
		s.Cause = threecx.CauseRemoved
	}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func outbound(s *events.Signal) { s.Direction, s.Dialled = events.Outbound, "" }
func gone(s *events.Signal)     { s.Cause = threecx.CauseGone }
func referred(ext string) func(*events.Signal) {
	return func(s *events.Signal) { s.ReferredBy = ext }
}
func remote(n string) func(*events.Signal) {
	return func(s *events.Signal) { s.Remote = n }
}

// checkSignals compares signals, ignoring Time but requiring it to be set.
func checkSignals(t *testing.T, got, want []events.Signal) {
	t.Helper()
	for _, s := range got {
		if s.Time.IsZero() {
			t.Errorf("signal %s has no time", s.DedupKey)
		}
	}
	if diff := cmp.Diff(want, got, cmpopts.IgnoreFields(events.Signal{}, "Time"), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("signals (-want +got):\n%s", diff)
	}
}

var errJournalDown = errors.New("journal down")

// Compile-time check that the recording journal fits the seam.
var _ threecx.Journal = (*recordingJournal)(nil)

// failOnce makes the journal refuse the first signal in state st, once.
func (j *recordingJournal) failOnce(st events.State) {
	j.mu.Lock()
	defer j.mu.Unlock()
	failed := false
	j.fail = func(s events.Signal) error {
		if s.State == st && !failed {
			failed = true
			return errJournalDown
		}
		return nil
	}
}

// memStore is an in-memory threecx.Store.
type memStore struct {
	mu   sync.Mutex
	data map[string][]byte
}

func newMemStore() *memStore { return &memStore{data: map[string][]byte{}} }

func (m *memStore) Put(_ context.Context, k string, v []byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.data[k] = slices.Clone(v)
	return nil
}

func (m *memStore) Delete(_ context.Context, k string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.data, k)
	return nil
}

func (m *memStore) All(context.Context) (map[string][]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string][]byte, len(m.data))
	for k, v := range m.data {
		out[k] = slices.Clone(v)
	}
	return out, nil
}

func (m *memStore) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.data)
}
