package sip

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
)

// stack is the monitor's SIP user agent on sipgo: one listener for NOTIFYs
// and the client that sends SUBSCRIBEs from the same socket (UDP), so the
// PBX sees one address in Via, Contact and the packet source.
type stack struct {
	ua        *sipgo.UserAgent
	srv       *sipgo.Server
	cli       *sipgo.Client
	transport string // "UDP", "TCP" or "TLS"
	server    string // where every SUBSCRIBE goes (host:port)
	from      gosip.Uri
	contact   *gosip.ContactHeader
	auth      *authCache
	canAuth   bool
	log       *slog.Logger

	closers []io.Closer
	serving sync.WaitGroup
}

// udpBuffer is the receive buffer asked for on the UDP socket.
const udpBuffer = 4 << 20

var errNoResponse = errors.New("transaction ended without a response")

func startStack(set settings, tlsConf *tls.Config, log *slog.Logger, onNotify sipgo.RequestHandler) (_ *stack, err error) {
	s := &stack{
		transport: strings.ToUpper(set.transport),
		server:    set.server,
		auth:      &authCache{username: set.username, password: set.password},
		canAuth:   set.password != "",
		log:       log,
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	listenHost, _, _ := net.SplitHostPort(set.listen)
	host, err := contactHost(set, listenHost)
	if err != nil {
		return nil, err
	}
	uaOpts := []sipgo.UserAgentOption{
		sipgo.WithUserAgent("voipbridge"),
		sipgo.WithUserAgentHostname(host),
		sipgo.WithUserAgentTransactionLayerOptions(gosip.WithTransactionLayerLogger(log)),
		sipgo.WithUserAgentTransportLayerOptions(gosip.WithTransportLayerLogger(log)),
	}
	if set.transport == "tls" {
		conf := &tls.Config{MinVersion: tls.VersionTLS12}
		if tlsConf != nil {
			conf = tlsConf.Clone()
		}
		if conf.ServerName == "" && net.ParseIP(set.serverHost) == nil {
			conf.ServerName = set.serverHost
		}
		uaOpts = append(uaOpts, sipgo.WithUserAgenTLSConfig(conf))
	}
	if s.ua, err = sipgo.NewUA(uaOpts...); err != nil {
		return nil, fmt.Errorf("sip: user agent: %w", err)
	}
	s.closers = append(s.closers, s.ua)
	if s.srv, err = sipgo.NewServer(s.ua, sipgo.WithServerLogger(log)); err != nil {
		return nil, fmt.Errorf("sip: server: %w", err)
	}
	// Handlers go in before serving: sipgo's handler map is not locked.
	s.srv.OnNotify(onNotify)
	s.srv.OnOptions(func(req *gosip.Request, tx gosip.ServerTransaction) {
		res := gosip.NewResponseFromRequest(req, gosip.StatusOK, "OK", nil)
		res.AppendHeader(gosip.NewHeader("Allow", "NOTIFY, OPTIONS"))
		_ = tx.Respond(res)
	})

	cliOpts := []sipgo.ClientOption{sipgo.WithClientHostname(host), sipgo.WithClientNAT(), sipgo.WithClientLogger(log)}
	var port int
	var serve func() error
	pooled := ""
	switch set.transport {
	case "udp":
		pc, err := net.ListenPacket("udp", set.listen)
		if err != nil {
			return nil, fmt.Errorf("sip: listen udp %s: %w", set.listen, err)
		}
		s.closers = append(s.closers, pc)
		if uc, ok := pc.(*net.UDPConn); ok {
			// A PBX restart sends a NOTIFY (and answers a SUBSCRIBE) for every
			// extension at once; the default buffer drops part of that burst
			// and each loss costs a retransmission timer. Best effort: the
			// kernel caps it at net.core.rmem_max.
			_ = uc.SetReadBuffer(udpBuffer)
		}
		port = pc.LocalAddr().(*net.UDPAddr).Port
		serve = func() error { return s.srv.ServeUDP(pc) }
		pooled = pc.LocalAddr().String()
		// Send from the listening socket (emiago/sipgo: otherwise each request
		// leaves from a new ephemeral port, which NAT and PBXs that answer to
		// the source address do not forgive).
		cliOpts = append(cliOpts, sipgo.WithClientConnectionAddr(pc.LocalAddr().String()))
	case "tcp":
		l, err := net.Listen("tcp", set.listen)
		if err != nil {
			return nil, fmt.Errorf("sip: listen tcp %s: %w", set.listen, err)
		}
		s.closers = append(s.closers, l)
		port = l.Addr().(*net.TCPAddr).Port
		serve = func() error { return s.srv.ServeTCP(l) }
	case "tls":
		_, p, _ := net.SplitHostPort(set.listen)
		port, _ = strconv.Atoi(p)
		if tlsConf != nil && (len(tlsConf.Certificates) > 0 || tlsConf.GetCertificate != nil) {
			l, err := net.Listen("tcp", set.listen)
			if err != nil {
				return nil, fmt.Errorf("sip: listen tls %s: %w", set.listen, err)
			}
			s.closers = append(s.closers, l)
			port = l.Addr().(*net.TCPAddr).Port
			tl := tls.NewListener(l, tlsConf)
			serve = func() error { return s.srv.ServeTLS(tl) }
		} else {
			// Without a certificate we cannot accept TLS: NOTIFYs must come
			// back over the connection our SUBSCRIBE opened (Asterisk:
			// rewrite_contact=yes; most PBXs reuse it for TLS anyway).
			log.Info("sip tls without a certificate: NOTIFYs must reuse our connection")
		}
		if port == 0 {
			port = 5061
		}
	}
	if s.cli, err = sipgo.NewClient(s.ua, cliOpts...); err != nil {
		return nil, fmt.Errorf("sip: client: %w", err)
	}
	uriHost := host
	if strings.Contains(host, ":") {
		uriHost = "[" + host + "]"
	}
	s.contact = &gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", User: set.username, Host: uriHost, Port: port,
		UriParams: gosip.HeaderParams{{K: "transport", V: set.transport}}}}
	s.from = gosip.Uri{Scheme: "sip", User: set.username, Host: set.domain}
	if serve != nil {
		s.serve(serve)
	}
	if pooled != "" {
		if err := waitPooled(s.ua, pooled); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *stack) serve(f func() error) {
	s.serving.Add(1)
	go func() {
		defer s.serving.Done()
		if err := f(); err != nil && !errors.Is(err, net.ErrClosed) {
			s.log.Error("sip listener stopped", "err", err)
		}
	}()
}

// close stops the listeners and the user agent and waits for the serving
// goroutines.
func (s *stack) close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		_ = s.closers[i].Close()
	}
	s.closers = nil
	s.serving.Wait()
}

// waitPooled works around emiago/sipgo#367: a UDP listener enters sipgo's
// connection pool only once ServeUDP runs, and a request sent before that
// binds a second socket to the same port.
func waitPooled(ua *sipgo.UserAgent, addr string) error {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if c := ua.TransportLayer().Pool("udp").Get(addr); c != nil {
			_, _ = c.TryClose() // Get took a reference
			return nil
		}
	}
	return fmt.Errorf("sip: udp listener %s did not start", addr)
}

// contactHost is the host the PBX should send NOTIFYs to: the configured
// one, the listen address if it is specific, else the local address the
// kernel would use to reach the PBX (a UDP "connect" sends nothing).
func contactHost(set settings, listenHost string) (string, error) {
	if set.contact != "" {
		return set.contact, nil
	}
	if ip := net.ParseIP(listenHost); ip != nil && !ip.IsUnspecified() {
		return listenHost, nil
	}
	c, err := net.Dial("udp", set.server)
	if err != nil {
		return "", fmt.Errorf("sip: cannot work out our address towards %s (set SIP_CONTACT_HOST): %w", set.server, err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).IP.String(), nil
}

// subscribe implements requester over the network.
func (s *stack) subscribe(ctx context.Context, sub *subscription, expires int) (reply, error) {
	answered := 0
	for {
		req := sub.request(s.from, s.contact, expires, s.auth)
		req.SetDestination(s.server)
		req.SetTransport(s.transport)
		res, err := s.cli.Do(ctx, req)
		if err == nil && res == nil {
			err = errNoResponse // sipgo can return neither when a transaction is torn down
		}
		if err != nil {
			return reply{}, fmt.Errorf("subscribe %s: %w", sub.w.ext, err)
		}
		if res.StatusCode == gosip.StatusUnauthorized || res.StatusCode == gosip.StatusProxyAuthRequired {
			hadAuth := req.GetHeader("Authorization") != nil || req.GetHeader("Proxy-Authorization") != nil
			stale, ok := s.auth.learn(res)
			// Answer a fresh challenge once, and a stale nonce once more; a
			// second plain refusal means the credentials are wrong.
			if ok && s.canAuth && answered < 2 && (!hadAuth || stale || answered == 0) {
				answered++
				continue
			}
			s.auth.forget()
		}
		if res.IsSuccess() {
			sub.establish(res)
		}
		return replyOf(res), nil
	}
}

func replyOf(res *gosip.Response) reply {
	r := reply{status: res.StatusCode, expires: -1}
	if h := res.GetHeader("Expires"); h != nil {
		if n, ok := seconds(h.Value()); ok {
			r.expires = n
		}
	}
	if h := res.GetHeader("Min-Expires"); h != nil {
		if n, ok := seconds(h.Value()); ok && n > 0 {
			r.minExpires = n
		}
	}
	if h := res.GetHeader("Retry-After"); h != nil {
		v, _, _ := strings.Cut(h.Value(), ";") // Retry-After: 120 (comment);duration=60
		v, _, _ = strings.Cut(v, "(")
		if n, ok := seconds(v); ok && n > 0 {
			r.retryAfter = time.Duration(n) * time.Second
		}
	}
	return r
}
