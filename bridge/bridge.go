package bridge

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/voipbridge/voipbridge/backoff"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/pbx/webhook"
	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/sip"
)

// Version is the program's version, set at build time with -ldflags.
var Version = "dev"

// Bridge is one running voipbridge.
type Bridge struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	journal  *events.Journal
	dir      *extensions.Directory
	tracker  *events.Tracker
	disp     *events.Dispatcher
	robin    *robin.Client
	quota    *robin.Quota
	lease    *events.Lease // nil with the embedded journal
	sinks    []*sinkRun    // sinks beyond register-event
	breaker  *robin.Breaker
	requests *prometheus.CounterVec // requests to the helpdesk, by endpoint and status class
	numbers  *phone.Normalizer
	mux      *http.ServeMux
	edge     *httpEdge    // the listeners and their servers
	ln       net.Listener // the public listener (HTTP_ADDR)
	runCtx   context.Context
	stopRun  context.CancelCauseFunc
	wg       sync.WaitGroup
	readyMu  sync.Mutex
	ready    map[string]func() error
	draining chan struct{}
}

// New opens the journal, restores the tracker, builds the sinks and sources
// and listens on HTTP_ADDR. Nothing runs until Run. On an external NATS a
// journal that is not ready yet (a cluster still electing the leaders of
// freshly made streams and buckets answers "no responders" for a moment)
// is waited for, up to journalStartWait, instead of failing the start.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Bridge, error) {
	start, last := time.Now(), ""
	for attempt := 1; ; attempt++ {
		b, err := newBridge(ctx, cfg, log)
		if err == nil || cfg.NATSURL == "" || !journalNotReady(err) || ctx.Err() != nil || time.Since(start) > journalStartWait {
			return b, err
		}
		if err.Error() != last {
			log.Warn("journal not ready; starting again", "err", err)
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(backoff.Delay(attempt, 500*time.Millisecond, 10*time.Second)):
		}
	}
}

// journalNotReady: the error is an external journal not answering yet.
func journalNotReady(err error) bool {
	if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoServers) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "no responders") || strings.Contains(msg, "temporarily unavailable") || strings.Contains(msg, "timeout")
}

func newBridge(ctx context.Context, cfg Config, log *slog.Logger) (_ *Bridge, err error) {
	b := &Bridge{cfg: cfg, log: log, reg: prometheus.NewRegistry(), ready: map[string]func() error{}, draining: make(chan struct{})}
	logEnvWarnings(log, cfg.Warnings)
	b.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	buildInfo := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "voipbridge_build_info", Help: "1, labelled with the running version.",
	}, []string{"version"})
	buildInfo.WithLabelValues(Version).Set(1)
	b.reg.MustRegister(buildInfo)
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	b.numbers, err = phone.New(phone.Options{Region: cfg.PhoneRegion, OutsideLinePrefix: cfg.OutsideLinePrefix, InternalMaxDigits: cfg.InternalMaxDigits})
	if err != nil {
		return nil, fmt.Errorf("PHONE_REGION/OUTSIDE_LINE_PREFIX: %w", err)
	}
	if b.dir, err = extensions.Load(cfg.Extensions, cfg.ExtensionsFile); err != nil {
		return nil, fmt.Errorf("extensions: %w", err)
	}
	if b.journal, err = events.OpenJournal(ctx, journalOptions(cfg, log)); err != nil {
		return nil, err
	}
	b.reg.MustRegister(&journalCollector{j: b.journal})
	didMap, err := ParseDIDMap(cfg.DIDMap)
	if err != nil {
		return nil, err
	}
	for k, n := range didMap {
		if num := b.numbers.Normalize(n); num.Kind != phone.External {
			return nil, fmt.Errorf("DID_MAP %s=%s: not a phone number of the plan (PHONE_REGION)", k, n)
		}
	}
	metrics := events.NewMetrics(b.reg)
	hist, err := openRouteHistory(ctx, cfg, b.journal, b.dir, log)
	if err != nil {
		return nil, err
	}
	brd := b.newBoard() // the live call board, fed by the tracker and the dispatcher
	if b.tracker, err = events.NewTracker(ctx, events.TrackerOptions{
		Journal: b.journal, Numbers: b.numbers, Dir: b.dir, Logger: log, Metrics: metrics, MaxLag: cfg.TrackerMaxLag,
		Sinks: b.sinkRoutes(),
		// Routing's caller history learns who answered whom; the board
		// shows the events.
		OnCommitted: boardOnCommitted(brd, hist.Record),
		Policies: events.Policies{
			ReportMissed:     cfg.MissedCalls == "report",
			ReportInternal:   cfg.InternalCalls == "report",
			AnonymousNumber:  cfg.AnonymousNumber,
			CallTimeout:      cfg.CallTimeout,
			TransferWindow:   cfg.TransferWindow,
			CallIDReuseAfter: cfg.CallIDReuse,
			DIDMap:           didMap,
			// The sources that can continue a call under a new, unlinked
			// call id, as they declare it.
			Continuing: map[string]bool{sip.SourceName: sip.ContinuesCalls},
		},
	}); err != nil {
		return nil, err
	}
	if b.robin, err = robin.NewClient(robin.Config{
		APIURL: cfg.RobinAPIURL, APIKey: cfg.RobinAPIKey, APISecret: cfg.RobinAPISecret,
		PresenceURL: cfg.RobinPresenceURL, Timeout: cfg.RobinTimeout, UserAgent: "voipbridge/" + Version,
		HTTPClient: helpdeskHTTPClient(helpdeskDuration(b.reg), cfg.RobinPresenceURL),
	}); err != nil {
		return nil, err
	}
	if b.quota, err = b.newQuota(ctx); err != nil {
		return nil, err
	}
	breakerState := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "voipbridge_breaker_state", Help: "1 for the helpdesk circuit breaker's current state.",
	}, []string{"state"})
	b.reg.MustRegister(breakerState)
	setBreaker := func(st string) {
		for _, s := range []string{"closed", "half-open", "open"} {
			v := 0.0
			if s == st {
				v = 1
			}
			breakerState.WithLabelValues(s).Set(v)
		}
	}
	setBreaker("closed")
	b.breaker = robin.NewBreaker(robin.BreakerOptions{
		Failures: cfg.Quota.BreakerFailures, Interval: cfg.Quota.BreakerInterval, Logger: log, OnState: setBreaker,
	})
	b.requests = helpdeskRequests(b.reg)
	sink := newCountingSink(b.robin, b.requests)
	b.disp = events.NewDispatcher(events.DispatcherOptions{
		Journal: b.journal, Sink: sink, Limiter: b.quota, Gate: b.breaker, Committed: b.tracker,
		Logger: log, Metrics: metrics, Workers: deliveryWorkers(cfg.DeliveryWorkers, b.quota.Windows()), BackoffMax: cfg.Quota.RetryMax, AuthProbe: cfg.Quota.AuthProbe,
		OnDelivery: onDeliveries(boardOnDelivery(brd), deliveryLatency(b.reg)),
	})
	if err := b.startSinks(ctx, metrics, boardOnDelivery(brd)); err != nil {
		return nil, err
	}

	b.mux = http.NewServeMux()
	b.mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "ok")
	})
	b.mux.HandleFunc("GET /readyz", b.serveReady)
	b.mux.HandleFunc("GET /v1/status", b.serveStatus)
	if b.edge, err = newHTTPEdge(cfg.HTTP, cfg.HTTPAddr, b.mux, log); err != nil {
		return nil, err
	}
	b.edge.admin.Handle("GET /metrics", promhttp.HandlerFor(b.reg, promhttp.HandlerOpts{Registry: b.reg}))
	b.addReady("journal", func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := b.journal.Ready(ctx); err != nil {
			return intakeDown{err}
		}
		return nil
	})
	b.addReady("tracker", func() error {
		if err := b.leaseCheck(); err != nil {
			return err
		}
		if st := b.tracker.Status(); st != "" {
			// Intake works while the tracker restores or catches up.
			return errors.New(st)
		}
		return nil
	})
	b.addReady("delivery", func() error { return b.deliveryCheck() })
	if err := b.openLease(ctx); err != nil {
		return nil, err
	}

	b.mountAdmin()
	b.mountBoard(brd)

	allow, err := webhook.ParseCIDRs(cfg.WebhookAllowCIDRs)
	if err != nil {
		return nil, err
	}
	env := &sourceEnv{
		Journal: b.journal, Dir: b.dir, Log: log, Registry: b.reg, mux: b.mux, b: b,
		guard: &webhook.Guard{Token: cfg.WebhookToken, HMACSecret: cfg.WebhookHMACSecret, Allow: allow, MaxBody: cfg.WebhookMaxBody, Logger: log,
			Observe: webhookRequests(b.reg)},
	}
	env.Webhook(webhook.Source, &webhook.Generic{Journal: b.journal, Logger: log}, http.MethodPost, http.MethodGet)

	b.runCtx, b.stopRun = context.WithCancelCause(context.WithoutCancel(ctx))
	if err := startPresence(b.runCtx, cfg.Presence, &presenceEnv{
		Client: b.robin, Quota: b.quota, Breaker: b.breaker, Numbers: b.numbers,
		Requests: b.requests, Registry: b.reg, Log: log, Mux: b.mux, b: b,
	}); err != nil {
		b.stopRun(err)
		return nil, err
	}
	if err := startRoute(b.runCtx, b, hist); err != nil {
		b.stopRun(err)
		return nil, err
	}
	for _, start := range []func() error{
		func() error { return startSIP(b.runCtx, cfg.SIP, env) },
		func() error { return startThreeCX(b.runCtx, cfg.ThreeCX, env) },
		func() error { return startXelion(b.runCtx, cfg.Xelion, env) },
		func() error { return startVoIPGRID(b.runCtx, cfg.VoIPGRID, env) },
		func() error { return startWebhookProfiles(cfg.WebhookProfilesDir, env) },
	} {
		if err := start(); err != nil {
			b.stopRun(err)
			return nil, err
		}
	}

	if b.ln, err = b.edge.listen(b.reg); err != nil {
		b.stopRun(err)
		return nil, err
	}
	return b, nil
}

// journalStartWait is how long a bridge on an external NATS keeps trying
// to start while its journal is not ready: a cluster that is still
// electing its leaders, or starting together with the bridge, is not an
// error yet.
const journalStartWait = 2 * time.Minute

// Addr is the address the HTTP API listens on.
func (b *Bridge) Addr() string { return b.ln.Addr().String() }

// ReloadExtensions re-reads EXTENSIONS and EXTENSIONS_FILE; on error the
// current directory stays. Calls in progress keep the agent they have.
func (b *Bridge) ReloadExtensions() error {
	return b.dir.Reload(b.cfg.Extensions, b.cfg.ExtensionsFile)
}

// Run serves until ctx is cancelled, then drains: HTTP intake stops (requests
// in flight finish, so what was acknowledged is journaled), sources stop,
// the tracker checkpoints, deliveries in flight finish and the journal
// closes. It returns nil after a clean drain.
func (b *Bridge) Run(ctx context.Context) error {
	defer b.close()
	srvErr := b.edge.serve()
	b.runActive()
	b.log.Info("voipbridge running", "http", b.Addr(), "version", Version, "journal", b.journalKind())

	var err error
	select {
	case <-ctx.Done():
		b.log.Info("shutting down: stopping intake")
	case err = <-srvErr:
		err = fmt.Errorf("http: %w", err)
	case <-b.runCtx.Done():
		err = context.Cause(b.runCtx)
	}
	close(b.draining)
	shut, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if serr := b.edge.shutdown(shut); serr != nil {
		b.log.Warn("http shutdown", "err", serr)
	}
	b.stopRun(nil)
	b.wg.Wait()
	pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer pcancel()
	if n, perr := b.journal.Pending(pctx); perr == nil && n > 0 {
		b.log.Info("events stay journaled for the next start", "events", n)
	}
	b.log.Info("voipbridge stopped")
	return err
}

// goRun runs f until the bridge stops; an error stops the bridge.
func (b *Bridge) goRun(name string, f func(ctx context.Context) error) {
	b.wg.Go(func() {
		if err := f(b.runCtx); err != nil && b.runCtx.Err() == nil {
			b.log.Error("component failed; stopping", "component", name, "err", err)
			b.stopRun(fmt.Errorf("%s: %w", name, err))
		}
	})
}

// intakeDown is a check failing in a way that stops intake: the PBX's
// signals cannot be journaled. Only such a failure makes /readyz 503, so a
// load balancer never cuts the PBX off because the helpdesk is down.
type intakeDown struct{ error }

func (e intakeDown) Unwrap() error { return e.error }

func (b *Bridge) addReady(name string, check func() error) {
	b.readyMu.Lock()
	defer b.readyMu.Unlock()
	b.ready[name] = check
}

// checks runs every check and returns each one's state ("ok", "degraded:
// …" or the problem) and whether intake works.
func (b *Bridge) checks() (out map[string]string, intake bool) {
	b.readyMu.Lock()
	checks := make(map[string]func() error, len(b.ready))
	for n, c := range b.ready {
		checks[n] = c
	}
	b.readyMu.Unlock()
	out, intake = map[string]string{}, true
	select {
	case <-b.draining:
		out["bridge"], intake = "shutting down", false
	default:
	}
	for n, check := range checks {
		err := check()
		var down intakeDown
		switch {
		case err == nil:
			out[n] = "ok"
		case errors.As(err, &down):
			out[n], intake = err.Error(), false
		default:
			out[n] = "degraded: " + err.Error()
		}
	}
	return out, intake
}

// serveReady answers 200 while intake works (the journal takes signals)
// and 503 when it does not; the JSON body names each check's state, with
// problems that leave intake working (the helpdesk down, a source
// reconnecting, the tracker catching up) as "degraded: …".
func (b *Bridge) serveReady(w http.ResponseWriter, _ *http.Request) {
	out, intake := b.checks()
	status := http.StatusOK
	if !intake {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(out)
}

// Status is the answer of GET /v1/status: what the bridge sees and how
// delivery is doing, for operators and monitoring.
type Status struct {
	Intake bool `json:"intake"`
	// Role is "active", or "standby" while another bridge holds this
	// journal's lease (external NATS only).
	Role     string            `json:"role"`
	Checks   map[string]string `json:"checks"`
	Tracker  TrackerStatus     `json:"tracker"`
	Delivery DeliveryStatus    `json:"delivery"`
}

// TrackerStatus: how far the tracker is behind the journal.
type TrackerStatus struct {
	State      string  `json:"state"` // "ok", or restoring / lagging with the figures
	LagSignals uint64  `json:"lag_signals"`
	LagSeconds float64 `json:"lag_seconds"`
}

// DeliveryStatus: the helpdesk sink's state.
type DeliveryStatus struct {
	State   string `json:"state"` // "ok", or why delivery is held back
	Paused  string `json:"paused,omitempty"`
	Breaker string `json:"breaker"`
	Pending uint64 `json:"pending_events"`
}

func (b *Bridge) serveStatus(w http.ResponseWriter, r *http.Request) {
	checks, intake := b.checks()
	st := Status{Intake: intake, Checks: checks, Role: "active"}
	if b.leaseCheck() != nil {
		st.Role = "standby"
	}
	n, age := b.tracker.Lag()
	st.Tracker = TrackerStatus{State: cmp.Or(b.tracker.Status(), "ok"), LagSignals: n, LagSeconds: age.Seconds()}
	st.Delivery = DeliveryStatus{State: "ok", Paused: b.disp.Paused(), Breaker: b.breaker.State()}
	if err := b.deliveryCheck(); err != nil {
		st.Delivery.State = err.Error()
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if p, err := b.journal.Pending(ctx); err == nil {
		st.Delivery.Pending = p
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(st)
}

// deliveryCheck says why delivery is held back, or nil.
func (b *Bridge) deliveryCheck() error {
	if err := b.leaseCheck(); err != nil {
		return err
	}
	if r := b.disp.Paused(); r != "" {
		return fmt.Errorf("paused: %s", r)
	}
	if st := b.breaker.State(); st != "closed" {
		return fmt.Errorf("helpdesk unreachable: circuit breaker %s", st)
	}
	return nil
}

func (b *Bridge) journalKind() string {
	if b.journal.Embedded() {
		return "embedded"
	}
	return "external"
}

func (b *Bridge) close() {
	if b.ln != nil {
		b.ln.Close()
	}
	if b.journal != nil {
		b.journal.Close()
	}
}

// Run loads nothing itself: it builds a bridge from cfg and runs it until ctx
// is cancelled.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	b, err := New(ctx, cfg, log)
	if err != nil {
		return err
	}
	return b.Run(ctx)
}
