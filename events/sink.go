package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"
)

// Sink delivers one event to the helpdesk. It returns nil only when the
// helpdesk accepted the event (2xx). Errors should carry a Class (see
// ClassOf) so the dispatcher can decide between retry, dead letter and pause.
type Sink interface {
	Send(ctx context.Context, e Event) error
}

// EnvelopeSink is a Sink that needs the whole envelope (the call summary,
// the message id); the dispatcher prefers SendEnvelope when a sink has it.
type EnvelopeSink interface {
	SendEnvelope(ctx context.Context, env Envelope) error
}

// Envelopes makes a sink that only takes envelopes a Sink: the dispatcher
// gives it whole envelopes, and Send (for callers that have only the event)
// wraps the event in an envelope without a call summary.
func Envelopes(s EnvelopeSink) Sink { return envelopes{s} }

type envelopes struct{ EnvelopeSink }

func (e envelopes) Send(ctx context.Context, ev Event) error {
	return e.SendEnvelope(ctx, Envelope{Event: ev})
}

// BucketKey maps a string a PBX or a helpdesk chose (a customer's number)
// to a key a journal bucket accepts: "c" and 24 hex digits of its SHA-256.
// Sinks file what they keep per customer under it.
func BucketKey(s string) string {
	h := sha256.Sum256([]byte(s))
	return "c" + hex.EncodeToString(h[:12])
}

// Class says what a delivery failure means for the event and the lane.
type Class int

// Failure classes, one per row of the failure policy.
const (
	// Retryable: the helpdesk failed (5xx, timeout, connection error); retry
	// later with backoff, keep order. Counts as a breaker failure.
	Retryable Class = iota
	// Permanent: the helpdesk rejected this event (400, 406, other 4xx);
	// retrying cannot help, so it is dead-lettered.
	Permanent
	// Auth: the key or secret is wrong (401, 403); pause all delivery and probe.
	Auth
	// RateLimited: the helpdesk refused for quota (429); pause the lane until
	// RetryAfter.
	RateLimited
)

// String returns the class's metric label.
func (c Class) String() string {
	switch c {
	case Retryable:
		return "retryable"
	case Permanent:
		return "permanent"
	case Auth:
		return "auth"
	case RateLimited:
		return "rate_limited"
	}
	return "unknown"
}

// Classified is implemented by sink errors that know their class.
type Classified interface {
	error
	Class() Class
}

// ClassOf returns the class of a delivery error. Errors that do not say are
// treated as retryable: an unknown failure must never lose an event.
func ClassOf(err error) Class {
	var c Classified
	if errors.As(err, &c) {
		return c.Class()
	}
	return Retryable
}

// NotSentOf reports whether the error says the request never reached the
// helpdesk (its connection could not be opened), so no quota was spent.
func NotSentOf(err error) bool {
	var n interface{ NotSent() bool }
	return errors.As(err, &n) && n.NotSent()
}

// RetryAfterOf returns the delay the helpdesk asked for, if the error carries one.
func RetryAfterOf(err error) (time.Duration, bool) {
	var r interface{ RetryAfter() time.Duration }
	if errors.As(err, &r) {
		if d := r.RetryAfter(); d > 0 {
			return d, true
		}
	}
	return 0, false
}
