package xelion

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// errAuth marks a 401 from the server: the token is not (or no longer) valid.
var errAuth = errors.New("not authenticated")

// statusError is a REST answer other than 2xx. It never carries the body:
// Xelion's error messages may echo what was sent.
type statusError struct {
	op     string
	status int
	code   int // Xelion's own error code, when the body had one
}

func (e *statusError) Error() string {
	if e.code != 0 {
		return fmt.Sprintf("%s: HTTP %d (xelion code %d)", e.op, e.status, e.code)
	}
	return fmt.Sprintf("%s: HTTP %d", e.op, e.status)
}

func (e *statusError) Is(target error) bool {
	return target == errAuth && e.status == http.StatusUnauthorized
}

// Xelion's code for a login refused because a session with the same user
// name and user space is alive.
const codeMultipleLogins = 10005

// rest makes the API's REST requests.
type rest struct {
	base    *url.URL
	client  *http.Client
	timeout time.Duration
}

// Bounds of a REST answer read into memory. A list of running channels
// grows with the tenant's calls; every other answer is a small object.
const (
	maxAnswer     = 1 << 20
	maxListAnswer = 16 << 20
)

// do sends one POST request. token may be empty (login); body is
// JSON-encoded unless nil; out, unless nil, receives the JSON answer.
func (r *rest) do(ctx context.Context, op, path, token string, body, out any) error {
	data, err := r.send(ctx, http.MethodPost, op, path, token, body, maxAnswer)
	if err != nil || out == nil {
		return err
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: answer is not the expected JSON: %w", op, err)
	}
	return nil
}

// get sends one GET request and returns the answer's body.
func (r *rest) get(ctx context.Context, op, path, token string) ([]byte, error) {
	return r.send(ctx, http.MethodGet, op, path, token, nil, maxListAnswer)
}

// send makes one request and returns the body of a 2xx answer; an answer
// longer than limit is an error, never silently cut.
func (r *rest) send(ctx context.Context, method, op, path, token string, body any, limit int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		rd = bytes.NewReader(b)
	}
	u := r.base.ResolveReference(&url.URL{Path: path})
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "xelion "+token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, redact(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read answer: %w", op, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, &statusError{op: op, status: resp.StatusCode, code: xelionCode(data)}
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: answer is longer than %d bytes", op, limit)
	}
	return data, nil
}

// xelionCode finds Xelion's numeric error code in an error body, or 0.
func xelionCode(body []byte) int {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return 0
	}
	for _, k := range []string{"code", "xelionCode", "errorCode"} {
		if f, ok := m[k].(float64); ok {
			return int(f)
		}
	}
	return 0
}

// redact removes the URL from a transport error: the WebSocket URL is a
// one-off credential, and a REST URL never needs to be in a log.
func redact(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return fmt.Errorf("%s request: %w", ue.Op, ue.Err)
	}
	return err
}

// session holds the bridge's Xelion session: it logs in, renews the token
// before it expires and logs in again when the server no longer knows it.
// It is safe for concurrent use.
type session struct {
	api         *rest
	creds       Credentials
	loc         *time.Location
	now         func() time.Time
	renewBefore time.Duration
	log         *slog.Logger
	m           *metrics

	mu         sync.Mutex
	token      string
	renewal    string
	stale      string // the last token the server refused, sent on the next login to end its session
	validUntil time.Time
	renewAt    time.Time
	changed    chan struct{} // signalled when the token changes
}

// Timing of renewals when the server's expiry is not usable.
const (
	defaultRenewEvery = 10 * time.Minute
	minRenewEvery     = 500 * time.Millisecond
)

// Token returns a valid token: the current one, a renewed one when the
// current one is due, or a new login.
func (s *session) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	tok, due := s.token, !s.renewAt.IsZero() && !s.now().Before(s.renewAt)
	s.mu.Unlock()
	if tok != "" && !due {
		return tok, nil
	}
	if tok != "" {
		if err := s.Renew(ctx); err == nil {
			return s.current(), nil
		}
	}
	if err := s.login(ctx); err != nil {
		return "", err
	}
	return s.current(), nil
}

func (s *session) current() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.token
}

// Invalidate forgets tok after the server refused it; the next Token logs
// in again. A token that was replaced meanwhile is left alone.
func (s *session) Invalidate(tok string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.token == tok && tok != "" {
		s.stale, s.token, s.renewal = tok, "", ""
		s.validUntil, s.renewAt = time.Time{}, time.Time{}
	}
}

// login creates a session. A token the server refused before goes along in
// the Authorization header: Xelion ends that session first, so the login
// is not refused as a second one in the same user space.
func (s *session) login(ctx context.Context) error {
	s.mu.Lock()
	old := s.stale
	if old == "" {
		old = s.token
	}
	creds := s.creds
	s.mu.Unlock()
	var lr LoginResponse
	err := s.api.do(ctx, "login", "me/login", old, creds, &lr)
	if se, ok := errors.AsType[*statusError](err); ok && se.code == codeMultipleLogins {
		// A session of an earlier run of the bridge is alive in this user
		// space and we do not have its token: use a user space of our own.
		creds.UserSpace = s.creds.UserSpace + "-" + randomSuffix()
		s.log.Warn("xelion refused a second login in the same user space; using a new one",
			"userspace", creds.UserSpace)
		err = s.api.do(ctx, "login", "me/login", "", creds, &lr)
		if err == nil {
			s.mu.Lock()
			s.creds.UserSpace = creds.UserSpace
			s.mu.Unlock()
		}
	}
	if err == nil && lr.Authentication == "" {
		err = errors.New("login: answer has no token")
	}
	s.count(reqLogin, err)
	if err != nil {
		return err
	}
	s.set(lr)
	s.log.Info("xelion session started", "valid_until", lr.ValidUntil)
	return nil
}

// Renew extends the session with the renewal token (or, without one, the
// password, which Xelion also accepts). When the server no longer knows the
// session it logs in again.
func (s *session) Renew(ctx context.Context) error {
	s.mu.Lock()
	tok, proof := s.token, s.renewal
	if proof == "" {
		proof = s.creds.Password
	}
	s.mu.Unlock()
	if tok == "" {
		return s.login(ctx)
	}
	var lr LoginResponse
	err := s.api.do(ctx, "renew", "me/renew", tok, proof, &lr)
	if err == nil && lr.Authentication == "" {
		err = errors.New("renew: answer has no token")
	}
	s.count(reqRenew, err)
	if errors.Is(err, errAuth) {
		s.Invalidate(tok)
		return s.login(ctx)
	}
	if err != nil {
		return err
	}
	s.set(lr)
	return nil
}

// set stores a new token and plans its renewal: ahead of the expiry by
// renewBefore, or by half the token's lifetime when that is shorter. An
// expiry that cannot be read (or looks wrong for the configured zone) gets
// a renewal every defaultRenewEvery; 401s are handled anyway.
func (s *session) set(lr LoginResponse) {
	now := s.now()
	until, ok := ParseValidUntil(lr.ValidUntil, s.loc)
	renewAt := now.Add(defaultRenewEvery)
	if life := until.Sub(now); ok && life > 0 && life < 7*24*time.Hour {
		renewAt = until.Add(-min(s.renewBefore, life/2))
	} else {
		until = time.Time{}
	}
	renewAt = maxTime(renewAt, now.Add(minRenewEvery))
	s.mu.Lock()
	s.token = lr.Authentication
	if lr.RenewalToken != "" {
		s.renewal = lr.RenewalToken
	}
	s.stale, s.validUntil, s.renewAt = "", until, renewAt
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// keep renews the session before it expires until ctx ends. A failed
// renewal is retried every retry interval; meanwhile Token still serves
// the old token, and a 401 leads to a new login.
func (s *session) keep(ctx context.Context, retry time.Duration) {
	failing := false
	for {
		s.mu.Lock()
		tok, at := s.token, s.renewAt
		s.mu.Unlock()
		var wait <-chan time.Time
		var timer *time.Timer
		if tok != "" {
			timer = time.NewTimer(max(at.Sub(s.now()), 0))
			wait = timer.C
		}
		due := false
		select {
		case <-ctx.Done():
		case <-s.changed:
		case <-wait:
			due = true
		}
		if timer != nil {
			timer.Stop()
		}
		if ctx.Err() != nil {
			return
		}
		if !due {
			continue
		}
		err := s.Renew(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			if !failing {
				s.log.Warn("xelion session renewal failed; retrying", "err", err)
			}
			failing = true
			s.mu.Lock()
			s.renewAt = s.now().Add(retry)
			s.mu.Unlock()
		case err == nil && failing:
			s.log.Info("xelion session renewed again")
			failing = false
		}
	}
}

// logout ends the session, best effort, so that the next run can log in
// with the same user space.
func (s *session) logout(ctx context.Context) {
	s.mu.Lock()
	tok := s.token
	s.token, s.renewal = "", ""
	s.mu.Unlock()
	if tok == "" {
		return
	}
	err := s.api.do(ctx, "logout", "me/logout", tok, nil, nil)
	s.count(reqLogout, err)
}

func (s *session) count(req string, err error) {
	result := "ok"
	if err != nil {
		result = "error"
	}
	s.m.session.WithLabelValues(req, result).Inc()
}

func randomSuffix() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
