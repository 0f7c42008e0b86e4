package events

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// The dispatcher's failure policy as a table, in fake time, against a
// recording queue, sink, limiter and breaker (as Alertmanager's notify tests
// drive their retry stage).

// policyErr is a helpdesk answer of the given class.
type policyErr struct {
	class  Class
	status int
	retry  time.Duration
}

func (e policyErr) Error() string {
	if e.status == 0 {
		return "request timed out"
	}
	return fmt.Sprintf("helpdesk answered %d", e.status)
}
func (e policyErr) Class() Class              { return e.class }
func (e policyErr) StatusCode() int           { return e.status }
func (e policyErr) RetryAfter() time.Duration { return e.retry }
func (e policyErr) ResponseBody() string      { return e.Error() }
func status(code int, class Class) policyErr  { return policyErr{class: class, status: code} }
func tooMany(retry time.Duration) policyErr {
	return policyErr{class: RateLimited, status: 429, retry: retry}
}

// fakeQueue is a Queue in memory that records how events were settled.
type fakeQueue struct {
	ch chan Queued

	mu      sync.Mutex
	removed []uint64
	dead    []DeadLetter
	// removeFails makes the first removals fail (a journal electing a
	// leader): each attempt blocks until its deadline.
	removeFails int
	attempts    int
}

func newFakeQueue(envs ...Envelope) *fakeQueue {
	q := &fakeQueue{ch: make(chan Queued, len(envs))}
	for i, e := range envs {
		q.ch <- Queued{Env: e, Seq: uint64(i + 1), Received: time.Now()}
	}
	return q
}

func (q *fakeQueue) Next(ctx context.Context) (Queued, error) {
	select {
	case e := <-q.ch:
		return e, nil
	case <-ctx.Done():
		return Queued{}, ctx.Err()
	}
}

func (q *fakeQueue) Remove(ctx context.Context, seq uint64) error {
	q.mu.Lock()
	q.attempts++
	fail := q.removeFails > 0
	if fail {
		q.removeFails--
	}
	q.mu.Unlock()
	if fail {
		<-ctx.Done()
		return ctx.Err()
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.removed = append(q.removed, seq)
	return nil
}

func (q *fakeQueue) DeadLetter(ctx context.Context, seq uint64, dl DeadLetter) error {
	q.mu.Lock()
	q.dead = append(q.dead, dl)
	q.mu.Unlock()
	return q.Remove(ctx, seq)
}

// policySink answers each attempt with answer(event, attempt, since start)
// and records when each attempt was made.
type policySink struct {
	start   time.Time
	answer  func(e Event, attempt int, at time.Duration) error
	latency time.Duration // from sending to the answer

	mu    sync.Mutex
	tries map[string]int
	sends []policySend
}

type policySend struct {
	id  string
	at  time.Duration
	err error
}

func (s *policySink) Send(_ context.Context, e Event) error {
	at := time.Since(s.start)
	s.mu.Lock()
	s.tries[e.ID]++
	n := s.tries[e.ID]
	s.mu.Unlock()
	time.Sleep(s.latency)
	var err error
	if s.answer != nil {
		err = s.answer(e, n, at)
	}
	s.mu.Lock()
	s.sends = append(s.sends, policySend{id: e.ID, at: at, err: err})
	s.mu.Unlock()
	return err
}

// policyLimiter counts acquisitions and releases.
type policyLimiter struct {
	mu                 sync.Mutex
	acquired, released int
}

func (l *policyLimiter) Acquire(context.Context, Priority) (func(bool), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.acquired++
	return func(bool) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.released++
	}, nil
}

// policyGate refuses every request before openUntil and records outcomes.
type policyGate struct {
	start     time.Time
	openUntil time.Duration

	mu       sync.Mutex
	refused  int
	outcomes []error
}

func (g *policyGate) Allow() (func(error), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if time.Since(g.start) < g.openUntil {
		g.refused++
		return nil, errors.New("breaker open")
	}
	return func(err error) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.outcomes = append(g.outcomes, err)
	}, nil
}

// logLines records log messages.
type logLines struct {
	mu   sync.Mutex
	msgs []string
}

func (h *logLines) Enabled(context.Context, slog.Level) bool { return true }
func (h *logLines) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *logLines) WithGroup(string) slog.Handler            { return h }
func (h *logLines) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.msgs = append(h.msgs, r.Message)
	return nil
}

func (h *logLines) count(substr string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, m := range h.msgs {
		if strings.Contains(m, substr) {
			n++
		}
	}
	return n
}

func policyEvent(call string) Envelope {
	return Envelope{Event: Event{ID: call, Type: EventDisconnected, PhoneNumber: "+31201234567", PhoneExtension: "201", Direction: "Inbound"},
		MsgID: call + "|d", CallKey: call, Source: "test"}
}

// span is an instant range since the start, both ends included.
type span struct{ lo, hi time.Duration }

func at(d time.Duration) span { return span{d, d} }

func TestDispatcherPolicy(t *testing.T) {
	const (
		backoffMin = time.Second
		authProbe  = time.Minute
	)
	// first answers the first attempt of every event with err, the rest 2xx.
	first := func(err error) func(Event, int, time.Duration) error {
		return func(_ Event, n int, _ time.Duration) error {
			if n == 1 {
				return err
			}
			return nil
		}
	}
	for _, tc := range []struct {
		name        string
		calls       []string // one event per entry, in journal order
		answer      func(Event, int, time.Duration) error
		breakerOpen time.Duration // the breaker refuses before this
		removeFails int
		workers     int
		latency     time.Duration

		sends            []span // attempts, in order
		removed, dead    int
		acquired         int // quota places taken
		refused          bool
		pausedLogs       int
		deadStatus       int
		breakerFailures  int // outcomes the breaker saw as failures
		breakerCancelled int
	}{
		{name: "2xx", calls: []string{"a"}, sends: []span{at(0)}, removed: 1, acquired: 1},
		{name: "5xx then 2xx: backoff", calls: []string{"a"}, answer: first(status(503, Retryable)),
			sends: []span{at(0), {backoffMin / 2, backoffMin}}, removed: 1, acquired: 2, breakerFailures: 1},
		{name: "timeout then 2xx: backoff", calls: []string{"a"}, answer: first(policyErr{class: Retryable}),
			sends: []span{at(0), {backoffMin / 2, backoffMin}}, removed: 1, acquired: 2, breakerFailures: 1},
		{name: "429 with Retry-After", calls: []string{"a"}, answer: first(tooMany(7 * time.Second)),
			sends: []span{at(0), at(7 * time.Second)}, removed: 1, acquired: 2, pausedLogs: 1},
		{name: "429 without Retry-After: a minute", calls: []string{"a"}, answer: first(tooMany(0)),
			sends: []span{at(0), at(time.Minute)}, removed: 1, acquired: 2, pausedLogs: 1},
		{name: "4xx: dead letter, no retry", calls: []string{"a"}, answer: first(status(400, Permanent)),
			sends: []span{at(0)}, dead: 1, removed: 1, acquired: 1, deadStatus: 400},
		{name: "401: pause and probe", calls: []string{"a"}, answer: first(status(401, Auth)),
			sends: []span{at(0), at(authProbe)}, removed: 1, acquired: 2, pausedLogs: 1},
		{name: "403: pause and probe", calls: []string{"a"}, answer: first(status(403, Auth)),
			sends: []span{at(0), at(authProbe)}, removed: 1, acquired: 2, pausedLogs: 1},
		{name: "breaker open: no quota spent", calls: []string{"a"}, breakerOpen: 5 * time.Second,
			sends: []span{{5 * time.Second, 5*time.Second + backoffMin}}, removed: 1, acquired: 1, refused: true},
		// A removal the journal does not answer holds the worker for one
		// attempt (SettleAttempt, 1s); its retries go on beside delivery.
		{name: "lost removal: one attempt on the worker's path, retries off it", calls: []string{"a", "a"}, removeFails: 3,
			sends: []span{at(0), at(time.Second)}, removed: 2, acquired: 2},
		{name: "429 on four lanes: one probe, then the rest", calls: []string{"a", "b", "c", "d", "e"}, workers: 4, latency: 100 * time.Millisecond,
			answer: func(_ Event, _ int, at time.Duration) error {
				if at < 5*time.Second {
					return tooMany(5 * time.Second)
				}
				return nil
			},
			// Four go at once and meet the 429 (answered after 100 ms, so
			// the pause ends at 5.1 s); then one probe, then the other four.
			sends: []span{at(0), at(0), at(0), at(0), at(5100 * time.Millisecond),
				at(5200 * time.Millisecond), at(5200 * time.Millisecond), at(5200 * time.Millisecond), at(5200 * time.Millisecond)},
			removed: 5, acquired: 9, pausedLogs: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				var envs []Envelope
				for i, c := range tc.calls {
					e := policyEvent(c)
					e.MsgID = fmt.Sprint(c, i)
					envs = append(envs, e)
				}
				q := newFakeQueue(envs...)
				q.removeFails = tc.removeFails
				sink := &policySink{start: start, answer: tc.answer, latency: tc.latency, tries: map[string]int{}}
				lim := &policyLimiter{}
				gate := &policyGate{start: start, openUntil: tc.breakerOpen}
				logs := &logLines{}
				workers := tc.workers
				if workers == 0 {
					workers = 1
				}
				d := NewDispatcher(DispatcherOptions{Queue: q, Sink: sink, Limiter: lim, Gate: gate, Logger: slog.New(logs),
					Workers: workers, BackoffMin: backoffMin, BackoffMax: time.Minute, AuthProbe: authProbe})
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- d.Run(ctx) }()
				// Everything the table expects happens within two minutes.
				time.Sleep(2 * time.Minute)
				cancel()
				if err := <-done; err != nil {
					t.Fatal(err)
				}

				if len(sink.sends) != len(tc.sends) {
					t.Fatalf("attempts %v, want %d", sink.sends, len(tc.sends))
				}
				for i, s := range sink.sends {
					if w := tc.sends[i]; s.at < w.lo || s.at > w.hi {
						t.Errorf("attempt %d (%s) at +%v, want within [%v, %v]", i+1, s.id, s.at, w.lo, w.hi)
					}
				}
				if len(q.removed) != tc.removed || len(q.dead) != tc.dead {
					t.Errorf("removed %d, dead-lettered %d; want %d and %d", len(q.removed), len(q.dead), tc.removed, tc.dead)
				}
				if tc.deadStatus != 0 && (len(q.dead) == 0 || q.dead[0].Status != tc.deadStatus) {
					t.Errorf("dead letters %+v, want status %d", q.dead, tc.deadStatus)
				}
				if lim.acquired != tc.acquired || lim.released != lim.acquired {
					t.Errorf("quota places taken %d, released %d; want %d, all released", lim.acquired, lim.released, tc.acquired)
				}
				if (gate.refused > 0) != tc.refused {
					t.Errorf("breaker refused %d requests, want refusals: %v", gate.refused, tc.refused)
				}
				failures := 0
				for _, err := range gate.outcomes {
					if err != nil && ClassOf(err) == Retryable {
						failures++
					}
				}
				if failures != tc.breakerFailures {
					t.Errorf("breaker saw %d failures, want %d", failures, tc.breakerFailures)
				}
				if n := logs.count("delivery paused"); n != tc.pausedLogs {
					t.Errorf("%d 'delivery paused' log lines, want %d", n, tc.pausedLogs)
				}
				if tc.removeFails > 0 {
					if n := logs.count("failing; retrying"); n != 1 {
						t.Errorf("%d log lines for failing removals, want 1 (first failure)", n)
					}
					if n := logs.count("recovered"); n != 1 {
						t.Errorf("%d recovery log lines, want 1", n)
					}
				}
			})
		})
	}
}

// TestDispatcherOutcomesAndPending: every attempt is reported with its
// outcome, and an event waiting after a failure is listed with its reason.
func TestDispatcherOutcomesAndPending(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		q := newFakeQueue(policyEvent("a"), policyEvent("b"))
		sink := &policySink{start: start, tries: map[string]int{}, answer: func(e Event, n int, _ time.Duration) error {
			if e.ID == "a" && n == 1 {
				return status(503, Retryable)
			}
			return nil
		}}
		var mu sync.Mutex
		var outcomes []DeliveryOutcome
		d := NewDispatcher(DispatcherOptions{Queue: q, Sink: sink, Workers: 1, BackoffMin: 10 * time.Second, BackoffMax: time.Minute,
			OnDelivery: func(o DeliveryOutcome) { mu.Lock(); outcomes = append(outcomes, o); mu.Unlock() }})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		time.Sleep(time.Second)
		p := d.Pending(0)
		if len(p) != 1 || p[0].Env.Event.ID != "a" || p[0].Reason != "retrying" || p[0].Attempts != 1 || p[0].Sink != "robin" {
			t.Errorf("pending after a 503 = %+v, want call a retrying after 1 attempt", p)
		}
		time.Sleep(time.Minute)
		if p := d.Pending(0); len(p) != 0 {
			t.Errorf("pending after the retry = %+v, want none", p)
		}
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		var got []string
		for _, o := range outcomes {
			got = append(got, fmt.Sprintf("%s:%d:%s:%d", o.Env.Event.ID, o.Attempt, o.Outcome, o.Status))
		}
		want := "a:1:retryable:503 b:1:delivered:0 a:2:delivered:0"
		if strings.Join(got, " ") != want {
			t.Errorf("outcomes %v, want %s", got, want)
		}
	})
}
