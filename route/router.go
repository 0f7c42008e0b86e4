package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/robin"
)

// Defaults of Config, as the environment variables document them.
const (
	DefaultTimeout  = 1500 * time.Millisecond
	DefaultCacheTTL = time.Minute
	DefaultStaleMax = 10 * time.Minute
)

// Bounds of Config.
const (
	minTimeout  = 10 * time.Millisecond
	maxTimeout  = 30 * time.Second
	minCacheTTL = time.Second
	maxCacheTTL = 24 * time.Hour
	maxStaleMax = 7 * 24 * time.Hour
	// minFlight is the least a flight may run in the background after the
	// look-ups that started it gave up.
	minFlight = 5 * time.Second
	// maxEntries bounds the cache; when full, expired entries go first and
	// then the cache starts again empty.
	maxEntries = 100_000
)

// Config is the router's policy. Zero Timeout and CacheTTL take the
// defaults; a zero StaleMax means stale answers are never served.
type Config struct {
	// Timeout is the longest a look-up waits for an answer (ROUTE_TIMEOUT,
	// default 1.5s, 10ms to 30s).
	Timeout time.Duration
	// CacheTTL is how long an answer, an agent or none, is served without
	// asking again, and how long a caller is not asked about after a failed
	// flight (ROUTE_CACHE_TTL, default 1m, 1s to 24h).
	CacheTTL time.Duration
	// StaleMax is how long after it was found an agent may still be served,
	// marked stale, while the resolvers fail (ROUTE_STALE_MAX, default 10m;
	// 0 disables; otherwise from CacheTTL to 7 days).
	StaleMax time.Duration
}

func (c Config) withDefaults() Config {
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	return c
}

// Validate reports every problem with c (after defaults), each naming its
// environment variable.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.Timeout < minTimeout || c.Timeout > maxTimeout {
		errs = append(errs, fmt.Errorf("ROUTE_TIMEOUT %s: want %s to %s", c.Timeout, minTimeout, maxTimeout))
	}
	if c.CacheTTL < minCacheTTL || c.CacheTTL > maxCacheTTL {
		errs = append(errs, fmt.Errorf("ROUTE_CACHE_TTL %s: want %s to %s", c.CacheTTL, minCacheTTL, maxCacheTTL))
	}
	if c.StaleMax != 0 && (c.StaleMax < c.CacheTTL || c.StaleMax > maxStaleMax) {
		errs = append(errs, fmt.Errorf("ROUTE_STALE_MAX %s: want 0 (never serve stale answers) or from ROUTE_CACHE_TTL (%s) to %s", c.StaleMax, c.CacheTTL, maxStaleMax))
	}
	return errors.Join(errs...)
}

// Numbers normalises phone numbers; *phone.Normalizer satisfies it.
type Numbers interface {
	Normalize(raw string) phone.Number
}

// Options configure a Router.
type Options struct {
	Config
	// Resolvers are asked in this order (ROUTE_ORDER).
	Resolvers []Resolver
	// Numbers normalises callers to E.164 (required).
	Numbers Numbers
	// Registry receives the router's metrics; nil leaves them unregistered.
	Registry prometheus.Registerer
	// Logger receives one line when a resolver starts or stops failing;
	// nil discards.
	Logger *slog.Logger
}

// Result says how a look-up was answered; it is the result label of
// voipbridge_route_answers_total.
type Result string

// The results of a look-up.
const (
	// ResultHit is an agent found while the caller waited.
	ResultHit Result = "hit"
	// ResultCached is an answer (an agent or none) from the cache.
	ResultCached Result = "cached"
	// ResultStale is an earlier agent served because the resolvers failed
	// or did not answer in time.
	ResultStale Result = "stale"
	// ResultNone is "no preferred agent": every resolver found none.
	ResultNone Result = "none"
	// ResultTimeout is no agent because a resolver that might know one did
	// not answer in time.
	ResultTimeout Result = "timeout"
	// ResultError is no agent because a resolver that might know one failed.
	ResultError Result = "error"
	// ResultInvalid is a look-up without a usable caller.
	ResultInvalid Result = "invalid"
)

// Answer is a look-up's answer. Extension is empty when there is no
// preferred agent; Reason then says why.
type Answer struct {
	// Caller is the caller in E.164 (empty for an unusable number).
	Caller string
	Match
	// Via names the resolver that found the agent.
	Via string
	// CheckedAt is when the resolver found the agent (or none).
	CheckedAt time.Time
	// Stale marks an agent served while the resolvers cannot be asked.
	Stale bool
	// Reason says why there is no agent, or why a stale one is served.
	Reason string
	// Result is how the look-up was answered.
	Result Result
}

// outcome is one resolver's answer in a flight.
type outcome struct {
	done bool
	m    Match
	err  error
}

func (o outcome) hit() bool { return o.done && o.err == nil }

// flight is one round of resolvers for a caller, shared by every look-up of
// that caller while it runs. changed is closed and replaced whenever an
// outcome arrives; done is closed when every started resolver answered.
type flight struct {
	mu      sync.Mutex
	outs    []outcome
	started []bool
	changed chan struct{}
	done    chan struct{}
	leftOut bool // a look-up ran out of time (counted once)
	stored  bool // the answer is in the cache
}

// decide returns the answer the outcomes give so far: the first resolver in
// order that found an agent, once every resolver before it found none. final
// says whether the answer can no longer change; with final false, a caller
// out of time takes best (an agent found by a later resolver, if any).
func (f *flight) decide() (best int, final bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	best = -1
	final = true
	for i, o := range f.outs {
		switch {
		case o.hit():
			if best < 0 {
				best = i
			}
			return best, final
		case !o.done:
			// Running, or not started yet: it will be unless a
			// resolver before it finds an agent.
			final = false
		}
	}
	return best, final
}

// entry is the cache's state for one caller. Guarded by Router.mu.
type entry struct {
	known     bool      // ans holds a resolvers' answer (an agent or none)
	ans       Answer    // the last answer
	expires   time.Time // ans is served without asking until then
	lastAgent Answer    // the last agent found, for stale answers
	holdUntil time.Time // not asked again before then (after a failure)
	holdWhy   string
	flight    *flight
}

// Router answers routing look-ups. It is safe for concurrent use. Close it
// (or let Run return) to end the flights in the background.
type Router struct {
	cfg     Config
	res     []Resolver
	numbers Numbers
	log     *slog.Logger
	m       *metrics
	hedge   time.Duration
	flyFor  time.Duration

	base   context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex
	entries map[string]*entry
	closed  bool

	memoMu sync.RWMutex
	memo   map[string]normalised

	healthMu sync.Mutex
	health   map[string]string // resolver → what fails ("" while it answers)
}

// New checks o and returns a Router.
func New(o Options) (*Router, error) {
	if o.Numbers == nil {
		return nil, errors.New("route: no Numbers")
	}
	cfg := o.Config.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, r := range o.Resolvers {
		if seen[r.Name()] {
			return nil, fmt.Errorf("ROUTE_ORDER names %s twice", r.Name())
		}
		seen[r.Name()] = true
	}
	r := &Router{
		cfg:     cfg,
		res:     o.Resolvers,
		numbers: o.Numbers,
		log:     o.Logger,
		hedge:   cfg.Timeout / 3,
		flyFor:  max(4*cfg.Timeout, minFlight),
		entries: map[string]*entry{},
		memo:    map[string]normalised{},
		health:  map[string]string{},
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	names := make([]string, len(o.Resolvers))
	for i, res := range o.Resolvers {
		names[i] = res.Name()
	}
	r.m = newMetrics(o.Registry, names, func() float64 {
		r.mu.RLock()
		defer r.mu.RUnlock()
		return float64(len(r.entries))
	})
	r.base, r.cancel = context.WithCancel(context.Background())
	return r, nil
}

// Order returns the resolvers' names in the order they are asked.
func (r *Router) Order() []string {
	out := make([]string, len(r.res))
	for i, res := range r.res {
		out[i] = res.Name()
	}
	return out
}

// maxMemo bounds the memo of normalised callers; when full it starts again
// empty.
const maxMemo = 4096

// normalised is a memoised normalisation: the E.164 number or why not.
type normalised struct{ e164, why string }

// Caller normalises a caller as look-ups do: the E.164 number, or "" and
// why the number cannot be routed on. Parsing a number costs far more than
// a cache hit, so results are memoised.
func (r *Router) Caller(raw string) (string, string) {
	r.memoMu.RLock()
	n, ok := r.memo[raw]
	r.memoMu.RUnlock()
	if ok {
		return n.e164, n.why
	}
	switch num := r.numbers.Normalize(raw); num.Kind {
	case phone.External:
		n = normalised{e164: num.E164}
	case phone.Anonymous:
		n = normalised{why: "anonymous caller"}
	case phone.Internal:
		n = normalised{why: "internal caller"}
	default:
		n = normalised{why: "not a phone number"}
	}
	r.memoMu.Lock()
	if len(r.memo) >= maxMemo {
		clear(r.memo)
	}
	r.memo[raw] = n
	r.memoMu.Unlock()
	return n.e164, n.why
}

// Lookup answers which agent should take caller (a phone number in any
// form the PBX sends). It waits at most Config.Timeout, or until ctx ends.
func (r *Router) Lookup(ctx context.Context, caller string) Answer {
	start := time.Now()
	a := r.lookup(ctx, caller, start)
	r.m.answer(a, start)
	return a
}

func (r *Router) lookup(ctx context.Context, raw string, now time.Time) Answer {
	caller, why := r.Caller(raw)
	if caller == "" {
		return Answer{Reason: why, Result: ResultInvalid}
	}
	r.mu.RLock()
	if e := r.entries[caller]; e != nil && e.known && now.Before(e.expires) {
		a := e.ans
		r.mu.RUnlock()
		a.Result = ResultCached
		return a
	}
	r.mu.RUnlock()
	r.mu.Lock()
	e := r.entries[caller]
	if e != nil && e.known && now.Before(e.expires) {
		a := e.ans
		r.mu.Unlock()
		a.Result = ResultCached
		return a
	}
	f, why := r.startLocked(caller, e, now)
	r.mu.Unlock()
	if f == nil {
		return r.degrade(caller, ResultError, why)
	}
	t := time.NewTimer(r.cfg.Timeout)
	defer t.Stop()
	for {
		f.mu.Lock()
		changed := f.changed
		f.mu.Unlock()
		best, final := f.decide()
		if final {
			return r.settle(caller, f, best, ResultHit)
		}
		select {
		case <-changed:
		case <-t.C:
			r.m.leftOut(f)
			return r.settle(caller, f, best, ResultTimeout)
		case <-ctx.Done():
			return r.settle(caller, f, best, ResultTimeout)
		}
	}
}

// settle turns a flight's outcomes into a look-up's answer: the agent of
// outcome best if there is one; otherwise none, or a stale agent when a
// resolver failed or is still out (late is ResultTimeout then).
func (r *Router) settle(caller string, f *flight, best int, late Result) Answer {
	f.mu.Lock()
	outs := append([]outcome(nil), f.outs...)
	f.mu.Unlock()
	if best >= 0 {
		return Answer{Caller: caller, Match: outs[best].m, Via: r.res[best].Name(), CheckedAt: time.Now(), Result: ResultHit}
	}
	var failed []string
	for i, o := range outs {
		switch {
		case !o.done && late == ResultTimeout:
			failed = append(failed, r.res[i].Name()+": no answer within "+r.cfg.Timeout.String())
		case o.done && !errors.Is(o.err, ErrNoMatch):
			failed = append(failed, r.res[i].Name()+": "+o.err.Error())
			late = ResultError
		}
	}
	if len(failed) == 0 {
		return Answer{Caller: caller, CheckedAt: time.Now(), Reason: noneReason(outs), Result: ResultNone}
	}
	return r.degrade(caller, late, strings.Join(failed, "; "))
}

// noneReason joins the resolvers' reasons for finding no agent.
func noneReason(outs []outcome) string {
	var parts []string
	for _, o := range outs {
		if o.done && o.err != nil {
			parts = append(parts, o.err.Error())
		}
	}
	if len(parts) == 0 {
		return ErrNoMatch.Error()
	}
	return strings.Join(parts, "; ")
}

// degrade answers caller without the resolvers: the agent last found if it
// is recent enough (stale), else no agent with the reason.
func (r *Router) degrade(caller string, res Result, reason string) Answer {
	now := time.Now()
	r.mu.Lock()
	var last Answer
	if e := r.entries[caller]; e != nil {
		if e.known && now.Before(e.expires) {
			a := e.ans
			r.mu.Unlock()
			a.Result = ResultCached
			return a
		}
		last = e.lastAgent
	}
	r.mu.Unlock()
	if last.Extension != "" && r.cfg.StaleMax > 0 && now.Sub(last.CheckedAt) <= r.cfg.StaleMax {
		last.Stale, last.Reason, last.Result = true, reason, ResultStale
		return last
	}
	return Answer{Caller: caller, Reason: reason, Result: res}
}

// startLocked returns the flight for caller, starting one unless the router
// is closed or the caller is held back after a failure; then it returns nil
// and why. r.mu must be held.
func (r *Router) startLocked(caller string, e *entry, now time.Time) (*flight, string) {
	if r.closed {
		return nil, "routing stopped"
	}
	if e == nil {
		if len(r.entries) >= maxEntries {
			r.sweepLocked(now)
		}
		e = &entry{}
		r.entries[caller] = e
	}
	if e.flight != nil {
		return e.flight, ""
	}
	if now.Before(e.holdUntil) {
		return nil, e.holdWhy
	}
	f := &flight{
		outs:    make([]outcome, len(r.res)),
		started: make([]bool, len(r.res)),
		changed: make(chan struct{}),
		done:    make(chan struct{}),
	}
	e.flight = f
	r.wg.Add(1)
	go r.fly(caller, f)
	return f, ""
}

// fly runs the resolvers for caller: each starts when the one before it
// found none or failed, or has run for the hedge time, and none starts
// after one before it found an agent. It stores the answer when every
// started resolver is done.
func (r *Router) fly(caller string, f *flight) {
	defer r.wg.Done()
	ctx, cancel := context.WithTimeout(r.base, r.flyFor)
	defer cancel()
	var wg sync.WaitGroup
	hedge := time.NewTimer(r.hedge)
	defer hedge.Stop()
	for i, res := range r.res {
		if best, _ := f.decide(); best >= 0 {
			break
		}
		f.mu.Lock()
		f.started[i] = true
		f.mu.Unlock()
		wg.Go(func() {
			m, err := res.Resolve(ctx, caller)
			r.m.resolved(res.Name(), err)
			r.noteHealth(res.Name(), err)
			f.mu.Lock()
			f.outs[i] = outcome{done: true, m: m, err: err}
			f.mu.Unlock()
			if _, final := f.decide(); final {
				// Cached before the waiting look-ups wake, so that a
				// look-up after them finds it.
				r.store(caller, f)
			}
			f.mu.Lock()
			close(f.changed)
			f.changed = make(chan struct{})
			f.mu.Unlock()
		})
		if i == len(r.res)-1 {
			break
		}
		hedge.Reset(r.hedge)
		for waiting := true; waiting; {
			f.mu.Lock()
			done, changed := f.outs[i].done, f.changed
			f.mu.Unlock()
			if done {
				break
			}
			select {
			case <-changed:
			case <-hedge.C:
				waiting = false
			case <-ctx.Done():
				waiting = false
			}
		}
	}
	wg.Wait()
	r.store(caller, f)
	close(f.done)
}

// store keeps a flight's final answer, once: an agent, or none when every
// resolver found none; after a failure the caller is held back for a TTL
// and the last agent stays for stale answers. The caller's next look-up
// starts a new flight, even if resolvers of this one (started before one
// found the agent) are still out.
func (r *Router) store(caller string, f *flight) {
	f.mu.Lock()
	stored := f.stored
	f.stored = true
	f.mu.Unlock()
	if stored {
		return
	}
	best, _ := f.decide()
	a := r.settle(caller, f, best, ResultError)
	now := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.entries[caller]
	if e == nil {
		e = &entry{}
		r.entries[caller] = e
	}
	if e.flight == f {
		e.flight = nil
	}
	switch a.Result {
	case ResultHit, ResultNone:
		e.known, e.ans, e.expires = true, a, now.Add(r.cfg.CacheTTL)
		e.holdUntil, e.holdWhy = time.Time{}, ""
		if a.Result == ResultHit {
			e.lastAgent = a
		} else {
			e.lastAgent = Answer{}
		}
	default:
		e.holdUntil = now.Add(r.cfg.CacheTTL)
		e.holdWhy = a.Reason
	}
}

// sweepLocked forgets the entries that can serve nothing any more; if that
// is not enough, all of them.
func (r *Router) sweepLocked(now time.Time) {
	for k, e := range r.entries {
		if e.flight != nil || now.Before(e.holdUntil) || (e.known && now.Before(e.expires)) {
			continue
		}
		if e.lastAgent.Extension != "" && now.Sub(e.lastAgent.CheckedAt) <= r.cfg.StaleMax {
			continue
		}
		delete(r.entries, k)
	}
	if len(r.entries) >= maxEntries {
		for k, e := range r.entries {
			if e.flight == nil {
				delete(r.entries, k)
			}
		}
	}
}

// noteHealth logs when a resolver starts failing, fails differently or
// recovers; not on every failure.
func (r *Router) noteHealth(name string, err error) {
	kind := failureKind(err)
	r.healthMu.Lock()
	prev := r.health[name]
	r.health[name] = kind
	r.healthMu.Unlock()
	switch {
	case kind == prev:
	case kind == "":
		r.log.Info("route: resolver answering again", "resolver", name, "was", prev)
	default:
		r.log.Warn("route: resolver failing; look-ups fall back to the next resolver or a stale answer",
			"resolver", name, "reason", kind, "err", err.Error())
	}
}

// failureKind names a failure for the log and the metrics: "" for an answer.
func failureKind(err error) string {
	var (
		re *robin.Error
		he *HTTPError
	)
	switch {
	case err == nil, errors.Is(err, ErrNoMatch):
		return ""
	case errors.Is(err, ErrQuota):
		return "quota"
	case errors.Is(err, robin.ErrOpen):
		return "breaker_open"
	case errors.Is(err, ErrThrottled):
		return "throttled"
	case errors.As(err, &re) && re.Status != 0:
		return fmt.Sprintf("status_%d", re.Status)
	case errors.As(err, &he):
		return fmt.Sprintf("status_%d", he.Status)
	case isTimeout(err):
		return "timeout"
	}
	return "request_failed"
}

func isTimeout(err error) bool {
	return errors.Is(err, robin.ErrTimeout) || errors.Is(err, context.DeadlineExceeded)
}

// Close ends the flights in the background and waits for them; look-ups
// after Close answer from the cache or degrade. It is safe to call twice.
func (r *Router) Close() {
	r.mu.Lock()
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
}

// Run waits for ctx to end and then closes the router.
func (r *Router) Run(ctx context.Context) error {
	<-ctx.Done()
	r.Close()
	return nil
}
