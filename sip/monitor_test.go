package sip_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/sip"
	"github.com/voipbridge/voipbridge/sip/siptest"
)

// recorder is a Journal that keeps what it is given; fail, when set, can
// refuse a signal.
type recorder struct {
	mu      sync.Mutex
	signals []events.Signal
	fail    func(events.Signal) error
}

func (r *recorder) PublishSignal(_ context.Context, s events.Signal) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := s.Validate(); err != nil {
		return fmt.Errorf("invalid signal: %w", err)
	}
	if r.fail != nil {
		if err := r.fail(s); err != nil {
			return err
		}
	}
	r.signals = append(r.signals, s)
	return nil
}

func (r *recorder) setFail(f func(events.Signal) error) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

// unique returns the signals about dialogs with duplicate dedup keys
// removed, as the journal and tracker see them. Snapshots are left out: every
// subscription yields one when its first NOTIFY arrives, which may be before
// or after a test's first call; snapshots() has them.
func (r *recorder) unique() []events.Signal {
	return r.dedup(func(s events.Signal) bool { return s.State != events.Snapshot })
}

// snapshots returns the Snapshot signals with duplicate dedup keys removed.
func (r *recorder) snapshots() []events.Signal {
	return r.dedup(func(s events.Signal) bool { return s.State == events.Snapshot })
}

func (r *recorder) dedup(keep func(events.Signal) bool) []events.Signal {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	var out []events.Signal
	for _, s := range r.signals {
		if keep(s) && !seen[s.DedupKey] {
			seen[s.DedupKey] = true
			out = append(out, s)
		}
	}
	return out
}

// count is the number of signals about dialogs received, retransmissions
// included, snapshots not.
func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.signals {
		if s.State != events.Snapshot {
			n++
		}
	}
	return n
}

// waitFor polls cond with a generous deadline: real sockets on a loaded
// machine, so no tight timing.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 15*time.Second, what, cond)
}

func waitWithin(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testLogger logs warnings and errors into the test's log. sipgo may still
// log from a goroutine of its own after the test ended (a message that was
// being read when the user agent closed): those lines are dropped, since
// t.Log must not be called once the test is over.
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(string(b))
	}
	return len(b), nil
}

const (
	user = "bridge"
	pass = "s3cret-pw"
)

type harness struct {
	pbx  *siptest.PBX
	rec  *recorder
	mon  *sip.Monitor
	stop func()
}

// start runs a monitor against pbx, watching exts, and waits until every
// extension is subscribed.
func start(t *testing.T, pbx *siptest.PBX, exts []string, tweak func(*sip.Config, *sip.Options)) *harness {
	t.Helper()
	cfg := sip.Config{
		Server: pbx.Addr(), Domain: pbx.Domain(), Transport: pbx.Network(), Listen: "127.0.0.1:0",
		Username: user, Password: pass, Extensions: exts, SubscribeRate: -1,
	}
	opts := sip.Options{Logger: testLogger(t)}
	if tweak != nil {
		tweak(&cfg, &opts)
	}
	rec := &recorder{}
	mon, err := sip.New(cfg, rec, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- mon.Run(ctx) }()
	var once sync.Once
	h := &harness{pbx: pbx, rec: rec, mon: mon}
	h.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(h.stop)
	waitFor(t, "subscriptions", func() bool { return mon.Status().Active == len(exts) })
	return h
}

// expect waits until the journal holds want (ignoring time and dedup key,
// which are checked for presence) and nothing else.
func (h *harness) expect(t *testing.T, want []events.Signal) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d signals", len(want)), func() bool { return len(h.rec.unique()) >= len(want) })
	// Give a wrong extra signal a chance to show up before comparing.
	waitFor(t, "PBX settled", h.pbx.Settled)
	h.compare(t, want)
}

// compare checks the journal holds exactly want.
func (h *harness) compare(t *testing.T, want []events.Signal) {
	t.Helper()
	got := byLeg(h.rec.unique())
	want = byLeg(want)
	for _, s := range got {
		if s.DedupKey == "" || s.Time.IsZero() {
			t.Errorf("signal without dedup key or time: %+v", s)
		}
	}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(events.Signal{}, "Time", "DedupKey")); d != "" {
		t.Fatalf("signals mismatch (-want +got):\n%s", d)
	}
}

// byLeg orders signals by extension, keeping their order within one
// extension: NOTIFYs of different extensions travel independently, those
// of one extension are ordered.
func byLeg(s []events.Signal) []events.Signal {
	s = slices.Clone(s)
	slices.SortStableFunc(s, func(a, b events.Signal) int { return strings.Compare(a.Extension, b.Extension) })
	return s
}

func sig(l *siptest.Leg, st events.State, cause string) events.Signal {
	s := events.Signal{Source: "sip", CallID: l.CallID, LegID: l.ID + "@" + l.Ext, Extension: l.Ext,
		Remote: "sip:" + l.Remote + "@pbx.test", State: st, Cause: cause, Direction: events.Inbound}
	if l.Outbound {
		s.Direction = events.Outbound
	} else if l.DID != "" {
		s.Dialled = "sip:" + l.DID + "@pbx.test"
	}
	return s
}

var networks = []string{"udp", "tcp"}

func TestMonitorCallsOverUDPAndTCP(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			t.Run("answered", func(t *testing.T) {
				pbx := siptest.Start(t, siptest.Options{Network: network, Username: user, Password: pass})
				h := start(t, pbx, []string{"201", "202"}, nil)
				leg := pbx.Inbound("201", "0612345678", "0201234567")
				waitFor(t, "ringing", func() bool { return h.rec.count() == 1 })
				leg.Answer()
				waitFor(t, "answered", func() bool { return h.rec.count() == 2 })
				leg.Hangup("remote-bye")
				h.expect(t, []events.Signal{
					sig(leg, events.Ringing, ""), sig(leg, events.Answered, ""), sig(leg, events.Ended, "remote-bye"),
				})
			})
			t.Run("missed", func(t *testing.T) {
				pbx := siptest.Start(t, siptest.Options{Network: network, Username: user, Password: pass})
				h := start(t, pbx, []string{"201"}, nil)
				leg := pbx.Inbound("201", "+31612345678", "")
				waitFor(t, "ringing", func() bool { return h.rec.count() == 1 })
				leg.Cancel()
				h.expect(t, []events.Signal{sig(leg, events.Ringing, ""), sig(leg, events.Ended, "cancelled")})
			})
			t.Run("outbound", func(t *testing.T) {
				pbx := siptest.Start(t, siptest.Options{Network: network, Username: user, Password: pass})
				h := start(t, pbx, []string{"202"}, nil)
				leg := pbx.Outbound("202", "0401234567")
				waitFor(t, "ringing", func() bool { return h.rec.count() == 1 })
				leg.Answer()
				waitFor(t, "answered", func() bool { return h.rec.count() == 2 })
				leg.Hangup("local-bye")
				h.expect(t, []events.Signal{
					sig(leg, events.Ringing, ""), sig(leg, events.Answered, ""), sig(leg, events.Ended, "local-bye"),
				})
			})
			for _, newID := range []bool{false, true} {
				t.Run(fmt.Sprintf("blind transfer new call-id=%v", newID), func(t *testing.T) {
					pbx := siptest.Start(t, siptest.Options{Network: network, Username: user, Password: pass})
					h := start(t, pbx, []string{"201", "202"}, nil)
					a := pbx.Inbound("201", "0612345678", "0201234567")
					a.Answer()
					waitFor(t, "answered", func() bool { return h.rec.count() == 2 })
					b := a.BlindTransfer("202", siptest.TransferOptions{NewCallID: newID, Replaces: newID})
					waitFor(t, "transfer", func() bool { return h.rec.count() == 4 })
					b.Answer()
					waitFor(t, "answered", func() bool { return h.rec.count() == 5 })
					b.Hangup("remote-bye")
					bRing, bAns, bEnd := sig(b, events.Ringing, ""), sig(b, events.Answered, ""), sig(b, events.Ended, "remote-bye")
					// The PBX names the transferring agent in <referred-by>.
					bRing.ReferredBy, bAns.ReferredBy, bEnd.ReferredBy = "201", "201", "201"
					if newID {
						bRing.LinkedCallID, bAns.LinkedCallID, bEnd.LinkedCallID = a.CallID, a.CallID, a.CallID
					} else if b.CallID != a.CallID {
						t.Fatal("fake PBX changed the call id")
					}
					h.expect(t, []events.Signal{
						sig(a, events.Ringing, ""), sig(a, events.Answered, ""),
						sig(a, events.Ended, "local-bye"), bRing, bAns, bEnd,
					})
				})
			}
			t.Run("in progress before subscribing", func(t *testing.T) {
				pbx := siptest.Start(t, siptest.Options{Network: network, Username: user, Password: pass})
				leg := pbx.Inbound("201", "0612345678", "0201234567")
				leg.Answer()
				h := start(t, pbx, []string{"201"}, nil)
				waitFor(t, "answered", func() bool { return h.rec.count() == 1 })
				leg.Hangup("remote-bye")
				h.expect(t, []events.Signal{sig(leg, events.Answered, ""), sig(leg, events.Ended, "remote-bye")})
			})
		})
	}
}

var _ = errors.New

func TestMain(m *testing.M) {
	// sipgo logs some things (TCP reference counts at close, late
	// retransmissions) through its package default logger only.
	gosip.SetDefaultLogger(slog.New(slog.DiscardHandler))
	os.Exit(m.Run())
}

// BenchmarkEstablish1000 reports how long 1 000 subscriptions take to come
// up against the in-process fake PBX over UDP with digest authentication:
// challenge, authenticated SUBSCRIBE, 200 and the first NOTIFY for each.
// With spreading off, the burst overflows socket buffers and the stragglers
// wait for UDP retransmissions; at 5 000/s they do not.
func BenchmarkEstablish1000(b *testing.B) {
	for _, rate := range []float64{-1, 5000} {
		name := "rate=unlimited"
		if rate > 0 {
			name = fmt.Sprintf("rate=%.0f", rate)
		}
		b.Run(name, func(b *testing.B) { benchEstablish(b, rate) })
	}
}

func benchEstablish(b *testing.B, rate float64) {
	exts := make([]string, 1000)
	for i := range exts {
		exts[i] = fmt.Sprint(10000 + i)
	}
	var up, first time.Duration
	for range b.N {
		pbx, err := siptest.New(siptest.Options{Username: user, Password: pass})
		if err != nil {
			b.Fatal(err)
		}
		rec := &recorder{}
		mon, err := sip.New(sip.Config{Server: pbx.Addr(), Listen: "127.0.0.1:0", Username: user, Password: pass,
			Extensions: exts, SubscribeRate: rate}, rec, sip.Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		start := time.Now()
		go func() { done <- mon.Run(ctx) }()
		waitWithin(b, time.Minute, "1000 subscriptions", func() bool { return mon.Status().Active == len(exts) })
		up += time.Since(start)
		waitWithin(b, time.Minute, "first NOTIFYs answered", func() bool { return len(pbx.Notifies()) >= len(exts) })
		first += time.Since(start)
		cancel()
		<-done
		pbx.Close()
	}
	b.ReportMetric(float64(up.Milliseconds())/float64(b.N), "ms/1000-subscriptions")
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms/1000-first-notifies")
}
