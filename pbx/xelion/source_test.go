package xelion

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
)

// recorder is a Journal that keeps what it was given; fail, when set,
// decides whether a publish fails.
type recorder struct {
	mu       sync.Mutex
	sigs     []events.Signal
	attempts int
	fail     func() error
}

func (r *recorder) PublishSignal(_ context.Context, s events.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts++
	if r.fail != nil {
		if err := r.fail(); err != nil {
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

// waitFor polls cond until it holds; the deadline is generous because the
// machine running the tests may be busy.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// harness is a source running against a fake server.
type harness struct {
	fake *xeliontest.Server
	src  *Source
	j    *recorder
	reg  *prometheus.Registry
	logs *syncBuffer
	stop func()
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const testPassword = "pw-Zq81-never-logged"

func start(t *testing.T, fopts xeliontest.Options, j *recorder, tweak func(*Options)) *harness {
	t.Helper()
	fopts.Password = testPassword
	fake := xeliontest.Start(t, fopts)
	if j == nil {
		j = &recorder{}
	}
	h := &harness{fake: fake, j: j, reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	o := Options{
		Config:       Config{URL: fake.URL, Username: "admin", Password: testPassword, UserSpace: "test"},
		Journal:      j,
		Logger:       slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer:   h.reg,
		MinBackoff:   5 * time.Millisecond,
		MaxBackoff:   50 * time.Millisecond,
		PingInterval: time.Second,
	}
	if tweak != nil {
		tweak(&o)
	}
	src, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.src = src
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	h.stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	t.Cleanup(h.stop)
	return h
}

func (h *harness) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// settle sends a notification for a sentinel call and waits for its signal:
// the source handles messages in order, so everything sent before it has
// been journaled. It returns the signals before the sentinel.
func (h *harness) settle(t *testing.T) []events.Signal {
	t.Helper()
	id := "sentinel-" + time.Now().Format("150405.000000000")
	msg := xeliontest.Notification(NewCallEvent, map[string]any{
		"callId": id, "initiation": "incoming", "callerPhoneNumber": "+31600000000", "calleePhoneNumber": "999",
	})
	if err := h.fake.Send(h.ctx(t), msg); err != nil {
		t.Fatal(err)
	}
	var out []events.Signal
	waitFor(t, "the sentinel signal", func() bool {
		sigs := h.j.signals()
		i := slices.IndexFunc(sigs, func(s events.Signal) bool { return s.CallID == id })
		if i < 0 {
			return false
		}
		out = sigs[:i]
		return true
	})
	return out
}

func (h *harness) counter(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	fams, err := h.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if matches(m, labels) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue()
				}
				return m.GetGauge().GetValue()
			}
		}
	}
	return -1
}

func matches(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// TestSourceWholeCalls plays every call script from the fake server through
// a running source and checks exactly the journaled signals, and how the
// source reconnected where the script drops the socket or the session.
func TestSourceWholeCalls(t *testing.T) {
	for name, sc := range loadScripts(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := start(t, xeliontest.Options{}, nil, nil)
			if err := h.fake.Play(h.ctx(t), sc.Steps); err != nil {
				t.Fatal(err)
			}
			got := h.settle(t)
			if diff := cmp.Diff(wantSignals(t, sc), got, ignoreTimeKey); diff != "" {
				t.Errorf("%s\nsignals (-want +got):\n%s", sc.Description, diff)
			}
			checkSignals(t, got)
			st := h.fake.Stats()
			wantConns, wantLogins := 1, 1
			switch name {
			case "socket-drop":
				wantConns = 2
			case "session-expired":
				wantConns, wantLogins = 2, 2
			}
			if st.Connections != wantConns || st.WebsocketURLs != wantConns || st.Logins != wantLogins {
				t.Errorf("stats %+v, want %d connections each on a fresh URL and %d logins", st, wantConns, wantLogins)
			}
			if !slices.Equal(sortedCopy(st.Subscribed), sortedCopy(Subscriptions)) {
				t.Errorf("subscribed to %v, want %v", st.Subscribed, Subscriptions)
			}
			if !h.src.Connected() || h.counter(t, "voipbridge_xelion_connected") != 1 {
				t.Error("source does not report itself connected")
			}
			h.stop()
			if st := h.fake.Stats(); st.Logouts != 1 {
				t.Errorf("logouts = %d after stopping, want 1", st.Logouts)
			}
			if logs := h.logs.String(); strings.Contains(logs, testPassword) || strings.Contains(logs, "/websocket/") {
				t.Errorf("logs show a secret:\n%s", logs)
			}
		})
	}
}

func sortedCopy(s []string) []string {
	c := slices.Clone(s)
	slices.Sort(c)
	return c
}

// TestSourceAbruptDrop: the TCP connection goes away mid-call without a
// close frame; the source reconnects on a fresh URL and ends the call.
func TestSourceAbruptDrop(t *testing.T) {
	sc := loadScripts(t)["answered"]
	h := start(t, xeliontest.Options{}, nil, nil)
	ctx := h.ctx(t)
	if err := h.fake.Play(ctx, sc.Steps[:2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ringing and answered", func() bool { return len(h.j.signals()) == 2 })
	h.fake.Drop(false)
	if err := h.fake.Play(ctx, sc.Steps[2:]); err != nil {
		t.Fatal(err)
	}
	got := h.settle(t)
	if diff := cmp.Diff(wantSignals(t, sc), got, ignoreTimeKey); diff != "" {
		t.Errorf("signals (-want +got):\n%s", diff)
	}
	if st := h.fake.Stats(); st.Connections != 2 || st.WebsocketURLs != 2 {
		t.Errorf("stats %+v", st)
	}
	if n := h.counter(t, "voipbridge_xelion_reconnects_total"); n != 1 {
		t.Errorf("reconnects = %v, want 1", n)
	}
}

// TestSourceRenewsWhileConnected: tokens live 4 seconds; the source renews
// them while the WebSocket stays open, so the session never lapses and no
// event is lost.
func TestSourceRenewsWhileConnected(t *testing.T) {
	sc := loadScripts(t)["answered"]
	h := start(t, xeliontest.Options{TokenLifetime: 4 * time.Second}, nil, nil)
	ctx := h.ctx(t)
	if err := h.fake.Play(ctx, sc.Steps[:2]); err != nil {
		t.Fatal(err)
	}
	if err := h.fake.WaitFor(ctx, func(st xeliontest.Stats) bool { return st.Renewals >= 2 }); err != nil {
		t.Fatal(err)
	}
	if err := h.fake.Play(ctx, sc.Steps[2:]); err != nil {
		t.Fatal(err)
	}
	got := h.settle(t)
	if diff := cmp.Diff(wantSignals(t, sc), got, ignoreTimeKey); diff != "" {
		t.Errorf("signals (-want +got):\n%s", diff)
	}
	if st := h.fake.Stats(); st.Logins != 1 || st.Connections != 1 {
		t.Errorf("stats %+v, want the one session and connection kept alive by renewals", st)
	}
}

// TestSourceJournalFailure: the journal fails on the hang-up. The source
// stops reading, keeps the signals, retries them until the journal works,
// then reconnects; nothing is lost or journaled twice.
func TestSourceJournalFailure(t *testing.T) {
	sc := loadScripts(t)["answered"]
	var mu sync.Mutex
	broken := false
	j := &recorder{fail: func() error {
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return errors.New("journal unavailable")
		}
		return nil
	}}
	h := start(t, xeliontest.Options{}, j, nil)
	ctx := h.ctx(t)
	if err := h.fake.Play(ctx, sc.Steps[:2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "two signals", func() bool { return len(j.signals()) == 2 })
	mu.Lock()
	broken = true
	mu.Unlock()
	if err := h.fake.Play(ctx, sc.Steps[2:]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "retries of the failed signal", func() bool {
		j.mu.Lock()
		defer j.mu.Unlock()
		return j.attempts >= 6
	})
	if st := h.fake.Stats(); st.Subscribed != nil || st.Connections != 1 {
		t.Errorf("stats %+v: the connection should be closed and not reopened while the journal fails", st)
	}
	mu.Lock()
	broken = false
	mu.Unlock()
	got := h.settle(t)
	if diff := cmp.Diff(wantSignals(t, sc), got, ignoreTimeKey); diff != "" {
		t.Errorf("signals (-want +got):\n%s", diff)
	}
	checkSignals(t, got)
	if st := h.fake.Stats(); st.Connections != 2 {
		t.Errorf("connections = %d, want 2", st.Connections)
	}
}

// TestSourceBadMessages: messages it cannot use are counted by reason and
// logged; the connection stays and later calls work.
func TestSourceBadMessages(t *testing.T) {
	h := start(t, xeliontest.Options{}, nil, nil)
	ctx := h.ctx(t)
	if err := h.fake.WaitConnected(ctx, 1, Subscriptions...); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{
		`{"notificationType":"newCallEvent","notification":{"callId":`,
		`{"messageType":"notification","notificationType":"wallboardEvent","notification":{}}`,
		`{"messageType":"notification","notificationType":"newCallEvent","notification":{"callerPhoneNumber":"+31612345678"}}`,
		`{"messageType":"test","text":"echo"}`,
		`{"notification":{"callId":"1"}}`,
	} {
		if err := h.fake.SendUnchecked(ctx, []byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	if got := h.settle(t); len(got) != 0 {
		t.Errorf("bad messages gave signals %v", got)
	}
	for reason, want := range map[string]float64{reasonJSON: 1, reasonUnknownType: 1, reasonNoCallID: 1, reasonNoType: 1} {
		if got := h.counter(t, "voipbridge_xelion_messages_dropped_total", "reason", reason); got != want {
			t.Errorf("dropped{reason=%s} = %v, want %v", reason, got, want)
		}
	}
	if got := h.counter(t, "voipbridge_xelion_messages_received_total", "type", typeOther); got != 2 {
		t.Errorf("received{type=other} = %v, want 2 (the other type and the echo)", got)
	}
	if st := h.fake.Stats(); st.Connections != 1 {
		t.Errorf("connections = %d: a bad message must not cost the connection", st.Connections)
	}
	if !strings.Contains(h.logs.String(), `"reason":"bad_json"`) {
		t.Error("a dropped message was not logged with its reason")
	}
}

// TestSourceReconnectsAfterRefusedSockets: refused handshakes are retried,
// each with a fresh one-off URL, and the URL never reaches the logs.
func TestSourceReconnectsAfterRefusedSockets(t *testing.T) {
	var h *harness
	h = start(t, xeliontest.Options{}, nil, nil)
	h.fake.RefuseWebsockets(3)
	h.fake.Drop(false)
	sc := loadScripts(t)["answered"]
	if err := h.fake.Play(h.ctx(t), sc.Steps); err != nil {
		t.Fatal(err)
	}
	got := h.settle(t)
	if diff := cmp.Diff(wantSignals(t, sc), got, ignoreTimeKey); diff != "" {
		t.Errorf("signals (-want +got):\n%s", diff)
	}
	st := h.fake.Stats()
	if st.WebsocketURLs < 4 || st.WebsocketURLs != st.Connections+3 {
		t.Errorf("stats %+v, want a fresh URL for every attempt", st)
	}
	logs := h.logs.String()
	if !strings.Contains(logs, "HTTP 503") {
		t.Errorf("refusals not logged:\n%s", logs)
	}
	if strings.Contains(logs, "/websocket/") || strings.Contains(logs, testPassword) {
		t.Errorf("logs show a secret:\n%s", logs)
	}
}

// TestSourceWrongPassword: logins fail; the source keeps trying with
// backoff, never connects, and stops when asked.
func TestSourceWrongPassword(t *testing.T) {
	h := start(t, xeliontest.Options{}, nil, func(o *Options) { o.Config.Password = "wrong-Kq3" })
	ctx := h.ctx(t)
	if err := h.fake.WaitFor(ctx, func(st xeliontest.Stats) bool { return st.FailedLogins >= 3 }); err != nil {
		t.Fatal(err)
	}
	if h.src.Connected() || h.fake.Stats().Logins != 0 {
		t.Error("connected with a wrong password")
	}
	h.stop()
	if got := h.counter(t, "voipbridge_xelion_session_requests_total", "request", reqLogin, "result", "error"); got < 3 {
		t.Errorf("failed logins counted %v", got)
	}
	if strings.Contains(h.logs.String(), "wrong-Kq3") {
		t.Error("logs show the password")
	}
}

func TestNew(t *testing.T) {
	if _, err := New(Options{Journal: &recorder{}}); err == nil {
		t.Error("New without config succeeded")
	}
	if _, err := New(Options{Config: Config{URL: "https://x", Username: "a", Password: "b"}}); err == nil {
		t.Error("New without journal succeeded")
	}
	if _, err := New(Options{Config: Config{URL: "https://x", Username: "a", Password: "b", TimeZone: "Nowhere/City"}, Journal: &recorder{}}); err == nil || !strings.Contains(err.Error(), "XELION_TIMEZONE") {
		t.Errorf("unknown zone: %v", err)
	}
	s, err := New(Options{Config: Config{URL: "https://x", Username: "a", Password: "b"}, Journal: &recorder{}})
	if err != nil || s.sess.loc != time.UTC {
		t.Errorf("no zone: %v, %v", s, err)
	}
}

// TestBackoff: the first reconnect goes at once, then from 500ms doubling to
// the 15s cap (the defaults), with jitter.
func TestBackoff(t *testing.T) {
	s, err := New(Options{Config: Config{URL: "https://x", Username: "a", Password: "b"}, Journal: &recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	if d := s.backoff(1); d != 0 {
		t.Fatalf("backoff(1) = %v, want the first retry at once", d)
	}
	for n := 2; n <= 12; n++ {
		want := min(500*time.Millisecond<<(n-2), 15*time.Second)
		for range 50 {
			d := s.backoff(n)
			if d < want/2 || d > want {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, want/2, want)
			}
		}
	}
}
