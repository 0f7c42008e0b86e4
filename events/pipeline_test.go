package events

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/phone"
)

// recordingSink is a helpdesk that records what it accepts and can fail.
type recordingSink struct {
	mu     sync.Mutex
	got    []Event
	fail   func(e Event, n int) error // n: attempts so far for this event
	tries  map[string]int
	delay  time.Duration
	notify chan struct{}
}

func newRecordingSink() *recordingSink {
	return &recordingSink{tries: map[string]int{}, notify: make(chan struct{}, 1)}
}

func (s *recordingSink) Send(ctx context.Context, e Event) error {
	if s.delay > 0 {
		time.Sleep(rand.N(s.delay))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	k := e.ID + string(e.Type) + e.PhoneExtension
	n := s.tries[k]
	s.tries[k]++
	if s.fail != nil {
		if err := s.fail(e, n); err != nil {
			return err
		}
	}
	s.got = append(s.got, e)
	select {
	case s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (s *recordingSink) events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.got...)
}

func (s *recordingSink) waitFor(t *testing.T, n int) []Event {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		if got := s.events(); len(got) >= n {
			return got
		}
		select {
		case <-s.notify:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out waiting for %d events; got %d: %v", n, len(s.events()), s.events())
		}
	}
}

type classErr struct {
	c Class
}

func (e classErr) Error() string { return "fake " + e.c.String() }
func (e classErr) Class() Class  { return e.c }
func (e classErr) StatusCode() int {
	if e.c == Permanent {
		return 400
	}
	return 503
}

// pipeline is a journal, a tracker and a dispatcher running in-process.
type pipeline struct {
	j      *Journal
	tr     *Tracker
	sink   *recordingSink
	cancel context.CancelFunc
	done   chan struct{}
}

func openJournal(t testing.TB, dir string) *Journal {
	t.Helper()
	j, err := OpenJournal(t.Context(), JournalOptions{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func startPipeline(t *testing.T, dir string, sink *recordingSink) *pipeline {
	t.Helper()
	j := openJournal(t, dir)
	numbers, _ := phone.New(phone.Options{Region: "NL"})
	d, _ := extensions.Load("", "")
	pol := defaultPolicies()
	pol.TransferWindow = 200 * time.Millisecond
	tr, err := NewTracker(t.Context(), TrackerOptions{Journal: j, Numbers: numbers, Dir: d, Policies: pol, Tick: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	disp := NewDispatcher(DispatcherOptions{Journal: j, Sink: sink, Committed: tr, BackoffMin: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	p := &pipeline{j: j, tr: tr, sink: sink, cancel: cancel, done: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := tr.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	wg.Go(func() {
		if err := disp.Run(ctx); err != nil {
			t.Error(err)
		}
	})
	go func() { wg.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	return p
}

func (p *pipeline) stop() {
	if p.cancel == nil {
		return
	}
	p.cancel()
	<-p.done
	p.j.Close()
	p.cancel = nil
}

func publish(t *testing.T, j *Journal, steps ...step) {
	t.Helper()
	for _, s := range steps {
		if s.tick {
			continue
		}
		if err := j.PublishSignal(t.Context(), s.sig); err != nil {
			t.Fatal(err)
		}
	}
}

func byCall(evs []Event) map[string][]string {
	out := map[string][]string{}
	for _, e := range evs {
		out[e.ID] = append(out[e.ID], string(e.Type)+":"+e.PhoneExtension)
	}
	return out
}

func streamMsgs(t *testing.T, s jetstream.Stream) uint64 {
	t.Helper()
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// TestPipelineOrderPerCall: many interleaved calls through real JetStream
// and several delivery workers, with a slow and sometimes failing helpdesk:
// every call's events arrive in order, exactly once, and the queue empties.
func TestPipelineOrderPerCall(t *testing.T) {
	sink := newRecordingSink()
	sink.delay = 3 * time.Millisecond
	sink.fail = func(e Event, n int) error {
		if n == 0 && rand.N(4) == 0 {
			return classErr{Retryable}
		}
		return nil
	}
	p := startPipeline(t, t.TempDir(), sink)
	const calls = 30
	want := map[string][]string{}
	var all []step
	for i := range calls {
		id := fmt.Sprintf("call-%02d", i)
		num := func(s *Signal) { s.Remote = fmt.Sprintf("+3161234%04d", i) }
		all = append(all,
			sig(0, id, Ringing, "201", num),
			sig(0, id, Answered, "201", num),
			sig(0, id, Answered, "202", num, legID("b")),
			sig(0, id, Ended, "", num),
		)
		want[id] = []string{"Answered:201", "Transfer:202", "Disconnected:202"}
	}
	// Interleave: step k of every call before step k+1 of any.
	var order []step
	for k := range 4 {
		for i := range calls {
			order = append(order, all[i*4+k])
		}
	}
	publish(t, p.j, order...)
	got := sink.waitFor(t, 3*calls)
	time.Sleep(300 * time.Millisecond) // anything extra would arrive now
	if d := cmp.Diff(want, byCall(sink.events())); d != "" {
		t.Fatalf("events per call (-want +got):\n%s", d)
	}
	if len(got) != 3*calls {
		t.Fatalf("got %d events, want %d", len(got), 3*calls)
	}
	waitUntil(t, func() bool { return streamMsgs(t, p.j.events) == 0 }, "EVENTS stream to empty")
}

// TestTrackerStateSurvivesRestart: a call answered before a restart still gets
// its Transfer and Disconnected after it, and no second Answered.
func TestTrackerStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	sink := newRecordingSink()
	p := startPipeline(t, dir, sink)
	publish(t, p.j, sig(0, "r1", Ringing, "201"), sig(0, "r1", Answered, "201"))
	sink.waitFor(t, 1)
	p.stop()

	p = startPipeline(t, dir, sink)
	publish(t, p.j, sig(0, "r1", Answered, "202", legID("b")), sig(0, "r1", Ended, ""))
	sink.waitFor(t, 3)
	time.Sleep(300 * time.Millisecond)
	if d := cmp.Diff(map[string][]string{"r1": {"Answered:201", "Transfer:202", "Disconnected:202"}}, byCall(sink.events())); d != "" {
		t.Fatalf("(-want +got):\n%s", d)
	}
}

// TestReplayedSignalsMakeNoSecondEvent: with the tracker's records and
// checkpoint gone, replaying every signal republishes the same events, which
// the journal stores once (deterministic ids).
func TestReplayedSignalsMakeNoSecondEvent(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	numbers, _ := phone.New(phone.Options{Region: "NL"})
	d, _ := extensions.Load("", "")
	pol := defaultPolicies()
	pol.TransferWindow = 0
	publish(t, j, sig(0, "x1", Answered, "201"), sig(0, "x1", Ended, ""))
	fold := func() {
		tr, err := NewTracker(t.Context(), TrackerOptions{Journal: j, Numbers: numbers, Dir: d, Policies: pol})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error)
		go func() { done <- tr.Run(ctx) }()
		waitUntil(t, func() bool { return tr.Applied() >= 2 }, "tracker to fold the signals")
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	fold()
	if n := streamMsgs(t, j.events); n != 2 {
		t.Fatalf("EVENTS holds %d messages after the first fold, want 2", n)
	}
	if err := j.calls.Purge(t.Context(), checkpointKey); err != nil {
		t.Fatal(err)
	}
	keys, _ := j.calls.ListKeys(t.Context())
	for k := range keys.Keys() {
		_ = j.calls.Purge(t.Context(), k)
	}
	fold()
	if n := streamMsgs(t, j.events); n != 2 {
		t.Fatalf("EVENTS holds %d messages after replaying every signal, want still 2", n)
	}
	j.Close()
}

// TestDispatcherDeadLettersPermanentFailures: a rejected event goes to
// DEADLETTERS and the call's next event is still delivered.
func TestDispatcherDeadLettersPermanentFailures(t *testing.T) {
	sink := newRecordingSink()
	sink.fail = func(e Event, n int) error {
		if e.Type == EventAnswered {
			return classErr{Permanent}
		}
		return nil
	}
	p := startPipeline(t, t.TempDir(), sink)
	publish(t, p.j, sig(0, "d1", Answered, "201"), sig(0, "d1", Ended, ""))
	got := sink.waitFor(t, 1)
	if got[0].Type != EventDisconnected {
		t.Fatalf("delivered %v, want the Disconnected", got)
	}
	waitUntil(t, func() bool { return streamMsgs(t, p.j.dead) == 1 }, "one dead letter")
	waitUntil(t, func() bool { return streamMsgs(t, p.j.events) == 0 }, "EVENTS stream to empty")
}

func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTrackerStatus: the tracker says "restoring" until it has read its
// calls (intake works meanwhile: signals are journaled), then nothing; with
// signals waiting longer than MaxLag it says "lagging" with the figure.
func TestTrackerStatus(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	numbers, _ := phone.New(phone.Options{Region: "NL"})
	d, _ := extensions.Load("", "")
	tr, err := NewTracker(t.Context(), TrackerOptions{Journal: j, Numbers: numbers, Dir: d, Policies: defaultPolicies(), MaxLag: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if st := tr.Status(); !strings.HasPrefix(st, "restoring") {
		t.Fatalf("status before Run: %q, want restoring", st)
	}
	publish(t, j, sig(0, "s1", Answered, "201")) // journaled while not restored
	tr.lagN.Store(5)
	tr.lagAge.Store(int64(3 * time.Second))
	tr.restored.Store(true)
	if st := tr.Status(); st != "lagging: 5 signals waiting, oldest 3s" {
		t.Fatalf("status with a lag: %q", st)
	}
	tr.restored.Store(false)
	tr.lagN.Store(0)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- tr.Run(ctx) }()
	waitUntil(t, func() bool { return tr.Applied() >= 1 }, "tracker to fold the signal journaled while restoring")
	if st := tr.Status(); st != "" {
		t.Errorf("status after catching up: %q, want empty", st)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
