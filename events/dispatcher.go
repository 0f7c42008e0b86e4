package events

import (
	"context"
	"errors"
	"fmt"
	"github.com/voipbridge/voipbridge/backoff"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Priority orders deliveries when the quota is scarce.
type Priority int

// Priorities, most urgent first.
const (
	// PriorityPresence is for presence look-ups (not events).
	PriorityPresence Priority = iota
	// PriorityAnswered is an Answered of a call still in progress: an agent
	// is waiting for the caller's screen.
	PriorityAnswered
	// PriorityNormal is everything else, in arrival order.
	PriorityNormal
	// PriorityLow is for sinks that may wait behind register-event (the
	// missed-call follow-ups in ROBIN).
	PriorityLow
)

// String returns the metric label of p.
func (p Priority) String() string {
	switch p {
	case PriorityPresence:
		return "presence"
	case PriorityAnswered:
		return "answered"
	case PriorityLow:
		return "low"
	}
	return "normal"
}

// Limiter decides when the next request may start (the quota). Acquire
// blocks until a request of priority p may start and records it as in
// flight; release is called once when its answer arrived or it failed, with
// sent false only when the request certainly never reached the helpdesk.
type Limiter interface {
	Acquire(ctx context.Context, p Priority) (release func(sent bool), err error)
}

// Gate is the circuit breaker seam: Allow returns a done func to report the
// outcome of one request, or an error while the helpdesk is considered down.
type Gate interface {
	Allow() (done func(error), err error)
}

// DispatcherOptions configure delivery.
type DispatcherOptions struct {
	// Queue is where events come from and are settled; nil means the
	// Journal's events (NewJournalQueue).
	Queue   Queue
	Journal *Journal
	Sink    Sink
	Limiter Limiter // nil: no quota
	Gate    Gate    // nil: no breaker
	Logger  *slog.Logger
	Metrics *Metrics
	// Workers is how many deliveries may be in flight at once (different
	// calls only; one call's events go one at a time). Default 4.
	Workers int
	// Backoff bounds the retry delay after a helpdesk failure (default 1s to 5m).
	BackoffMin, BackoffMax time.Duration
	// AuthProbe is how often delivery is retried while the key is refused (default 1m).
	AuthProbe time.Duration
	// MaxBuffered bounds the events held in memory (default 10 000); the rest wait in the journal.
	MaxBuffered int
	// Name names the sink in outcomes and snapshots (default "robin").
	Name string
	// OnDelivery, when set, is told the outcome of every attempt, from the
	// worker that made it: keep it short.
	OnDelivery func(DeliveryOutcome)
	// Now is the clock (default time.Now); waits use the runtime's timers,
	// so tests of timing run in a testing/synctest bubble.
	Now func() time.Time
	// SettleAttempt bounds one attempt to remove or dead-letter an event
	// (default 1s). The first attempt is on the worker's path; when it fails the
	// retries go on beside delivery until one succeeds or the dispatcher stops,
	// so a journal that is electing a leader delays a delivery by one attempt.
	SettleAttempt time.Duration
	// Priority is the quota priority of this sink's requests other than an
	// Answered still in progress (default PriorityNormal).
	Priority Priority
	// Committed, when set, holds back each event until the tracker that
	// journaled it has also saved the call records behind it (*Tracker
	// satisfies it). An event delivered (and removed) before that could be
	// journaled again by a restart's replay, and the journal no longer
	// remembers the id of a removed event once it restarts: it would be
	// sent twice.
	Committed Committer
}

// Committer tells how far journaled events are safe to deliver.
type Committer interface {
	// WaitCommitted returns once every event up to the EVENTS stream
	// sequence seq is committed, or with ctx's error.
	WaitCommitted(ctx context.Context, seq uint64) error
}

// item is one journaled event waiting for delivery.
type item struct {
	env       Envelope
	seq       uint64
	received  time.Time
	attempts  int
	notBefore time.Time
	wait      string // why it waits: "", "quota", "sending", "retrying", "breaker"
}

// lane holds one call's events in order.
type lane struct {
	items    []*item
	inflight bool
}

// Dispatcher delivers journaled events to the sink, in order per call, and
// removes each from the journal only after the sink accepted it: a crash
// between the helpdesk's 2xx and the removal repeats one event, never loses one.
type Dispatcher struct {
	o   DispatcherOptions
	log *slog.Logger
	now func() time.Time

	// settling: removals and dead letters in progress, off the workers'
	// path; settleCtx ends them after the drain.
	settling  sync.WaitGroup
	settleCtx context.Context
	settleErr retryState

	mu       sync.Mutex
	wake     chan struct{} // closed and replaced when something changes
	lanes    map[string]*lane
	buffered int
	paused   time.Time // no delivery before this
	reason   string    // why delivery is paused
	failing  bool      // a retryable failure is being retried (log once)
	probing  bool      // after a pause, one delivery is in flight as the probe
}

// NewDispatcher prepares delivery; Run starts it.
func NewDispatcher(o DispatcherOptions) *Dispatcher {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = NewMetrics(nil)
	}
	if o.Name == "" {
		o.Name = "robin"
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.BackoffMin <= 0 {
		o.BackoffMin = time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	if o.AuthProbe <= 0 {
		o.AuthProbe = time.Minute
	}
	if o.MaxBuffered <= 0 {
		o.MaxBuffered = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}

	if o.SettleAttempt <= 0 {
		o.SettleAttempt = time.Second
	}
	for _, p := range []Priority{PriorityAnswered, PriorityNormal} {
		o.Metrics.queueDepth.WithLabelValues(o.Name, p.String()).Set(0)
		o.Metrics.oldest.WithLabelValues(o.Name, p.String()).Set(0)
	}
	d := &Dispatcher{o: o, log: o.Logger, now: o.Now, lanes: map[string]*lane{}, wake: make(chan struct{})}
	d.settleErr = retryState{log: o.Logger, what: "removing delivered events from the journal"}
	return d
}

// Paused returns why delivery is paused, or "".
func (d *Dispatcher) Paused() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.now().Before(d.paused) {
		return d.reason
	}
	return ""
}

// Run delivers until ctx is cancelled; deliveries in flight then finish (or
// stay journaled), and removals in progress get a few seconds, before it
// returns.
func (d *Dispatcher) Run(ctx context.Context) error {
	q := d.o.Queue
	if q == nil {
		jq := NewJournalQueue(d.o.Journal)
		defer jq.Close()
		q = jq
	}
	settleCtx, stopSettling := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSettling()
	d.settleCtx = settleCtx
	var wg sync.WaitGroup
	for range d.o.Workers {
		wg.Go(func() { d.work(ctx, q) })
	}
	wg.Go(func() { d.gauges(ctx, q) })
	readErr := make(chan error, 1)
	go func() { readErr <- d.read(ctx, q) }()
	var rerr error
	select {
	case <-ctx.Done():
	case rerr = <-readErr:
	}
	d.signal()
	wg.Wait()
	// Removals still failing get a grace period, then stay undone: those
	// events are sent once more after a restart.
	settled := make(chan struct{})
	go func() { d.settling.Wait(); close(settled) }()
	grace := time.NewTimer(10 * time.Second)
	defer grace.Stop()
	select {
	case <-settled:
	case <-grace.C:
		stopSettling()
		<-settled
	}
	if ctx.Err() != nil {
		return nil
	}
	return rerr
}

// read moves journaled events into the lanes, holding back while the buffer is full.
func (d *Dispatcher) read(ctx context.Context, q Queue) error {
	for {
		qe, err := q.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return nil
			}
			return fmt.Errorf("dispatcher: %w", err)
		}
		if d.o.Committed != nil {
			if err := d.o.Committed.WaitCommitted(ctx, qe.Seq); err != nil {
				return nil // shutting down
			}
		}
		it := &item{env: qe.Env, seq: qe.Seq, received: qe.Received}
		if qe.Unreadable != nil {
			d.log.Error("dispatcher: unreadable event; dead-lettering it", "seq", qe.Seq)
			d.deadLetter(q, it, 0, string(qe.Unreadable), "unreadable")
			continue
		}
		for {
			d.mu.Lock()
			full := d.buffered >= d.o.MaxBuffered
			wake := d.wake
			if !full {
				l := d.lanes[it.env.CallKey]
				if l == nil {
					l = &lane{}
					d.lanes[it.env.CallKey] = l
				}
				l.items = append(l.items, it)
				d.buffered++
				d.broadcastLocked()
			}
			d.mu.Unlock()
			if !full {
				break
			}
			select {
			case <-ctx.Done():
				return nil
			case <-wake:
			}
		}
	}
}

func (d *Dispatcher) signal() {
	d.mu.Lock()
	d.broadcastLocked()
	d.mu.Unlock()
}

func (d *Dispatcher) broadcastLocked() {
	close(d.wake)
	d.wake = make(chan struct{})
}

// next waits for the most urgent deliverable event and marks its lane busy.
func (d *Dispatcher) next(ctx context.Context) (*item, *lane) {
	for {
		if ctx.Err() != nil {
			// Shutting down: what is queued stays in the journal.
			return nil, nil
		}
		d.mu.Lock()
		now := d.now()
		wait := time.Duration(-1)
		var best *item
		var bestLane *lane
		bestPrio := PriorityNormal + 1
		if now.Before(d.paused) {
			wait = d.paused.Sub(now)
		} else if d.reason != "" && d.probing {
			// Paused until a probe succeeds: one at a time.
		} else {
			for _, l := range d.lanes {
				if l.inflight || len(l.items) == 0 {
					continue
				}
				it := l.items[0]
				if now.Before(it.notBefore) {
					if w := it.notBefore.Sub(now); wait < 0 || w < wait {
						wait = w
					}
					continue
				}
				p := priorityOf(l)
				if best == nil || p < bestPrio || (p == bestPrio && it.seq < best.seq) {
					best, bestLane, bestPrio = it, l, p
				}
			}
		}
		if best != nil {
			bestLane.inflight = true
			if d.reason != "" {
				d.probing = true
			}
			d.mu.Unlock()
			return best, bestLane
		}
		wake := d.wake
		d.mu.Unlock()
		var timer <-chan time.Time
		if wait >= 0 {
			t := time.NewTimer(wait)
			defer t.Stop()
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return nil, nil
		case <-wake:
		case <-timer:
		}
	}
}

// priorityOf: an Answered whose call has nothing later queued is still in
// progress, as far as delivery can tell: the agent is waiting for it.
func priorityOf(l *lane) Priority {
	it := l.items[0]
	if it.env.Event.Type == EventAnswered && it.env.InProgress && len(l.items) == 1 {
		return PriorityAnswered
	}
	return PriorityNormal
}

func (d *Dispatcher) work(ctx context.Context, q Queue) {
	for {
		it, l := d.next(ctx)
		if it == nil {
			return
		}
		d.deliver(ctx, q, it, l)
	}
}

// deliver makes one attempt and applies the failure policy to its outcome.
// The breaker is asked before the quota, so a request it refuses takes no
// place in any window: an outage of any length leaves the quota as it was.
func (d *Dispatcher) deliver(ctx context.Context, q Queue, it *item, l *lane) {
	setWait := func(w string) {
		d.mu.Lock()
		it.wait = w
		d.mu.Unlock()
	}
	release := func(done bool) {
		d.mu.Lock()
		l.inflight = false
		d.probing = false
		if done {
			l.items = l.items[1:]
			d.buffered--
			if len(l.items) == 0 {
				delete(d.lanes, it.env.CallKey)
			}
		}
		d.broadcastLocked()
		d.mu.Unlock()
	}
	var gateDone func(error)
	if d.o.Gate != nil {
		var err error
		if gateDone, err = d.o.Gate.Allow(); err != nil {
			// The breaker is open: wait for its next probe slot.
			it.notBefore = d.now().Add(d.o.BackoffMin)
			setWait("breaker")
			release(false)
			return
		}
	}
	quotaDone := func(bool) {}
	if d.o.Limiter != nil {
		d.mu.Lock()
		p := priorityOf(l)
		if d.o.Priority > p {
			p = d.o.Priority
		}
		it.wait = "quota"
		d.mu.Unlock()
		r, err := d.o.Limiter.Acquire(ctx, p)
		if err != nil {
			if gateDone != nil {
				gateDone(context.Canceled) // not sent: counts neither way
			}
			if ctx.Err() == nil {
				d.log.Warn("dispatcher: quota record unavailable", "err", err)
				it.notBefore = d.now().Add(d.o.BackoffMin)
			}
			release(false)
			return
		}
		quotaDone = r
	}
	// An attempt in flight finishes even during shutdown: cutting it off
	// would turn a delivered event into an unknown one.
	sendCtx := context.WithoutCancel(ctx)
	setWait("sending")
	sent := d.now()
	var err error
	if es, ok := d.o.Sink.(EnvelopeSink); ok {
		err = es.SendEnvelope(sendCtx, it.env)
	} else {
		err = d.o.Sink.Send(sendCtx, it.env.Event)
	}
	quotaDone(err == nil || !NotSentOf(err))
	if gateDone != nil {
		gateDone(err)
	}
	d.mu.Lock()
	it.attempts++
	it.wait = "retrying"
	d.mu.Unlock()
	d.outcome(it, sent, err)
	if err == nil {
		d.o.Metrics.deliveries.WithLabelValues(d.o.Name, "2xx", "ok").Inc()
		d.remove(q, it)
		d.recovered()
		release(true)
		return
	}
	class := ClassOf(err)
	d.o.Metrics.deliveries.WithLabelValues(d.o.Name, statusLabel(err), class.String()).Inc()
	switch class {
	case Permanent:
		d.log.Warn("helpdesk rejected event; dead-lettered", "call_id", it.env.Event.ID, "event", it.env.Event.Type, "err", err)
		d.deadLetter(q, it, statusOf(err), bodyOf(err), class.String())
		release(true)
	case RateLimited:
		wait, ok := RetryAfterOf(err)
		if !ok {
			wait = time.Minute
		}
		wait = min(wait, 10*time.Minute)
		d.pause(wait, "rate_limited", err)
		release(false)
	case Auth:
		d.pause(d.o.AuthProbe, "auth", err)
		release(false)
	default:
		it.notBefore = d.now().Add(d.backoff(it.attempts))
		d.mu.Lock()
		first := !d.failing
		d.failing = true
		d.mu.Unlock()
		if first {
			d.log.Warn("helpdesk failing; retrying with backoff", "call_id", it.env.Event.ID, "attempt", it.attempts, "err", err)
		}
		release(false)
	}
}

// DeliveryOutcome is what one attempt to deliver an event came to.
type DeliveryOutcome struct {
	Sink    string        `json:"sink"`
	Env     Envelope      `json:"envelope"`
	Attempt int           `json:"attempt"`
	At      time.Time     `json:"at"`      // when the answer came
	Latency time.Duration `json:"latency"` // of this request
	// Age is from the event being journaled to this answer.
	Age time.Duration `json:"age"`
	// Outcome is "delivered", or the failure's class: "retryable",
	// "permanent" (dead-lettered), "auth" or "rate_limited".
	Outcome string `json:"outcome"`
	Status  int    `json:"status,omitempty"`
	Error   string `json:"error,omitempty"`
}

func (d *Dispatcher) outcome(it *item, sent time.Time, err error) {
	if d.o.OnDelivery == nil {
		return
	}
	now := d.now()
	o := DeliveryOutcome{Sink: d.o.Name, Env: it.env, Attempt: it.attempts, At: now, Latency: now.Sub(sent), Age: now.Sub(it.received), Outcome: "delivered"}
	if err != nil {
		o.Outcome, o.Status, o.Error = ClassOf(err).String(), statusOf(err), err.Error()
	}
	d.o.OnDelivery(o)
}

// PendingEvent is an event waiting for delivery, and why it waits.
type PendingEvent struct {
	Sink     string    `json:"sink"`
	Env      Envelope  `json:"envelope"`
	Received time.Time `json:"received"`
	Attempts int       `json:"attempts"`
	// Reason: "queued" (its turn has not come: an earlier event of its
	// call, or other calls first), "sending", "quota", "retrying" (after a
	// failure, with backoff), "breaker", "rate_limited" or "auth" (all
	// delivery paused).
	Reason string `json:"reason"`
}

// Pending returns the events held for delivery, oldest first, at most
// limit (0: all). Events still only in the journal (beyond MaxBuffered)
// are not listed.
func (d *Dispatcher) Pending(limit int) []PendingEvent {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	paused := ""
	if now.Before(d.paused) || (d.reason != "" && d.probing) {
		paused = d.reason
	}
	var out []PendingEvent
	for _, l := range d.lanes {
		for i, it := range l.items {
			p := PendingEvent{Sink: d.o.Name, Env: it.env, Received: it.received, Attempts: it.attempts, Reason: "queued"}
			switch {
			case i == 0 && l.inflight:
				p.Reason = it.wait
			case paused != "":
				p.Reason = paused
			case i == 0 && now.Before(it.notBefore) && it.wait != "":
				p.Reason = it.wait
			}
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b PendingEvent) int { return a.Received.Compare(b.Received) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// pause stops all delivery for wait.
func (d *Dispatcher) pause(wait time.Duration, reason string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if d.reason != reason || now.After(d.paused) {
		d.log.Warn("delivery paused", "reason", reason, "for", wait.String(), "err", err)
	}
	d.paused, d.reason = now.Add(wait), reason
	d.o.Metrics.paused.WithLabelValues(d.o.Name, reason).Set(1)
}

// recovered notes a success after failures or a pause.
func (d *Dispatcher) recovered() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.failing || d.reason != "" {
		d.log.Info("delivery recovered")
		if d.reason != "" {
			d.o.Metrics.paused.WithLabelValues(d.o.Name, d.reason).Set(0)
		}
	}
	d.failing, d.reason, d.paused = false, "", time.Time{}
}

func (d *Dispatcher) backoff(attempt int) time.Duration {
	return backoff.Delay(attempt, d.o.BackoffMin, d.o.BackoffMax)
}

// remove takes a delivered event out of the journal, off the worker's path.
func (d *Dispatcher) remove(q Queue, it *item) {
	seq := it.seq
	d.settle(it, func(ctx context.Context) error { return q.Remove(ctx, seq) })
}

// DeadLetter is an event the helpdesk rejected, as kept in DEADLETTERS.
type DeadLetter struct {
	Envelope Envelope `json:"envelope"`
	// Sink is the sink that rejected it ("robin" for register-event);
	// a replay queues it for that sink only.
	Sink   string    `json:"sink,omitempty"`
	Status int       `json:"status,omitempty"`
	Body   string    `json:"body,omitempty"`
	Reason string    `json:"reason"`
	Time   time.Time `json:"time"`
}

// deadLetter keeps the event with the helpdesk's answer and removes it from
// the queue, off the worker's path.
func (d *Dispatcher) deadLetter(q Queue, it *item, status int, body, reason string) {
	if len(body) > 1024 {
		body = body[:1024]
	}
	dl := DeadLetter{Envelope: it.env, Sink: d.o.Name, Status: status, Body: body, Reason: reason, Time: d.now().UTC()}
	seq := it.seq
	d.settle(it, func(ctx context.Context) error { return q.DeadLetter(ctx, seq, dl) })
}

// settle runs f once on the worker's path, bounded by SettleAttempt, so
// that while the journal answers a delivered event is removed before the
// worker moves on (a crash then repeats only what was in flight). When that
// attempt fails, the retries go on in the background, in attempts of
// SettleAttempt, until one succeeds or settling is stopped after the drain;
// then the event stays journaled and is delivered once more after a
// restart. A journal electing a leader so delays no delivery by more than
// one attempt.
func (d *Dispatcher) settle(it *item, f func(ctx context.Context) error) {
	ctx := d.settleCtx
	if ctx == nil {
		ctx = context.Background()
	}
	attempt := func() error {
		actx, cancel := context.WithTimeout(ctx, d.o.SettleAttempt)
		defer cancel()
		return f(actx)
	}
	err := attempt()
	if err == nil {
		return
	}
	failing := d.settleErr.note(err, false, "call_id", it.env.Event.ID, "seq", it.seq)
	d.settling.Go(func() {
		delay := 50 * time.Millisecond
		for {
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				d.settleErr.note(nil, true)
				d.log.Error("dispatcher: delivered event not removed from the journal; it will be sent again after a restart", "call_id", it.env.Event.ID, "seq", it.seq, "err", err)
				return
			case <-t.C:
			}
			delay = min(2*delay, time.Second)
			err = attempt()
			failing = d.settleErr.note(err, failing, "call_id", it.env.Event.ID, "seq", it.seq)
			if err == nil {
				return
			}
		}
	})
}

// retryState logs a retry loop's first failure, every change of failure and
// its recovery, once each, however many attempts and concurrent loops
// (each a failing item) share it.
type retryState struct {
	log  *slog.Logger
	what string

	mu      sync.Mutex
	failing int    // loops currently failing
	last    string // the failure being retried
}

// note records the outcome of one attempt of a loop; wasFailing is whether
// that loop's previous attempt failed, and the result whether this one did.
func (r *retryState) note(err error, wasFailing bool, attrs ...any) (failing bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case err == nil && wasFailing:
		r.failing--
		if r.failing == 0 {
			r.log.Info(r.what+": recovered", attrs...)
			r.last = ""
		}
	case err != nil:
		if !wasFailing {
			r.failing++
		}
		if err.Error() != r.last {
			r.log.Warn(r.what+": failing; retrying", append(attrs, "err", err)...)
			r.last = err.Error()
		}
	}
	return err != nil
}

// gauges publishes queue depth and age.
func (d *Dispatcher) gauges(ctx context.Context, q Queue) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		depth := map[Priority]int{}
		oldest := map[Priority]time.Time{}
		d.mu.Lock()
		for _, l := range d.lanes {
			p := priorityOf(l)
			for _, it := range l.items {
				depth[p]++
				if o, ok := oldest[p]; !ok || it.received.Before(o) {
					oldest[p] = it.received
				}
			}
		}
		d.mu.Unlock()
		for _, p := range []Priority{PriorityAnswered, PriorityNormal} {
			d.o.Metrics.queueDepth.WithLabelValues(d.o.Name, p.String()).Set(float64(depth[p]))
			age := 0.0
			if o, ok := oldest[p]; ok {
				age = d.now().Sub(o).Seconds()
			}
			d.o.Metrics.oldest.WithLabelValues(d.o.Name, p.String()).Set(age)
		}
		if dc, ok := q.(interface {
			DeadCount(context.Context) (uint64, error)
		}); ok {
			if n, err := dc.DeadCount(ctx); err == nil {
				d.o.Metrics.dead.Set(float64(n))
			}
		}
	}
}

func statusOf(err error) int {
	var s interface{ StatusCode() int }
	if errors.As(err, &s) {
		return s.StatusCode()
	}
	return 0
}

// bodyOf returns the helpdesk's answer if the error carries it, else the error text.
func bodyOf(err error) string {
	var b interface{ ResponseBody() string }
	if errors.As(err, &b) && b.ResponseBody() != "" {
		return b.ResponseBody()
	}
	return err.Error()
}

func statusLabel(err error) string {
	if s := statusOf(err); s > 0 {
		return fmt.Sprintf("%dxx", s/100)
	}
	return "error"
}
