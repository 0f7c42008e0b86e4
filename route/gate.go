package route

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/voipbridge/voipbridge/robin"
)

// Quota is the request quota of a helpdesk; *robin.Quota satisfies it.
type Quota interface {
	Reserve(ctx context.Context, p robin.Priority) error
	ReadyAt(p robin.Priority) time.Time
}

// acquirer is a Quota that can hold a request's place in its windows until
// the answer arrives (release(sent) then counts it from there); the Gate
// prefers it when the quota offers it, so that no network delay between
// admission and arrival can bunch requests up at the helpdesk.
type acquirer interface {
	Acquire(ctx context.Context, p robin.Priority) (release func(sent bool), err error)
}

// Breaker is a helpdesk's circuit breaker; *robin.Breaker satisfies it.
type Breaker interface {
	Allow() (done func(error), err error)
	State() string
}

// ErrQuota means a request could not get a slot of its helpdesk's quota in
// time; it was not sent.
var ErrQuota = errors.New("helpdesk request quota exhausted")

// Gate admits requests to a helpdesk as presence look-ups are admitted: the
// breaker is asked before the quota, so that an open breaker costs no
// quota, and a request that cannot get a slot soon is not queued at all.
type Gate struct {
	// Quota is reserved before every request; nil means none.
	Quota Quota
	// Priority is the quota priority of the requests.
	Priority robin.Priority
	// Wait is the longest a request waits for a slot (the router's timeout).
	Wait time.Duration
	// Breaker must allow every request and is told its outcome; nil means
	// none.
	Breaker Breaker
}

// Do runs request once the breaker and the quota allow it, and tells the
// breaker the outcome. A request that was never sent returns robin.ErrOpen
// or an error matching ErrQuota.
func (g Gate) Do(ctx context.Context, request func(context.Context) error) error {
	if g.Breaker != nil && g.Breaker.State() == "open" {
		return robin.ErrOpen
	}
	if g.Quota != nil {
		if ready := g.Quota.ReadyAt(g.Priority); ready.After(time.Now().Add(g.Wait)) {
			return fmt.Errorf("%w until %s", ErrQuota, ready.UTC().Format(time.RFC3339))
		}
		release := func(bool) {}
		qctx, cancel := context.WithTimeout(ctx, g.Wait)
		var err error
		if a, ok := g.Quota.(acquirer); ok {
			release, err = a.Acquire(qctx, g.Priority)
		} else {
			err = g.Quota.Reserve(qctx, g.Priority)
		}
		cancel()
		switch {
		case err == nil:
			// Counted as sent whatever happens: a request that may have
			// reached the helpdesk must count.
			defer release(true)
		case ctx.Err() != nil:
			return ctx.Err()
		case qctx.Err() != nil:
			return fmt.Errorf("%w: no request slot within %s", ErrQuota, g.Wait)
		default:
			return fmt.Errorf("quota: %w", err)
		}
	}
	done := func(error) {}
	if g.Breaker != nil {
		d, err := g.Breaker.Allow()
		if err != nil {
			return err
		}
		done = d
	}
	err := request(ctx)
	done(err)
	return err
}
