// Package xeliontest is a fake Xelion server for tests: the session API
// (me/login, me/renew, me/websocket, me/logout) with expiring tokens and
// one-off WebSocket URLs, a WebSocket that delivers the notifications a
// test sends to a client subscribed to their type, and the list of active
// channels (communications/active_channels) of the calls those
// notifications started and did not end (see calls.go).
//
// It listens on 127.0.0.1 only. Start it with Start (or New and Server.Start),
// configure the source with Server.URL, and play calls with Send or Play.
package xeliontest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Options configure the fake. Zero values get the defaults noted.
type Options struct {
	Tenant   string // default "master"
	Username string // default "admin"
	Password string // default "secret"
	// TokenLifetime is how long a token is valid after login or renewal
	// (default 1h). A session whose token expires is gone: its REST
	// requests get 401 and its WebSocket is closed.
	TokenLifetime time.Duration
	// Location is the zone validUntil is written in, without zone as
	// Xelion does (default UTC).
	Location *time.Location
	// Now is the server's clock (default time.Now).
	Now func() time.Time
}

// Stats counts what clients did.
type Stats struct {
	Logins, FailedLogins, Renewals, WebsocketURLs, Connections, Logouts int
	// Unauthorized counts REST requests answered 401.
	Unauthorized int
	// RefusedWebsockets counts WebSocket handshakes refused (RefuseWebsockets).
	RefusedWebsockets int
	// ActiveChannelRequests counts requests for the active channels that
	// were authorized, refused ones included.
	ActiveChannelRequests int
	// Subscribed lists the notification types the current connection
	// subscribed to.
	Subscribed []string
	// LastHandshake is when the last WebSocket was accepted (zero before
	// the first).
	LastHandshake time.Time
	// RefusedWhileDown counts requests answered 503 while the server was
	// down (Down).
	RefusedWhileDown int
}

type session struct {
	token, renewal, userSpace string
	validUntil                time.Time
	// listed: the session asked for the active channels since it last
	// asked for a WebSocket URL (a client reconnecting asks for both).
	listed bool
}

type conn struct {
	ws         *websocket.Conn
	sess       *session
	subscribed []string
}

// Server is the fake. Its methods are safe for concurrent use.
type Server struct {
	// URL is the base URL to configure as XELION_URL (set by Start).
	URL string

	opts Options
	mux  *http.ServeMux
	srv  *httptest.Server
	stop chan struct{}

	mu       sync.Mutex
	sessions map[string]*session // by token
	oneOff   map[string]*session // WebSocket URL id → session
	cur      *conn
	stats    Stats
	changed  chan struct{} // closed and replaced on every change
	sendMu   sync.Mutex
	refuseWS int  // WebSocket handshakes still to refuse
	down     bool // every request is refused (Down)

	calls      map[string]*runningCall // by callId
	callSeq    int
	listing    bool // a client asked for the active channels
	refuseList int  // active channel requests still to refuse
}

// TB is the part of testing.TB that Start uses (an interface, so that the
// fake can be linked into a program, such as the demo, without the testing
// package).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Start returns a started fake that is closed when the test ends.
func Start(t TB, opts Options) *Server {
	t.Helper()
	s := New(opts)
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// New returns a fake that does not listen yet: its REST API is reachable
// through Transport (for tests without a network, such as synctest ones).
func New(opts Options) *Server {
	if opts.Tenant == "" {
		opts.Tenant = "master"
	}
	if opts.Username == "" {
		opts.Username = "admin"
	}
	if opts.Password == "" {
		opts.Password = "secret"
	}
	if opts.TokenLifetime <= 0 {
		opts.TokenLifetime = time.Hour
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{
		opts:     opts,
		mux:      http.NewServeMux(),
		sessions: map[string]*session{},
		oneOff:   map[string]*session{},
		calls:    map[string]*runningCall{},
		changed:  make(chan struct{}),
		stop:     make(chan struct{}),
	}
	api := "/api/v1/" + opts.Tenant + "/me/"
	s.mux.HandleFunc("POST "+api+"login", s.login)
	s.mux.HandleFunc("POST "+api+"renew", s.renew)
	s.mux.HandleFunc("POST "+api+"websocket", s.websocketURL)
	s.mux.HandleFunc("POST "+api+"logout", s.logout)
	s.mux.HandleFunc("GET /api/v1/"+opts.Tenant+"/communications/active_channels", s.activeChannels)
	s.mux.HandleFunc("GET /websocket/{id}", s.accept)
	return s
}

// Start listens on 127.0.0.1 and starts expiring sessions.
func (s *Server) Start() {
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(s.serve))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("xeliontest: listen: %v", err))
	}
	s.srv.Listener = ln
	s.srv.Start()
	s.URL = s.srv.URL
	go s.expire()
}

// Close stops the server and closes the WebSocket.
func (s *Server) Close() {
	select {
	case <-s.stop:
		return
	default:
		close(s.stop)
	}
	s.mu.Lock()
	if s.cur != nil {
		s.cur.ws.CloseNow()
	}
	s.mu.Unlock()
	if s.srv != nil {
		s.srv.CloseClientConnections()
		s.srv.Close()
	}
}

// closing reports whether Close was called.
func (s *Server) closing() bool {
	select {
	case <-s.stop:
		return true
	default:
		return false
	}
}

// Transport serves the REST API in memory, without a network.
func (s *Server) Transport() http.RoundTripper {
	return roundTripper(func(r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		s.serve(rec, r)
		return rec.Result(), nil
	})
}

// serve answers every request with 503 while the server is down, else
// as the API does.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	if down {
		s.stats.RefusedWhileDown++
		s.changedLocked()
	}
	s.mu.Unlock()
	if down {
		xerr(w, http.StatusServiceUnavailable, 11000, "service unavailable")
		return
	}
	s.mux.ServeHTTP(w, r)
}

// Down takes the server down, as an outage or a restart would: the
// WebSocket goes at once (abruptly) and every request, a WebSocket
// handshake included, is answered 503 until Up. Sessions survive.
func (s *Server) Down() {
	s.mu.Lock()
	s.down = true
	c := s.cur
	s.cur = nil
	s.changedLocked()
	s.mu.Unlock()
	if c != nil {
		c.ws.CloseNow()
	}
}

// Up ends an outage begun by Down and returns when it ended.
func (s *Server) Up() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.down = false
	s.changedLocked()
	return time.Now()
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Subscribed = nil
	if s.cur != nil {
		st.Subscribed = slices.Clone(s.cur.subscribed)
	}
	return st
}

// changedLocked wakes every waiter; s.mu must be held.
func (s *Server) changedLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// WaitFor waits until cond (called with the current stats) holds.
func (s *Server) WaitFor(ctx context.Context, cond func(Stats) bool) error {
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s.Stats()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("xeliontest: %w (stats %+v)", ctx.Err(), s.Stats())
		case <-ch:
		}
	}
}

// WaitConnected waits until at least n connections were opened (counting
// from 1) and the current one is subscribed to types.
func (s *Server) WaitConnected(ctx context.Context, n int, types ...string) error {
	return s.WaitFor(ctx, func(st Stats) bool {
		if st.Connections < n || st.Subscribed == nil && len(types) > 0 {
			return false
		}
		for _, t := range types {
			if !slices.Contains(st.Subscribed, t) {
				return false
			}
		}
		return true
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func xerr(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, map[string]any{"code": code, "message": msg})
}

func random() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (s *Server) validUntil(t time.Time) string {
	return t.In(s.opts.Location).Format("2006-01-02 15:04:05")
}

// authorized returns the live session of the request's token, or answers 401.
func (s *Server) authorized(w http.ResponseWriter, r *http.Request) *session {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "xelion ")
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.sessions[tok]
	if !ok || sess == nil || !s.opts.Now().Before(sess.validUntil) {
		if sess != nil {
			s.endLocked(sess)
		}
		s.stats.Unauthorized++
		s.changedLocked()
		xerr(w, http.StatusUnauthorized, 10000, "the user is not authenticated")
		return nil
	}
	return sess
}

// endLocked removes a session and closes its WebSocket; s.mu must be held.
func (s *Server) endLocked(sess *session) {
	delete(s.sessions, sess.token)
	for id, o := range s.oneOff {
		if o == sess {
			delete(s.oneOff, id)
		}
	}
	if s.cur != nil && s.cur.sess == sess {
		s.cur.ws.CloseNow()
		s.cur = nil
	}
	s.changedLocked()
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var c struct {
		UserName  string `json:"userName"`
		Password  string `json:"password"`
		UserSpace string `json:"userSpace"`
	}
	if err := json.NewDecoder(r.Body).Decode(&c); err != nil {
		xerr(w, http.StatusBadRequest, 10202, "failed to decode the credentials object")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	fail := func(status, code int, msg string) {
		s.stats.FailedLogins++
		s.changedLocked()
		xerr(w, status, code, msg)
	}
	switch {
	case c.UserName == "":
		fail(http.StatusBadRequest, 10002, "no user name specified")
		return
	case c.Password == "":
		fail(http.StatusBadRequest, 10003, "no password specified")
		return
	case c.UserSpace == "":
		fail(http.StatusBadRequest, 10011, "the user space is missing")
		return
	case c.UserName != s.opts.Username || c.Password != s.opts.Password:
		fail(http.StatusUnauthorized, 10004, "wrong user name, password and tenant combination")
		return
	}
	// "If a session token is provided in the Authorization header then the
	// matching session is ended first."
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "xelion "); ok {
		if old := s.sessions[tok]; old != nil {
			s.endLocked(old)
		}
	}
	now := s.opts.Now()
	for _, o := range s.sessions {
		if o.userSpace == c.UserSpace && now.Before(o.validUntil) {
			fail(http.StatusUnauthorized, 10005, "multiple logins: user is already logged in")
			return
		}
	}
	sess := &session{token: random(), renewal: random(), userSpace: c.UserSpace, validUntil: now.Add(s.opts.TokenLifetime)}
	s.sessions[sess.token] = sess
	s.stats.Logins++
	s.changedLocked()
	writeJSON(w, http.StatusOK, map[string]any{
		"authentication": sess.token, "renewalToken": sess.renewal,
		"validUntil": s.validUntil(sess.validUntil), "version": "1.0", "serverVersion": "fake",
	})
}

func (s *Server) renew(w http.ResponseWriter, r *http.Request) {
	sess := s.authorized(w, r)
	if sess == nil {
		return
	}
	var proof string
	if err := json.NewDecoder(r.Body).Decode(&proof); err != nil {
		xerr(w, http.StatusBadRequest, 10202, "failed to decode the password")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if proof != sess.renewal && proof != s.opts.Password {
		s.stats.Unauthorized++
		s.changedLocked()
		xerr(w, http.StatusUnauthorized, 10021, "invalid authentication")
		return
	}
	delete(s.sessions, sess.token)
	sess.token, sess.renewal = random(), random()
	sess.validUntil = s.opts.Now().Add(s.opts.TokenLifetime)
	s.sessions[sess.token] = sess
	s.stats.Renewals++
	s.changedLocked()
	writeJSON(w, http.StatusOK, map[string]any{
		"authentication": sess.token, "renewalToken": sess.renewal, "validUntil": s.validUntil(sess.validUntil),
	})
}

func (s *Server) websocketURL(w http.ResponseWriter, r *http.Request) {
	sess := s.authorized(w, r)
	if sess == nil {
		return
	}
	if s.srv == nil {
		xerr(w, http.StatusInternalServerError, 11000, "not listening")
		return
	}
	id := random()
	s.mu.Lock()
	sess.listed = false
	s.oneOff[id] = sess
	s.stats.WebsocketURLs++
	s.changedLocked()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]string{"object": "ws" + strings.TrimPrefix(s.URL, "http") + "/websocket/" + id})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	sess := s.authorized(w, r)
	if sess == nil {
		return
	}
	s.mu.Lock()
	s.endLocked(sess)
	s.stats.Logouts++
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

// RefuseWebsockets makes the next n WebSocket handshakes fail with 503 (the
// one-off URL is used up all the same).
func (s *Server) RefuseWebsockets(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseWS = n
}

// accept opens a WebSocket for a one-off id; it replaces any earlier one.
func (s *Server) accept(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	sess := s.oneOff[id]
	delete(s.oneOff, id)
	refuse := sess != nil && s.refuseWS > 0
	if refuse {
		s.refuseWS--
		s.stats.RefusedWebsockets++
		s.changedLocked()
	}
	s.mu.Unlock()
	if refuse {
		http.Error(w, "try again later", http.StatusServiceUnavailable)
		return
	}
	if sess == nil {
		http.Error(w, "unknown or used websocket id", http.StatusNotFound)
		return
	}
	ws, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c := &conn{ws: ws, sess: sess}
	s.mu.Lock()
	if s.closing() || s.down {
		// Close or Down ran while this upgrade was answered: they closed
		// the socket they knew, not this one, and the client (which
		// reconnects at once) must not keep it.
		s.mu.Unlock()
		ws.CloseNow()
		return
	}
	if s.cur != nil {
		s.cur.ws.CloseNow()
	}
	s.cur = c
	s.stats.Connections++
	s.stats.LastHandshake = time.Now()
	s.changedLocked()
	s.mu.Unlock()
	s.read(c)
}

// read handles what the client sends: subscriptions and test messages.
func (s *Server) read(c *conn) {
	ctx := context.Background()
	defer func() {
		s.mu.Lock()
		if s.cur == c {
			s.cur = nil
			s.changedLocked()
		}
		s.mu.Unlock()
		c.ws.CloseNow()
	}()
	for {
		_, data, err := c.ws.Read(ctx)
		if err != nil {
			return
		}
		var m struct {
			MessageType      string          `json:"messageType"`
			NotificationType string          `json:"notificationType"`
			Toggle           json.RawMessage `json:"toggle"`
			Notifications    []struct {
				NotificationType string          `json:"notificationType"`
				Toggle           json.RawMessage `json:"toggle"`
			} `json:"notifications"`
		}
		if json.Unmarshal(data, &m) != nil {
			continue
		}
		on := func(t json.RawMessage) bool { return string(t) == "true" || string(t) == `"true"` }
		s.mu.Lock()
		switch m.MessageType {
		case "notificationRequest":
			c.toggle(m.NotificationType, on(m.Toggle))
		case "multiNotificationRequest":
			for _, n := range m.Notifications {
				c.toggle(n.NotificationType, on(n.Toggle))
			}
		}
		s.changedLocked()
		s.mu.Unlock()
		if m.MessageType == "test" {
			s.sendMu.Lock()
			_ = c.ws.Write(ctx, websocket.MessageText, data)
			s.sendMu.Unlock()
		}
	}
}

func (c *conn) toggle(t string, on bool) {
	i := slices.Index(c.subscribed, t)
	switch {
	case on && i < 0:
		c.subscribed = append(c.subscribed, t)
	case !on && i >= 0:
		c.subscribed = slices.Delete(c.subscribed, i, i+1)
	}
}

// expire ends sessions whose token expired, closing their WebSocket.
func (s *Server) expire() {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := s.opts.Now()
		s.mu.Lock()
		for _, sess := range s.sessions {
			if !now.Before(sess.validUntil) {
				s.endLocked(sess)
			}
		}
		s.mu.Unlock()
	}
}

// ExpireSessions ends every session now, as a server restart or an expiry
// would: the WebSocket closes and the tokens are refused.
func (s *Server) ExpireSessions() {
	s.mu.Lock()
	// The socket closes after the notifications already written to it, as
	// a server ending a session does; an abrupt close here could make the
	// client's kernel discard what it had received but not yet read.
	c := s.cur
	s.cur = nil
	for _, sess := range s.sessions {
		s.endLocked(sess)
	}
	s.mu.Unlock()
	if c != nil {
		s.sendMu.Lock()
		defer s.sendMu.Unlock()
		go c.ws.Close(websocket.StatusPolicyViolation, "session expired")
	}
}

// Drop closes the current WebSocket. Gracefully, the client reads every
// notification sent before it; abruptly, the TCP connection just goes.
func (s *Server) Drop(graceful bool) {
	s.mu.Lock()
	c := s.cur
	s.cur = nil
	s.changedLocked()
	s.mu.Unlock()
	if c == nil {
		return
	}
	if graceful {
		// A close frame follows every message written before it.
		s.sendMu.Lock()
		defer s.sendMu.Unlock()
		go c.ws.Close(websocket.StatusGoingAway, "server going away")
		return
	}
	c.ws.CloseNow()
}

// ErrNoClient is returned by Send when no client was subscribed in time.
var ErrNoClient = errors.New("xeliontest: no client subscribed to the notification type")

// Send writes one WebSocket message to the current client. For a
// notification it first waits until a client is subscribed to its type;
// anything else waits for a client. Once a client has asked for the active
// channels, a client that opened a new WebSocket gets messages only after
// it asked for them again: what a notification changes is then never also
// in the list the client read on connecting. A notification sent changes
// the fake's running calls.
func (s *Server) Send(ctx context.Context, msg []byte) error {
	var m struct {
		NotificationType string `json:"notificationType"`
	}
	// A message that is not JSON (a test of bad input) only needs a client.
	_ = json.Unmarshal(msg, &m)
	return s.send(ctx, msg, m.NotificationType)
}

// SendUnchecked writes one message to the current client as soon as there
// is one, whatever it subscribed to (to test what a client does with a
// notification it did not ask for).
func (s *Server) SendUnchecked(ctx context.Context, msg []byte) error {
	return s.send(ctx, msg, "")
}

func (s *Server) send(ctx context.Context, msg []byte, notificationType string) error {
	m := struct{ NotificationType string }{notificationType}
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	for {
		s.mu.Lock()
		c, ch := s.cur, s.changed
		ready := c != nil && (m.NotificationType == "" || slices.Contains(c.subscribed, m.NotificationType)) &&
			(c.sess.listed || !s.listing)
		s.mu.Unlock()
		if ready {
			if err := c.ws.Write(ctx, websocket.MessageText, msg); err != nil {
				return fmt.Errorf("xeliontest: write: %w", err)
			}
			s.mu.Lock()
			s.noteLocked(msg)
			s.changedLocked()
			s.mu.Unlock()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s (%v)", ErrNoClient, m.NotificationType, ctx.Err())
		case <-ch:
		}
	}
}

// Notification builds the WebSocket message of a notification.
func Notification(notificationType string, object any) []byte {
	b, err := json.Marshal(map[string]any{
		"messageType": "notification", "notificationType": notificationType, "notification": object,
	})
	if err != nil {
		panic(err)
	}
	return b
}
