package sip

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

// requester sends one SUBSCRIBE transaction inside a subscription dialog
// (answering digest challenges itself) and returns the final response. It
// is the seam between the subscription state machine and the network.
type requester interface {
	subscribe(ctx context.Context, sub *subscription, expires int) (reply, error)
}

// reply is the part of a final SUBSCRIBE response the state machine acts on.
type reply struct {
	status     int
	expires    int // granted Expires, -1 when absent
	minExpires int // Min-Expires of a 423, 0 when absent
	retryAfter time.Duration
}

func (r reply) ok() bool { return r.status >= 200 && r.status < 300 }

// Backoff tunes how failed subscriptions are retried. Zero fields take the
// defaults.
type Backoff struct {
	// Initial is the first delay after a transient failure (timeout,
	// transport error, 5xx); it doubles per consecutive failure. Default 1s.
	Initial time.Duration
	// Max caps the doubling. Default 5 minutes.
	Max time.Duration
	// Long is the delay after a refusal that an immediate retry cannot fix
	// (403, 404, 489, wrong credentials, Subscription-State rejected or
	// noresource): the PBX is not hammered. Default 30 minutes.
	Long time.Duration
}

func (b Backoff) withDefaults() Backoff {
	if b.Initial <= 0 {
		b.Initial = time.Second
	}
	if b.Max <= 0 {
		b.Max = 5 * time.Minute
	}
	if b.Max < b.Initial {
		b.Max = b.Initial
	}
	if b.Long <= 0 {
		b.Long = 30 * time.Minute
	}
	return b
}

// outcome is what a failed or ended subscription calls for.
type outcome int

const (
	retrySoon  outcome = iota // transient: exponential backoff
	retryNow                  // the PBX forgot us (481, deactivated): re-subscribe at once
	retryLater                // refused: long backoff, do not hammer
)

// maxRetryAfter bounds a Retry-After so that a bogus value cannot silence an
// extension for days.
const maxRetryAfter = 24 * time.Hour

// core is everything the watches share: the network seam, the journal, the
// policy and the bookkeeping behind Status and the metrics.
type core struct {
	req       requester
	journal   Journal
	log       *slog.Logger
	metrics   *metrics
	domain    string
	backoff   Backoff
	spacer    *spacer
	index     index
	jitter    func() float64 // uniform in [0,1); replaced in tests
	reqTO     time.Duration  // per-SUBSCRIBE transaction deadline
	unsubTO   time.Duration  // deadline of the unsubscribe at shutdown
	journalTO time.Duration  // deadline of journaling one NOTIFY
	stable    time.Duration  // a subscription up this long resets the backoff
	resync    time.Duration  // refresh this soon after a NOTIFY could not be journaled
	early     time.Duration  // first refresh of a subscription made after a PBX restart

	active, failing atomic.Int64
}

func (c *core) delay(o outcome, fails int, retryAfter time.Duration) time.Duration {
	b := c.backoff
	var d time.Duration
	switch {
	case o == retryLater:
		d = b.Long*3/4 + time.Duration(c.jitter()*float64(b.Long/4))
	case o == retryNow && fails <= 1:
		d = time.Duration(c.jitter() * float64(b.Initial))
	default:
		n := fails
		if o == retryNow {
			n-- // the first retry was immediate; continue from there
		}
		d = b.Initial
		for i := 1; i < n && d < b.Max; i++ {
			d *= 2
		}
		d = min(d, b.Max)
		d = d/2 + time.Duration(c.jitter()*float64(d/2)) // equal jitter
	}
	return max(d, min(retryAfter, maxRetryAfter))
}

// classify says what a failed SUBSCRIBE calls for.
func classify(r reply, err error) outcome {
	if err != nil {
		return retrySoon
	}
	switch r.status {
	case gosip.StatusCallTransactionDoesNotExists: // 481
		return retryNow
	case 400, 401, 403, 404, 405, 407, 410, 416, 420, 489, 501, 603, 604, 606:
		// Our request, the account or the extension is wrong; nothing will
		// change in a second. 401/407 here mean the credentials were refused.
		return retryLater
	}
	return retrySoon
}

// terminatedOutcome follows RFC 6665 §4.1.3 for Subscription-State: terminated.
func terminatedOutcome(reason string) outcome {
	switch reason {
	case "deactivated", "timeout":
		return retryNow
	case "rejected", "noresource", "invariant":
		return retryLater
	}
	return retrySoon // probation, giveup (with retry-after), none or unknown
}

// refreshIn is when to refresh a subscription granted for d: early enough
// that a refresh timing out over UDP (32 s) still leaves time for a new
// subscription, never later than three quarters of d.
func refreshIn(d time.Duration) time.Duration {
	margin := max(d/4, min(35*time.Second, d/2))
	return d - margin
}

// spacer spreads the start of new subscriptions: each takes the next free
// slot, one per interval, so hundreds of extensions (or a PBX restart that
// drops them all) never hit the PBX in one burst.
type spacer struct {
	interval time.Duration
	mu       sync.Mutex
	next     time.Time
}

func newSpacer(perSecond float64) *spacer {
	if perSecond <= 0 {
		return &spacer{}
	}
	return &spacer{interval: time.Duration(float64(time.Second) / perSecond)}
}

func (s *spacer) wait(ctx context.Context) error {
	if s.interval <= 0 {
		return ctx.Err()
	}
	s.mu.Lock()
	now := time.Now()
	at := s.next
	if at.Before(now) {
		at = now
	}
	s.next = at.Add(s.interval)
	s.mu.Unlock()
	return sleep(ctx, at.Sub(now))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// index finds the subscription a NOTIFY belongs to by Call-ID.
type index struct {
	mu   sync.RWMutex
	subs map[string]*subscription
}

func (x *index) add(s *subscription) {
	x.mu.Lock()
	if x.subs == nil {
		x.subs = map[string]*subscription{}
	}
	x.subs[s.callID] = s
	x.mu.Unlock()
}

func (x *index) remove(s *subscription) {
	x.mu.Lock()
	if x.subs[s.callID] == s {
		delete(x.subs, s.callID)
	}
	x.mu.Unlock()
}

func (x *index) get(callID string) *subscription {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.subs[callID]
}

// notice is news from a NOTIFY for the state machine of its extension.
type notice struct {
	sub        *subscription
	kind       noticeKind
	reason     string        // terminated: the reason parameter
	retryAfter time.Duration // terminated: the retry-after parameter
	expires    time.Duration // expires: what the PBX now grants
}

type noticeKind int

const (
	noticeTerminated noticeKind = iota // Subscription-State: terminated
	noticeExpires                      // Subscription-State: active;expires=N
	noticeResync                       // ask for full state soon (gap in versions, journal failure)
)

// mailbox hands notices from NOTIFY handlers to the watch loop without ever
// blocking a handler and without dropping a notice.
type mailbox struct {
	mu    sync.Mutex
	items []notice
	wake  chan struct{}
}

func (m *mailbox) post(n notice) {
	m.mu.Lock()
	m.items = append(m.items, n)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *mailbox) take() []notice {
	m.mu.Lock()
	defer m.mu.Unlock()
	items := m.items
	m.items = nil
	return items
}

// watchState is where an extension's subscription stands.
type watchState int32

const (
	statePending watchState = iota // not tried yet
	stateActive                    // subscribed
	stateFailing                   // down, retrying
)

// watch keeps one extension subscribed for as long as the monitor runs and
// holds what the extension's NOTIFYs have said so far.
type watch struct {
	c    *core
	ext  string
	log  *slog.Logger
	mbox mailbox
	// kick asks the watch to drop its subscription and make a new one at
	// once (through the backoff and the spacer): the PBX restarted.
	kick chan struct{}

	state   atomic.Int32
	lastErr string // last failure logged; only the loop touches it

	mu   sync.Mutex // serialises NOTIFY handling for the extension; guards legs
	legs legs
}

func newWatch(c *core, ext string) *watch {
	return &watch{c: c, ext: ext, log: c.log.With("ext", ext), mbox: mailbox{wake: make(chan struct{}, 1)},
		kick: make(chan struct{}, 1), legs: legs{}}
}

// ending says why an established subscription stopped.
type ending struct {
	outcome    outcome
	retryAfter time.Duration
	stable     bool // it had been refreshed at least once
	restart    bool // the PBX restarted (restart was called)
	why        string
}

// whyRestart is the failure a watch records when the PBX restarted.
const whyRestart = "PBX restarted"

// restart makes the watch re-subscribe at once, whether it is subscribed
// (the PBX forgot the subscription) or waiting to retry a failure (the PBX
// is back: no need to wait out the backoff). It never blocks.
func (w *watch) restart() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// run keeps the extension subscribed until ctx ends, then unsubscribes.
func (w *watch) run(ctx context.Context, expires int) {
	defer w.setState(statePending)
	fails := 0
	var wait time.Duration
	early := false // the next subscription follows a PBX restart
	for {
		kicked, err := w.pause(ctx, wait)
		if err != nil || w.c.spacer.wait(ctx) != nil {
			return
		}
		select {
		case <-w.kick: // what we are about to send follows the restart already
			kicked = true
		default:
		}
		if kicked {
			fails, early = 0, true
			w.c.metrics.restartResubs.Inc()
		}
		sub := newSubscription(w, w.c.domain)
		w.c.index.add(sub) // before sending: the first NOTIFY may beat the 2xx
		rep, err := w.send(ctx, sub, &expires)
		if ctx.Err() != nil {
			if err == nil && rep.ok() {
				w.unsubscribe(sub)
			}
			w.c.index.remove(sub)
			return
		}
		if err != nil || !rep.ok() || rep.expires == 0 {
			w.c.index.remove(sub)
			fails++
			o := classify(rep, err)
			wait = w.c.delay(o, fails, rep.retryAfter)
			w.failed(describe(rep, err), fails, wait)
			continue
		}
		granted := grantedFor(rep, expires)
		w.up(sub, granted)
		upAt := time.Now()
		end := w.maintain(ctx, sub, &expires, granted, early)
		early = false
		w.c.index.remove(sub)
		if ctx.Err() != nil {
			return
		}
		if end.stable || end.restart || time.Since(upAt) >= w.c.stable {
			fails = 0
		}
		if end.restart {
			early = true
			w.c.metrics.restartResubs.Inc()
		}
		fails++
		wait = w.c.delay(end.outcome, fails, end.retryAfter)
		w.failed(end.why, fails, wait)
	}
}

// pause waits d, or less when the watch is told the PBX restarted.
func (w *watch) pause(ctx context.Context, d time.Duration) (kicked bool, err error) {
	if d <= 0 {
		return false, ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false, ctx.Err()
	case <-w.kick:
		return true, nil
	case <-t.C:
		return false, nil
	}
}

// maintain refreshes an established subscription until it fails, the PBX
// ends it or restarts, or ctx ends (then it unsubscribes). After a PBX
// restart (early) the first refresh comes within core.early, so that a
// second restart soon after is caught by a 481 even when the keep-alive
// misses it (a UDP PBX back within one keep-alive).
func (w *watch) maintain(ctx context.Context, sub *subscription, expires *int, granted time.Duration, early bool) ending {
	refreshes := 0
	now := time.Now()
	expiry := now.Add(granted)
	first := refreshIn(granted)
	if early && w.c.early > 0 {
		first = min(first, w.c.early)
	}
	next := now.Add(first)
	t := time.NewTimer(next.Sub(now))
	defer t.Stop()
	schedule := func(at time.Time) {
		next = at
		t.Reset(time.Until(at))
	}
	for {
		select {
		case <-ctx.Done():
			w.unsubscribe(sub)
			return ending{}
		case <-w.kick:
			// The restarted PBX no longer knows sub: no unsubscribe. Should
			// it still know it after all, its next NOTIFY gets 481 and ends it.
			return ending{outcome: retryNow, restart: true, why: whyRestart}
		case <-w.mbox.wake:
			for _, n := range w.mbox.take() {
				if n.sub != sub {
					continue // about a subscription already replaced
				}
				switch n.kind {
				case noticeTerminated:
					return ending{outcome: terminatedOutcome(n.reason), retryAfter: n.retryAfter,
						stable: refreshes > 0, why: "terminated by the PBX: " + orNone(n.reason)}
				case noticeExpires:
					// RFC 6665 §4.2.2: the notifier may shorten the subscription.
					// Only ever move the refresh earlier: PBXs repeat the
					// remaining time in every NOTIFY, rounded down.
					if at := time.Now().Add(n.expires); at.Before(expiry) {
						expiry = at
						if r := time.Now().Add(refreshIn(n.expires)); r.Before(next) {
							schedule(r)
						}
					}
				case noticeResync:
					if at := time.Now().Add(w.c.resync); at.Before(next) {
						schedule(at)
					}
				}
			}
		case <-t.C:
			rep, err := w.send(ctx, sub, expires)
			if ctx.Err() != nil {
				w.unsubscribe(sub)
				return ending{}
			}
			if err == nil && rep.ok() && rep.expires != 0 {
				refreshes++
				g := grantedFor(rep, *expires)
				expiry = time.Now().Add(g)
				schedule(time.Now().Add(refreshIn(g)))
				continue
			}
			o := classify(rep, err)
			if err != nil && o == retrySoon {
				o = retryNow // the PBX may still hold it; a new one is cheap
			}
			return ending{outcome: o, retryAfter: rep.retryAfter, stable: refreshes > 0,
				why: "refresh failed: " + describe(rep, err)}
		}
	}
}

// send runs one SUBSCRIBE, raising the requested duration after a 423
// Interval Too Brief (RFC 6665 §4.1.2.1) for this and every later request.
func (w *watch) send(ctx context.Context, sub *subscription, expires *int) (reply, error) {
	for i := 0; ; i++ {
		rctx, cancel := context.WithTimeout(ctx, w.c.reqTO)
		rep, err := w.c.req.subscribe(rctx, sub, *expires)
		cancel()
		if err != nil || rep.status != gosip.StatusIntervalToBrief || i == 2 || rep.minExpires <= *expires {
			return rep, err
		}
		w.log.Info("sip subscription interval raised by the PBX", "expires", rep.minExpires)
		*expires = rep.minExpires
	}
}

// unsubscribe sends Expires: 0 (best effort, bounded): the PBX stops sending
// NOTIFYs for a bridge that is gone.
func (w *watch) unsubscribe(sub *subscription) {
	ctx, cancel := context.WithTimeout(context.Background(), w.c.unsubTO)
	defer cancel()
	rep, err := w.c.req.subscribe(ctx, sub, 0)
	if err != nil || !rep.ok() {
		w.log.Debug("sip unsubscribe failed", "subscription", sub.callID, "err", describe(rep, err))
	}
}

func (w *watch) up(sub *subscription, granted time.Duration) {
	prev := w.setState(stateActive)
	if prev == stateFailing && w.lastErr == whyRestart {
		// The monitor logged the restart once for every extension.
		w.log.Debug("sip subscription renewed after the PBX restarted", "subscription", sub.callID, "expires", int(granted.Seconds()))
	} else if prev == stateFailing {
		w.log.Info("sip subscription recovered", "subscription", sub.callID, "expires", int(granted.Seconds()), "after", w.lastErr)
	} else {
		w.log.Info("sip subscription up", "subscription", sub.callID, "expires", int(granted.Seconds()))
	}
	w.lastErr = ""
}

// failed logs the first failure and every change of failure, not each retry.
func (w *watch) failed(why string, attempt int, wait time.Duration) {
	prev := w.setState(stateFailing)
	level := slog.LevelDebug
	if (prev != stateFailing || why != w.lastErr) && why != whyRestart {
		level = slog.LevelWarn
	}
	w.log.Log(context.Background(), level, "sip subscription down", "err", why, "attempt", attempt, "retry_in", wait.Round(time.Millisecond).String())
	w.lastErr = why
}

func (w *watch) setState(s watchState) watchState {
	prev := watchState(w.state.Swap(int32(s)))
	if prev == s {
		return prev
	}
	w.c.count(prev, -1)
	w.c.count(s, +1)
	return prev
}

func (c *core) count(s watchState, d int64) {
	switch s {
	case stateActive:
		c.active.Add(d)
		c.metrics.active.Add(float64(d))
	case stateFailing:
		c.failing.Add(d)
		c.metrics.failing.Add(float64(d))
	}
}

// grantedFor is the duration the PBX granted: its Expires, or what we asked
// for when it sent none (RFC 6665 requires one; not every PBX sends it).
func grantedFor(r reply, requested int) time.Duration {
	if r.expires > 0 {
		return time.Duration(r.expires) * time.Second
	}
	return time.Duration(requested) * time.Second
}

func describe(r reply, err error) string {
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case err != nil && errors.Is(err, gosip.ErrTransactionTimeout):
		return "timeout"
	case err != nil:
		return err.Error()
	case r.ok() && r.expires == 0:
		return "granted expires 0"
	}
	return "status " + strconv.Itoa(r.status)
}

func orNone(s string) string {
	if s == "" {
		return "no reason"
	}
	return s
}

// defaultJitter is uniform in [0,1).
func defaultJitter() float64 { return rand.Float64() }
