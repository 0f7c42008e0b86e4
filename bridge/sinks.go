package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/chatwoot"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/followup"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/route"
)

// SinksConfig turns on the sinks beyond ROBIN's register-event.
type SinksConfig struct {
	// MissedCallChannel is the external identifier of a custom channel in
	// ROBIN (MISSED_CALL_CHANNEL): each missed inbound call becomes a
	// message there. Off when empty.
	MissedCallChannel string `env:"MISSED_CALL_CHANNEL"`

	// Chatwoot's call log is on when CHATWOOT_INBOX_ID is set with
	// CHATWOOT_URL, CHATWOOT_ACCOUNT_ID and CHATWOOT_API_TOKEN (read by
	// RouteConfig), unless CHATWOOT_CALL_LOG is false.
	ChatwootInboxID    string        `env:"CHATWOOT_INBOX_ID"`
	ChatwootCallLog    bool          `env:"CHATWOOT_CALL_LOG" envDefault:"true"`
	ChatwootAssign     bool          `env:"CHATWOOT_ASSIGN"`
	ChatwootRateLimits string        `env:"CHATWOOT_RATE_LIMITS" envDefault:"60/1m"`
	ChatwootTimeout    time.Duration `env:"CHATWOOT_TIMEOUT" envDefault:"10s"`
}

// callLog reports whether Chatwoot's call log is on.
func (c SinksConfig) callLog(cfg *Config) bool {
	r := cfg.Route
	return c.ChatwootCallLog && c.ChatwootInboxID != "" && r.ChatwootURL != "" && r.ChatwootAccountID != "" && r.ChatwootAPIToken != ""
}

func (c SinksConfig) validate(cfg *Config) error {
	var errs []error
	if c.MissedCallChannel != "" && cfg.RobinAPISecret == "" {
		errs = append(errs, errors.New("MISSED_CALL_CHANNEL needs ROBIN_API_SECRET (or ROBIN_API_SECRET_FILE): the Channel API takes the key and secret"))
	}
	r := cfg.Route
	switch {
	case !c.ChatwootCallLog:
		// Off; routing may still use Chatwoot.
	case c.ChatwootInboxID != "":
		// CHATWOOT_URL, CHATWOOT_ACCOUNT_ID and CHATWOOT_API_TOKEN are
		// checked with routing's settings once CHATWOOT_URL is set.
		if r.ChatwootURL == "" {
			errs = append(errs, errors.New("CHATWOOT_INBOX_ID is set but CHATWOOT_URL is not: the call log needs CHATWOOT_URL, CHATWOOT_ACCOUNT_ID and CHATWOOT_API_TOKEN"))
		}
		if id, err := strconv.ParseInt(c.ChatwootInboxID, 10, 64); err != nil || id <= 0 {
			errs = append(errs, fmt.Errorf("CHATWOOT_INBOX_ID %q: want the inbox's number (Settings → Inboxes, the number in the inbox's URL)", c.ChatwootInboxID))
		}
		if _, err := robin.ParseWindows(c.ChatwootRateLimits); err != nil {
			errs = append(errs, fmt.Errorf("CHATWOOT_RATE_LIMITS: %w", err))
		}
		if c.ChatwootTimeout <= 0 {
			errs = append(errs, fmt.Errorf("CHATWOOT_TIMEOUT %s: want a positive duration", c.ChatwootTimeout))
		}
	case c.ChatwootAssign:
		errs = append(errs, errors.New("CHATWOOT_ASSIGN is set but CHATWOOT_INBOX_ID is not: it assigns the call log's conversations"))
	}
	if c.ChatwootAssign && !c.ChatwootCallLog {
		errs = append(errs, errors.New("CHATWOOT_ASSIGN is set but CHATWOOT_CALL_LOG is false: it assigns the call log's conversations"))
	}
	return errors.Join(errs...)
}

// sinkRun is one sink beyond register-event with its own stream,
// dispatcher and breaker.
type sinkRun struct {
	name    string
	wants   func(events.Envelope) bool
	queue   *events.JournalQueue
	disp    *events.Dispatcher
	breaker *robin.Breaker
	// close, when set, is called when the bridge stops.
	close func()
}

// sinkRoutes are the further sinks' routes for the tracker; called before
// the tracker is built.
func (b *Bridge) sinkRoutes() []events.SinkRoute {
	var out []events.SinkRoute
	if b.cfg.Sinks.MissedCallChannel != "" {
		b.sinks = append(b.sinks, &sinkRun{name: followup.Name, wants: followup.Wants})
	}
	if b.cfg.Sinks.callLog(&b.cfg) {
		b.sinks = append(b.sinks, &sinkRun{name: chatwoot.Name, wants: chatwoot.Wants})
	}
	for _, s := range b.sinks {
		out = append(out, events.SinkRoute{Name: s.name, Wants: s.wants})
	}
	return out
}

// startSinks builds each further sink's stream, breaker and dispatcher.
// ROBIN's sinks share its quota record, Chatwoot's has its own; each has
// its own breaker, so a failing Channel API or Chatwoot never holds
// register-event back.
func (b *Bridge) startSinks(ctx context.Context, metrics *events.Metrics, onDelivery func(events.DeliveryOutcome)) error {
	for _, s := range b.sinks {
		q, err := b.journal.SinkQueue(ctx, s.name, b.cfg.NATSReplicas)
		if err != nil {
			return err
		}
		s.queue = q
		s.breaker = robin.NewBreaker(robin.BreakerOptions{
			Failures: b.cfg.Quota.BreakerFailures, Interval: b.cfg.Quota.BreakerInterval, Logger: b.log.With("sink", s.name),
		})
		var sink events.Sink
		var limiter events.Limiter = b.quota
		priority := events.PriorityNormal
		switch s.name {
		case followup.Name:
			kv, err := b.journal.KeyValue(ctx, "FOLLOWUPS", "callers with an open missed-call follow-up in ROBIN", b.cfg.NATSReplicas)
			if err != nil {
				return err
			}
			sink = events.Envelopes(&followup.Sink{Poster: b.robin, Channel: b.cfg.Sinks.MissedCallChannel, Open: kv, Agent: b.agentName})
			priority = events.PriorityLow
		case chatwoot.Name:
			cw, err := b.newCallLog(ctx)
			if err != nil {
				return err
			}
			sink, limiter, s.close = events.Envelopes(cw), cw.Limiter(), cw.Close
		}
		s.disp = events.NewDispatcher(events.DispatcherOptions{
			Queue: q, Name: s.name, Sink: sink, Limiter: limiter, Gate: s.breaker, Priority: priority,
			Committed: b.tracker.CommittedOn(q.StreamName()), Logger: b.log.With("sink", s.name), Metrics: metrics,
			OnDelivery: onDelivery, // the board shows each sink's deliveries
			Workers:    1, BackoffMax: b.cfg.Quota.RetryMax, AuthProbe: b.cfg.Quota.AuthProbe,
		})
		b.addReady("delivery_"+s.name, func() error {
			if err := b.leaseCheck(); err != nil {
				return err
			}
			if r := s.disp.Paused(); r != "" {
				return fmt.Errorf("paused: %s", r)
			}
			if st := s.breaker.State(); st != "closed" {
				return fmt.Errorf("unreachable: circuit breaker %s", st)
			}
			return nil
		})
	}
	return nil
}

// runSinks runs the further sinks' dispatchers (with the tracker).
func (b *Bridge) runSinks() {
	for _, s := range b.sinks {
		b.goRun("dispatcher "+s.name, s.disp.Run)
		if s.close != nil {
			context.AfterFunc(b.runCtx, s.close)
		}
	}
}

// newCallLog builds Chatwoot's call log: its client, its own rate limit
// (recorded in the journal, per Chatwoot account, so a restart cannot
// burst and bridges on one NATS share it) and the bucket of the callers'
// contacts and conversations.
func (b *Bridge) newCallLog(ctx context.Context) (*chatwoot.Sink, error) {
	c, r := b.cfg.Sinks, b.cfg.Route
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "voipbridge_chatwoot_requests_total",
		Help: "Requests the Chatwoot call log sent, by endpoint and status class (2xx, 4xx, 5xx, error).",
	}, []string{"endpoint", "status"})
	b.reg.MustRegister(requests)
	cl, err := chatwoot.New(chatwoot.Options{
		URL: r.ChatwootURL, AccountID: r.ChatwootAccountID, Token: r.ChatwootAPIToken, Timeout: c.ChatwootTimeout,
		Count: func(endpoint, status string) { requests.WithLabelValues(endpoint, status).Inc() },
	})
	if err != nil {
		return nil, err
	}
	windows, err := robin.ParseWindows(c.ChatwootRateLimits)
	if err != nil {
		return nil, fmt.Errorf("CHATWOOT_RATE_LIMITS: %w", err)
	}
	qkv, err := b.journal.SharedKeyValue(ctx, quotaBucket, "requests started to the helpdesk, per API key", b.cfg.NATSReplicas)
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256([]byte("voipbridge chatwoot quota " + r.ChatwootURL + " " + r.ChatwootAccountID))
	q, err := robin.NewQuota(ctx, robin.QuotaOptions{
		Windows: windows, Share: 1,
		Store: robin.NewKVQuotaStore(qkv, "chatwoot-"+hex.EncodeToString(h[:12])),
	})
	if err != nil {
		return nil, fmt.Errorf("CHATWOOT_RATE_LIMITS: %w", err)
	}
	callers, err := b.journal.KeyValue(ctx, "CHATWOOT_CALLERS", "per caller, the Chatwoot contact and conversation of the call log", b.cfg.NATSReplicas)
	if err != nil {
		return nil, err
	}
	inbox, _ := strconv.ParseInt(c.ChatwootInboxID, 10, 64) // validated
	return chatwoot.NewSink(chatwoot.SinkOptions{
		Client: cl, InboxID: inbox, Callers: callers, Quota: q, Numbers: b.numbers,
		Agents: directoryNames{agents: route.Agents{Dir: b.dir, Sources: routeSources}, dir: b.dir},
		Assign: c.ChatwootAssign, Logger: b.log.With("sink", chatwoot.Name),
	})
}

// directoryNames names agents for the call log: by ROBIN extension as
// routing does, and by PBX id.
type directoryNames struct {
	agents route.Agents
	dir    *extensions.Directory
}

func (d directoryNames) ByExtension(source, ext string) (extensions.Agent, bool) {
	return d.agents.ByExtension(source, ext)
}

func (d directoryNames) Lookup(source, pbxID string) (extensions.Agent, bool) {
	return d.dir.Lookup(source, pbxID)
}

// agentName names the agent with this ROBIN extension, "" if unknown.
func (b *Bridge) agentName(ext string) string {
	for _, a := range b.dir.Agents("") {
		if a.Extension == ext && a.Name != "" {
			return a.Name
		}
	}
	return ""
}
