package robin

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// outageQueue holds one event and records its removal.
type outageQueue struct {
	ch      chan events.Queued
	removed atomic.Int32
}

func (q *outageQueue) Next(ctx context.Context) (events.Queued, error) {
	select {
	case e := <-q.ch:
		return e, nil
	case <-ctx.Done():
		return events.Queued{}, ctx.Err()
	}
}
func (q *outageQueue) Remove(context.Context, uint64) error { q.removed.Add(1); return nil }
func (q *outageQueue) DeadLetter(context.Context, uint64, events.DeadLetter) error {
	return q.Remove(context.Background(), 0)
}

// downSink cannot connect until up is set.
type downSink struct {
	up       atomic.Bool
	mu       sync.Mutex
	attempts int
}

func (s *downSink) Send(context.Context, events.Event) error {
	s.mu.Lock()
	s.attempts++
	s.mu.Unlock()
	if s.up.Load() {
		return nil
	}
	return &Error{Op: "register event", Cause: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
}

// TestOutageSpendsNoQuota: through three simulated hours of ROBIN being
// unreachable, the dispatcher, breaker and quota together leave every window
// as it was, so delivery resumes at once when ROBIN is back.
func TestOutageSpendsNoQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newTestQuota(t, QuotaOptions{Windows: mustQuotaWindows(t, DefaultWindows), Store: &quotaMemStore{}})
		queue := &outageQueue{ch: make(chan events.Queued, 1)}
		queue.ch <- events.Queued{Seq: 1, Env: events.Envelope{MsgID: "m", CallKey: "c", Source: "test",
			Event: events.Event{ID: "c", Type: events.EventAnswered, PhoneNumber: "+31201234567", PhoneExtension: "201", Direction: "Inbound"}}}
		sink := &downSink{}
		d := events.NewDispatcher(events.DispatcherOptions{Queue: queue, Sink: sink, Limiter: q,
			Gate: NewBreaker(BreakerOptions{Failures: 5, Interval: 30 * time.Second}), BackoffMax: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()

		time.Sleep(3 * time.Hour)
		for _, u := range q.Usage() {
			if u.Used != 0 {
				t.Errorf("after a 3h outage window %s holds %d requests, want 0", u.Window, u.Used)
			}
		}
		sink.mu.Lock()
		attempts := sink.attempts
		sink.mu.Unlock()
		if attempts < 100 || attempts > 400 {
			t.Errorf("%d attempts in 3h: want about one per breaker interval (360)", attempts)
		}
		sink.up.Store(true)
		back := time.Now()
		for queue.removed.Load() == 0 {
			time.Sleep(time.Second)
			if time.Since(back) > time.Minute {
				t.Fatal("not delivered within a minute of ROBIN coming back")
			}
		}
		t.Logf("%d attempts during the outage; delivered %v after ROBIN came back", attempts, time.Since(back))
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	})
}
