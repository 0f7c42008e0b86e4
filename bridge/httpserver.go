package bridge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/pbx/webhook"
)

// HTTPConfig is how the HTTP API is served (Config.HTTP): TLS, the proxies
// in front of it, the admin port, and the limits that keep clients from
// holding the server open.
type HTTPConfig struct {
	// AdminAddr, when set, is a second listener for /metrics and the admin
	// endpoints; they then leave HTTP_ADDR.
	AdminAddr string `env:"ADMIN_ADDR"`
	// TLSCertFile and TLSKeyFile (PEM), both or neither, turn HTTPS on for
	// every listener; SIGHUP re-reads them.
	TLSCertFile string `env:"TLS_CERT_FILE"`
	TLSKeyFile  string `env:"TLS_KEY_FILE"`
	// TrustedProxies are the networks whose ProxyHeader names the client.
	TrustedProxies []string `env:"TRUSTED_PROXIES" envSeparator:","`
	ProxyHeader    string   `env:"TRUSTED_PROXY_HEADER" envDefault:"X-Forwarded-For"`

	MaxConns       int           `env:"HTTP_MAX_CONNS" envDefault:"512"`
	ReadTimeout    time.Duration `env:"HTTP_READ_TIMEOUT" envDefault:"30s"`
	WriteTimeout   time.Duration `env:"HTTP_WRITE_TIMEOUT" envDefault:"60s"`
	IdleTimeout    time.Duration `env:"HTTP_IDLE_TIMEOUT" envDefault:"60s"`
	MaxHeaderBytes int           `env:"HTTP_MAX_HEADER_BYTES" envDefault:"32768"`
}

// maxReadHeaderTimeout bounds the wait for a request's headers (shorter when
// HTTP_READ_TIMEOUT is).
const maxReadHeaderTimeout = 10 * time.Second

// validate reports every problem; httpAddr is HTTP_ADDR.
func (c HTTPConfig) validate(httpAddr string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch {
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		bad("TLS_CERT_FILE and TLS_KEY_FILE go together: set both for HTTPS, or neither")
	case c.TLSCertFile != "":
		if _, err := newCertLoader(c.TLSCertFile, c.TLSKeyFile); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := c.proxies(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.proxyHeader(); err != nil {
		errs = append(errs, err)
	}
	if c.AdminAddr != "" {
		if _, port, err := net.SplitHostPort(c.AdminAddr); err != nil {
			bad("ADMIN_ADDR %q: want host:port or :port", c.AdminAddr)
		} else if c.AdminAddr == httpAddr && port != "0" {
			bad("ADMIN_ADDR %q is HTTP_ADDR: give the admin port an address of its own, or leave it unset", c.AdminAddr)
		}
	}
	if c.MaxConns < 1 {
		bad("HTTP_MAX_CONNS %d: want at least 1", c.MaxConns)
	}
	for name, d := range map[string]time.Duration{
		"HTTP_READ_TIMEOUT": c.ReadTimeout, "HTTP_WRITE_TIMEOUT": c.WriteTimeout, "HTTP_IDLE_TIMEOUT": c.IdleTimeout,
	} {
		if d <= 0 {
			bad("%s %s: want a positive duration", name, d)
		}
	}
	if c.MaxHeaderBytes < 4<<10 || c.MaxHeaderBytes > 1<<20 {
		bad("HTTP_MAX_HEADER_BYTES %d: want 4096 to 1048576", c.MaxHeaderBytes)
	}
	return errors.Join(errs...)
}

func (c HTTPConfig) proxies() ([]netip.Prefix, error) {
	p, err := webhook.ParseCIDRs(c.TrustedProxies)
	if err != nil {
		return nil, errors.New("TRUSTED_PROXIES: " + strings.TrimPrefix(err.Error(), "WEBHOOK_ALLOW_CIDRS: "))
	}
	return p, nil
}

func (c HTTPConfig) proxyHeader() (string, error) {
	switch {
	case strings.EqualFold(c.ProxyHeader, headerXFF):
		return headerXFF, nil
	case strings.EqualFold(c.ProxyHeader, headerForwarded):
		return headerForwarded, nil
	}
	return "", fmt.Errorf("TRUSTED_PROXY_HEADER %q: want %s or %s", c.ProxyHeader, headerXFF, headerForwarded)
}

// httpEdge is the bridge's HTTP side: the public listener (HTTP_ADDR) and,
// with ADMIN_ADDR, the admin listener, each with its own connection cap,
// both behind the trusted-proxy rewrite and, with TLS, the same
// certificate. It serves HTTP/1.1 only: every webhook sender and probe
// speaks it, and one HTTP/2 connection would carry many requests past the
// per-connection cap.
type httpEdge struct {
	cfg  HTTPConfig
	addr string // HTTP_ADDR
	log  *slog.Logger
	// public is the bridge's mux (webhooks, presence, health).
	public *http.ServeMux
	// admin takes /metrics and the admin endpoints: public itself without
	// ADMIN_ADDR, else a mux of its own that also answers health.
	admin   *http.ServeMux
	certs   *certLoader // nil without TLS
	proxies []netip.Prefix
	header  string
	servers []*edgeServer
}

// edgeServer is one listener and its server.
type edgeServer struct {
	name  string // "public" or "admin", the metrics' listener label
	addr  string
	mux   *http.ServeMux
	ln    net.Listener // the connLimiter, under TLS when TLS is on
	conns *connLimiter
	srv   *http.Server
}

// newHTTPEdge prepares the listeners of cfg in front of public; nothing
// listens before listen.
func newHTTPEdge(cfg HTTPConfig, httpAddr string, public *http.ServeMux, log *slog.Logger) (*httpEdge, error) {
	e := &httpEdge{cfg: cfg, addr: httpAddr, log: log, public: public, admin: public}
	var err error
	if e.proxies, err = cfg.proxies(); err != nil {
		return nil, err
	}
	if e.header, err = cfg.proxyHeader(); err != nil {
		return nil, err
	}
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		if e.certs, err = newCertLoader(cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, err
		}
	}
	if cfg.AdminAddr != "" {
		e.admin = http.NewServeMux()
		for _, p := range []string{"GET /healthz", "GET /readyz", "GET /v1/status"} {
			e.admin.Handle(p, public)
		}
	}
	return e, nil
}

// listen opens every listener and returns the public one; on an error none
// stays open. Connection metrics go to reg.
func (e *httpEdge) listen(reg prometheus.Registerer) (net.Listener, error) {
	shed := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "voipbridge_http_connections_shed_total",
		Help: "Connections closed because HTTP_MAX_CONNS was reached: evicted (idle longest, for a new one) or refused (every connection busy).",
	}, []string{"listener", "reason"})
	reg.MustRegister(shed)
	e.servers = append(e.servers, &edgeServer{name: "public", addr: e.addr, mux: e.public})
	if e.cfg.AdminAddr != "" {
		e.servers = append(e.servers, &edgeServer{name: "admin", addr: e.cfg.AdminAddr, mux: e.admin})
	}
	for _, s := range e.servers {
		inner, err := net.Listen("tcp", s.addr)
		if err != nil {
			e.closeListeners()
			if s.name == "admin" {
				return nil, fmt.Errorf("ADMIN_ADDR: %w", err)
			}
			return nil, fmt.Errorf("HTTP_ADDR: %w", err)
		}
		name := s.name
		s.conns = newConnLimiter(inner, e.cfg.MaxConns, e.log.With("listener", name), func(reason string) {
			shed.WithLabelValues(name, reason).Inc()
		})
		s.ln = s.conns
		if e.certs != nil {
			s.ln = tls.NewListener(s.conns, e.certs.tlsConfig())
		}
		s.srv = e.server(s)
		conns := s.conns
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "voipbridge_http_connections",
			Help:        "HTTP connections open now.",
			ConstLabels: prometheus.Labels{"listener": name},
		}, func() float64 { return float64(conns.stats().open) }))
	}
	return e.servers[0].ln, nil
}

func (e *httpEdge) closeListeners() {
	for _, s := range e.servers {
		if s.ln != nil {
			s.ln.Close()
		}
	}
}

// server builds s's http.Server: every phase of a request bounded in time,
// headers bounded in size, HTTP/1.1 only.
func (e *httpEdge) server(s *edgeServer) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	srv := &http.Server{
		Handler:           connGuard(trustedProxies(e.proxies, e.header, s.mux)),
		ReadHeaderTimeout: min(maxReadHeaderTimeout, e.cfg.ReadTimeout),
		ReadTimeout:       e.cfg.ReadTimeout,
		WriteTimeout:      e.cfg.WriteTimeout,
		IdleTimeout:       e.cfg.IdleTimeout,
		MaxHeaderBytes:    e.cfg.MaxHeaderBytes,
		Protocols:         &protocols,
		ErrorLog:          log.New(serverLog{e.log}, "", 0),
	}
	s.conns.track(srv)
	return srv
}

// serve runs every server; the channel gets each one's end (an error, or
// http.ErrServerClosed after shutdown).
func (e *httpEdge) serve() <-chan error {
	out := make(chan error, len(e.servers))
	for _, s := range e.servers {
		if s.name == "admin" {
			e.log.Info("admin endpoints and metrics on their own listener", "admin", s.ln.Addr().String())
		}
		go func() {
			err := s.srv.Serve(s.ln)
			if s.name != "public" {
				err = fmt.Errorf("%s listener: %w", s.name, err)
			}
			out <- err
		}()
	}
	if e.certs != nil {
		if leaf := e.certs.cert.Load().Leaf; leaf != nil {
			e.log.Info("serving HTTPS", describeCert(leaf)...)
		}
	}
	return out
}

// shutdown stops every server: listeners close, requests in flight finish
// until ctx ends.
func (e *httpEdge) shutdown(ctx context.Context) error {
	var errs []error
	for _, s := range e.servers {
		if err := s.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s listener: %w", s.name, err))
		}
	}
	return errors.Join(errs...)
}

// AdminAddr is the address of the admin listener (ADMIN_ADDR), or "" when
// the admin endpoints share the public one.
func (b *Bridge) AdminAddr() string {
	for _, s := range b.edge.servers {
		if s.name == "admin" {
			return s.ln.Addr().String()
		}
	}
	return ""
}

// ReloadTLS re-reads TLS_CERT_FILE and TLS_KEY_FILE; new connections get the
// new certificate. On an error the current certificate stays. Without TLS it
// does nothing.
func (b *Bridge) ReloadTLS() error {
	if b.edge.certs == nil {
		return nil
	}
	leaf, err := b.edge.certs.load()
	if err != nil {
		return err
	}
	b.log.Info("TLS certificate loaded", describeCert(leaf)...)
	return nil
}

// connGuard is the first handler of every request. It marks the connection
// busy (see connLimiter), answers only health checks on a connection taken
// from the loopback reserve, and closes the connection after a response
// whose request body was not read to the end: the server would otherwise
// read on, for as long as HTTP_READ_TIMEOUT, a body nobody wants, and a
// client trickling bodies that are refused (no token) would hold
// connections that way.
func connGuard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body *bodyWatch
		if r.ContentLength != 0 {
			body = &bodyWatch{ReadCloser: r.Body}
			r.Body = body
		}
		cw := &closeIfUnread{ResponseWriter: w, body: body}
		h := next
		if c, ok := r.Context().Value(connKey{}).(*limitedConn); ok {
			c.markBusy()
			if c.health {
				w.Header().Set("Connection", "close")
				if !isHealthCheck(r) {
					webhook.WriteError(cw, http.StatusServiceUnavailable, "the server is at its connection limit (HTTP_MAX_CONNS); this connection answers only /healthz and /readyz")
					h = nil
				}
			}
		}
		if h != nil {
			h.ServeHTTP(cw, r)
		}
		if body != nil && !body.eof.Load() {
			if !cw.wrote {
				cw.WriteHeader(http.StatusOK)
			}
			// Ends the server's read of the rest of the body at once.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		}
	})
}

func isHealthCheck(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz")
}

// bodyWatch notes whether a request body was read to its end.
type bodyWatch struct {
	io.ReadCloser
	eof atomic.Bool
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof.Store(true)
	}
	return n, err
}

// closeIfUnread asks for the connection to be closed when the response
// starts before the request body was read to its end.
type closeIfUnread struct {
	http.ResponseWriter
	body  *bodyWatch
	wrote bool
}

func (w *closeIfUnread) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		if w.body != nil && !w.body.eof.Load() {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closeIfUnread) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

// Flush sends what was written so far.
func (w *closeIfUnread) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *closeIfUnread) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// serverLog takes http.Server's error log: failed TLS handshakes (scanners,
// clients that do not trust the certificate, connections closed to make
// room) at debug level, as they come with every connection; the rest as
// warnings.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	level := slog.LevelWarn
	if strings.Contains(msg, "TLS handshake error") {
		level = slog.LevelDebug
	}
	l.log.Log(context.Background(), level, msg)
	return len(p), nil
}
