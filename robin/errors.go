package robin

import (
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/voipbridge/voipbridge/events"
)

// maxErrorBody is how much of a helpdesk answer an Error keeps. ROBIN's error
// bodies are undocumented and opaque (research: helpdesk-apis §1.5), so a short
// copy is enough for a log line and bounds what a misbehaving server can put
// into our logs.
const maxErrorBody = 512

// ErrTimeout is the cause of an Error when the helpdesk did not answer within
// Config.Timeout. It deliberately does not match context.DeadlineExceeded:
// a helpdesk that is too slow is a helpdesk failure (Retryable, counted by the
// breaker), while a deadline of the caller's own context is not.
var ErrTimeout = errors.New("no answer within the timeout")

// ErrUnexpectedBody is the cause of an Error when the helpdesk answered 2xx
// with a body the client cannot interpret (for example a presence answer that
// is neither Online nor Offline).
var ErrUnexpectedBody = errors.New("unexpected response body")

// Error is the only error type the client returns for a failed request. It
// never contains the API key or secret: the message is built from the
// operation, the status and a redacted, truncated copy of the body, and the
// cause's text is redacted by the client before it is stored.
type Error struct {
	// Op names the operation, "register event" or "presence".
	Op string
	// Status is the HTTP status the helpdesk answered; 0 when there was no
	// answer (timeout, connection error, cancellation).
	Status int
	// Body is the start of the answer's body (at most 512 bytes, key and
	// secret redacted).
	Body string
	// RetryAfterDelay is the delay the helpdesk asked for with Retry-After;
	// 0 when it did not send one.
	RetryAfterDelay time.Duration
	// Cause is the underlying failure when there was no usable answer. For a
	// cancellation by the caller it matches context.Canceled (or
	// context.DeadlineExceeded for the caller's deadline) under errors.Is; for
	// the client's own timeout it matches ErrTimeout.
	Cause error
}

// Error returns "<op>: status <code>[: <body>]" for an answer and
// "<op>: <cause>" otherwise. It never contains the API key or secret.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Status != 0 {
		b.WriteString(": status ")
		b.WriteString(strconv.Itoa(e.Status))
		if e.Body != "" {
			b.WriteString(": ")
			b.WriteString(e.Body)
		}
		if e.Cause != nil {
			b.WriteString(": ")
			b.WriteString(e.Cause.Error())
		}
		return b.String()
	}
	if e.Cause != nil {
		b.WriteString(": ")
		b.WriteString(e.Cause.Error())
		return b.String()
	}
	b.WriteString(": failed")
	return b.String()
}

// Class implements events.Classified: it is ClassifyStatus(Status) when the
// helpdesk answered, and Retryable when it did not (timeout, connection error,
// cancellation), because an event must never be lost to a failure that may
// pass.
func (e *Error) Class() events.Class {
	if e.Status == 0 {
		return events.Retryable
	}
	return ClassifyStatus(e.Status)
}

// NotSent reports that the request certainly never reached the helpdesk:
// the connection could not be opened (refused, unreachable, no such host).
// The quota does not count such a request (events.NotSentOf).
func (e *Error) NotSent() bool {
	if e.Status != 0 || e.Cause == nil {
		return false
	}
	var op *net.OpError
	if errors.As(e.Cause, &op) && op.Op == "dial" {
		return true
	}
	var dnsErr *net.DNSError
	return errors.As(e.Cause, &dnsErr)
}

// RetryAfter returns the delay the helpdesk asked for (see events.RetryAfterOf),
// or 0 when it asked for none.
func (e *Error) RetryAfter() time.Duration { return e.RetryAfterDelay }

// Unwrap returns the cause, so that errors.Is(err, context.Canceled) holds for
// a request the caller cancelled.
func (e *Error) Unwrap() error { return e.Cause }

// ClassifyStatus is the one table from a helpdesk HTTP status to a failure
// class:
//
//	429              → RateLimited (honour Retry-After)
//	401, 403         → Auth        (pause delivery, the credentials are wrong)
//	408, 5xx         → Retryable   (the helpdesk failed; counts for the breaker)
//	other 4xx        → Permanent   (400, 404, 406, ...: this request is rejected)
//	2xx              → Permanent   (a success status only becomes an error when
//	                                its body is unusable, which a retry cannot fix)
//	anything else    → Retryable   (1xx, 3xx, unknown: never lose an event)
//
// The client treats 2xx as success before it consults the table.
func ClassifyStatus(status int) events.Class {
	switch {
	case status == http.StatusTooManyRequests:
		return events.RateLimited
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return events.Auth
	case status == http.StatusRequestTimeout, status >= 500 && status <= 599:
		return events.Retryable
	case status >= 400 && status <= 499:
		return events.Permanent
	case status >= 200 && status <= 299:
		return events.Permanent
	}
	return events.Retryable
}

// retryAfterDelay parses a Retry-After value (RFC 9110 §10.2.3): either a
// non-negative number of seconds or an HTTP-date, which is turned into a delay
// from now. It reports false for an absent or malformed value; a date in the
// past gives 0 and true.
func retryAfterDelay(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		secs, err := strconv.ParseInt(v, 10, 64)
		if err != nil || secs < 0 {
			return 0, false
		}
		// Cap absurd values rather than overflow: a day is longer than any
		// sensible pause, and the dispatcher applies its own ceiling anyway.
		const maxSecs = int64(24 * time.Hour / time.Second)
		if secs > maxSecs {
			secs = maxSecs
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	if d > 24*time.Hour {
		d = 24 * time.Hour
	}
	return d, true
}

// truncateBody cuts s to at most maxErrorBody bytes without splitting a UTF-8
// sequence, and trims surrounding white space.
func truncateBody(s string) string {
	s = strings.TrimSpace(s)
	if len(s) <= maxErrorBody {
		return s
	}
	cut := maxErrorBody
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// causeError is a cause whose message has been summarised and redacted by the
// client while the original error stays reachable for errors.Is and errors.As.
type causeError struct {
	msg string
	err error
}

func (c *causeError) Error() string { return c.msg }
func (c *causeError) Unwrap() error { return c.err }

// StatusCode returns the HTTP status the helpdesk answered (0 when none), for
// callers that classify errors without importing this package.
func (e *Error) StatusCode() int { return e.Status }

// ResponseBody returns the start of the helpdesk's answer, redacted.
func (e *Error) ResponseBody() string { return e.Body }
