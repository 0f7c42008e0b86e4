package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// checkpointKey holds the last signal sequence the tracker has folded in, so a
// restart resumes there. Call records carry their own last sequence, so a
// checkpoint that lags behind only replays signals that are then skipped.
const checkpointKey = "checkpoint"

// TrackerOptions configure the tracker.
type TrackerOptions struct {
	Journal  *Journal
	Numbers  Numbers
	Dir      Directory
	Policies Policies
	Logger   *slog.Logger
	Metrics  *Metrics
	// Tick is how often pending ends and timeouts are checked (default 1s).
	Tick time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Tracker folds journaled signals into calls and journals the resulting
// events. It is the only writer of call state: run one per journal.
type Tracker struct {
	o       TrackerOptions
	log     *slog.Logger
	m       *machine
	applied atomic.Uint64 // last stream sequence folded in
	saved   uint64        // last checkpoint written
}

// NewTracker loads the persisted calls and checkpoint from the journal.
func NewTracker(ctx context.Context, o TrackerOptions) (*Tracker, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	t := &Tracker{o: o, log: o.Logger, m: newMachine(o.Policies, o.Numbers, o.Dir)}
	t.m.warn = func(msg string, args ...any) { t.log.Warn(msg, args...) }
	kv := o.Journal.calls
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("tracker: list calls: %w", err)
	}
	n := 0
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			if errors.Is(err, jetstream.ErrKeyNotFound) {
				continue
			}
			return nil, fmt.Errorf("tracker: load %s: %w", k, err)
		}
		if k == checkpointKey {
			n, _ := strconv.ParseUint(string(e.Value()), 10, 64)
			t.applied.Store(n)
			t.saved = n
			continue
		}
		var c call
		if err := json.Unmarshal(e.Value(), &c); err != nil {
			return nil, fmt.Errorf("tracker: load %s: %w", k, err)
		}
		t.m.restore(&c)
		n++
	}
	if n > 0 {
		t.log.Info("tracker restored calls", "calls", n, "checkpoint", t.applied.Load())
	}
	return t, nil
}

// Applied returns the stream sequence of the last signal folded in.
func (t *Tracker) Applied() uint64 { return t.applied.Load() }

// foldGrace bounds how long a fold begun before shutdown may take to finish.
const foldGrace = 30 * time.Second

// Run folds signals until ctx is cancelled. It returns nil on cancellation
// and an error when the journal fails for good.
func (t *Tracker) Run(ctx context.Context) error {
	cons, err := t.o.Journal.js.OrderedConsumer(ctx, t.o.Journal.n.signals, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:   t.applied.Load() + 1,
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("tracker: consumer: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return fmt.Errorf("tracker: consumer: %w", err)
	}
	msgs := make(chan jetstream.Msg)
	readErr := make(chan error, 1)
	go func() {
		for {
			m, err := it.Next()
			if err != nil {
				readErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer it.Stop()
	tick := time.NewTicker(t.o.Tick)
	defer tick.Stop()
	// A fold, once begun, is finished even when shutdown starts: its events
	// journaled but its call records not would make a restart fold the
	// signal again, and an event already delivered (and so gone from the
	// journal's deduplication) would be sent twice. The grace bounds a
	// drain when the journal itself is gone.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(foldGrace, stopWork) })
	defer stopGrace()
	for {
		select {
		case <-ctx.Done():
			t.checkpoint(context.WithoutCancel(ctx))
			return nil
		case err := <-readErr:
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				t.checkpoint(context.WithoutCancel(ctx))
				return nil
			}
			return fmt.Errorf("tracker: read signals: %w", err)
		case msg := <-msgs:
			if err := t.handle(work, msg); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
		case <-tick.C:
			if err := t.commit(work, t.m.tick(t.o.Now())); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			t.checkpoint(work)
		}
	}
}

func (t *Tracker) handle(ctx context.Context, msg jetstream.Msg) error {
	md, err := msg.Metadata()
	if err != nil {
		return fmt.Errorf("tracker: %w", err)
	}
	seq := md.Sequence.Stream
	var s Signal
	if err := json.Unmarshal(msg.Data(), &s); err != nil || s.Validate() != nil {
		// Sources validate before journaling; a bad record here is from a
		// foreign writer. Skip it, loudly, rather than stop the tracker.
		t.log.Error("tracker: skipping unreadable signal", "seq", seq, "err", err)
		t.o.Metrics.signals.WithLabelValues("unknown", "unreadable").Inc()
		t.applied.Store(seq)
		return nil
	}
	r := t.m.apply(s, seq, t.o.Now())
	t.o.Metrics.signals.WithLabelValues(s.Source, r.outcome).Inc()
	if r.outcome != OutcomeApplied && r.outcome != OutcomeReplayed {
		t.log.Debug("signal dropped", "source", s.Source, "call_id", s.CallID, "state", s.State, "outcome", r.outcome)
	}
	if err := t.commit(ctx, r); err != nil {
		return err
	}
	t.applied.Store(seq)
	if seq-t.saved >= 100 {
		t.checkpoint(ctx)
	}
	return nil
}

// commit journals the events of a result, then the call records: a crash in
// between replays the signal, whose events are then deduplicated by id.
func (t *Tracker) commit(ctx context.Context, r result) error {
	for _, env := range r.events {
		if err := retry(ctx, func() error { return t.o.Journal.publishEvent(ctx, env) }); err != nil {
			return fmt.Errorf("tracker: %w", err)
		}
		t.o.Metrics.events.WithLabelValues(string(env.Event.Type)).Inc()
		t.log.Info("event", "event", env.Event.Type, "call_id", env.Event.ID, "ext", env.Event.PhoneExtension, "source", env.Source)
	}
	kv := t.o.Journal.calls
	for _, k := range r.changed {
		c := t.m.calls[k]
		if c == nil {
			continue
		}
		data, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("tracker: %w", err)
		}
		if err := retry(ctx, func() error { _, err := kv.Put(ctx, k, data); return err }); err != nil {
			return fmt.Errorf("tracker: save call: %w", err)
		}
	}
	for _, k := range r.deleted {
		if err := kv.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.log.Warn("tracker: forget call", "err", err)
		}
	}
	t.o.Metrics.calls.Set(float64(len(t.m.calls)))
	return nil
}

func (t *Tracker) checkpoint(ctx context.Context) {
	n := t.applied.Load()
	if n == t.saved {
		return
	}
	if _, err := t.o.Journal.calls.Put(ctx, checkpointKey, []byte(strconv.FormatUint(n, 10))); err != nil {
		t.log.Warn("tracker: checkpoint", "err", err)
		return
	}
	t.saved = n
}

// retry runs f until it succeeds or ctx ends, backing off up to 5s: the
// journal being briefly unavailable must stall the tracker, not lose state.
func retry(ctx context.Context, f func() error) error {
	delay := 50 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}
