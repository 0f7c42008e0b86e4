// Package robin is voipbridge's client of CM.com Agent Inbox (formerly ROBIN):
// it registers call events, asks for presence, classifies every failure and
// keeps the account's request quota.
package robin

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// Defaults of Config.
const (
	DefaultAPIURL      = "https://api.robinhq.com"
	DefaultPresenceURL = "https://presence.robinhq.com/api/v1"
	DefaultTimeout     = 10 * time.Second
	DefaultUserAgent   = "voipbridge"
)

// Operation names, as they appear in Error.Op and at the start of error messages.
const (
	OpRegisterEvent = "register event"
	OpPresence      = "presence"
)

// How much of an answer the client reads: enough for an error copy or a
// presence word, bounded so that a misbehaving server cannot make us buffer
// without limit.
const (
	readLimit  = 4 << 10
	drainLimit = 64 << 10
)

// Config configures a Client. Zero values take the documented defaults.
type Config struct {
	// APIURL is the REST base (ROBIN_API_URL), default "https://api.robinhq.com".
	APIURL string
	// APIKey is the subscription key (ROBIN_API_KEY). It is a secret: it is
	// part of the register-event URL and of the presence query, and the client
	// never puts it into an error.
	APIKey string
	// APISecret is the API secret (ROBIN_API_SECRET). When set, register event
	// sends HTTP Basic APIKey:APISecret.
	APISecret string
	// PresenceURL is the presence endpoint (ROBIN_PRESENCE_URL), default
	// "https://presence.robinhq.com/api/v1".
	PresenceURL string
	// Timeout bounds each request, body included (ROBIN_TIMEOUT), default 10s.
	Timeout time.Duration
	// HTTPClient is used for the requests when set. The client works on a copy
	// that never follows redirects (a redirected POST would lose its body, and
	// the key would travel to another host).
	HTTPClient *http.Client
	// UserAgent is sent as User-Agent, default "voipbridge".
	UserAgent string
}

// Client talks to the helpdesk. It is safe for concurrent use. It sends each
// request once: retries, pacing and the breaker belong to its callers.
type Client struct {
	registerURL string   // APIURL + /voip/registerevent/<escaped key>
	presenceURL *url.URL // PresenceURL, query added per call
	key         string
	secret      string
	timeout     time.Duration
	userAgent   string
	hc          *http.Client
	redactor    *strings.Replacer
}

var _ events.Sink = (*Client)(nil)

// NewClient checks c and returns a Client. It fails when the key is empty or a
// URL is not an absolute http(s) URL; its errors never contain the key or
// secret.
func NewClient(c Config) (*Client, error) {
	cl := &Client{
		key:       c.APIKey,
		secret:    c.APISecret,
		timeout:   c.Timeout,
		userAgent: c.UserAgent,
	}
	cl.redactor = newRedactor(c.APIKey, c.APISecret)
	if c.APIKey == "" {
		return nil, errors.New("robin: API key is empty")
	}
	if cl.timeout <= 0 {
		cl.timeout = DefaultTimeout
	}
	if cl.userAgent == "" {
		cl.userAgent = DefaultUserAgent
	}
	apiURL := c.APIURL
	if apiURL == "" {
		apiURL = DefaultAPIURL
	}
	if _, err := parseBaseURL(apiURL); err != nil {
		return nil, fmt.Errorf("robin: API URL: %s", cl.Redact(err.Error()))
	}
	cl.registerURL = strings.TrimRight(apiURL, "/") + "/voip/registerevent/" + url.PathEscape(c.APIKey)
	if _, err := url.Parse(cl.registerURL); err != nil {
		return nil, errors.New("robin: API URL with the key is not a valid URL")
	}
	presence := c.PresenceURL
	if presence == "" {
		presence = DefaultPresenceURL
	}
	pu, err := parseBaseURL(presence)
	if err != nil {
		return nil, fmt.Errorf("robin: presence URL: %s", cl.Redact(err.Error()))
	}
	cl.presenceURL = pu

	if c.HTTPClient != nil {
		hc := *c.HTTPClient
		cl.hc = &hc
	} else {
		cl.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	cl.hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return cl, nil
}

func parseBaseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, errors.New("not a valid URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("scheme %q is not http or https", u.Scheme)
	}
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	return u, nil
}

// newRedactor replaces the key and secret in every form they can take in a
// request: raw, path- and query-escaped, and inside the Basic credentials.
func newRedactor(key, secret string) *strings.Replacer {
	var olds []string
	for _, s := range []string{key, secret} {
		if s == "" {
			continue
		}
		olds = append(olds, s, url.PathEscape(s), url.QueryEscape(s))
	}
	if key != "" && secret != "" {
		olds = append(olds, base64.StdEncoding.EncodeToString([]byte(key+":"+secret)))
	}
	// Longest first, so that an escaped form is replaced whole before a raw
	// form that it contains.
	slices.SortFunc(olds, func(a, b string) int { return len(b) - len(a) })
	olds = slices.Compact(olds)
	args := make([]string, 0, 2*len(olds))
	for _, o := range olds {
		args = append(args, o, "[redacted]")
	}
	return strings.NewReplacer(args...)
}

// Redact returns s with the client's API key and secret (raw, URL-escaped or
// as Basic credentials) replaced by "[redacted]". Use it on anything that may
// contain a request URL before it reaches a log.
func (c *Client) Redact(s string) string { return c.redactor.Replace(s) }

// Send implements events.Sink: it POSTs e as JSON to
// {APIURL}/voip/registerevent/{APIKey} and returns nil only when the helpdesk
// answered 2xx. Every failure is an *Error whose Class says what to do next.
func (c *Client) Send(ctx context.Context, e events.Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return &Error{Op: OpRegisterEvent, Cause: err}
	}
	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodPost, c.registerURL, bytes.NewReader(body))
	if err != nil {
		return &Error{Op: OpRegisterEvent, Cause: &causeError{msg: c.Redact(err.Error()), err: errors.Unwrap(err)}}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if c.secret != "" {
		req.SetBasicAuth(c.key, c.secret)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return c.transportError(ctx, reqCtx, OpRegisterEvent, err)
	}
	defer closeBody(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	return c.statusError(OpRegisterEvent, resp)
}

// Presence asks the presence endpoint whether at least one agent is online on
// channel (optionally for the web store of referrer): GET
// {PresenceURL}?apikey=&Channel=&referrer=, referrer omitted when empty. The
// body is read tolerantly ("Online", "online\n", "\"Offline\"", the legacy
// {"Data":{"Status":"online"}}). Failures are *Error values.
func (c *Client) Presence(ctx context.Context, channel, referrer string) (online bool, err error) {
	u := *c.presenceURL
	q := u.Query()
	q.Set("apikey", c.key)
	q.Set("Channel", channel)
	if referrer != "" {
		q.Set("referrer", referrer)
	}
	u.RawQuery = q.Encode()

	reqCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, &Error{Op: OpPresence, Cause: &causeError{msg: c.Redact(err.Error()), err: errors.Unwrap(err)}}
	}
	req.Header.Set("User-Agent", c.userAgent)
	req.Header.Set("Accept", "text/plain, application/json;q=0.5")
	resp, err := c.hc.Do(req)
	if err != nil {
		return false, c.transportError(ctx, reqCtx, OpPresence, err)
	}
	defer closeBody(resp.Body)
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return false, c.statusError(OpPresence, resp)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, readLimit))
	if err != nil {
		return false, c.transportError(ctx, reqCtx, OpPresence, err)
	}
	online, ok := parsePresence(b)
	if !ok {
		return false, &Error{Op: OpPresence, Status: resp.StatusCode, Body: truncateBody(c.Redact(string(b))), Cause: ErrUnexpectedBody}
	}
	return online, nil
}

// parsePresence reads a presence answer. The current endpoint documents a
// plain "Online" or "Offline"; whether a newline, quotes or another case can
// come with it is unknown (research: helpdesk-apis §1.4), and the legacy
// endpoint answered {"Data":{"Status":"online"}}.
func parsePresence(b []byte) (online, ok bool) {
	s := strings.TrimSpace(strings.TrimPrefix(string(b), "\ufeff"))
	if strings.HasPrefix(s, "{") {
		var legacy struct {
			Data struct {
				Status string
			}
		}
		if err := json.Unmarshal([]byte(s), &legacy); err != nil {
			return false, false
		}
		s = legacy.Data.Status
	}
	s = strings.TrimSpace(strings.Trim(strings.TrimSpace(s), `"'`))
	switch {
	case strings.EqualFold(s, "online"):
		return true, true
	case strings.EqualFold(s, "offline"):
		return false, true
	}
	return false, false
}

// statusError builds the Error for a non-2xx answer: a redacted, truncated
// copy of the body and any Retry-After the helpdesk sent.
func (c *Client) statusError(op string, resp *http.Response) *Error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, readLimit))
	e := &Error{Op: op, Status: resp.StatusCode, Body: truncateBody(c.Redact(string(b)))}
	if d, ok := retryAfterDelay(resp.Header.Get("Retry-After"), time.Now()); ok {
		e.RetryAfterDelay = d
	}
	return e
}

// transportError turns a failed round trip into an Error without the
// *url.Error text, which would print the URL and with it the key. The
// caller's cancellation or deadline stays recognisable as context.Canceled or
// context.DeadlineExceeded; the client's own Timeout becomes ErrTimeout.
func (c *Client) transportError(parent, reqCtx context.Context, op string, err error) *Error {
	if perr := parent.Err(); perr != nil {
		return &Error{Op: op, Cause: perr}
	}
	if reqCtx.Err() != nil {
		return &Error{Op: op, Cause: &causeError{msg: "no answer within " + c.timeout.String(), err: ErrTimeout}}
	}
	inner := err
	var uerr *url.Error
	if errors.As(err, &uerr) {
		inner = uerr.Err
	}
	var nerr net.Error
	if errors.As(inner, &nerr) && nerr.Timeout() {
		return &Error{Op: op, Cause: &causeError{msg: "no answer within the HTTP client's timeout", err: ErrTimeout}}
	}
	return &Error{Op: op, Cause: &causeError{msg: c.describe(inner), err: inner}}
}

// describe names a connection failure in a few words, falling back to the
// redacted error text.
func (c *Client) describe(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, syscall.EPIPE):
		return "connection closed while sending"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed without an answer"
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return "cannot resolve the helpdesk host: " + c.Redact(dnsErr.Err)
	}
	return c.Redact(err.Error())
}

// closeBody drains a little of what is left, so the connection can be reused,
// and closes the body.
func closeBody(b io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(b, drainLimit))
	_ = b.Close()
}
