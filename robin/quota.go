package robin

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"github.com/voipbridge/voipbridge/events"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultWindows is ROBIN's documented API limit per subscription, counted
// over every request: 3 per second, 180 per minute, 10 000 per hour and
// 100 000 per day. It is the default of ROBIN_RATE_LIMITS.
const DefaultWindows = "3/1s,180/1m,10000/1h,100000/24h"

// DefaultQuotaShare is the default of ROBIN_QUOTA_SHARE: the bridge may use
// the whole quota.
const DefaultQuotaShare = 1.0

// DefaultPresenceReserve is the default of ROBIN_PRESENCE_RESERVE: a tenth of
// every window is kept for presence look-ups.
const DefaultPresenceReserve = 0.10

// Window is one rolling-window limit: at most Limit requests may start in any
// interval of length Per, wherever it begins.
type Window struct {
	Limit int
	Per   time.Duration
}

// String formats the window the way ParseWindows reads it, for example
// "3/1s", "180/1m" or "100000/1d".
func (w Window) String() string {
	return strconv.Itoa(w.Limit) + "/" + formatQuotaDuration(w.Per)
}

func formatQuotaDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d > 0 && d%day == 0:
		return strconv.FormatInt(int64(d/day), 10) + "d"
	case d > 0 && d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d > 0 && d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	case d > 0 && d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// Bounds that keep every window's arithmetic far from int64 overflow.
const (
	quotaMaxLimit   = 1 << 30
	quotaMaxPer     = 366 * 24 * time.Hour
	quotaMaxWindows = 16
)

// ParseWindows parses a list of rolling-window limits such as
// "3/1s,180/1m,10000/1h,100000/24h" (the ROBIN_RATE_LIMITS syntax): comma
// separated N/duration entries, the duration in Go syntax or with a leading
// whole number of days ("1d", "1d12h"). Limits are positive integers,
// durations positive and at most 366 days, and no duration may appear twice.
// Errors name the offending entry.
func ParseWindows(s string) ([]Window, error) {
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("rate limits: empty list, want e.g. " + DefaultWindows)
	}
	entries := strings.Split(s, ",")
	out := make([]Window, 0, len(entries))
	seen := make(map[time.Duration]string, len(entries))
	for i, raw := range entries {
		e := strings.TrimSpace(raw)
		if e == "" {
			return nil, fmt.Errorf("rate limit entry %d is empty", i+1)
		}
		n, d, ok := strings.Cut(e, "/")
		if !ok {
			return nil, fmt.Errorf("rate limit %q: want N/duration, e.g. 3/1s", e)
		}
		limit, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || limit < 1 || limit > quotaMaxLimit {
			return nil, fmt.Errorf("rate limit %q: limit must be a whole number from 1 to %d", e, quotaMaxLimit)
		}
		per, err := parseQuotaDuration(strings.TrimSpace(d))
		if err != nil {
			return nil, fmt.Errorf("rate limit %q: %w", e, err)
		}
		if prev, dup := seen[per]; dup {
			return nil, fmt.Errorf("rate limit %q: window %s already given by %q", e, formatQuotaDuration(per), prev)
		}
		seen[per] = e
		out = append(out, Window{Limit: limit, Per: per})
	}
	return out, nil
}

// parseQuotaDuration reads a Go duration, optionally led by a whole number of
// days ("1d", "2d12h"), which time.ParseDuration does not know.
func parseQuotaDuration(s string) (time.Duration, error) {
	var total time.Duration
	rest := s
	if days, after, ok := strings.Cut(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 16)
		if err != nil {
			return 0, fmt.Errorf("duration %q: days must be a whole number, as in 1d", s)
		}
		total = time.Duration(n) * 24 * time.Hour
		rest = after
	}
	if rest != "" {
		d, err := time.ParseDuration(rest)
		if err != nil {
			return 0, fmt.Errorf("duration %q: want Go syntax such as 1s, 1m, 1h or days such as 1d", s)
		}
		if d < 0 {
			return 0, fmt.Errorf("duration %q must be positive", s)
		}
		total += d
	}
	if total <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	if total > quotaMaxPer {
		return 0, fmt.Errorf("duration %q is longer than 366 days", s)
	}
	return total, nil
}

// Priority orders requests waiting for the quota: a lower value goes first.
// Presence look-ups may also use the presence reserve. It is the pipeline's
// priority, so the dispatcher hands its own straight to the quota.
type Priority = events.Priority

// Request priorities, most urgent first.
const (
	// PriorityPresence is a presence look-up that an IVR or call flow waits
	// on. It goes first and may use the whole quota, including the reserve.
	PriorityPresence = events.PriorityPresence
	// PriorityAnswered is an Answered event: an agent's screen waits on it.
	PriorityAnswered = events.PriorityAnswered
	// PriorityNormal is every other request (Transfer, Disconnected, look-ups).
	PriorityNormal = events.PriorityNormal
	// PriorityLow is for requests that may wait behind all of those
	// (missed-call follow-ups).
	PriorityLow = events.PriorityLow
)

// QuotaOptions configures a Quota.
type QuotaOptions struct {
	// Windows are the limits; nil or empty means DefaultWindows.
	Windows []Window
	// Share is the part of every limit the bridge may use, in (0, 1]
	// (ROBIN_QUOTA_SHARE): each limit becomes floor(Limit*Share), at least 1.
	// Zero means DefaultQuotaShare.
	Share float64
	// PresenceReserve is the part of every (shared) limit that only presence
	// look-ups may use, in [0, 1) (ROBIN_PRESENCE_RESERVE): other requests
	// may use limit-floor(limit*PresenceReserve) of each window, at least 1.
	// It is taken as given, so zero means no reserve; the configuration
	// layer supplies DefaultPresenceReserve.
	PresenceReserve float64
	// Store persists the record of started requests; nil keeps it in memory
	// only, so a restart forgets what was sent.
	Store QuotaStore
	// Now reads the wall clock; nil means time.Now. Reserve sleeps on the
	// runtime's timers, so a clock other than time.Now is only meaningful
	// with TryReserve and ReadyAt (tools and benchmarks). Tests of timing
	// use testing/synctest instead.
	Now func() time.Time
}

// WindowUsage is one window's state for metrics.
type WindowUsage struct {
	// Window is the window with the shared limit in effect.
	Window Window
	// Used is how many recorded requests the window currently holds.
	Used int
	// Remaining is how many more requests could start now under this
	// window alone if they were presence look-ups (Limit minus Used, not
	// below zero).
	Remaining int
}

// Quota decides when the bridge may start its next request to the helpdesk
// so that in no rolling window of any configured length more requests start
// than the window's limit, while a backlog still drains at the highest rate
// the windows allow.
//
// The helpdesk counts a request when it arrives, which is some unknown time
// after the Quota admitted it (the store write, the network). So a request
// taken with Acquire occupies a place in every window from its admission
// until its answer arrives (release), and the windows count it from the
// answer: the helpdesk received it between the two, so no spread of disk or
// network delay can put two requests closer together on the helpdesk's clock
// than the limits allow. (Proof: when request j is admitted at t, every
// earlier request i either is still in flight, and occupies a place, or was
// answered at d(i) <= t; it arrived at a(i) <= d(i), so if a(i) lies within
// a window before j's arrival a(j) >= t, then so does d(i), and the window
// counted it.) Reserve and TryReserve count a request at its admission, for
// requests whose sending is instant (tools and tests).
//
// With a Store, every admission is persisted (compare-and-set) before the
// request may start, a request in flight stored at its admission: a crash
// after the request was sent cannot give quota back, a restart cannot
// burst, and processes sharing one store share one quota. An answer moves
// the request to its answer's instant with the next admission's write.
// Another process (or a restart) counts a request in flight from its
// admission, not from its arrival at the helpdesk: the windows hold on the
// helpdesk's clock within one process, and across processes up to the
// spread of request latencies, which Share's headroom absorbs.
//
// The record is exact for windows up to one minute with limits up to 1000
// (a timestamp log) and counts other windows in buckets of 1/3600 of the
// window whose oldest, partly expired bucket still counts in full, so the
// Quota may admit a request up to one bucket (one second of an hour) later
// than an exact limiter, never earlier. The wall clock is the time base: if
// it jumps forward, recorded requests age faster than they should; if it
// steps back, new requests are recorded at the newest recorded instant.
// A Quota is safe for concurrent use.
type Quota struct {
	store   QuotaStore
	now     func() time.Time
	windows []Window // with Share applied

	// write serialises decide, record and store write (a one-slot
	// semaphore, so waiting for it honours the context).
	write chan struct{}

	mu      sync.Mutex
	st      quotaState
	rev     uint64
	waiters quotaWaiters
	seq     uint64
	flight  map[uint64]int64 // requests in flight: id -> admission instant
	// stored is the instant each request in flight has in the stored
	// record, so a reload does not count it twice.
	stored map[uint64]int64
	lastID uint64

	conflicts atomic.Uint64
}

// NewQuota validates the options and, with a Store, loads the persisted
// record so that requests sent before a restart keep counting.
func NewQuota(ctx context.Context, o QuotaOptions) (*Quota, error) {
	windows := o.Windows
	if len(windows) == 0 {
		var err error
		if windows, err = ParseWindows(DefaultWindows); err != nil {
			return nil, err
		}
	}
	share := o.Share
	if share == 0 {
		share = DefaultQuotaShare
	}
	if !(share > 0 && share <= 1) {
		return nil, fmt.Errorf("quota share %v: must be in (0, 1]", o.Share)
	}
	if !(o.PresenceReserve >= 0 && o.PresenceReserve < 1) {
		return nil, fmt.Errorf("presence reserve %v: must be in [0, 1)", o.PresenceReserve)
	}
	if len(windows) > quotaMaxWindows {
		return nil, fmt.Errorf("%d rate limits: at most %d are supported", len(windows), quotaMaxWindows)
	}
	seen := make(map[time.Duration]bool, len(windows))
	wins := make([]quotaWinSpec, 0, len(windows))
	eff := make([]Window, 0, len(windows))
	for _, w := range windows {
		if w.Limit < 1 || w.Limit > quotaMaxLimit || w.Per <= 0 || w.Per > quotaMaxPer {
			return nil, fmt.Errorf("rate limit %s: limit must be 1 to %d and duration positive and at most 366 days", w, quotaMaxLimit)
		}
		if seen[w.Per] {
			return nil, fmt.Errorf("rate limit %s: duplicate window %s", w, formatQuotaDuration(w.Per))
		}
		seen[w.Per] = true
		lim := quotaFloor(float64(w.Limit) * share)
		// The reserve is rounded down: 10 % of a 3/s window is no whole
		// request, so events keep all three; of 180/min it keeps 18.
		norm := max(lim-int(math.Floor(float64(lim)*o.PresenceReserve+1e-7)), 1)
		wins = append(wins, quotaWinSpec{per: int64(w.Per), limit: w.Limit, lim: lim, norm: norm})
		eff = append(eff, Window{Limit: lim, Per: w.Per})
	}
	q := &Quota{
		store:   o.Store,
		now:     o.Now,
		windows: eff,
		write:   make(chan struct{}, 1),
		st:      newQuotaState(wins),
		flight:  map[uint64]int64{},
		stored:  map[uint64]int64{},
	}
	if q.now == nil {
		q.now = time.Now
	}
	if q.store != nil {
		if err := q.reload(ctx); err != nil {
			return nil, err
		}
	}
	return q, nil
}

// quotaFloor is floor(x) for a product of a limit and a fraction, forgiving
// the binary rounding of decimal fractions (180*0.9 must give 162), and at
// least 1 so that no priority is starved.
func quotaFloor(x float64) int {
	n := int(math.Floor(x + 1e-7))
	return max(n, 1)
}

// nowNanos reads the clock in Unix nanoseconds. The record cannot represent
// instants before 1970, which no real clock reports.
func (q *Quota) nowNanos() int64 {
	return max(q.now().UnixNano(), 0)
}

// Windows returns the windows in effect, with Share applied.
func (q *Quota) Windows() []Window {
	return append([]Window(nil), q.windows...)
}

// Reserve blocks until a request of priority p may start under every window,
// records it (with a Store, durably, before returning) and returns nil. It
// returns ctx.Err() if the context ends first, and a store failure other than
// a conflict as an error; in both cases nothing is recorded and the request
// must not be sent. Waiting requests are admitted in priority order, first
// come first served within a priority.
func (q *Quota) Reserve(ctx context.Context, p Priority) error {
	_, err := q.Admit(ctx, p)
	return err
}

// Admit is Reserve that also returns the instant recorded for the request:
// the instant every window counts it from. It is the clock reading at the
// decision, which lies between the call and the return, unless the record
// already holds a later instant (the clock stepped back, or another
// process's clock runs ahead): then it is that instant, so the record stays
// in order and errs towards counting the request longer.
func (q *Quota) Admit(ctx context.Context, p Priority) (time.Time, error) {
	at, _, err := q.admit(ctx, p, false)
	return at, err
}

// Acquire blocks until a request of priority p may start, records it as in
// flight (with a Store, durably, before returning) and returns release,
// which the caller must call once when the request's answer arrived, or it
// failed or timed out: the windows count the request from that moment.
// release(false) says the request certainly never reached the helpdesk (its
// connection could not be opened): then it is not counted at all, so an
// outage spends no quota. Acquire fails like Reserve, and then nothing is
// recorded and the request must not be sent.
func (q *Quota) Acquire(ctx context.Context, p Priority) (release func(sent bool), err error) {
	_, id, err := q.admit(ctx, p, true)
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func(sent bool) { once.Do(func() { q.release(id, sent) }) }, nil
}

// release takes the request id out of flight and, if it was sent, counts it
// in the windows at now; then the next waiter decides. A request not sent
// leaves the stored record holding it until the next write.
func (q *Quota) release(id uint64, sent bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.flight[id]; !ok {
		return
	}
	delete(q.flight, id)
	delete(q.stored, id)
	if sent {
		now := q.nowNanos()
		q.st.advance(now)
		q.st.add(now)
	}
	q.wakeHeadLocked()
}

// admit waits for the turn of a request of priority p and records it; with
// hold it is recorded as in flight under the returned id.
func (q *Quota) admit(ctx context.Context, p Priority, hold bool) (time.Time, uint64, error) {
	if err := ctx.Err(); err != nil {
		return time.Time{}, 0, err
	}
	w := &quotaWaiter{p: p, wake: make(chan struct{}, 1)}
	q.mu.Lock()
	q.seq++
	w.seq = q.seq
	heap.Push(&q.waiters, w)
	q.mu.Unlock()
	defer q.leave(w)

	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		st, at, id, err := q.try(ctx, p, w, hold)
		if err != nil {
			return time.Time{}, 0, err
		}
		switch st {
		case quotaAdmitted:
			return at, id, nil
		case quotaNotHead:
			// A request of higher priority, or an earlier one of the same
			// priority, goes first; it wakes us when it leaves the queue.
			select {
			case <-w.wake:
			case <-ctx.Done():
				return time.Time{}, 0, ctx.Err()
			}
		case quotaWait:
			// Never: only a release makes room, and it wakes the head.
			d := time.Hour
			if !at.IsZero() {
				d = at.Sub(q.now())
			}
			if timer == nil {
				timer = time.NewTimer(d)
			} else {
				timer.Reset(d)
			}
			select {
			case <-timer.C:
			case <-w.wake:
			case <-ctx.Done():
				return time.Time{}, 0, ctx.Err()
			}
		}
	}
}

// TryReserve records a request of priority p and returns ok when it may start
// now; readyAt is then the instant recorded. Otherwise it records nothing and
// returns in readyAt the earliest instant the windows allow; that is a lower
// bound while Reserve calls of the same or higher priority are waiting, as
// they go first. It fails like Reserve when the store fails.
func (q *Quota) TryReserve(ctx context.Context, p Priority) (ok bool, readyAt time.Time, err error) {
	st, at, _, err := q.try(ctx, p, nil, false)
	if err != nil {
		return false, time.Time{}, err
	}
	return st == quotaAdmitted, at, nil
}

// ReadyAt returns the earliest instant at which the windows, as this process
// last saw them, allow a request of priority p, assuming the requests in
// flight are answered now; a time not after now means it may start at once.
// It records nothing and ignores waiting requests.
func (q *Quota) ReadyAt(p Priority) time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := q.nowNanos()
	q.st.advance(now)
	return time.Unix(0, q.st.readyAt(now, p, len(q.flight), true))
}

// InFlight returns how many acquired requests have not been released.
func (q *Quota) InFlight() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.flight)
}

// Usage reports, per window in the order configured, how many requests the
// record holds in it (requests in flight included) and how many remain.
func (q *Quota) Usage() []WindowUsage {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.st.advance(q.nowNanos())
	out := make([]WindowUsage, len(q.windows))
	for i, w := range q.windows {
		used := q.st.used(i) + len(q.flight)
		out[i] = WindowUsage{Window: w, Used: used, Remaining: max(w.Limit-used, 0)}
	}
	return out
}

// Conflicts returns how many store writes lost a compare-and-set race to
// another process and were decided again (for metrics).
func (q *Quota) Conflicts() uint64 {
	return q.conflicts.Load()
}

type quotaTry int

const (
	quotaAdmitted quotaTry = iota
	quotaWait
	quotaNotHead
)

// try decides for one request, records it and writes the record. w is the
// queued waiter deciding (nil for TryReserve); only the head of the queue
// may be admitted. With hold the request is recorded as in flight and its
// id returned. A wait without an instant (only a release can make room)
// returns the zero time. On a compare-and-set conflict it reloads and
// decides again.
func (q *Quota) try(ctx context.Context, p Priority, w *quotaWaiter, hold bool) (quotaTry, time.Time, uint64, error) {
	select {
	case q.write <- struct{}{}:
	case <-ctx.Done():
		return quotaWait, time.Time{}, 0, ctx.Err()
	}
	defer func() { <-q.write }()
	for {
		q.mu.Lock()
		if w != nil && q.waiters[0] != w {
			q.mu.Unlock()
			return quotaNotHead, time.Time{}, 0, nil
		}
		now := q.nowNanos()
		q.st.advance(now)
		ready := q.st.readyAt(now, p, len(q.flight), false)
		if ready > now || (w == nil && q.waiters.blocks(p)) {
			q.mu.Unlock()
			if ready == quotaNever {
				return quotaWait, time.Time{}, 0, nil
			}
			return quotaWait, time.Unix(0, ready), 0, nil
		}
		var at int64
		var id uint64
		if hold {
			at = now
			q.lastID++
			id = q.lastID
			q.flight[id] = now
		} else {
			at = q.st.add(now)
		}
		if q.store == nil {
			q.mu.Unlock()
			return quotaAdmitted, time.Unix(0, at), id, nil
		}
		rec := q.encodeLocked(now)
		rev := q.rev
		q.mu.Unlock()

		newRev, err := q.store.Update(ctx, rec, rev)
		q.mu.Lock()
		if err == nil {
			q.rev = newRev
			q.mu.Unlock()
			return quotaAdmitted, time.Unix(0, at), id, nil
		}
		if hold {
			delete(q.flight, id)
			delete(q.stored, id)
		} else {
			q.st.remove(at)
		}
		q.mu.Unlock()
		if !errors.Is(err, ErrQuotaConflict) {
			return quotaWait, time.Time{}, 0, fmt.Errorf("record request in quota store: %w", err)
		}
		q.conflicts.Add(1)
		if err := q.reload(ctx); err != nil {
			return quotaWait, time.Time{}, 0, err
		}
	}
}

// encodeLocked encodes the record to store: the windows as they are, and
// every request in flight at its admission (or the newest instant recorded,
// if later), remembered in q.stored.
func (q *Quota) encodeLocked(now int64) []byte {
	if len(q.flight) == 0 {
		return q.st.encode(nil, now)
	}
	type fl struct {
		id uint64
		at int64
	}
	order := make([]fl, 0, len(q.flight))
	for id, t := range q.flight {
		order = append(order, fl{id, t})
	}
	slices.SortFunc(order, func(a, b fl) int { return cmp.Compare(a.at, b.at) })
	added := make([]int64, len(order))
	for i, f := range order {
		added[i] = q.st.add(f.at)
		q.stored[f.id] = added[i]
	}
	rec := q.st.encode(nil, now)
	for i := len(added) - 1; i >= 0; i-- {
		q.st.remove(added[i])
	}
	return rec
}

// reload replaces the in-memory record with the stored one.
func (q *Quota) reload(ctx context.Context) error {
	data, rev, err := q.store.Load(ctx)
	if err != nil {
		return fmt.Errorf("load quota record: %w", err)
	}
	rec, err := decodeQuotaRecord(data)
	if err != nil {
		return fmt.Errorf("load quota record (revision %d): %w", rev, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	q.st.load(rec, q.nowNanos())
	// The record holds this process's requests in flight, which it counts
	// as in flight already.
	for _, t := range q.stored {
		q.st.removeAt(t)
	}
	q.rev = rev
	return nil
}

// leave removes w from the queue and wakes the new head.
func (q *Quota) leave(w *quotaWaiter) {
	q.mu.Lock()
	defer q.mu.Unlock()
	heap.Remove(&q.waiters, w.index)
	q.wakeHeadLocked()
}

// wakeHeadLocked tells the head of the queue to decide again.
func (q *Quota) wakeHeadLocked() {
	if len(q.waiters) > 0 {
		select {
		case q.waiters[0].wake <- struct{}{}:
		default:
		}
	}
}

// quotaWaiter is one Reserve call waiting for its turn.
type quotaWaiter struct {
	p     Priority
	seq   uint64
	index int
	wake  chan struct{}
}

// quotaWaiters is a heap of waiters: highest priority (lowest value) first,
// then first come first served.
type quotaWaiters []*quotaWaiter

func (h quotaWaiters) Len() int { return len(h) }
func (h quotaWaiters) Less(i, j int) bool {
	if h[i].p != h[j].p {
		return h[i].p < h[j].p
	}
	return h[i].seq < h[j].seq
}
func (h quotaWaiters) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index = i
	h[j].index = j
}
func (h *quotaWaiters) Push(x any) {
	w := x.(*quotaWaiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *quotaWaiters) Pop() any {
	old := *h
	n := len(old) - 1
	w := old[n]
	old[n] = nil
	*h = old[:n]
	return w
}

// blocks reports whether a waiting request goes before a new one of
// priority p.
func (h quotaWaiters) blocks(p Priority) bool {
	return len(h) > 0 && h[0].p <= p
}
