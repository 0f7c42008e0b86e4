package xelion

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/voipbridge/voipbridge/backoff"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/voipbridge/voipbridge/events"
)

// Journal stores signals durably. PublishSignal returns nil only once the
// signal is journaled; the source reads no further message before that.
type Journal interface {
	PublishSignal(ctx context.Context, s events.Signal) error
}

// Options is what a Source needs. Config and Journal are required.
type Options struct {
	Config  Config
	Journal Journal
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the source's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// HTTPClient is used for REST requests and the WebSocket handshake; it
	// defaults to a client with a fresh http.Transport. Its Timeout should
	// be zero: every request gets RequestTimeout.
	HTTPClient *http.Client
	// RequestTimeout bounds one REST request or WebSocket handshake (default 15s).
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnects (default
	// 500ms and 15s). The first attempt after a connection is lost goes at
	// once; then the wait starts at MinBackoff and doubles per failed
	// attempt up to MaxBackoff, with jitter. Xelion does not replay what it
	// sent while the source was away, so the cap is the longest time a
	// call can start unseen after the server is back.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how often the WebSocket is pinged to notice a dead
	// connection (default 30s).
	PingInterval time.Duration
	// RenewBefore is how long before the token's expiry the session is
	// renewed (default 5m; at most half the token's lifetime).
	RenewBefore time.Duration
	// Now is the clock of signal times and token expiry (default time.Now).
	Now func() time.Time
}

// Source follows one Xelion tenant and journals a signal for every call
// event. Create it with New and start it with Run.
type Source struct {
	log       *slog.Logger
	journal   Journal
	api       *rest
	sess      *session
	tr        *translator
	m         *metrics
	connected atomic.Bool

	minBackoff, maxBackoff, ping, timeout time.Duration

	// pending holds signals translated but not yet journaled. They are
	// journaled before anything else is read, also after a reconnect.
	pending []events.Signal
	// resyncLast is the last problem reading the running calls, "" after
	// a success: a problem is logged when it changes.
	resyncLast string
	// downSince is when the connection was lost, zero while it is up or
	// before it first came up: the outage is logged with its length when
	// it ends.
	downSince time.Time
}

// New checks the options and returns a Source that has not connected yet.
func New(o Options) (*Source, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("xelion: %w", err)
	}
	if o.Journal == nil {
		return nil, errors.New("xelion: no journal")
	}
	base, err := o.Config.apiBase()
	if err != nil {
		return nil, fmt.Errorf("xelion: %w", err)
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("source", SourceName)
	now := o.Now
	if now == nil {
		now = time.Now
	}
	loc := time.UTC
	if o.Config.TimeZone != "" {
		loc, _ = time.LoadLocation(o.Config.TimeZone) // checked by Validate
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	m := newMetrics(o.Registerer)
	api := &rest{base: base, client: client, timeout: cmpOr(o.RequestTimeout, 15*time.Second)}
	s := &Source{
		log:        log,
		journal:    o.Journal,
		api:        api,
		tr:         newTranslator(now),
		m:          m,
		minBackoff: cmpOr(o.MinBackoff, 500*time.Millisecond),
		maxBackoff: cmpOr(o.MaxBackoff, 15*time.Second),
		ping:       cmpOr(o.PingInterval, 30*time.Second),
		timeout:    api.timeout,
	}
	s.maxBackoff = max(s.maxBackoff, s.minBackoff)
	s.sess = &session{
		api: api,
		creds: Credentials{
			UserName: o.Config.Username, Password: o.Config.Password,
			UserSpace: o.Config.userSpace(), ClientID: "voipbridge",
		},
		loc:         loc,
		now:         now,
		renewBefore: cmpOr(o.RenewBefore, 5*time.Minute),
		log:         log,
		m:           m,
		changed:     make(chan struct{}, 1),
	}
	return s, nil
}

func cmpOr(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// Connected reports whether the WebSocket is open and subscribed.
func (s *Source) Connected() bool { return s.connected.Load() }

// Run follows the tenant until ctx is cancelled, reconnecting with capped
// exponential backoff and jitter after every failure, and then logs out and
// returns nil. Each connection asks for a fresh WebSocket URL. A journal
// failure ends the connection; the signals not yet journaled are kept and
// journaled first when the journal works again, never dropped, except one
// the journal refuses as invalid, which no retry can change. Xelion does
// not replay what happened while the bridge was not connected: after every
// (re)connect the source reads the PBX's running calls and ends the calls
// it holds live that no longer run (see resync); when they cannot be read,
// such a call is ended by the tracker's timeout.
func (s *Source) Run(ctx context.Context) error {
	keepCtx, stopKeep := context.WithCancel(ctx)
	defer stopKeep()
	go s.sess.keep(keepCtx, s.minBackoff)

	failures := 0
	lastErr := ""
	for {
		start := time.Now()
		err := s.connect(ctx)
		s.setConnected(false)
		if ctx.Err() != nil {
			s.shutdown()
			return nil
		}
		if time.Since(start) >= time.Minute {
			failures = 0 // a connection that lasted was a success
		}
		failures++
		s.m.reconnects.Inc()
		if msg := err.Error(); msg != lastErr || failures == 1 {
			s.log.Warn("xelion connection lost; reconnecting", "err", err, "attempt", failures)
			lastErr = msg
		}
		t := time.NewTimer(s.backoff(failures))
		select {
		case <-ctx.Done():
			t.Stop()
			s.shutdown()
			return nil
		case <-t.C:
		}
	}
}

func (s *Source) shutdown() {
	if n := len(s.pending); n > 0 {
		s.log.Error("shutting down with signals the journal did not take", "signals", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.sess.logout(ctx)
}

// backoff is the wait before reconnect attempt n (1-based): none for the
// first, whose failure may be a blip of one connection, then minBackoff
// doubling up to maxBackoff, with jitter.
func (s *Source) backoff(n int) time.Duration {
	if n <= 1 {
		return 0
	}
	return backoff.Delay(n-1, s.minBackoff, s.maxBackoff)
}

func (s *Source) setConnected(up bool) {
	if s.connected.Swap(up) == up {
		return
	}
	if up {
		s.m.connected.Set(1)
		if s.downSince.IsZero() {
			s.log.Info("xelion feed up")
			return
		}
		// One line per outage, when it ends, with its length: the calls
		// that began in it were not seen.
		d := time.Since(s.downSince)
		s.downSince = time.Time{}
		s.log.Info(fmt.Sprintf("Xelion connection back after %s", d.Round(100*time.Millisecond)), "outage", d)
	} else {
		s.m.connected.Set(0)
		s.downSince = time.Now()
		s.log.Info("xelion feed down")
	}
}

// connect runs one connection: journal what is pending, get a token and a
// WebSocket URL, open it, subscribe, end the calls that ended while the
// source was away and read until something fails.
func (s *Source) connect(ctx context.Context) error {
	if err := s.flush(ctx); err != nil {
		return err
	}
	conn, err := s.open(ctx)
	if err != nil {
		return err
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	for _, t := range Subscriptions {
		req, _ := json.Marshal(NotificationRequest{MessageType: "notificationRequest", NotificationType: t, Toggle: true})
		wctx, cancel := context.WithTimeout(ctx, s.timeout)
		err := conn.Write(wctx, websocket.MessageText, req)
		cancel()
		if err != nil {
			return fmt.Errorf("subscribe %s: %w", t, err)
		}
	}
	// The running calls are read after subscribing, so that no hang-up falls
	// between the two: one after the list is queued on the socket (and
	// dropped as after_end when the list already ended its call).
	if err := s.resync(ctx); err != nil {
		conn.Close(websocket.StatusTryAgainLater, "journal unavailable")
		return err
	}
	s.setConnected(true)

	pctx, stopPing := context.WithCancel(ctx)
	defer stopPing()
	go s.keepalive(pctx, conn)

	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if err := s.handle(ctx, data); err != nil {
			conn.Close(websocket.StatusTryAgainLater, "journal unavailable")
			return err
		}
	}
}

// open asks for a one-off WebSocket URL and dials it. A 401 means the
// session is gone: log in again once and retry.
func (s *Source) open(ctx context.Context) (*websocket.Conn, error) {
	var obj ObjectResponse
	for attempt := 0; ; attempt++ {
		tok, err := s.sess.Token(ctx)
		if err != nil {
			return nil, err
		}
		err = s.api.do(ctx, "websocket", "me/websocket", tok, nil, &obj)
		s.sess.count(reqWebsocket, err)
		if errors.Is(err, errAuth) && attempt == 0 {
			s.sess.Invalidate(tok)
			continue
		}
		if err != nil {
			return nil, err
		}
		break
	}
	if obj.Object == "" {
		return nil, errors.New("websocket: answer has no URL")
	}
	dctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	conn, resp, err := websocket.Dial(dctx, obj.Object, &websocket.DialOptions{HTTPClient: s.api.client})
	if err != nil {
		// The URL is a one-off credential: keep it out of the error.
		if resp != nil {
			return nil, fmt.Errorf("open websocket: HTTP %d", resp.StatusCode)
		}
		return nil, fmt.Errorf("open websocket: %w", redact(err))
	}
	return conn, nil
}

// keepalive pings the server; a ping that gets no answer closes the
// connection, which ends the read loop.
func (s *Source) keepalive(ctx context.Context, conn *websocket.Conn) {
	t := time.NewTicker(s.ping)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, cancel := context.WithTimeout(ctx, s.ping)
			err := conn.Ping(pctx)
			cancel()
			if err != nil && ctx.Err() == nil {
				s.log.Warn("xelion websocket ping failed; closing", "err", err)
				conn.CloseNow()
				return
			}
		}
	}
}

// handle translates one message and journals its signals. Messages that
// cannot be used are counted and logged; only a journal failure is an error.
func (s *Source) handle(ctx context.Context, data []byte) error {
	ev, err := Decode(data)
	if err != nil {
		if errors.Is(err, ErrNotNotification) {
			s.m.received.WithLabelValues(typeOther).Inc()
			return nil
		}
		if errors.Is(err, ErrUnreadableTransfer) {
			// Not used as a transfer, but the translator learns that one
			// happened: the events that follow decide.
			s.m.received.WithLabelValues(CallTransferredEvent).Inc()
			s.m.dropped.WithLabelValues(reasonTransfer).Inc()
			s.log.Warn("xelion transfer event unreadable; the events that follow decide", "reason", reasonTransfer, "err", err, "bytes", len(data))
			out := s.tr.unreadable(data)
			s.pending = append(s.pending, out.signals...)
			return s.flush(ctx)
		}
		reason := reasonJSON
		if de, ok := errors.AsType[*DecodeError](err); ok {
			reason = de.Reason
		}
		if reason == reasonUnknownType {
			s.m.received.WithLabelValues(typeOther).Inc()
		}
		s.m.dropped.WithLabelValues(reason).Inc()
		s.log.Warn("xelion message dropped", "reason", reason, "err", err, "bytes", len(data))
		return nil
	}
	s.m.received.WithLabelValues(ev.Type).Inc()
	out := s.tr.apply(ev)
	if out.drop != "" {
		s.m.dropped.WithLabelValues(out.drop).Inc()
		s.log.Debug("xelion event gave no signal", "event", ev.Type, "call_id", clip(string(ev.Call.CallID)), "reason", out.drop)
	}
	s.pending = append(s.pending, out.signals...)
	return s.flush(ctx)
}

// flush journals the pending signals in order. A signal the journal
// refuses as invalid (events.ErrInvalidSignal: an identifier from Xelion
// that is not printable or too long) is dropped, logged and counted, and
// the next one goes on: kept, it would fail the same way on every
// reconnect and hold back every later signal. The translator folded its
// event already, so nothing derives it again.
func (s *Source) flush(ctx context.Context) error {
	for len(s.pending) > 0 {
		sig := s.pending[0]
		err := s.journal.PublishSignal(ctx, sig)
		switch {
		case errors.Is(err, events.ErrInvalidSignal):
			s.dropInvalid(sig, err)
		case err != nil:
			return fmt.Errorf("journal: %w", err)
		default:
			s.m.signals.WithLabelValues(string(sig.State)).Inc()
		}
		s.pending = s.pending[1:]
	}
	s.pending = nil
	return nil
}

// dropInvalid counts and logs a signal the journal refused as invalid. The
// line names the field and the problem, never the value: it is what the
// journal found unfit for a log line.
func (s *Source) dropInvalid(sig events.Signal, err error) {
	s.m.sigDrops.WithLabelValues(reasonInvalid).Inc()
	field, problem := "", err.Error()
	if fe, ok := errors.AsType[*events.FieldError](err); ok {
		field, problem = fe.Field, fe.Problem
	}
	s.log.Warn("xelion signal dropped: the journal refuses it as invalid",
		"reason", reasonInvalid, "field", field, "problem", problem, "event", sig.State)
}
