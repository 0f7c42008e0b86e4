package bridge

import (
	"context"
	"fmt"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/followup"
	"github.com/voipbridge/voipbridge/robin"
)

// SinksConfig turns on the sinks beyond ROBIN's register-event.
type SinksConfig struct {
	// MissedCallChannel is the external identifier of a custom channel in
	// ROBIN (MISSED_CALL_CHANNEL): each missed inbound call becomes a
	// message there. Off when empty.
	MissedCallChannel string `env:"MISSED_CALL_CHANNEL"`
}

func (c SinksConfig) validate(cfg *Config) error {
	if c.MissedCallChannel != "" && cfg.RobinAPISecret == "" {
		return fmt.Errorf("MISSED_CALL_CHANNEL needs ROBIN_API_SECRET (or ROBIN_API_SECRET_FILE): the Channel API takes the key and secret")
	}
	return nil
}

// sinkRun is one sink beyond register-event with its own stream,
// dispatcher and breaker.
type sinkRun struct {
	name    string
	wants   func(events.Envelope) bool
	queue   *events.JournalQueue
	disp    *events.Dispatcher
	breaker *robin.Breaker
}

// sinkRoutes are the further sinks' routes for the tracker; called before
// the tracker is built.
func (b *Bridge) sinkRoutes() []events.SinkRoute {
	var out []events.SinkRoute
	if b.cfg.Sinks.MissedCallChannel != "" {
		b.sinks = append(b.sinks, &sinkRun{name: followup.Name, wants: followup.Wants})
	}
	for _, s := range b.sinks {
		out = append(out, events.SinkRoute{Name: s.name, Wants: s.wants})
	}
	return out
}

// startSinks builds each further sink's stream, breaker and dispatcher.
// ROBIN's sinks share its quota record; each has its own breaker, so a
// failing Channel API never holds register-event back.
func (b *Bridge) startSinks(ctx context.Context, metrics *events.Metrics) error {
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
		priority := events.PriorityNormal
		switch s.name {
		case followup.Name:
			kv, err := b.journal.KeyValue(ctx, "FOLLOWUPS", "callers with an open missed-call follow-up in ROBIN", b.cfg.NATSReplicas)
			if err != nil {
				return err
			}
			sink = &followup.Sink{Poster: b.robin, Channel: b.cfg.Sinks.MissedCallChannel, Open: kv, Agent: b.agentName}
			priority = events.PriorityLow
		}
		s.disp = events.NewDispatcher(events.DispatcherOptions{
			Queue: q, Name: s.name, Sink: sink, Limiter: b.quota, Gate: s.breaker, Priority: priority,
			Committed: b.tracker.CommittedOn(q.StreamName()), Logger: b.log.With("sink", s.name), Metrics: metrics,
			Workers: 1, BackoffMax: b.cfg.Quota.RetryMax, AuthProbe: b.cfg.Quota.AuthProbe,
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
	}
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
