// Package robintest is a fake CM.com Agent Inbox (ROBIN) for tests and for
// `voipbridge demo`, in the manner of net/http/httptest. It serves the
// register-event endpoint (POST /voip/registerevent/{apikey}) and the presence
// endpoint (GET /api/v1?apikey=&Channel=&referrer=) on one loopback listener,
// checks every request the way the research spec of ROBIN says the real one
// does, enforces rolling-window rate limits and counts the requests that broke
// them, injects faults, and records everything for assertions.
//
// A Server from NewServer or Listen uses a real socket. A Server from New has
// none: it serves through ServeHTTP, Transport and Client, so it can run inside
// a testing/synctest bubble, where a real socket would stop the fake clock.
package robintest

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// Endpoint names, as used in Fault.Endpoint and Request.Endpoint.
const (
	EndpointRegisterEvent = "registerevent"
	EndpointPresence      = "presence"
)

// DefaultAPIKey is the subscription key of a Server whose Options name none.
const DefaultAPIKey = "demo-key"

// Options configures a Server. The zero value is a server without limits that
// knows the key "demo-key".
type Options struct {
	// APIKey is the one known subscription key (default "demo-key").
	APIKey string
	// APISecret is the secret that RequireBasic checks.
	APISecret string
	// RequireBasic makes register event require HTTP Basic APIKey:APISecret.
	RequireBasic bool
	// Limits are the rolling windows, shared by all endpoints (for example
	// DocumentedLimits()); nil means unlimited.
	Limits []Limit
	// RetryAfter makes a 429 carry Retry-After: the whole seconds, rounded
	// up, until every full window has a free slot again.
	RetryAfter bool
	// Presence says who is online: key "Channel|referrer" (channel as the
	// client sends it, referrer possibly empty) → online. Absent is offline.
	Presence map[string]bool
	// Extensions, when non-empty, are the only PhoneExtension values register
	// event accepts; any other gets 406.
	Extensions []string
	// Logf, when set, receives one line per request. Lines never contain the
	// key or secret.
	Logf func(format string, args ...any)
}

// Received is an event the server accepted (201).
type Received struct {
	// Event is the body, field by field.
	Event events.Event
	// At is when the server accepted it.
	At time.Time
	// Duplicate is set when the same (Id, EventType) was accepted before; for
	// Transfer the PhoneExtension is part of the key, since a call can be
	// transferred more than once.
	Duplicate bool
	// OutOfOrder is set for a Transfer of a call whose Answered has not
	// arrived, and for anything after the call's Disconnected other than a
	// repeat of that Disconnected. A lone Disconnected (a missed call) is in
	// order.
	OutOfOrder bool
	// Header is the request's header. It must not be modified.
	Header http.Header
}

// Request is one request the server saw, whatever became of it.
type Request struct {
	// At is when the server decided the outcome.
	At time.Time
	// Method and Path are the request's; Path contains the key for register
	// event, so do not log it.
	Method string
	Path   string
	// Query is the parsed query string (presence has the key in it).
	Query url.Values
	// Endpoint is EndpointRegisterEvent, EndpointPresence or "" for any other path.
	Endpoint string
	// Header is the request's header. It must not be modified.
	Header http.Header
	// Body is the request body (up to 1 MiB).
	Body []byte
	// Status is the status answered; for a dropped ack the status that was
	// decided but not sent; 0 for a hang or reset.
	Status int
	// Fault names the fault applied: "", "status", "hang", "reset" or "drop-ack".
	Fault string
	// Violation is set when the request arrived while a window was full (429).
	Violation bool
}

// Fault is a failure the server plays instead of (or after) its normal
// behaviour. Fields are considered in this order: Hang, Reset, DropAck, Status.
type Fault struct {
	// Status is answered instead of processing the request (for example 500,
	// 503, 401 or 400), with Body and RetryAfter.
	Status int
	// Body is the body of the Status answer.
	Body string
	// RetryAfter is sent as the Retry-After header of the Status answer.
	RetryAfter string
	// Hang makes the server answer nothing until the client gives up (or the
	// server is closed, when it drops the connection).
	Hang bool
	// Reset closes the connection without an answer (connection reset).
	Reset bool
	// DropAck processes the request as usual (limits, checks, recording an
	// accepted event) and then closes the connection without sending the
	// answer: a lost acknowledgement.
	DropAck bool
	// Count applies the fault to the next Count matching requests only; 0
	// applies it until it is replaced or cleared.
	Count int
	// Endpoint restricts the fault to EndpointRegisterEvent,
	// EndpointPresence or EndpointMessages; "" matches all.
	Endpoint string
}

func (f Fault) active() bool { return f.Hang || f.Reset || f.DropAck || f.Status != 0 }

func (f Fault) kind() string {
	switch {
	case f.Hang:
		return "hang"
	case f.Reset:
		return "reset"
	case f.DropAck:
		return "drop-ack"
	}
	return "status"
}

// Server is a fake ROBIN. All methods are safe for concurrent use.
type Server struct {
	key, secret  string
	requireBasic bool
	retryAfter   bool
	extensions   map[string]bool
	logf         func(format string, args ...any)

	baseURL string
	srv     *http.Server // nil for New

	done chan struct{} // closed by Close

	mu         sync.Mutex
	closed     bool
	handlers   sync.WaitGroup
	limiter    *slidingLog
	presence   map[string]bool
	fault      Fault
	faultLeft  int // remaining applications when fault.Count > 0
	events     []Received
	messages   []Message
	requests   []Request
	violations int
	seen       map[eventKey]bool
	calls      map[string]*callState
	onEvent    func(Received)
	changed    chan struct{} // closed and replaced when an event is accepted
}

type eventKey struct {
	id, typ, ext string
}

type callState struct {
	answered, disconnected bool
}

// New returns a Server that does not listen. It serves through ServeHTTP,
// Transport and Client; URL and PresenceURL name a loopback address nothing
// listens on, so only the in-process transport reaches it. Create it inside
// the synctest bubble that uses it.
func New(o Options) *Server {
	s := &Server{
		key:          o.APIKey,
		secret:       o.APISecret,
		requireBasic: o.RequireBasic,
		retryAfter:   o.RetryAfter,
		logf:         o.Logf,
		baseURL:      "http://127.0.0.1:0",
		done:         make(chan struct{}),
		limiter:      newSlidingLog(o.Limits),
		presence:     make(map[string]bool, len(o.Presence)),
		seen:         make(map[eventKey]bool),
		calls:        make(map[string]*callState),
		changed:      make(chan struct{}),
	}
	if s.key == "" {
		s.key = DefaultAPIKey
	}
	for k, v := range o.Presence {
		s.presence[k] = v
	}
	if len(o.Extensions) > 0 {
		s.extensions = make(map[string]bool, len(o.Extensions))
		for _, e := range o.Extensions {
			s.extensions[e] = true
		}
	}
	return s
}

// NewServer starts a Server on 127.0.0.1 (or ::1) on a free port. It panics
// when no loopback port is available, like httptest.NewServer. Close it when
// done.
func NewServer(o Options) *Server {
	s, err := Listen("127.0.0.1:0", o)
	if err != nil {
		if s, err = Listen("[::1]:0", o); err != nil {
			panic(fmt.Sprintf("robintest: failed to listen on a loopback port: %v", err))
		}
	}
	return s
}

// Listen starts a Server on addr (for the demo, which wants a known port).
// When addr's host is unspecified, URL names 127.0.0.1.
func Listen(addr string, o Options) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("robintest: listen: %w", err)
	}
	s := New(o)
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	s.baseURL = "http://" + net.JoinHostPort(host, port)
	s.srv = &http.Server{
		Handler:           s,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if s.logf != nil {
		s.srv.ErrorLog = log.New(logfWriter(s.logf), "robintest: ", 0)
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

type logfWriter func(format string, args ...any)

func (w logfWriter) Write(p []byte) (int, error) {
	w("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// URL returns the base URL to use as ROBIN_API_URL.
func (s *Server) URL() string { return s.baseURL }

// PresenceURL returns the URL to use as ROBIN_PRESENCE_URL (the same server,
// path /api/v1).
func (s *Server) PresenceURL() string { return s.baseURL + "/api/v1" }

// Close stops the server: hanging requests are dropped, the listener and all
// connections are closed, and Close returns once no handler runs any more, so
// Logf and OnEvent are not called after it. It is safe to call twice.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.done)
	s.mu.Unlock()
	if s.srv != nil {
		_ = s.srv.Close()
	}
	s.handlers.Wait()
}

// Events returns the accepted register events in the order they were accepted.
func (s *Server) Events() []Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Received(nil), s.events...)
}

// Requests returns every request so far, rejected ones included, with the
// status returned.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// Violations returns how many requests arrived while a rate-limit window was
// full and were answered 429. A client that keeps the quota causes none.
func (s *Server) Violations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.violations
}

// WaitEvents waits until at least n events have been accepted and returns all
// accepted so far. When ctx ends or the server closes first, it returns the
// events so far and an error.
func (s *Server) WaitEvents(ctx context.Context, n int) ([]Received, error) {
	for {
		s.mu.Lock()
		if len(s.events) >= n {
			evs := append([]Received(nil), s.events...)
			s.mu.Unlock()
			return evs, nil
		}
		have, changed := len(s.events), s.changed
		s.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return s.Events(), fmt.Errorf("robintest: %d of %d events: %w", have, n, ctx.Err())
		case <-s.done:
			return s.Events(), fmt.Errorf("robintest: %d of %d events: server closed", have, n)
		}
	}
}

// SetPresence sets whether anyone is online on channel for referrer ("" for
// the subscription as a whole).
func (s *Server) SetPresence(channel, referrer string, online bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.presence[channel+"|"+referrer] = online
}

// SetFault replaces the current fault; Fault{} clears it.
func (s *Server) SetFault(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
	s.faultLeft = f.Count
}

// OnEvent sets a function called with every accepted event, after it is
// recorded and before the answer is sent (nil removes it). It runs on the
// request's goroutine and holds up the answer while it runs.
func (s *Server) OnEvent(f func(Received)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.onEvent = f
}

// takeFault returns the fault that applies to a request on endpoint and uses
// up one of its Count.
func (s *Server) takeFault(endpoint string) (Fault, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.fault
	if !f.active() || (f.Endpoint != "" && f.Endpoint != endpoint) {
		return Fault{}, false
	}
	if f.Count > 0 {
		s.faultLeft--
		if s.faultLeft <= 0 {
			s.fault = Fault{}
		}
	}
	return f, true
}

// admit runs the limiter for one request; on refusal it counts a violation
// and returns the Retry-After value to send ("" when disabled).
func (s *Server) admit() (retryAfter string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait, ok := s.limiter.admit(time.Now())
	if ok {
		return "", true
	}
	s.violations++
	if !s.retryAfter {
		return "", false
	}
	secs := (wait + time.Second - 1) / time.Second
	return fmt.Sprint(int64(secs)), false
}

func (s *Server) record(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

func (s *Server) log(format string, args ...any) {
	if s.logf != nil {
		s.logf("robintest: "+format, args...)
	}
}

// ServeHTTP serves both endpoints. NewServer and Listen install it on their
// listener; it is exported for tests that drive the fake without a network.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		drop(w, true)
		return
	}
	s.handlers.Add(1)
	s.mu.Unlock()
	defer s.handlers.Done()

	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	req := Request{
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.Query(),
		Header: r.Header.Clone(),
		Body:   body,
	}
	switch {
	case strings.HasPrefix(r.URL.EscapedPath(), registerPrefix):
		req.Endpoint = EndpointRegisterEvent
		s.serveRegister(w, r, req)
	case r.URL.Path == "/messages/" || r.URL.Path == "/messages":
		req.Endpoint = EndpointMessages
		s.serveMessages(w, r, req)
	case r.URL.Path == "/api/v1" || r.URL.Path == "/api/v1/":
		req.Endpoint = EndpointPresence
		s.servePresence(w, r, req)
	default:
		s.answer(w, req, http.StatusNotFound, "text/plain; charset=utf-8", "404 page not found")
	}
}

// answer records req with status and writes the answer.
func (s *Server) answer(w http.ResponseWriter, req Request, status int, contentType, body string) {
	req.At = time.Now()
	req.Status = status
	s.record(req)
	s.log("%s %s → %d", req.Method, endpointLabel(req.Endpoint), status)
	if contentType != "" {
		w.Header().Set("Content-Type", contentType)
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, body)
}

func endpointLabel(e string) string {
	if e == "" {
		return "unknown path"
	}
	return e
}

// applyFault plays f (other than DropAck, which the endpoints play at the
// end) and records the request.
func (s *Server) applyFault(w http.ResponseWriter, r *http.Request, req Request, f Fault) {
	req.Fault = f.kind()
	switch {
	case f.Hang:
		req.At = time.Now()
		s.record(req)
		s.log("%s %s → hang", req.Method, req.Endpoint)
		select {
		case <-r.Context().Done():
		case <-s.done:
		}
		// Never let net/http finish the exchange with an implicit 200: a
		// client must not mistake a hang for an acceptance.
		drop(w, true)
	case f.Reset:
		req.At = time.Now()
		s.record(req)
		s.log("%s %s → reset", req.Method, req.Endpoint)
		drop(w, true)
	default:
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		s.answer(w, req, f.Status, "text/plain; charset=utf-8", f.Body)
	}
}

// finish writes the decided answer, or records it and drops the connection
// when a DropAck fault applies.
func (s *Server) finish(w http.ResponseWriter, req Request, dropAck bool, status int, contentType, body string) {
	if !dropAck {
		s.answer(w, req, status, contentType, body)
		return
	}
	req.At = time.Now()
	req.Status = status
	req.Fault = "drop-ack"
	s.record(req)
	s.log("%s %s → %d, dropped", req.Method, req.Endpoint, status)
	drop(w, false)
}

// aborter is implemented by the in-process transport's response writer.
type aborter interface {
	abort(reset bool)
}

// drop ends the exchange without an answer: a TCP reset (reset) or an orderly
// close (the client reads EOF).
func drop(w http.ResponseWriter, reset bool) {
	if a, ok := w.(aborter); ok {
		a.abort(reset)
		return
	}
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// net/http closes the connection without an answer for this panic.
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok && reset {
		_ = tc.SetLinger(0)
	}
	_ = conn.Close()
}
