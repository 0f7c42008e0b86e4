// Package board is the bridge's live call board: one page, served by the
// bridge itself, that shows an operator the calls in progress, the last
// events and what became of them at each sink, the health of sources,
// journal, breaker and quota, and a chart of the last hour.
//
// The board is fed by the tracker (Committed, the events as they are
// journaled) and the dispatcher (Delivered, every attempt's outcome), and
// reads the rest when it draws (Feeds). What it sends to browsers is built
// once per change and shared by every open board, so ten boards cost little
// more than one. Numbers are formatted, and with Options.Mask reduced to
// their last four digits, before they leave the process.
package board

import (
	"context"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// Defaults for Options.
const (
	DefaultMaxCalls  = 200
	DefaultMaxEvents = 50
	// DefaultEndedFor is how long an ended call stays on the board, marked
	// ended, before its row is freed.
	DefaultEndedFor = 8 * time.Second
	// DefaultHealthEvery is how often health, the chart and the reasons of
	// waiting events are read while a board is open.
	DefaultHealthEvery = 2 * time.Second
	// DefaultKeepAlive is how often an idle stream gets a comment, so
	// proxies keep it open and a vanished browser is noticed.
	DefaultKeepAlive = 15 * time.Second
	// DefaultMaxStreams bounds the open streams; past it a browser polls.
	DefaultMaxStreams = 64
)

// eventRing is how many recent events the board remembers.
const eventRing = 200

// Options configure a board.
type Options struct {
	// Token is ADMIN_TOKEN: who logs in with it may see the board and
	// replay dead letters. Empty: nobody logs in.
	Token string
	// Allow (BOARD_ALLOW_CIDRS) are networks that see the board without
	// logging in; they cannot replay.
	Allow []netip.Prefix
	// Mask (BOARD_MASK_NUMBERS) shows only the last four digits of
	// customers' numbers; the rest never leaves the process.
	Mask bool
	// Region (PHONE_REGION): its numbers are shown in national format.
	Region string
	// Sinks names the sinks every event goes to (default "robin").
	Sinks []string
	// Done, when closed, ends every stream (the bridge is draining; an open
	// stream would hold its shutdown).
	Done <-chan struct{}
	// WriteTimeout is the server's HTTP_WRITE_TIMEOUT: a stream extends its
	// write deadline by this much before every write.
	WriteTimeout time.Duration
	Logger       *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time

	MaxCalls, MaxEvents int           // shown at most (defaults above)
	EndedFor            time.Duration // default DefaultEndedFor
	HealthEvery         time.Duration // default DefaultHealthEvery
	KeepAlive           time.Duration // default DefaultKeepAlive
	MaxStreams          int           // default DefaultMaxStreams
	// MinInterval is the least time between two builds of the same part,
	// so a burst of changes is sent once (default 250ms).
	MinInterval time.Duration
}

// Board is one bridge's board. Its hooks (Committed, Delivered) may be used
// before Mount, from any goroutine.
type Board struct {
	o   Options
	log *slog.Logger
	now func() time.Time

	mu       sync.Mutex
	nums     *numbers
	rows     []*eventRow // ring of the last eventRing events, oldest first
	seq      uint64      // events seen
	byMsg    map[string]*eventRow
	chart    chart
	changed  chan struct{} // closed and replaced when rows or the chart change
	deadSeen bool          // an event was dead-lettered or replayed: read the list again
	prevLive map[string]events.LiveCall
	liveAt   time.Time   // when prevLive was read
	ended    []endedCall // calls gone from the live view, newest last
	sources  map[string]*sourceSeen
	dead     []events.StoredDeadLetter // the dead letters waiting, as last read
	deadN    uint64
	further  []string // sinks beyond Options.Sinks, from the health they report

	feeds  Feeds
	pub    *publisher
	assets *assetSet
}

// eventRow is one recent event and its state at each sink.
type eventRow struct {
	env   events.Envelope
	seq   uint64
	sinks []Delivery
}

type endedCall struct {
	call events.LiveCall
	at   time.Time
}

type sourceSeen struct {
	ok         bool
	since      time.Time
	lastSignal int64 // Unix ms
}

// New returns a board; Mount serves it.
func New(o Options) *Board {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if len(o.Sinks) == 0 {
		o.Sinks = []string{"robin"}
	}
	if o.MaxCalls <= 0 {
		o.MaxCalls = DefaultMaxCalls
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = DefaultMaxEvents
	}
	if o.EndedFor <= 0 {
		o.EndedFor = DefaultEndedFor
	}
	if o.HealthEvery <= 0 {
		o.HealthEvery = DefaultHealthEvery
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = DefaultKeepAlive
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = DefaultMaxStreams
	}
	if o.MinInterval <= 0 {
		o.MinInterval = 250 * time.Millisecond
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 30 * time.Second
	}
	b := &Board{
		o: o, log: o.Logger, now: o.Now,
		nums:    newNumbers(o.Region, o.Mask),
		byMsg:   map[string]*eventRow{},
		changed: make(chan struct{}),
		sources: map[string]*sourceSeen{},
	}
	b.pub = newPublisher(b)
	return b
}

// Committed takes a batch of events as the tracker journaled them
// (events.TrackerOptions.OnCommitted). It only updates memory.
func (b *Board) Committed(batch []events.Envelope) {
	if b == nil || len(batch) == 0 {
		return
	}
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.chart.addEvents(now, len(batch))
	for _, env := range batch {
		if _, ok := b.byMsg[env.MsgID]; ok {
			continue // a restart's replay of a batch already seen
		}
		b.seq++
		r := &eventRow{env: env, seq: b.seq, sinks: make([]Delivery, len(b.o.Sinks))}
		for i, s := range b.o.Sinks {
			r.sinks[i] = Delivery{Sink: s, State: StateQueued, Reason: "queued"}
		}
		if len(b.rows) == eventRing {
			delete(b.byMsg, b.rows[0].env.MsgID)
			b.rows = append(b.rows[:0], b.rows[1:]...)
		}
		b.rows = append(b.rows, r)
		b.byMsg[env.MsgID] = r
	}
	b.touchLocked()
}

// Delivered takes the outcome of one delivery attempt
// (events.DispatcherOptions.OnDelivery). It only updates memory.
func (b *Board) Delivered(o events.DeliveryOutcome) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if o.Outcome == "delivered" {
		b.chart.addDelivered(o.At, o.Age)
	} else {
		b.chart.addFailed(o.At)
	}
	if o.Outcome == "permanent" {
		b.deadSeen = true
	}
	if r := b.rowLocked(o.Env.MsgID); r != nil {
		d := r.sink(o.Sink)
		if d == nil {
			r.sinks = append(r.sinks, Delivery{Sink: o.Sink})
			d = &r.sinks[len(r.sinks)-1]
		}
		*d = Delivery{Sink: o.Sink, Status: o.Status, Attempts: o.Attempt, At: o.At,
			LatencyMS: ms(o.Latency), AgeMS: ms(o.Age)}
		switch o.Outcome {
		case "delivered":
			d.State = StateDelivered
		case "permanent":
			d.State, d.Reason = StateDead, o.Error
		default: // retryable, auth, rate_limited: it waits
			d.State, d.Reason, d.Error = StateQueued, o.Outcome, o.Error
			if o.Outcome == "retryable" {
				d.Reason = "retrying"
			}
		}
	}
	b.touchLocked()
}

// rowLocked finds the row of msgID; a replayed dead letter is journaled as
// "<msg id>|replay|<dead letter id>" and belongs to its original's row.
func (b *Board) rowLocked(msgID string) *eventRow {
	if r, ok := b.byMsg[msgID]; ok {
		return r
	}
	if orig, _, ok := strings.Cut(msgID, "|replay|"); ok {
		return b.byMsg[orig]
	}
	return nil
}

func (r *eventRow) sink(name string) *Delivery {
	for i := range r.sinks {
		if r.sinks[i].Sink == name {
			return &r.sinks[i]
		}
	}
	return nil
}

// touchLocked tells the publisher that rows or the chart changed.
func (b *Board) touchLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// replayed notes that the dead letter dl was queued again from the board.
func (b *Board) replayed(dl events.StoredDeadLetter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deadSeen = true
	if r := b.rowLocked(dl.Envelope.MsgID); r != nil {
		for i := range r.sinks {
			if r.sinks[i].State == StateDead {
				r.sinks[i] = Delivery{Sink: r.sinks[i].Sink, State: StateQueued, Reason: "replayed", At: b.now()}
			}
		}
	}
	b.touchLocked()
}

func ms(d time.Duration) float64 {
	return float64(d.Microseconds()) / 1000
}

// Feeds are what the board reads of a running bridge when it draws.
type Feeds struct {
	// Live is the tracker's view of calls in progress and a channel closed
	// at the next change (events.Tracker.Live).
	Live func() ([]events.LiveCall, <-chan struct{})
	// Pending lists the events waiting for delivery and why
	// (events.Dispatcher.Pending).
	Pending func(limit int) []events.PendingEvent
	// Health reads the sources, journal, sinks and quota.
	Health func(ctx context.Context) Health
	// DeadLetters lists the dead letters, oldest first, at most limit.
	DeadLetters func(ctx context.Context, limit int) ([]events.StoredDeadLetter, error)
	// Replay queues the dead letter id for delivery again.
	Replay func(ctx context.Context, id uint64) error
	// AgentName, when set, names the agent on PBX extension ext of source.
	AgentName func(source, ext string) string
}
