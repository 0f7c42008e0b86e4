// Package sip watches a PBX through the SIP dialog event package (RFC 4235):
// one SUBSCRIBE per extension, NOTIFYs turned into events.Signals that are
// journaled before the PBX gets its 200 OK.
//
// The monitor registers nothing and changes nothing on the PBX; it only
// subscribes. Each extension has its own subscription state machine
// (refresh before expiry, re-subscription with backoff, no hammering after a
// refusal) and its own memory of the dialogs the PBX reported, which
// survives re-subscriptions so that a call in progress is not reported twice
// and a call that ended while we were not subscribed is reported ended. The
// first full document of every subscription also becomes an events.Snapshot
// of the extension, so that the tracker ends calls that ended while the
// bridge was stopped, when there is no memory to compare with.
package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/prometheus/client_golang/prometheus"
)

// Options are the monitor's collaborators and the knobs that do not come
// from the environment. The zero value works.
type Options struct {
	// Logger receives the monitor's logs (and sipgo's); default slog.Default().
	Logger *slog.Logger
	// Registerer gets the monitor's metrics; nil registers nowhere.
	Registerer prometheus.Registerer
	// TLS is used with SIP_TRANSPORT=tls: RootCAs (or InsecureSkipVerify) to
	// trust the PBX; with Certificates it also lets the PBX open TLS
	// connections to our Contact.
	TLS *tls.Config
	// Backoff tunes re-subscription after failures.
	Backoff Backoff
	// RequestTimeout bounds one SUBSCRIBE transaction; default 32 s (SIP Timer F).
	RequestTimeout time.Duration
	// UnsubscribeTimeout bounds each unsubscribe at shutdown; default 2 s.
	UnsubscribeTimeout time.Duration
	// JournalTimeout bounds journaling the signals of one NOTIFY; default 5 s.
	JournalTimeout time.Duration
}

// Status is a snapshot of the monitor's subscriptions.
type Status struct {
	// Running is true between the start of Run and its return.
	Running bool
	// Watched is the number of extensions the monitor keeps subscribed.
	Watched int
	// Active is the number of subscriptions currently established.
	Active int
	// Failing is the number of extensions whose subscription is down and
	// being retried (the rest of Watched is still waiting for its first try).
	Failing int
}

// Monitor keeps one dialog-event subscription per watched extension and
// turns the PBX's NOTIFYs into journaled signals.
type Monitor struct {
	set     settings
	opts    Options
	c       *core
	log     *slog.Logger
	running atomic.Bool
	used    atomic.Bool

	mu      sync.Mutex
	stack   *stack             // set by Listen
	exts    []string           // what to watch, in order
	runners map[string]*runner // what is watched while Run runs
	runCtx  context.Context    // nil unless Run is running
	loops   sync.WaitGroup

	// busy counts the NOTIFY handlers running, so that Run waits for
	// them (settle, then idle); idle, when set, is closed when busy drops
	// to 0. The gate's closed refuses new ones once Run is stopping.
	gate   sync.RWMutex
	closed bool
	busyMu sync.Mutex
	busy   int
	idle   chan struct{}
}

// New validates cfg and prepares a monitor that journals into j. It opens no
// socket; Run does.
func New(cfg Config, j Journal, opts Options) (*Monitor, error) {
	if j == nil {
		return nil, errors.New("sip: journal is nil")
	}
	set, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("source", SourceName)
	met, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	m := &Monitor{set: set, opts: opts, log: log, exts: set.extensions, runners: map[string]*runner{}}
	m.c = newCore(set, opts, j, log, met)
	return m, nil
}

func newCore(set settings, opts Options, j Journal, log *slog.Logger, met *metrics) *core {
	c := &core{
		journal:   j,
		log:       log,
		metrics:   met,
		domain:    set.domain,
		backoff:   opts.Backoff.withDefaults(),
		spacer:    newSpacer(set.rate),
		jitter:    defaultJitter,
		reqTO:     opts.RequestTimeout,
		unsubTO:   opts.UnsubscribeTimeout,
		journalTO: opts.JournalTimeout,
		stable:    2 * time.Minute,
		resync:    5 * time.Second,
		early:     30 * time.Second,
	}
	if c.reqTO <= 0 {
		c.reqTO = 32 * time.Second
	}
	if c.unsubTO <= 0 {
		c.unsubTO = 2 * time.Second
	}
	if c.journalTO <= 0 {
		c.journalTO = 5 * time.Second
	}
	return c
}

// Run opens the SIP listener, subscribes every watched extension (spread
// over time at SIP_SUBSCRIBE_RATE) and keeps them subscribed until ctx is
// done. It then unsubscribes each extension (bounded by
// Options.UnsubscribeTimeout), waits for NOTIFYs being handled, closes the
// listener and returns nil. It returns an error only when it cannot start.
// A Monitor runs once.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.used.CompareAndSwap(false, true) {
		return errors.New("sip: monitor already ran")
	}
	if err := m.Listen(); err != nil {
		return err
	}
	st := m.stack
	m.running.Store(true)
	defer m.running.Store(false)
	m.mu.Lock()
	m.log.Info("sip monitor started", "server", m.set.server, "transport", m.set.transport,
		"contact", st.contact.Address.String(), "extensions", len(m.exts))
	if len(m.exts) == 0 {
		m.log.Warn("sip monitor has no extensions to watch")
	}
	// The watches stop after ctx, once the NOTIFYs being handled then are
	// answered (see settle).
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()
	m.runCtx = loopCtx
	for _, ext := range m.exts {
		m.startLocked(ext)
	}
	if m.set.keepalive > 0 {
		k := &keeper{probe: st.options, every: m.set.keepalive, timeout: probeTimeout(m.set.keepalive),
			restarted: m.restarted, log: m.log, metrics: m.c.metrics}
		m.loops.Add(1)
		go func() {
			defer m.loops.Done()
			k.run(ctx)
		}()
	}
	m.mu.Unlock()

	<-ctx.Done()
	m.settle(settleTimeout)
	stopLoops()
	m.mu.Lock()
	m.runCtx = nil
	m.runners = map[string]*runner{}
	m.mu.Unlock()
	m.loops.Wait() // every watch has unsubscribed
	m.gate.Lock()
	m.closed = true
	m.gate.Unlock()
	m.settle(0) // no NOTIFY starts any more: wait for the last ones
	st.close()
	m.log.Info("sip monitor stopped")
	return nil
}

// settleTimeout bounds how long a stopping monitor waits for the NOTIFYs
// being handled before it unsubscribes.
const settleTimeout = time.Second

// settle waits (at most d; 0: for as long as it takes) for the NOTIFYs
// being handled to be answered. Run settles before it unsubscribes, so
// that a PBX gets the answer to its last NOTIFY first (on TCP the two
// travel on different connections, and the unsubscribe overtook the
// answer: a PBX may count that NOTIFY as failed); NOTIFYs that come
// meanwhile, such as the final one an unsubscribe asks for, are still
// handled. Once the gate is closed Run settles without a bound, so that it
// does not return under a handler.
func (m *Monitor) settle(d time.Duration) {
	m.busyMu.Lock()
	if m.busy == 0 {
		m.busyMu.Unlock()
		return
	}
	if m.idle == nil {
		m.idle = make(chan struct{})
	}
	idle := m.idle
	m.busyMu.Unlock()
	if d <= 0 {
		<-idle
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-idle:
	case <-t.C:
	}
}

// handling counts a NOTIFY being handled (+1) or answered (-1), for settle.
func (m *Monitor) handling(delta int) {
	m.busyMu.Lock()
	defer m.busyMu.Unlock()
	m.busy += delta
	if m.busy == 0 && m.idle != nil {
		close(m.idle)
		m.idle = nil
	}
}

// Listen opens the SIP socket and the user agent, so that a bad SIP_LISTEN
// or an unreachable contact address fails at startup rather than in Run.
// Run calls it when it has not been called; once it succeeded, Run must
// follow (Run closes what Listen opened).
func (m *Monitor) Listen() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stack != nil {
		return nil
	}
	st, err := startStack(m.set, m.opts.TLS, m.log, m.onNotify)
	if err != nil {
		return err
	}
	m.stack = st
	m.c.req = st
	return nil
}

// runner is one running watch.
type runner struct {
	w      *watch
	cancel context.CancelFunc
}

// startLocked starts watching ext; m.mu is held and Run is running.
func (m *Monitor) startLocked(ext string) {
	ctx, cancel := context.WithCancel(m.runCtx)
	w := newWatch(m.c, ext)
	m.runners[ext] = &runner{w: w, cancel: cancel}
	m.loops.Add(1)
	go func() {
		defer m.loops.Done()
		defer cancel()
		w.run(ctx, m.set.expires)
	}()
}

// restarted makes every watched extension re-subscribe at once (each
// through its backoff and SIP_SUBSCRIBE_RATE): the PBX restarted and forgot
// every subscription.
func (m *Monitor) restarted(why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.c.metrics.restarts.Inc()
	m.log.Warn("sip PBX restarted: re-subscribing every extension", "why", why, "extensions", len(m.runners))
	for _, r := range m.runners {
		r.w.restart()
	}
}

// SetExtensions replaces the set of watched extensions. While Run runs, new
// extensions are subscribed (spread like the first ones) and dropped ones
// unsubscribed; what the PBX said about extensions that stay is kept. It
// rejects the whole list if one entry cannot be a SIP user part.
func (m *Monitor) SetExtensions(exts []string) error {
	clean, err := cleanExtensions(exts)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exts = clean
	if m.runCtx == nil {
		return nil
	}
	want := make(map[string]bool, len(m.exts))
	for _, ext := range m.exts {
		want[ext] = true
		if m.runners[ext] == nil {
			m.startLocked(ext)
		}
	}
	for ext, r := range m.runners {
		if !want[ext] {
			r.cancel() // its loop unsubscribes and ends; Run waits for it
			delete(m.runners, ext)
		}
	}
	m.log.Info("sip extensions changed", "extensions", len(m.exts))
	return nil
}

// Extensions returns the extensions the monitor watches (or will watch).
func (m *Monitor) Extensions() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.exts...)
}

// Status reports how many subscriptions are up; safe to call at any time.
func (m *Monitor) Status() Status {
	return Status{
		Running: m.running.Load(),
		Watched: len(m.Extensions()),
		Active:  int(m.c.active.Load()),
		Failing: int(m.c.failing.Load()),
	}
}

// onNotify answers a NOTIFY only after its signals were journaled.
func (m *Monitor) onNotify(req *gosip.Request, tx gosip.ServerTransaction) {
	m.gate.RLock()
	if m.closed {
		m.gate.RUnlock()
		m.c.metrics.notifies.WithLabelValues(resultShutdown).Inc()
		_ = tx.Respond(gosip.NewResponseFromRequest(req, gosip.StatusServiceUnavailable, "Shutting Down", nil))
		return
	}
	m.handling(1)
	m.gate.RUnlock()
	defer m.handling(-1)

	status, reason := m.c.handleNotify(context.Background(), req)
	res := gosip.NewResponseFromRequest(req, status, reason, nil)
	if status == gosip.StatusInternalServerError {
		res.AppendHeader(gosip.NewHeader("Retry-After", "2"))
	}
	if err := tx.Respond(res); err != nil {
		m.log.Debug("sip NOTIFY response not sent", "status", status, "err", err)
	}
}
