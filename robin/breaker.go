package robin

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/sony/gobreaker/v2"
	"github.com/voipbridge/voipbridge/events"
)

// BreakerOptions configure the circuit breaker in front of the helpdesk.
type BreakerOptions struct {
	// Failures is how many consecutive helpdesk failures open the breaker (default 5).
	Failures uint32
	// Interval is how long it stays open before one probe is let through (default 30s).
	Interval time.Duration
	// Logger receives one line when the breaker opens and one when it closes.
	Logger *slog.Logger
	// OnState, when set, is told every state change (for metrics).
	OnState func(state string)
}

// Breaker stops requests to the helpdesk while it is failing, letting one
// probe through per interval. Only failures of the helpdesk itself count
// (5xx, timeouts, connection errors: events.Retryable); a 4xx, a 429 or an
// auth refusal means the helpdesk is up, and a request the caller cancelled
// counts neither way. It is safe for concurrent use.
type Breaker struct {
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
}

// ErrOpen is returned by Allow while the breaker is open (or its one probe
// is in flight).
var ErrOpen = errors.New("helpdesk circuit breaker is open")

// NewBreaker returns a closed breaker.
func NewBreaker(o BreakerOptions) *Breaker {
	if o.Failures == 0 {
		o.Failures = 5
	}
	if o.Interval <= 0 {
		o.Interval = 30 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Breaker{cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        "helpdesk",
		MaxRequests: 1, // one probe while half-open
		Timeout:     o.Interval,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= o.Failures },
		IsSuccessful: func(err error) bool {
			return err == nil || events.ClassOf(err) != events.Retryable
		},
		IsExcluded: func(err error) bool {
			return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch to {
			case gobreaker.StateOpen:
				if from == gobreaker.StateClosed {
					o.Logger.Warn("helpdesk unreachable; circuit breaker open, probing once per interval", "interval", o.Interval.String())
				}
			case gobreaker.StateClosed:
				o.Logger.Info("helpdesk answering again; circuit breaker closed")
			}
			if o.OnState != nil {
				o.OnState(to.String())
			}
		},
	})}
}

// Allow reports whether a request may go to the helpdesk now. When it may,
// done must be called with the request's outcome.
func (b *Breaker) Allow() (done func(error), err error) {
	done, err = b.cb.Allow()
	if err != nil {
		return nil, ErrOpen
	}
	return done, nil
}

// State is "closed", "half-open" or "open".
func (b *Breaker) State() string { return b.cb.State().String() }
