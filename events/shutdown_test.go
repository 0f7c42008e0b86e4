package events

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/phone"
)

// slowLimiter admits one request per interval and fails on a cancelled context.
type slowLimiter struct {
	mu   sync.Mutex
	next time.Time
	per  time.Duration
}

func (l *slowLimiter) Acquire(ctx context.Context, _ Priority) (func(bool), error) {
	l.mu.Lock()
	at := l.next
	if now := time.Now(); at.Before(now) {
		at = now
	}
	l.next = at.Add(l.per)
	l.mu.Unlock()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Until(at)):
		return func(bool) {}, nil
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

// cancelOnEvent is a log handler that cancels the tracker's context when it
// logs a journaled event: the moment between journaling the event and
// saving the call it belongs to.
type cancelOnEvent struct{ cancel context.CancelFunc }

func (h cancelOnEvent) Enabled(context.Context, slog.Level) bool { return true }
func (h cancelOnEvent) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h cancelOnEvent) WithGroup(string) slog.Handler            { return h }

func (h cancelOnEvent) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "event" {
		h.cancel()
	}
	return nil
}

// TestTrackerFinishesFoldOnShutdown: shutdown arriving between journaling an
// event and saving its call still saves the call, so the next start does not
// fold the signal again. The event is delivered and removed in between, and a
// restarted JetStream no longer knows its id, so a second fold would send it
// twice.
func TestTrackerFinishesFoldOnShutdown(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	numbers, _ := phone.New(phone.Options{Region: "NL"})
	d, _ := extensions.Load("", "")
	publish(t, j, sig(0, "f1", Answered, "201"))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	tr, err := NewTracker(t.Context(), TrackerOptions{Journal: j, Numbers: numbers, Dir: d, Policies: defaultPolicies(),
		Logger: slog.New(cancelOnEvent{cancel: cancel})})
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, j.events); n != 1 {
		t.Fatalf("EVENTS holds %d messages, want the Answered", n)
	}
	if err := j.events.Purge(t.Context()); err != nil { // delivered
		t.Fatal(err)
	}
	j.Close()

	j = openJournal(t, dir)
	defer j.Close()
	tr, err = NewTracker(t.Context(), TrackerOptions{Journal: j, Numbers: numbers, Dir: d, Policies: defaultPolicies()})
	if err != nil {
		t.Fatal(err)
	}
	publish(t, j, sig(0, "f2", Answered, "202")) // a later call, to know when the replay is done
	ctx2, cancel2 := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx2) }()
	waitUntil(t, func() bool { return tr.Applied() >= 2 }, "tracker to fold the later call")
	cancel2()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, j.events); n != 1 {
		t.Fatalf("after the restart EVENTS holds %d messages, want only the later call's Answered: the first was journaled again", n)
	}
}
