package presence

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin"
)

// Asker asks ROBIN's presence endpoint whether anyone is online on channel
// for referrer; *robin.Client satisfies it. Its errors should be
// *robin.Error values: a Status of 400 or 404 is taken as ROBIN's answer
// "not found", and RetryAfterDelay lengthens the pause before the key is
// asked again.
type Asker interface {
	Presence(ctx context.Context, channel, referrer string) (online bool, err error)
}

// Quota is the request quota shared with call events; *robin.Quota
// satisfies it.
type Quota interface {
	Acquire(ctx context.Context, p robin.Priority) (release func(sent bool), err error)
	ReadyAt(p robin.Priority) time.Time
}

// Breaker is the circuit breaker shared with call events; *robin.Breaker
// satisfies it.
type Breaker interface {
	Allow() (done func(error), err error)
	State() string
}

// Options configure a Cache.
type Options struct {
	Config
	// Asker asks ROBIN (required).
	Asker Asker
	// Quota is reserved (robin.PriorityPresence) before every request to
	// ROBIN; nil means no quota.
	Quota Quota
	// Breaker must allow every request to ROBIN and is told its outcome;
	// nil means no breaker.
	Breaker Breaker
	// Numbers normalises phone-number referrers to E.164; nil passes every
	// referrer as it is (trimmed).
	Numbers Numbers
	// Registry receives the cache's metrics; nil leaves them unregistered.
	Registry prometheus.Registerer
	// Logger receives one line when asking ROBIN starts or stops failing;
	// nil discards.
	Logger *slog.Logger
	// Redact removes secrets from text; the bridge passes the ROBIN client's
	// Redact. Nil leaves text as it is.
	Redact func(string) string
}

// Errors a look-up can match with errors.Is.
var (
	// ErrUnavailable is matched by an *UnavailableError: presence is
	// unknown and the fallback policy is "error".
	ErrUnavailable = errors.New("presence unknown")
	// ErrQuota means no request could start within the quota in time.
	ErrQuota = errors.New("helpdesk request quota exhausted")
	// ErrTimeout means ROBIN did not answer within Config.Timeout; the
	// request goes on in the background.
	ErrTimeout = errors.New("no answer from ROBIN in time")
	// ErrClosed means the cache was closed.
	ErrClosed = errors.New("presence cache closed")
)

// Answer is a look-up's answer.
type Answer struct {
	// Key is the key asked for: the channel's canonical spelling and the
	// normalised referrer. It is set whenever the input was valid.
	Key Key
	// Online is the presence: at least one agent online.
	Online bool
	// CheckedAt is when ROBIN gave the answer; zero for a fallback.
	CheckedAt time.Time
	// Stale is set when the answer is older than its TTL and served because
	// ROBIN could not be asked or did not answer in time.
	Stale bool
	// Fallback is set when the answer is the configured fallback, not
	// ROBIN's.
	Fallback bool
	// Reason says, for a stale or fallback answer, why ROBIN's answer is
	// missing; it never contains a secret.
	Reason string
	// Result is where the answer came from (the metric label).
	Result Result
}

// NotFoundError is ROBIN's answer that it does not know the channel or the
// referrer (HTTP 400 or 404).
type NotFoundError struct {
	// Key is the key ROBIN does not know.
	Key Key
	// Status is ROBIN's status, 400 or 404.
	Status int
	// Reason is the start of ROBIN's answer body (redacted), possibly empty.
	Reason string
	// CheckedAt is when ROBIN answered.
	CheckedAt time.Time
	// Stale is set when the answer is older than the negative TTL and served
	// because ROBIN could not be asked again.
	Stale bool
}

// Error says what ROBIN does not know, with its status and reason.
func (e *NotFoundError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ROBIN does not know channel %q", e.Key.Channel)
	if e.Key.Referrer != "" {
		fmt.Fprintf(&b, " for referrer %q", e.Key.Referrer)
	}
	fmt.Fprintf(&b, ": status %d", e.Status)
	if e.Reason != "" {
		b.WriteString(": ")
		b.WriteString(e.Reason)
	}
	return b.String()
}

// UnavailableError is the answer when ROBIN gave none in time, nothing
// recent enough is known and the fallback policy is "error". Its message
// never contains a secret.
type UnavailableError struct {
	// Key is the key whose presence is unknown.
	Key Key
	// Cause is why ROBIN's answer is missing; it matches ErrQuota,
	// ErrTimeout, robin.ErrOpen or a *robin.Error under errors.Is and
	// errors.As.
	Cause error
	msg   string
}

// Error says that presence is unknown and why.
func (e *UnavailableError) Error() string { return e.msg }

// Unwrap returns the cause.
func (e *UnavailableError) Unwrap() error { return e.Cause }

// Is matches ErrUnavailable.
func (e *UnavailableError) Is(target error) bool { return target == ErrUnavailable }

// InvalidError is a look-up whose channel or referrer cannot be asked for.
type InvalidError struct {
	// Param is "channel" or "referrer".
	Param string
	// Value is the value given.
	Value string
	// Problem says what is wrong with it.
	Problem string
	// Channels lists the valid channels when Param is "channel".
	Channels []string
}

// Error names the parameter, the problem and, for a channel, the valid ones.
func (e *InvalidError) Error() string {
	if e.Param == "channel" {
		return fmt.Sprintf("channel %q: %s; want one of %s", e.Value, e.Problem, strings.Join(e.Channels, ", "))
	}
	return fmt.Sprintf("%s: %s", e.Param, e.Problem)
}

// result is one answer of ROBIN's.
type result struct {
	online  bool
	status  int    // 0 for Online/Offline; 400 or 404 for "not found"
	reason  string // ROBIN's body for "not found"
	checked time.Time
}

func (r result) answer(k Key, res Result, reason string) (Answer, error) {
	stale := res == ResultStale
	a := Answer{Key: k, Online: r.online, CheckedAt: r.checked, Stale: stale, Result: res}
	if stale {
		a.Reason = reason
	}
	if r.status != 0 {
		return a, &NotFoundError{Key: k, Status: r.status, Reason: r.reason, CheckedAt: r.checked, Stale: stale}
	}
	return a, nil
}

// entry is the cache's state for one key. Guarded by Cache.mu.
type entry struct {
	known     bool      // res holds an answer of ROBIN's
	res       result    // the last answer
	expires   time.Time // res is served without asking until then
	holdUntil time.Time // no request for this key before then (after a failure)
	holdErr   error     // why, for answers given meanwhile
	flight    *flight   // the request in progress, if any
	warm      bool      // kept fresh by the warmer; never swept
}

func (e *entry) fresh(now time.Time) bool { return e.known && now.Before(e.expires) }

// flight is one request to ROBIN that any number of look-ups wait on. res
// and err are written before done is closed.
type flight struct {
	done chan struct{}
	res  result
	err  error
}

// sweepEvery is how often finished requests look for entries to forget.
const sweepEvery = time.Minute

// Cache answers presence look-ups from ROBIN's answers. It is safe for
// concurrent use. Close it (or let Run return) to end background requests.
type Cache struct {
	cfg     Config
	ask     Asker
	quota   Quota
	breaker Breaker
	chans   *Channels
	refs    *referrers
	warm    []Key
	lead    time.Duration // warm keys are refreshed this long before they expire
	log     *slog.Logger
	redact  func(string) string
	m       *metrics

	base   context.Context // requests to ROBIN; cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.RWMutex
	entries   map[Key]*entry
	closed    bool
	lastSweep time.Time

	healthMu sync.Mutex
	health   string // "" while ROBIN answers; else what fails
}

// New checks o and returns a Cache. Warm keys are canonicalised like
// look-ups; nothing is asked until a look-up or Run.
func New(o Options) (*Cache, error) {
	if o.Asker == nil {
		return nil, errors.New("presence: no Asker")
	}
	cfg := o.Config.withDefaults()
	chans, err := cfg.validate()
	if err != nil {
		return nil, err
	}
	c := &Cache{
		cfg:     cfg,
		ask:     o.Asker,
		quota:   o.Quota,
		breaker: o.Breaker,
		chans:   chans,
		refs:    newReferrers(o.Numbers),
		lead:    min(cfg.TTL/4, cfg.Timeout),
		log:     o.Logger,
		redact:  o.Redact,
		entries: map[Key]*entry{},
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.redact == nil {
		c.redact = func(s string) string { return s }
	}
	for _, w := range cfg.Warm {
		k, err := c.key(w.Channel, w.Referrer)
		if err != nil {
			return nil, fmt.Errorf("PRESENCE_WARM: %s", c.redact(err.Error()))
		}
		if e := c.entries[k]; e == nil {
			c.entries[k] = &entry{warm: true}
			c.warm = append(c.warm, k)
		}
	}
	c.m = newMetrics(o.Registry, func() float64 {
		c.mu.RLock()
		defer c.mu.RUnlock()
		return float64(len(c.entries))
	})
	c.base, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Channels returns the channels a look-up may ask for, canonical spelling.
func (c *Cache) Channels() []string { return c.chans.Names() }

// Warm returns the keys kept fresh by Run, canonicalised.
func (c *Cache) Warm() []Key { return append([]Key(nil), c.warm...) }

// key validates a look-up's input and returns its cache key.
func (c *Cache) key(channel, referrer string) (Key, error) {
	ch := strings.TrimSpace(channel)
	if ch == "" {
		return Key{}, &InvalidError{Param: "channel", Problem: "missing", Channels: c.chans.Names()}
	}
	canon, ok := c.chans.Canonical(ch)
	if !ok {
		return Key{}, &InvalidError{Param: "channel", Value: ch, Problem: "unknown channel", Channels: c.chans.Names()}
	}
	ref, err := c.refs.normalize(referrer)
	if err != nil {
		return Key{}, &InvalidError{Param: "referrer", Value: referrer, Problem: err.Error()}
	}
	return Key{Channel: canon, Referrer: ref}, nil
}

// Lookup answers whether anyone is online on channel (matched regardless of
// case) for referrer ("" for the subscription as a whole; a phone number is
// normalised to E.164 first). It waits at most Config.Timeout, or until ctx
// ends, for quota and ROBIN. The error is an *InvalidError for input that
// cannot be asked for, a *NotFoundError when ROBIN does not know the key
// (possibly stale), or an *UnavailableError when nothing usable is known and
// the fallback is "error"; Answer.Result is set in every case.
func (c *Cache) Lookup(ctx context.Context, channel, referrer string) (Answer, error) {
	start := time.Now()
	a, err := c.lookup(ctx, channel, referrer, start)
	c.m.lookup(a.Result, start)
	return a, err
}

func (c *Cache) lookup(ctx context.Context, channel, referrer string, now time.Time) (Answer, error) {
	k, err := c.key(channel, referrer)
	if err != nil {
		return Answer{Result: ResultInvalid}, err
	}
	c.mu.RLock()
	if e := c.entries[k]; e != nil && e.fresh(now) {
		res := e.res
		c.mu.RUnlock()
		return res.answer(k, ResultHit, "")
	}
	c.mu.RUnlock()

	c.mu.Lock()
	e := c.entries[k]
	if e != nil && e.fresh(now) {
		res := e.res
		c.mu.Unlock()
		return res.answer(k, ResultHit, "")
	}
	f, cause := c.startLocked(k, e, now)
	c.mu.Unlock()
	if f == nil {
		return c.degrade(k, cause)
	}
	t := time.NewTimer(c.cfg.Timeout)
	defer t.Stop()
	select {
	case <-f.done:
		if f.err == nil {
			return f.res.answer(k, ResultMiss, "")
		}
		return c.degrade(k, f.err)
	case <-t.C:
		return c.degrade(k, fmt.Errorf("%w (%s)", ErrTimeout, c.cfg.Timeout))
	case <-ctx.Done():
		return c.degrade(k, ctx.Err())
	}
}

// startLocked returns the request in flight for k, starting one unless the
// cache is closed or k is held back after a failure; then it returns nil and
// why. c.mu must be held for writing.
func (c *Cache) startLocked(k Key, e *entry, now time.Time) (*flight, error) {
	if c.closed {
		return nil, ErrClosed
	}
	if e == nil {
		e = &entry{}
		c.entries[k] = e
	}
	if e.flight != nil {
		return e.flight, nil
	}
	if now.Before(e.holdUntil) {
		return nil, e.holdErr
	}
	f := &flight{done: make(chan struct{})}
	e.flight = f
	c.wg.Add(1)
	go c.fly(k, f)
	return f, nil
}

// fly asks ROBIN about k, stores the outcome and releases the look-ups
// waiting on f.
func (c *Cache) fly(k Key, f *flight) {
	defer c.wg.Done()
	res, asked, err := c.fetch(k)
	now := time.Now()
	c.mu.Lock()
	e := c.entries[k] // an entry with a flight is never swept
	e.flight = nil
	switch {
	case err == nil:
		ttl := c.cfg.TTL
		if res.status != 0 {
			ttl = c.cfg.NegativeTTL
		}
		res.checked = now
		e.known, e.res, e.expires = true, res, now.Add(ttl)
		e.holdUntil, e.holdErr = time.Time{}, nil
	case asked && !errors.Is(err, ErrClosed):
		// ROBIN was asked and failed: do not ask about this key again
		// for a TTL, so that a failing ROBIN costs at most one request
		// per key and TTL, however many look-ups arrive.
		// A 429 is not ROBIN failing but asking for a pause: the key is
		// asked again once Retry-After ends (a second without one), and
		// served stale meanwhile.
		hold := c.cfg.TTL
		var re *robin.Error
		switch {
		case errors.As(err, &re) && re.Status == http.StatusTooManyRequests:
			hold = time.Second
			if re.RetryAfterDelay > 0 {
				hold = min(re.RetryAfterDelay, 10*time.Minute)
			}
		case errors.As(err, &re) && re.RetryAfterDelay > hold:
			hold = min(re.RetryAfterDelay, max(c.cfg.TTL, 10*time.Minute))
		}
		e.holdUntil = now.Add(hold)
		e.holdErr = &heldError{failed: now, until: e.holdUntil, msg: c.redact(err.Error()), cause: err}
	}
	f.res, f.err = e.res, err
	c.sweepLocked(now)
	c.mu.Unlock()
	close(f.done)
	c.noteHealth(err)
}

// heldError is why a key is not asked about: its last request failed.
type heldError struct {
	failed, until time.Time
	msg           string
	cause         error
}

func (e *heldError) Error() string {
	return fmt.Sprintf("ROBIN failed for this key %s ago (%s); not asked again before %s",
		time.Since(e.failed).Round(time.Second), e.msg, e.until.UTC().Format(time.RFC3339))
}

func (e *heldError) Unwrap() error { return e.cause }

// fetch makes one request to ROBIN for k within the quota and the breaker.
// asked reports whether the request was sent. A 400 or 404 is an answer.
func (c *Cache) fetch(k Key) (res result, asked bool, err error) {
	if c.breaker != nil && c.breaker.State() == "open" {
		// Checked before the quota, so that an open breaker costs none.
		return result{}, false, robin.ErrOpen
	}
	if c.quota != nil {
		if ready := c.quota.ReadyAt(robin.PriorityPresence); ready.After(time.Now().Add(c.cfg.Timeout)) {
			return result{}, false, fmt.Errorf("%w until %s", ErrQuota, ready.UTC().Format(time.RFC3339))
		}
	}
	// The breaker is asked before the quota: a look-up it refuses takes no
	// place in any window.
	done := func(error) {}
	if c.breaker != nil {
		d, berr := c.breaker.Allow()
		if berr != nil {
			return result{}, false, berr
		}
		done = d
	}
	if c.quota != nil {
		ctx, cancel := context.WithTimeout(c.base, c.cfg.Timeout)
		release, qerr := c.quota.Acquire(ctx, robin.PriorityPresence)
		cancel()
		if qerr != nil {
			done(context.Canceled) // not sent: counts neither way
		}
		switch {
		case qerr == nil:
			// The look-up holds its place in the windows until ROBIN
			// answers; one that never left is not counted (err is the
			// named result).
			defer func() { release(!events.NotSentOf(err)) }()
		case c.base.Err() != nil:
			return result{}, false, ErrClosed
		case errors.Is(qerr, context.DeadlineExceeded):
			return result{}, false, fmt.Errorf("%w: no request slot within %s", ErrQuota, c.cfg.Timeout)
		default:
			return result{}, false, fmt.Errorf("quota: %w", qerr)
		}
	}
	start := time.Now()
	online, err := c.ask.Presence(c.base, k.Channel, k.Referrer)
	c.m.robin.Observe(time.Since(start).Seconds())
	done(err)
	if err == nil {
		return result{online: online}, true, nil
	}
	if c.base.Err() != nil {
		return result{}, true, ErrClosed
	}
	var re *robin.Error
	if errors.As(err, &re) && (re.Status == http.StatusBadRequest || re.Status == http.StatusNotFound) {
		return result{status: re.Status, reason: c.redact(re.Body)}, true, nil
	}
	return result{}, true, err
}

// degrade answers k without ROBIN: the current answer if another request
// just refreshed it, else the last answer if recent enough (stale), else the
// fallback.
func (c *Cache) degrade(k Key, cause error) (Answer, error) {
	now := time.Now()
	c.mu.RLock()
	var res result
	known, fresh := false, false
	if e := c.entries[k]; e != nil {
		res, known, fresh = e.res, e.known, e.fresh(now)
	}
	c.mu.RUnlock()
	if fresh {
		return res.answer(k, ResultMiss, "")
	}
	reason := c.redact(cause.Error())
	if known && c.cfg.StaleMax > 0 && now.Sub(res.checked) <= c.cfg.StaleMax {
		return res.answer(k, ResultStale, reason)
	}
	switch c.cfg.Fallback {
	case FallbackOnline, FallbackOffline:
		return Answer{Key: k, Online: c.cfg.Fallback == FallbackOnline, Fallback: true, Reason: reason, Result: ResultFallback}, nil
	}
	return Answer{Key: k, Result: ResultError}, &UnavailableError{Key: k, Cause: cause, msg: "presence unknown: " + reason}
}

// sweepLocked forgets, at most once per sweepEvery, the entries that can no
// longer be served (older than TTL, negative TTL and StaleMax) and hold
// nothing back. Entries are added only when a request starts, so with the
// quota bounding requests this bounds the map.
func (c *Cache) sweepLocked(now time.Time) {
	if now.Sub(c.lastSweep) < sweepEvery {
		return
	}
	c.lastSweep = now
	keep := max(c.cfg.TTL, c.cfg.NegativeTTL, c.cfg.StaleMax)
	for k, e := range c.entries {
		if e.flight != nil || e.warm || now.Before(e.holdUntil) {
			continue
		}
		if e.known && now.Sub(e.res.checked) <= keep {
			continue
		}
		delete(c.entries, k)
	}
}

// noteHealth logs when asking ROBIN starts failing, fails differently, or
// recovers; not on every failure.
func (c *Cache) noteHealth(err error) {
	if errors.Is(err, ErrClosed) {
		return
	}
	kind := failureKind(err)
	c.healthMu.Lock()
	prev := c.health
	c.health = kind
	c.healthMu.Unlock()
	switch {
	case kind == prev:
	case kind == "":
		c.log.Info("presence: ROBIN answering again", "was", prev)
	default:
		c.log.Warn("presence: cannot ask ROBIN; serving stale answers or the fallback", "reason", kind, "err", c.redact(err.Error()))
	}
}

// failureKind names a failure for the log: "" for none.
func failureKind(err error) string {
	var re *robin.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrQuota):
		return "quota"
	case errors.Is(err, robin.ErrOpen):
		return "breaker_open"
	case errors.As(err, &re) && re.Status != 0:
		return fmt.Sprintf("status_%d", re.Status)
	case errors.Is(err, robin.ErrTimeout):
		return "timeout"
	}
	return "request_failed"
}

// Close cancels the requests to ROBIN in flight and waits for them to end;
// no request starts after it (Run's warming stops with Run's ctx). Look-ups
// after Close answer from the cache or degrade. It is safe to call twice.
func (c *Cache) Close() {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// Run keeps the warm keys fresh until ctx ends: each is asked again shortly
// before its answer expires (min(TTL/4, Timeout) before), through the same
// quota and breaker as look-ups and sharing their requests. It then closes
// the cache and returns nil once no request to ROBIN is in flight. Without
// warm keys it only waits for ctx.
func (c *Cache) Run(ctx context.Context) error {
	defer c.Close()
	if len(c.warm) == 0 {
		<-ctx.Done()
		return nil
	}
	names := make([]string, len(c.warm))
	for i, k := range c.warm {
		names[i] = k.String()
	}
	perDay := float64(len(c.warm)) * float64(24*time.Hour) / float64(c.cfg.TTL-c.lead)
	c.log.Info("presence: keeping keys fresh in the background", "keys", strings.Join(names, ";"),
		"requests_per_day", int(perDay))
	tick := time.NewTicker(max(min(c.lead/2, time.Second), 10*time.Millisecond))
	defer tick.Stop()
	for {
		c.warmDue(time.Now())
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// warmDue starts a request for every warm key whose answer expires within
// the lead time.
func (c *Cache) warmDue(now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, k := range c.warm {
		e := c.entries[k]
		if e.known && now.Before(e.expires.Add(-c.lead)) {
			continue
		}
		_, _ = c.startLocked(k, e, now)
	}
}
