package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
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
	// MaxLag is the age of the oldest signal not yet folded above which
	// Status reports the tracker as lagging (TRACKER_MAX_LAG, default 30s).
	MaxLag time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// OnCommitted, when set, is called with the events of every batch once
	// they are journaled and their call records saved, in order, from the
	// tracker's goroutine: keep it short. A restart may call it again for
	// events already seen, so what it keeps must be idempotent.
	OnCommitted func([]Envelope)
	// Sinks are the sinks beyond register-event: each batch's events that a
	// sink wants are journaled into its stream too (Journal.SinkQueue),
	// in the same group commit.
	Sinks []SinkRoute
}

// SinkRoute routes events to a sink beyond register-event.
type SinkRoute struct {
	Name string
	// Wants reports whether the sink takes the event; nil: every event.
	Wants func(Envelope) bool
}

// maxBatch bounds the signals folded and committed together.
const maxBatch = 512

// Tracker folds journaled signals into calls and journals the resulting
// events. It is the only writer of call state: run one per journal.
//
// It commits in groups: it folds the signals that are waiting (up to
// maxBatch), publishes the batch's events and waits for their acks
// together, then writes the changed call records together, and only then
// moves its checkpoint past the batch. A crash anywhere in a batch replays
// it; the journal's deduplication absorbs the events published twice, and
// the call records' sequences skip what was saved.
type Tracker struct {
	o        TrackerOptions
	log      *slog.Logger
	m        *machine
	applied  atomic.Uint64 // last stream sequence folded in
	saved    uint64        // last checkpoint written
	restored atomic.Bool
	loaded   atomic.Int64 // call records read so far while restoring
	lagN     atomic.Uint64
	lagAge   atomic.Int64 // ns: how long the oldest signal of the last batch waited
	// fakeClock: Now was given, and stands for the journal's time too.
	fakeClock bool
	// publishErr logs the journal failing and recovering under a batch.
	publishErr retryState
	live       *liveCalls

	recentMu sync.Mutex
	recent   []Folded // ring of the last recentSize signals folded
	recentAt int

	// committed is the EVENTS stream sequence up to which every event's
	// call records are saved; commitMu guards commitWake, closed and
	// replaced when it moves.
	committed  atomic.Uint64
	commitMu   sync.Mutex
	commitWake chan struct{}
	// sinkCommitted is committed for each sink stream, by stream name
	// (guarded by commitMu).
	sinkCommitted map[string]uint64
}

// recentSize is how many folded signals Recent keeps.
const recentSize = 200

// Folded is a signal as the tracker folded it, for GET /v1/signals/recent.
type Folded struct {
	Seq     uint64    `json:"seq"`
	Signal  Signal    `json:"signal"`
	Outcome string    `json:"outcome"`
	Events  []string  `json:"events,omitempty"` // types of the events it produced
	At      time.Time `json:"at"`
}

// Recent returns the last signals folded, newest last.
func (t *Tracker) Recent() []Folded {
	t.recentMu.Lock()
	defer t.recentMu.Unlock()
	out := make([]Folded, 0, len(t.recent))
	if len(t.recent) == recentSize {
		out = append(out, t.recent[t.recentAt:]...)
		return append(out, t.recent[:t.recentAt]...)
	}
	return append(out, t.recent...)
}

func (t *Tracker) remember(f Folded) {
	t.recentMu.Lock()
	defer t.recentMu.Unlock()
	if len(t.recent) < recentSize {
		t.recent = append(t.recent, f)
		return
	}
	t.recent[t.recentAt] = f
	t.recentAt = (t.recentAt + 1) % recentSize
}

// WaitCommitted returns once every event up to EVENTS sequence seq is
// committed: journaled by a batch whose call records are saved too, or
// journaled by someone else (a dead letter replayed) and seen at a tick.
func (t *Tracker) WaitCommitted(ctx context.Context, seq uint64) error {
	for {
		t.commitMu.Lock()
		wake := t.commitWake
		t.commitMu.Unlock()
		if t.committed.Load() >= seq {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// commitTo moves the committed sequence to seq (never back).
func (t *Tracker) commitTo(seq uint64) {
	if seq <= t.committed.Load() {
		return
	}
	t.committed.Store(seq)
	t.commitMu.Lock()
	close(t.commitWake)
	t.commitWake = make(chan struct{})
	t.commitMu.Unlock()
}

// commitSinks moves the committed sequence of each sink stream (never back).
func (t *Tracker) commitSinks(last map[string]uint64) {
	t.commitMu.Lock()
	defer t.commitMu.Unlock()
	moved := false
	for stream, seq := range last {
		if stream == t.o.Journal.n.events || seq <= t.sinkCommitted[stream] {
			continue
		}
		if t.sinkCommitted == nil {
			t.sinkCommitted = map[string]uint64{}
		}
		t.sinkCommitted[stream] = seq
		moved = true
	}
	if moved {
		close(t.commitWake)
		t.commitWake = make(chan struct{})
	}
}

// CommittedOn is the Committer of a sink's stream: its dispatcher delivers
// an event only once the call records behind it are saved.
func (t *Tracker) CommittedOn(stream string) Committer { return sinkCommitter{t, stream} }

type sinkCommitter struct {
	t      *Tracker
	stream string
}

func (c sinkCommitter) WaitCommitted(ctx context.Context, seq uint64) error {
	for {
		c.t.commitMu.Lock()
		wake, done := c.t.commitWake, c.t.sinkCommitted[c.stream] >= seq
		c.t.commitMu.Unlock()
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-wake:
		}
	}
}

// NewTracker prepares a tracker. It reads nothing: Run restores the calls
// and the checkpoint from the journal first (Status says "restoring"
// meanwhile), so intake can journal signals at once.
func NewTracker(ctx context.Context, o TrackerOptions) (*Tracker, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Tick <= 0 {
		o.Tick = time.Second
	}
	if o.MaxLag <= 0 {
		o.MaxLag = 30 * time.Second
	}
	fake := o.Now != nil
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Journal == nil {
		return nil, errors.New("tracker: no journal")
	}
	t := &Tracker{o: o, log: o.Logger, m: newMachine(o.Policies, o.Numbers, o.Dir), fakeClock: fake, commitWake: make(chan struct{})}
	t.publishErr = retryState{log: o.Logger, what: "tracker: journaling a batch"}
	t.live = newLiveCalls()
	t.m.warn = func(msg string, args ...any) { t.log.Warn(msg, args...) }
	return t, nil
}

// restore reads every call record and the checkpoint. The records stream
// from the bucket in one pass (no request per key) and are decoded on every
// core.
func (t *Tracker) restore(ctx context.Context) error {
	start := time.Now()
	w, err := t.o.Journal.calls.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("tracker: read calls: %w", err)
	}
	defer w.Stop()
	type rec struct {
		key string
		val []byte
		c   *call
		err error
	}
	var recs []rec
	for e := range w.Updates() {
		if e == nil {
			break // the initial values are all read
		}
		if e.Key() == checkpointKey {
			n, _ := strconv.ParseUint(string(e.Value()), 10, 64)
			t.applied.Store(n)
			t.saved = n
			continue
		}
		recs = append(recs, rec{key: e.Key(), val: e.Value()})
		t.loaded.Add(1)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				recs[i].c, recs[i].err = decodeCall(recs[i].val)
				recs[i].val = nil
			}
		})
	}
	wg.Wait()
	for _, r := range recs {
		if r.err != nil {
			return fmt.Errorf("tracker: load %s: %w", r.key, r.err)
		}
		t.m.restore(r.key, r.c)
	}
	t.o.Metrics.calls.Set(float64(len(t.m.calls)))
	keys := make([]string, 0, len(recs))
	for _, r := range recs {
		keys = append(keys, r.key)
	}
	t.live.update(t.m, keys)
	if len(recs) > 0 {
		t.log.Info("tracker restored calls", "calls", len(recs), "checkpoint", t.applied.Load(), "took", time.Since(start).Round(time.Millisecond))
	}
	t.restored.Store(true)
	return nil
}

// Applied returns the stream sequence of the last signal folded in.
func (t *Tracker) Applied() uint64 { return t.applied.Load() }

// Lag returns how many journaled signals wait to be folded and how long the
// oldest signal of the last batch waited.
func (t *Tracker) Lag() (signals uint64, age time.Duration) {
	return t.lagN.Load(), time.Duration(t.lagAge.Load())
}

// Status is "" while the tracker keeps up, else what holds it back:
// "restoring" before it has read its calls, "lagging" when the oldest
// signal waits longer than MaxLag. Intake works either way.
func (t *Tracker) Status() string {
	if !t.restored.Load() {
		return fmt.Sprintf("restoring: %d call records read", t.loaded.Load())
	}
	if n, age := t.Lag(); n > 0 && age > t.o.MaxLag {
		return fmt.Sprintf("lagging: %d signals waiting, oldest %s", n, age.Round(time.Second))
	}
	return ""
}

// foldGrace bounds how long a batch begun before shutdown may take to finish.
const foldGrace = 30 * time.Second

// Run restores the calls, then folds signals until ctx is cancelled. It
// returns nil on cancellation and an error when the journal fails for good.
func (t *Tracker) Run(ctx context.Context) error {
	if err := t.restore(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
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
	it, err := cons.Messages(jetstream.PullMaxMessages(2 * maxBatch))
	if err != nil {
		return fmt.Errorf("tracker: consumer: %w", err)
	}
	msgs := make(chan jetstream.Msg, maxBatch)
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
	// A batch, once begun, is finished even when shutdown starts: its
	// events journaled but its call records not would make a restart fold
	// it again, and an event already delivered (and so gone from the
	// journal's deduplication) would be sent twice. The grace bounds a
	// drain when the journal itself is gone.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	stopGrace := context.AfterFunc(ctx, func() { time.AfterFunc(foldGrace, stopWork) })
	defer stopGrace()
	batch := make([]jetstream.Msg, 0, maxBatch)
	tickDue, lastTick := false, time.Now()
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
			batch = append(batch[:0], msg)
		fill:
			for len(batch) < maxBatch {
				select {
				case m := <-msgs:
					batch = append(batch, m)
				default:
					break fill
				}
			}
			if err := t.handle(work, batch); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if tickDue && (len(msgs) == 0 || time.Since(lastTick) > 5*t.o.Tick) {
				if err := t.runTick(work); err != nil {
					if ctx.Err() != nil {
						return nil
					}
					return err
				}
				tickDue, lastTick = false, time.Now()
			}
		case <-tick.C:
			if len(msgs) > 0 && time.Since(lastTick) < 5*t.o.Tick {
				// Signals wait: fold them first, so that a window does not
				// close on a call whose continuation is already journaled.
				tickDue = true
				continue
			}
			if err := t.runTick(work); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			tickDue, lastTick = false, time.Now()
		}
	}
}

// runTick ends what is due, checkpoints and measures the lag. No batch is
// half committed during a tick, so every event journaled so far is safe
// to deliver (including those not journaled by the tracker).
func (t *Tracker) runTick(ctx context.Context) error {
	if err := t.commit(ctx, t.m.tick(t.o.Now())); err != nil {
		return err
	}
	if info, err := t.o.Journal.events.Info(ctx); err == nil {
		t.commitTo(info.State.LastSeq)
	}
	if len(t.o.Sinks) > 0 {
		last := map[string]uint64{}
		for _, r := range t.o.Sinks {
			name := t.o.Journal.sinkStreamName(r.Name)
			if info, err := t.o.Journal.js.Stream(ctx, name); err == nil {
				if si, err := info.Info(ctx); err == nil {
					last[name] = si.State.LastSeq
				}
			}
		}
		t.commitSinks(last)
	}
	t.checkpoint(ctx)
	t.measureLag(ctx)
	return nil
}

// handle folds a batch of signals and commits what they changed together.
func (t *Tracker) handle(ctx context.Context, batch []jetstream.Msg) error {
	var all result
	now := t.o.Now()
	var last, remaining uint64
	debug := t.log.Enabled(ctx, slog.LevelDebug)
	for i, msg := range batch {
		md, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("tracker: %w", err)
		}
		seq := md.Sequence.Stream
		last, remaining = seq, md.NumPending
		if i == 0 {
			// The batch's first signal is the oldest not yet folded.
			t.lagAge.Store(int64(max(0, now.Sub(md.Timestamp))))
			t.lagN.Store(md.NumPending + uint64(len(batch)))
		}
		var s Signal
		if err := json.Unmarshal(msg.Data(), &s); err != nil || s.Validate() != nil {
			// Sources validate before journaling; a bad record here is from a
			// foreign writer. Skip it, loudly, rather than stop the tracker.
			t.log.Error("tracker: skipping unreadable signal", "seq", seq, "err", err)
			t.o.Metrics.signals.WithLabelValues("unknown", "unreadable").Inc()
			continue
		}
		// The signal's time in the model is when the journal took it: a
		// tracker catching up measures windows as the PBX lived them, and a
		// replay after a restart folds exactly as the first time.
		at := md.Timestamp
		if at.IsZero() || t.fakeClock {
			at = now
		}
		r := t.m.apply(s, seq, at)
		t.o.Metrics.signals.WithLabelValues(s.Source, r.outcome).Inc()
		f := Folded{Seq: seq, Signal: s, Outcome: r.outcome, At: at}
		for _, e := range r.events {
			f.Events = append(f.Events, string(e.Event.Type))
		}
		t.remember(f)
		if debug {
			t.log.Debug("signal", "source", s.Source, "call_id", s.CallID, "leg_id", s.LegID, "ext", s.Extension,
				"state", s.State, "outcome", r.outcome, "events", f.Events)
		}
		all.events = append(all.events, r.events...)
		for _, k := range r.changed {
			all.change(k)
		}
	}
	if err := t.commit(ctx, all); err != nil {
		return err
	}
	t.applied.Store(last)
	t.lagN.Store(remaining)
	if remaining == 0 {
		t.lagAge.Store(0)
	}
	if last-t.saved >= 1000 {
		t.checkpoint(ctx)
	}
	return nil
}

// measureLag reads how far the signal stream is ahead of the tracker.
func (t *Tracker) measureLag(ctx context.Context) {
	info, err := t.o.Journal.signals.Info(ctx)
	if err != nil {
		return
	}
	if a := t.applied.Load(); info.State.LastSeq > a {
		t.lagN.Store(info.State.LastSeq - a)
	} else {
		t.lagN.Store(0)
		t.lagAge.Store(0)
	}
	n, age := t.Lag()
	t.o.Metrics.lagSignals.Set(float64(n))
	t.o.Metrics.lagSeconds.Set(age.Seconds())
}

// commit journals the events of a result, then the call records: a crash in
// between replays the signals, whose events are then deduplicated by id.
// Each group is published asynchronously and its acks awaited together.
func (t *Tracker) commit(ctx context.Context, r result) error {
	j := t.o.Journal
	pubs := make([]pending, 0, len(r.events)+len(r.changed))
	for _, env := range r.events {
		data, err := json.Marshal(env)
		if err != nil {
			return fmt.Errorf("tracker: %w", err)
		}
		pubs = append(pubs, pending{subj: j.n.eventsSubj + "." + subjectToken(env.Source), data: data, id: env.MsgID})
		for _, r := range t.o.Sinks {
			if r.Wants == nil || r.Wants(env) {
				pubs = append(pubs, pending{subj: j.sinkSubject(r.Name) + "." + subjectToken(env.Source), data: data, id: env.MsgID})
			}
		}
	}
	lastByStream, err := t.publishAll(ctx, pubs)
	if err != nil {
		return fmt.Errorf("tracker: publish events: %w", err)
	}
	for _, env := range r.events {
		t.o.Metrics.events.WithLabelValues(string(env.Event.Type)).Inc()
		t.log.Info("event", "event", env.Event.Type, "call_id", env.Event.ID, "ext", env.Event.PhoneExtension, "source", env.Source)
	}
	pubs = pubs[:0]
	for _, k := range r.changed {
		c := t.m.calls[k]
		if c == nil {
			continue
		}
		data, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("tracker: %w", err)
		}
		pubs = append(pubs, pending{subj: "$KV." + j.n.calls + "." + k, data: data})
	}
	if _, err := t.publishAll(ctx, pubs); err != nil {
		return fmt.Errorf("tracker: save calls: %w", err)
	}
	// The events are safe to deliver now: a restart will not fold their
	// signals again.
	t.commitTo(lastByStream[j.n.events])
	t.commitSinks(lastByStream)
	t.live.update(t.m, r.changed)
	t.live.update(t.m, r.deleted)
	if t.o.OnCommitted != nil && len(r.events) > 0 {
		t.o.OnCommitted(r.events)
	}
	for _, k := range r.deleted {
		if err := j.calls.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.log.Warn("tracker: forget call", "err", err)
		}
	}
	t.o.Metrics.calls.Set(float64(len(t.m.calls)))
	return nil
}

// publishAll publishes msgs asynchronously and waits for every ack; what
// failed is retried one by one until it succeeds or ctx ends (the journal
// being briefly unavailable must stall the tracker, not lose state).
func (t *Tracker) publishAll(ctx context.Context, msgs []pending) (last map[string]uint64, err error) {
	last = map[string]uint64{}
	note := func(ack *jetstream.PubAck) { last[ack.Stream] = max(last[ack.Stream], ack.Sequence) }
	js := t.o.Journal.js
	acks, errs, err := publishPipelined(ctx, js, msgs)
	if err != nil {
		return nil, err
	}
	var failed []int
	for i, ack := range acks {
		if errs[i] != nil {
			failed = append(failed, i)
			continue
		}
		note(ack)
	}
	for _, i := range failed {
		m := msgs[i]
		err := retry(ctx, &t.publishErr, func() error {
			var opts []jetstream.PublishOpt
			if m.id != "" {
				opts = append(opts, jetstream.WithMsgID(m.id))
			}
			ack, err := js.Publish(ctx, m.subj, m.data, opts...)
			if err == nil {
				note(ack)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return last, nil
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
// r logs the first failure, each change of failure and the recovery.
func retry(ctx context.Context, r *retryState, f func() error) error {
	delay := 50 * time.Millisecond
	failing := false
	for {
		err := f()
		failing = r.note(err, failing)
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
