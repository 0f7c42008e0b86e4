// Package threecxtest is a fake 3CX V20 Call Control API for tests and demos:
// the OAuth2 token endpoint, GET /callcontrol and its entity paths, and the
// /callcontrol/ws WebSocket, driven by scripts of participant changes (see
// testdata/threecx/calls). It can also misbehave on purpose: lose, hold back
// or repeat messages, send garbage, go down, drop its sockets and expire
// tokens.
package threecxtest

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Options configures a Server.
type Options struct {
	// ClientID and ClientSecret are the credentials the token endpoint
	// accepts (defaults "bridge" and "secret").
	ClientID, ClientSecret string
	// TokenTTL is the lifetime of an access token and the expires_in the
	// server announces (default one hour).
	TokenTTL time.Duration
	// FirstSequence is the sequence number of the first WebSocket message
	// (default 1).
	FirstSequence int64
	// PascalCase writes the WebSocket messages' members as 3CX's
	// documentation spells them (Sequence, Event, EventType, Entity,
	// AttachedData) instead of the snake_case of its samples.
	PascalCase bool
}

// Stats counts what clients did with the server.
type Stats struct {
	TokenRequests int // POST /connect/token, successful or not
	TokensIssued  int
	Unauthorized  int // requests answered 401
	Snapshots     int // GET /callcontrol
	EntityGets    int // GET of a participant or DN
	Connections   int // WebSocket upgrades accepted
	Queued        int // WebSocket messages queued, counted once per socket
	Sent          int // WebSocket messages written
	Refused       int // requests answered 503 while down
	// LastUp is when SetDown(false) last ran; LastAccept when the last
	// WebSocket upgrade was accepted. Their difference is how long a
	// client took to notice the PBX was back.
	LastUp, LastAccept time.Time
}

// Server is a fake 3CX. It is an http.Handler; StartHTTP and StartMemory
// serve it. All methods are safe for concurrent use.
type Server struct {
	opts Options

	mu      sync.Mutex
	tokens  map[string]time.Time // access token → expiry
	nextTok int
	dnTypes map[string]string
	dnOrder []string
	parts   map[string]map[string]any // participant path → object
	seq     int64
	last    []byte   // last message broadcast, for Duplicate
	held    [][]byte // messages held back, for Release
	down    bool
	closed  bool
	failGet int // participant GETs still to fail with 500
	conns   map[*wsConn]struct{}
	stats   Stats

	mux     *http.ServeMux
	wg      sync.WaitGroup
	closers []func()
	url     string
}

type wsConn struct {
	out  chan []byte
	kill chan struct{}
	once sync.Once
}

func (c *wsConn) drop() { c.once.Do(func() { close(c.kill) }) }

// New returns a fake 3CX with no DNs and no calls.
func New(o Options) *Server {
	if o.ClientID == "" {
		o.ClientID = "bridge"
	}
	if o.ClientSecret == "" {
		o.ClientSecret = "secret"
	}
	if o.TokenTTL <= 0 {
		o.TokenTTL = time.Hour
	}
	if o.FirstSequence == 0 {
		o.FirstSequence = 1
	}
	s := &Server{
		opts:    o,
		tokens:  make(map[string]time.Time),
		dnTypes: make(map[string]string),
		parts:   make(map[string]map[string]any),
		seq:     o.FirstSequence - 1,
		conns:   make(map[*wsConn]struct{}),
		mux:     http.NewServeMux(),
	}
	s.mux.HandleFunc("POST /connect/token", s.token)
	s.mux.HandleFunc("GET /callcontrol", s.authed(s.snapshot))
	s.mux.HandleFunc("GET /callcontrol/ws", s.authed(s.websocket))
	s.mux.HandleFunc("GET /callcontrol/{dn}", s.authed(s.dnInfo))
	s.mux.HandleFunc("GET /callcontrol/{dn}/participants/{id}", s.authed(s.participant))
	return s
}

// ServeHTTP implements the Call Control API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	down := s.down
	if down {
		s.stats.Refused++
	}
	s.mu.Unlock()
	if down {
		http.Error(w, "service unavailable", http.StatusServiceUnavailable)
		return
	}
	s.mux.ServeHTTP(w, r)
}

// StartHTTP serves the fake on a loopback port and returns its base URL.
// Close stops it.
func (s *Server) StartHTTP() string {
	hs := httptest.NewServer(s)
	s.mu.Lock()
	s.closers = append(s.closers, hs.Close)
	s.url = hs.URL
	s.mu.Unlock()
	return hs.URL
}

// URL returns the base URL StartHTTP returned last, or "".
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.url
}

// StartMemory serves the fake on an in-memory network, for tests inside a
// testing/synctest bubble (where a real socket would stop the fake clock).
// It returns the base URL to configure and the only client that reaches it.
// Close stops it; call it inside the bubble.
func (s *Server) StartMemory() (string, *http.Client) {
	l := newMemListener()
	hs := &http.Server{Handler: s}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = hs.Serve(l)
	}()
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) { return l.dial(ctx) },
	}
	s.mu.Lock()
	s.closers = append(s.closers, func() {
		_ = hs.Close()
		<-done
		tr.CloseIdleConnections()
	})
	s.mu.Unlock()
	return "http://threecx.test", &http.Client{Transport: tr}
}

// Close drops every WebSocket, stops what StartHTTP and StartMemory started
// and waits for the server's goroutines.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.DropConnections()
	s.mu.Lock()
	closers := s.closers
	s.closers = nil
	s.mu.Unlock()
	for _, c := range closers {
		c()
	}
	s.wg.Wait()
}

// Stats returns the counters so far.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Connections returns the number of open WebSockets.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// SetDN adds a monitored DN of the given type ("Wextension", "Wqueue", ...).
func (s *Server) SetDN(dn, typ string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.dnTypes[dn]; !ok {
		s.dnOrder = append(s.dnOrder, dn)
	}
	s.dnTypes[dn] = typ
}

// Participant returns the current object of a participant, or nil.
func (s *Server) Participant(dn, id string) map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.parts[path(dn, id)]
}

// Delivery says what happens to the WebSocket message of a change.
type Delivery int

// Deliveries of a change's message.
const (
	// Send: the message goes out at once.
	Send Delivery = iota
	// Lose: the change happens and consumes a sequence number, but its
	// message never arrives.
	Lose
	// Hold: the message is kept back until Release.
	Hold
)

// Upsert sets fields of a participant (creating it when new) and announces
// the change. fields must hold "dn" and "id"; other fields are merged into
// the participant's previous state.
func (s *Server) Upsert(fields map[string]any, d Delivery) error {
	dn, id := str(fields["dn"]), str(fields["id"])
	if dn == "" || id == "" {
		return fmt.Errorf("threecxtest: upsert needs dn and id")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := path(dn, id)
	obj := s.parts[p]
	if obj == nil {
		obj = make(map[string]any)
		s.parts[p] = obj
	}
	for k, v := range fields {
		obj[k] = v
	}
	if _, ok := s.dnTypes[dn]; !ok {
		s.dnOrder = append(s.dnOrder, dn)
		s.dnTypes[dn] = "Wextension"
	}
	s.announce(0, p, d)
	return nil
}

// Remove deletes a participant and announces it.
func (s *Server) Remove(dn, id string, d Delivery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := path(dn, id)
	delete(s.parts, p)
	s.announce(1, p, d)
}

// Duplicate sends the last message again, sequence number and all.
func (s *Server) Duplicate() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last != nil {
		s.broadcast(s.last)
	}
}

// Release sends the held-back messages, oldest first, after everything sent
// since: a reordering.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, m := range s.held {
		s.broadcast(m)
	}
	s.held = nil
}

// SendRaw writes data as one WebSocket text message, as is.
func (s *Server) SendRaw(data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.broadcast(slices.Clone(data))
}

// SetDown makes every request fail with 503 and drops the WebSockets
// (down=true), or serves again (down=false).
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	if s.down && !down {
		s.stats.LastUp = time.Now()
	}
	s.down = down
	s.mu.Unlock()
	if down {
		s.DropConnections()
	}
}

// DropConnections cuts every WebSocket without a close handshake, as a
// network failure would.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.drop()
	}
}

// FailParticipantGets makes the next n GETs of a participant fail with 500.
func (s *Server) FailParticipantGets(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failGet = n
}

// ExpireTokens makes every token issued so far invalid: the next request
// with one gets 401.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.tokens)
}

// announce must be called with s.mu held.
func (s *Server) announce(eventType int, entity string, d Delivery) {
	s.seq++
	msg, _ := json.Marshal(map[string]any{
		"sequence": s.seq,
		"event": map[string]any{
			"event_type":    eventType,
			"entity":        entity,
			"attached_data": nil,
		},
	})
	if s.opts.PascalCase {
		msg, _ = json.Marshal(map[string]any{
			"Sequence": s.seq,
			"Event": map[string]any{
				"EventType":    eventType,
				"Entity":       entity,
				"AttachedData": nil,
			},
		})
	}
	switch d {
	case Send:
		s.last = msg
		s.broadcast(msg)
	case Hold:
		s.held = append(s.held, msg)
	}
}

// broadcast must be called with s.mu held. It queues msg on every socket; a
// socket whose queue is full is dropped (its client will resync).
func (s *Server) broadcast(msg []byte) {
	for c := range s.conns {
		select {
		case c.out <- msg:
			s.stats.Queued++
		default:
			c.drop()
		}
	}
}

func (s *Server) token(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.TokenRequests++
	if err := r.ParseForm(); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_request"})
		return
	}
	if r.PostForm.Get("grant_type") != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "unsupported_grant_type"})
		return
	}
	idOK := subtle.ConstantTimeCompare([]byte(r.PostForm.Get("client_id")), []byte(s.opts.ClientID)) == 1
	secretOK := subtle.ConstantTimeCompare([]byte(r.PostForm.Get("client_secret")), []byte(s.opts.ClientSecret)) == 1
	if !idOK || !secretOK {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid_client"})
		return
	}
	s.nextTok++
	s.stats.TokensIssued++
	tok := "fake-token-" + strconv.Itoa(s.nextTok)
	s.tokens[tok] = time.Now().Add(s.opts.TokenTTL)
	writeJSON(w, http.StatusOK, map[string]any{
		"access_token": tok,
		"token_type":   "Bearer",
		"expires_in":   int(s.opts.TokenTTL / time.Second),
	})
}

func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		s.mu.Lock()
		exp, known := s.tokens[tok]
		valid := ok && known && time.Now().Before(exp)
		if !valid {
			s.stats.Unauthorized++
		}
		s.mu.Unlock()
		if !valid {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func (s *Server) snapshot(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	s.stats.Snapshots++
	out := make([]map[string]any, 0, len(s.dnOrder))
	for _, dn := range s.dnOrder {
		out = append(out, s.dnObject(dn))
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) dnInfo(w http.ResponseWriter, r *http.Request) {
	dn := r.PathValue("dn")
	s.mu.Lock()
	s.stats.EntityGets++
	_, ok := s.dnTypes[dn]
	var obj map[string]any
	if ok {
		obj = s.dnObject(dn)
	}
	s.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, obj)
}

// dnObject must be called with s.mu held.
func (s *Server) dnObject(dn string) map[string]any {
	prefix := "/callcontrol/" + dn + "/participants/"
	var ids []string
	for p := range s.parts {
		if id, ok := strings.CutPrefix(p, prefix); ok {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(a, b string) int {
		x, _ := strconv.Atoi(a)
		y, _ := strconv.Atoi(b)
		if x != y {
			return x - y
		}
		return strings.Compare(a, b)
	})
	parts := make([]map[string]any, 0, len(ids))
	for _, id := range ids {
		parts = append(parts, s.parts[prefix+id])
	}
	return map[string]any{"dn": dn, "type": s.dnTypes[dn], "devices": []any{}, "participants": parts}
}

func (s *Server) participant(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.stats.EntityGets++
	if s.failGet > 0 {
		s.failGet--
		s.mu.Unlock()
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	obj, ok := s.parts[path(r.PathValue("dn"), r.PathValue("id"))]
	var body []byte
	if ok {
		body, _ = json.Marshal(obj)
	}
	s.mu.Unlock()
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

func (s *Server) websocket(w http.ResponseWriter, r *http.Request) {
	// The socket is subscribed before the upgrade is answered, as a PBX
	// does: a change made once the client has its socket reaches it. (It
	// was subscribed after, and a change made in between, on a loaded
	// machine, went to nobody.)
	c := &wsConn{out: make(chan []byte, 1024), kill: make(chan struct{})}
	s.mu.Lock()
	if s.down || s.closed {
		s.mu.Unlock()
		http.Error(w, "down", http.StatusServiceUnavailable)
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	unsubscribe := func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
	}
	conn, err := websocket.Accept(w, r, nil)
	if err != nil {
		unsubscribe()
		return
	}
	s.mu.Lock()
	s.stats.Connections++
	s.stats.LastAccept = time.Now()
	s.mu.Unlock()
	defer func() {
		unsubscribe()
		conn.CloseNow()
	}()
	// CloseRead answers pings and notices the client going away.
	ctx := conn.CloseRead(context.Background())
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kill:
			return
		case msg := <-c.out:
			if err := conn.Write(ctx, websocket.MessageText, msg); err != nil {
				return
			}
			s.mu.Lock()
			s.stats.Sent++
			s.mu.Unlock()
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(v)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func path(dn, id string) string { return "/callcontrol/" + dn + "/participants/" + id }

// str renders a JSON scalar (string or number) as a string.
func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return ""
}
