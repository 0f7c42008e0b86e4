package threecx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/voipbridge/voipbridge/backoff"
	"github.com/voipbridge/voipbridge/events"
)

// Journal stores signals durably. PublishSignal returns nil only once the
// signal is journaled; the source reads no further message before that.
type Journal interface {
	PublishSignal(ctx context.Context, s events.Signal) error
}

// Config is what the source needs to reach one PBX. The bridge reads it from
// the environment variables named below.
type Config struct {
	// URL is the PBX's base URL, e.g. https://pbx.example.com (THREECX_URL).
	URL string
	// ClientID is the Client ID (a route point DN) of the API integration
	// created under Admin Console → Integrations → API (THREECX_CLIENT_ID).
	ClientID string
	// ClientSecret is the integration's API key (THREECX_CLIENT_SECRET).
	ClientSecret string
	// QueueDNs lists DNs whose participants are never agents, in addition to
	// the DNs the API itself reports as queues, IVRs, route points or ring
	// groups (THREECX_QUEUE_DNS, comma-separated). Needed only for DNs the
	// API shows without a type.
	QueueDNs []string
}

// Validate reports every setting that keeps the source from starting. Its
// errors never contain the secret.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("THREECX_URL is empty"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, errors.New("THREECX_URL is not a URL"))
	} else {
		if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			errs = append(errs, errors.New("THREECX_URL must be an http or https URL with a host"))
		}
		if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, errors.New("THREECX_URL must not carry credentials, a query or a fragment"))
		}
	}
	if c.ClientID == "" {
		errs = append(errs, errors.New("THREECX_CLIENT_ID is empty"))
	}
	if c.ClientSecret == "" {
		errs = append(errs, errors.New("THREECX_CLIENT_SECRET is empty"))
	}
	for _, dn := range c.QueueDNs {
		if dn = strings.TrimSpace(dn); dn != "" && !validSegment(dn) {
			errs = append(errs, fmt.Errorf("THREECX_QUEUE_DNS: %q is not a DN", dn))
		}
	}
	return errors.Join(errs...)
}

// LogValue shows the configuration without its secret.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", c.URL),
		slog.String("client_id", c.ClientID),
		slog.Bool("client_secret_set", c.ClientSecret != ""),
		slog.Any("queue_dns", c.QueueDNs),
	)
}

// Options is what a Source needs. Config and Journal are required.
type Options struct {
	Config  Config
	Journal Journal
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the source's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// HTTPClient is used for REST, token and WebSocket requests; it defaults
	// to a client with a fresh http.Transport. Its Timeout should be zero:
	// every request gets RequestTimeout.
	HTTPClient *http.Client
	// RequestTimeout bounds one REST request or WebSocket handshake (default 15s).
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between reconnects (default
	// 250ms and 15s). The first attempt after a loss goes at once; later
	// ones wait an eighth of the outage so far, with jitter (see
	// backoff.Reconnect), so the source is back at most that long after the
	// PBX: 3CX does not replay what happened meanwhile, and a call that
	// starts and ends while the source is away is never seen.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how often the WebSocket is pinged to notice a dead
	// connection (default 30s).
	PingInterval time.Duration
	// Store, when set, keeps the reported legs across restarts, so that
	// calls that ended while the bridge was down end at the first snapshot.
	Store Store
}

// Source follows one 3CX PBX and journals a signal for every change of a
// participant. Create it with New and start it with Run (once).
type Source struct {
	log       *slog.Logger
	journal   Journal
	api       *api
	m         *metrics
	book      *book
	store     Store
	connected atomic.Bool
	drops     map[string]*dropLog

	minBackoff, maxBackoff, ping time.Duration

	// Per connection: the last sequence number seen.
	lastSeq int64
	haveSeq bool

	// lostAt is when the last connection was lost; zero before the first
	// connection and while connected. Only Run's goroutine uses it.
	lostAt time.Time
}

// New checks the options and returns a Source that has not connected yet.
func New(o Options) (*Source, error) {
	if err := o.Config.Validate(); err != nil {
		return nil, fmt.Errorf("threecx: %w", err)
	}
	if o.Journal == nil {
		return nil, errors.New("threecx: no journal")
	}
	base, _ := url.Parse(strings.TrimRight(o.Config.URL, "/"))
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	client := o.HTTPClient
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	timeout := cmpOr(o.RequestTimeout, 15*time.Second)
	s := &Source{
		log:        log.With("source", SourceName),
		journal:    o.Journal,
		m:          newMetrics(o.Registerer),
		book:       newBook(o.Config.QueueDNs),
		store:      o.Store,
		drops:      make(map[string]*dropLog),
		minBackoff: cmpOr(o.MinBackoff, 250*time.Millisecond),
		maxBackoff: cmpOr(o.MaxBackoff, 15*time.Second),
		ping:       cmpOr(o.PingInterval, 30*time.Second),
	}
	s.maxBackoff = max(s.maxBackoff, s.minBackoff)
	tokenURL := *base
	tokenURL.Path += "/connect/token"
	s.api = &api{
		base:    base,
		client:  client,
		timeout: timeout,
		tokens: &tokenSource{
			client:   client,
			endpoint: tokenURL.String(),
			id:       o.Config.ClientID,
			secret:   o.Config.ClientSecret,
			timeout:  timeout,
			onFetch:  s.m.tokens.Inc,
		},
	}
	return s, nil
}

// Connected reports whether the source is connected and in sync with the PBX
// (the WebSocket is open and the snapshot after connecting was journaled).
func (s *Source) Connected() bool { return s.connected.Load() }

// Run follows the PBX until ctx is cancelled, reconnecting after every
// failure (at once, then with a wait that grows with the outage, see
// Options.MinBackoff), and then returns nil. Every (re)connect starts with a
// full snapshot, so calls that ended while the bridge was not listening
// still get their end. A journal failure ends the connection: what was not
// journaled is derived again from the snapshot of the next one, never
// dropped. The exception is a signal the journal refuses as invalid
// (events.ErrInvalidSignal): no retry can change it, so it is dropped,
// logged and counted, and the source carries on.
func (s *Source) Run(ctx context.Context) error {
	if err := s.restore(ctx); err != nil {
		s.log.Warn("3CX legs of the last run not restored; calls that ended meanwhile end on the call timeout", "err", err)
	}
	failures := 0
	lastErr := ""
	// failingSince is when the connection stopped being healthy: the
	// outage the reconnect wait grows with. A connection that comes up and
	// fails again quickly does not end it, so a PBX that keeps dropping
	// sockets is not hammered.
	var failingSince time.Time
	for {
		start := time.Now()
		err := s.session(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if s.sessionWasHealthy(start) {
			failures = 0
			lastErr = ""
		}
		if failures == 0 {
			failingSince = time.Now()
		}
		failures++
		if msg := errString(err); msg != lastErr {
			if isAuth(err) {
				s.log.Error("3CX refused the API credentials; check THREECX_CLIENT_ID and THREECX_CLIENT_SECRET", "err", err, "attempt", failures)
			} else {
				s.log.Warn("3CX call control connection lost", "err", err, "attempt", failures)
			}
			lastErr = msg
		}
		wait := s.backoff(failures, time.Since(failingSince))
		if isAuth(err) {
			// Refused credentials do not come right by themselves, and a
			// PBX may block an address that keeps failing to log in: the
			// wait doubles from a second to a minute instead.
			wait = backoff.Delay(failures, time.Second, time.Minute)
		}
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
		}
		s.m.reconnects.Inc()
	}
}

// sessionWasHealthy reports whether a connection stayed up long enough
// (MaxBackoff) that its loss starts a new outage: the next attempt goes at
// once again.
func (s *Source) sessionWasHealthy(start time.Time) bool {
	return time.Since(start) >= s.maxBackoff
}

// backoff is the wait before reconnect attempt n (1-based) of an outage
// that has lasted down.
func (s *Source) backoff(n int, down time.Duration) time.Duration {
	return backoff.Reconnect(n, down, s.minBackoff, s.maxBackoff)
}

// session is one connection: WebSocket up, snapshot, then messages until
// something fails.
func (s *Source) session(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The socket goes up before the snapshot so that no change between the
	// two is lost: whatever changes after the snapshot is queued on the socket.
	conn, err := s.api.dial(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	go func() {
		defer close(done)
		s.keepalive(ctx, conn)
	}()

	s.haveSeq = false
	if err := s.resync(ctx, "connect"); err != nil {
		return err
	}
	s.setConnected(true)
	defer func() {
		s.setConnected(false)
		s.lostAt = time.Now()
	}()
	if s.lostAt.IsZero() {
		s.log.Info("3CX call control connected")
	} else {
		// One line per outage, when it ends: how long the source was blind.
		out := time.Since(s.lostAt)
		s.log.Info("3CX connection back after "+roundOutage(out).String(), "outage", out)
		s.lostAt = time.Time{}
	}
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if err := s.handle(ctx, data); err != nil {
			return err
		}
		s.m.processed.Inc()
	}
}

func (s *Source) setConnected(up bool) {
	s.connected.Store(up)
	if up {
		s.m.connected.Set(1)
	} else {
		s.m.connected.Set(0)
	}
}

// keepalive pings the PBX so that a connection that died silently is noticed
// and replaced; a failed ping closes the socket, which ends the read loop.
func (s *Source) keepalive(ctx context.Context, conn *websocket.Conn) {
	t := time.NewTicker(s.ping)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, s.ping)
		err := conn.Ping(pctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				s.log.Info("3CX call control ping failed", "err", err)
				conn.CloseNow()
			}
			return
		}
	}
}

// handle processes one WebSocket message completely (journal included). It
// returns an error only when the connection must be replaced.
func (s *Source) handle(ctx context.Context, data []byte) error {
	m, err := DecodeMessage(data)
	if err != nil {
		var de *DecodeError
		reason := reasonJSON
		if errors.As(err, &de) {
			reason = de.Reason
		}
		if reason == reasonUnknownType {
			s.m.received.WithLabelValues(m.Type.String()).Inc()
		}
		s.drop(reason, err)
		return nil
	}
	s.m.received.WithLabelValues(m.Type.String()).Inc()
	if gap, reset := s.checkSequence(m); gap || reset {
		s.log.Info("3CX message sequence broken, taking a snapshot", "sequence", m.Sequence, "reset", reset)
		if err := s.resync(ctx, "sequence_gap"); err != nil {
			return err
		}
	}
	switch m.Type {
	case EventUpsert:
		return s.upsert(ctx, m.Entity)
	case EventRemove:
		return s.remove(ctx, m.Entity)
	}
	return nil
}

// reorderWindow is how far a sequence number may go back before it counts as
// the server restarting its counter rather than a late message.
const reorderWindow = 64

// checkSequence tracks the message sequence. gap: messages were skipped;
// reset: the counter went back further than reordering explains. Late and
// repeated messages are neither: they are processed, and since every upsert
// is answered with the entity's current state they cannot undo anything.
func (s *Source) checkSequence(m Message) (gap, reset bool) {
	if !m.HasSequence {
		return false, false
	}
	switch {
	case !s.haveSeq:
		s.lastSeq, s.haveSeq = m.Sequence, true
	case m.Sequence > s.lastSeq+1:
		gap = true
		s.lastSeq = m.Sequence
	case m.Sequence == s.lastSeq+1:
		s.lastSeq = m.Sequence
	case m.Sequence < s.lastSeq-reorderWindow:
		reset = true
		s.lastSeq = m.Sequence
	}
	return gap, reset
}

func (s *Source) upsert(ctx context.Context, entity string) error {
	dn, id, ok := ParseEntity(entity)
	if !ok {
		// DN and device entities change too; only participants make signals.
		if !strings.HasPrefix(entity, "/callcontrol/") {
			s.drop(reasonBadEntity, errors.New("entity is not a /callcontrol path"))
		}
		return nil
	}
	path := ParticipantPath(dn, id)
	if s.book.isGone(path) {
		return nil
	}
	if !s.book.knowsDN(dn) {
		s.learnDN(ctx, dn)
	}
	body, found, err := s.api.get(ctx, path)
	if err != nil {
		// The change cannot be read; rather than lose it, read everything.
		s.log.Warn("3CX participant fetch failed, taking a snapshot", "err", err)
		return s.resync(ctx, "fetch_failed")
	}
	now := time.Now()
	if !found {
		// Gone before we could look: a Remove is on its way or was missed.
		if pd, ok := s.book.end(path, CauseGone, now); ok {
			return s.emit(ctx, pd)
		}
		return nil
	}
	p, err := DecodeParticipant(body, dn)
	if err == nil && p.ID != id {
		err = decodeErr(reasonParticipant, errors.New("id does not match the entity"))
	}
	if err != nil {
		s.drop(reasonParticipant, err)
		return nil
	}
	if pd, ok := s.book.observe(path, p, now); ok {
		return s.emit(ctx, pd)
	}
	return nil
}

func (s *Source) remove(ctx context.Context, entity string) error {
	dn, id, ok := ParseEntity(entity)
	if !ok {
		return nil
	}
	if pd, ok := s.book.end(ParticipantPath(dn, id), CauseRemoved, time.Now()); ok {
		return s.emit(ctx, pd)
	}
	return nil
}

// learnDN asks the PBX for the type of a DN first seen in a message (one
// added to the integration after the last snapshot). On failure the DN's
// participants count as agents unless configured otherwise.
func (s *Source) learnDN(ctx context.Context, dn string) {
	body, found, err := s.api.get(ctx, "/callcontrol/"+dn)
	if err != nil || !found {
		// Not asked again before the next snapshot, which lists every DN.
		s.log.Info("3CX DN type unknown", "ext", dn, "err", err)
		s.book.learnDN(dn, "")
		return
	}
	d, err := decodeDNInfo(body)
	if err != nil {
		s.m.dropped.WithLabelValues(reasonSnapshot).Inc()
		return
	}
	s.book.learnDN(dn, d.Type)
}

// resync takes a full snapshot and journals what it changes.
func (s *Source) resync(ctx context.Context, reason string) error {
	s.m.resyncs.WithLabelValues(reason).Inc()
	body, found, err := s.api.get(ctx, "/callcontrol")
	if err == nil && !found {
		err = &statusError{"/callcontrol", http.StatusNotFound}
	}
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	dns, dropped, err := DecodeSnapshot(body)
	if err != nil {
		s.m.dropped.WithLabelValues(reasonSnapshot).Inc()
		return fmt.Errorf("snapshot: %w", err)
	}
	if dropped > 0 {
		s.m.dropped.WithLabelValues(reasonParticipant).Add(float64(dropped))
		s.log.Warn("3CX snapshot participants dropped", "reason", reasonParticipant, "count", dropped)
	}
	now := time.Now()
	for _, st := range s.book.diff(dns, now) {
		var pd pending
		var ok bool
		if st.p != nil {
			pd, ok = s.book.observe(st.path, *st.p, now)
		} else {
			pd, ok = s.book.end(st.path, CauseGone, now)
		}
		if !ok {
			continue
		}
		if err := s.emit(ctx, pd); err != nil {
			return err
		}
	}
	return nil
}

// dropLog limits the log lines about dropped messages to one per reason and
// minute: a PBX that sends garbage all day must not flood the log. The
// counter counts every drop.
type dropLog struct {
	last       time.Time
	suppressed int
}

const dropLogEvery = time.Minute

func (s *Source) drop(reason string, err error) {
	s.m.dropped.WithLabelValues(reason).Inc()
	if suppressed, ok := s.logDrop(reason); ok {
		s.log.Warn("3CX message dropped", "reason", reason, "err", err, "dropped_since_last_log", suppressed)
	}
}

// logDrop reports whether a drop for reason may be logged now, and how many
// were not logged since the last line.
func (s *Source) logDrop(reason string) (suppressed int, ok bool) {
	d := s.drops[reason]
	if d == nil {
		d = &dropLog{}
		s.drops[reason] = d
	}
	now := time.Now()
	if !d.last.IsZero() && now.Sub(d.last) < dropLogEvery {
		d.suppressed++
		return 0, false
	}
	suppressed = d.suppressed
	d.last, d.suppressed = now, 0
	return suppressed, true
}

// publishTimeout bounds one journal write.
const publishTimeout = 30 * time.Second

// emit journals a signal and only then records it as sent. A signal the
// journal refuses as invalid is dropped (see skip) and the source goes on;
// any other failure ends the connection, and the next snapshot derives the
// signal again.
func (s *Source) emit(ctx context.Context, pd pending) error {
	pctx, cancel := context.WithTimeout(ctx, publishTimeout)
	err := s.journal.PublishSignal(pctx, pd.sig)
	cancel()
	if errors.Is(err, events.ErrInvalidSignal) {
		s.skip(ctx, pd, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	s.book.commit(pd, time.Now())
	s.persist(ctx, pd.path)
	s.m.signals.WithLabelValues(string(pd.sig.State)).Inc()
	s.log.Debug("3CX signal", "call_id", pd.sig.CallID, "ext", pd.sig.Extension, "event", pd.sig.State, "leg_id", pd.sig.LegID, "line", pd.sig.Line)
	return nil
}

// skip drops a signal the journal can never take: an identifier from the
// PBX (a callid, in practice: DNs and participant ids are checked as path
// segments on decoding) that is not printable or too long. Retrying it, or
// replacing the connection over it, would fail the same way forever.
//
// The book records it as if it had been sent, or every message and snapshot
// about the participant would derive it again; each state of such a leg is
// dropped once and its end forgets it. It is recorded without its
// extension, so that the unusable call is never the agent's latest call
// that a later transfer links to (which would make that call's signals
// invalid too). The store is only told when the leg ends: it never saves
// the unusable leg, so a restart cannot bring it back.
func (s *Source) skip(ctx context.Context, pd pending, err error) {
	s.m.sigDrops.WithLabelValues(reasonInvalid).Inc()
	if suppressed, ok := s.logDrop(reasonInvalid); ok {
		field, problem := "", err.Error()
		if fe, ok := errors.AsType[*events.FieldError](err); ok {
			field, problem = fe.Field, fe.Problem
		}
		// The leg id and extension are path segments (validSegment), safe to
		// log; the offending value itself is not logged.
		s.log.Warn("3CX signal dropped: the journal refuses it as invalid",
			"reason", reasonInvalid, "field", field, "problem", problem,
			"event", pd.sig.State, "leg_id", pd.sig.LegID, "ext", pd.sig.Extension,
			"dropped_since_last_log", suppressed)
	}
	sig := pd.sig
	sig.Extension = ""
	s.book.commit(pending{sig: sig, path: pd.path}, time.Now())
	if sig.State == events.Ended {
		s.persist(ctx, pd.path)
	}
}

// roundOutage rounds an outage for the log line: tenths of a second, or
// milliseconds below a second.
func roundOutage(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(100 * time.Millisecond)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
