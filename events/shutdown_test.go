package events

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// slowLimiter admits one request per interval and fails on a cancelled context.
type slowLimiter struct {
	mu   sync.Mutex
	next time.Time
	per  time.Duration
}

func (l *slowLimiter) Reserve(ctx context.Context, _ Priority) error {
	l.mu.Lock()
	at := l.next
	if now := time.Now(); at.Before(now) {
		at = now
	}
	l.next = at.Add(l.per)
	l.mu.Unlock()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Until(at)):
		return nil
	}
}

// TestDispatcherStopsWithBacklog: cancelling delivery while a backlog waits
// for the quota returns promptly and leaves the backlog in the journal (it
// once spun: a refused reservation released the event to be picked again).
func TestDispatcherStopsWithBacklog(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	for i := range 50 {
		env := Envelope{Event: Event{ID: fmt.Sprint("c", i), Type: EventAnswered, PhoneNumber: "+31612345678", PhoneExtension: "201", Direction: "Inbound"},
			MsgID: fmt.Sprint("m", i), CallKey: fmt.Sprint("k", i), Source: "test"}
		if err := j.publishEvent(t.Context(), env); err != nil {
			t.Fatal(err)
		}
	}
	sink := newRecordingSink()
	d := NewDispatcher(DispatcherOptions{Journal: j, Sink: sink, Limiter: &slowLimiter{per: 200 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	sink.waitFor(t, 1)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the dispatcher did not stop within 5s of cancellation with a backlog")
	}
	left := streamMsgs(t, j.events)
	if got := uint64(len(sink.events())); got+left != 50 || left == 0 {
		t.Fatalf("delivered %d, left %d in the journal; want all 50 accounted for and a backlog left", got, left)
	}
}
