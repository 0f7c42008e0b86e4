// Package siptest is a fake PBX for tests of the SIP dialog-event monitor:
// a sipgo user agent on 127.0.0.1 that demands digest authentication,
// accepts SUBSCRIBE for the dialog event package and sends RFC 4235 NOTIFYs
// for calls a test scripts (ring, answer, hang up, blind and attended
// transfers, outbound and internal calls, calls already in progress, a
// B2BUA's ring groups and busy phones). It answers OPTIONS, and it can be
// stopped and started again on the same address with no memory, as a PBX
// restart does (Stop, Start, Restart).
//
// It behaves like a notifier should (RFC 6665): 200 with Expires, a full
// state NOTIFY after every (re-)SUBSCRIBE, 423 below Min-Expires, 481 for an
// unknown dialog, one NOTIFY at a time per subscription. Tests can make it
// misbehave on purpose (FailNext, Forget, Terminate).
package siptest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// Style is the dialog-info dialect the fake PBX speaks.
type Style int

const (
	// Kamailio reports every call as its own dialog with call-id, tags,
	// direction and both parties in every state (pua_dialoginfo).
	Kamailio Style = iota
	// Asterisk reports extension state (res_pjsip_dialog_info_body_generator):
	// one dialog whose id is the extension, no call-id, parties only while
	// ringing.
	Asterisk
)

// Options configure a fake PBX. The zero value is a UDP PBX without
// authentication.
type Options struct {
	// Network is "udp" (default), "tcp" or "tls". Over TLS the PBX has a
	// self-signed certificate for 127.0.0.1 (trust CertPool) and sends its
	// NOTIFYs back over the subscriber's connection.
	Network string
	// Username and Password are the digest credentials demanded of every
	// SUBSCRIBE; an empty Username turns authentication off.
	Username, Password string
	// Proxy makes the PBX challenge with 407 Proxy-Authenticate instead of 401.
	Proxy bool
	// NonceUses is how many requests one nonce may authenticate before the
	// PBX answers stale=true; 0 means unlimited.
	NonceUses int
	// MinExpires makes the PBX answer 423 to a SUBSCRIBE asking for less.
	MinExpires int
	// MaxExpires caps the granted duration (default 3600).
	MaxExpires int
	// Partial makes NOTIFYs for call changes partial documents (the
	// NOTIFY after a SUBSCRIBE is always full state).
	Partial bool
	// Style selects the document dialect.
	Style Style
	// Domain is the host part of URIs in documents (default "pbx.test").
	Domain string
	// RetryNotify is how many times a NOTIFY answered with 5xx is sent again
	// (same version and body, new CSeq).
	RetryNotify int
	// Logger receives sipgo's logs; default discards.
	Logger *slog.Logger
}

// NotifyResult is one NOTIFY the PBX sent and what it got back.
type NotifyResult struct {
	Ext     string
	CallID  string // of the subscription
	Version uint64
	State   string // Subscription-State header value
	Status  int    // response status, 0 when none came
	Body    string
	// Err says why no answer came: the NOTIFY could not be sent (sipgo
	// refuses a UDP message over 1300 bytes, RFC 3261 §18.1.1; use TCP or
	// Partial for big documents) or no answer arrived in time.
	Err string
}

// SubscribeRecord is one SUBSCRIBE the PBX received.
type SubscribeRecord struct {
	Ext        string
	CallID     string
	InDialog   bool
	Expires    int
	Authorized bool
	Status     int // what the PBX answered
	At         time.Time
}

// PBX is a running fake PBX.
type PBX struct {
	log     *slog.Logger
	opts    Options
	certs   *x509.CertPool
	cert    tls.Certificate
	addr    string
	realm   string
	ctx     context.Context // ends with Close
	cancel  context.CancelFunc
	senders sync.WaitGroup

	mu         sync.Mutex
	inst       *instance                // nil while stopped
	subs       map[string]*subscription // by Call-ID
	calls      map[string]*Leg          // live legs by dialog id
	nonces     map[string]int           // issued nonce → uses
	failNext   []canned
	subscribes []SubscribeRecord
	notifies   []NotifyResult
	seq        int64
	pending    int // NOTIFYs queued and not yet answered
	options    int // OPTIONS received
}

// instance is one run of the PBX process between a start and a stop: its
// sockets and user agent. A restart makes a new one on the same address.
type instance struct {
	ua      *sipgo.UserAgent
	srv     *sipgo.Server
	cli     *sipgo.Client
	lis     io.Closer
	ctx     context.Context // ends when the instance stops
	cancel  context.CancelFunc
	serving sync.WaitGroup
}

type canned struct {
	status  int
	headers []string
}

type subscription struct {
	callID    string
	localTag  string // ours (the To tag of our 200)
	remoteTag string // the subscriber's From tag
	ext       string
	from      gosip.Uri // subscriber's From address
	to        gosip.Uri // the resource (To address)
	contact   gosip.Uri
	source    string
	network   string
	version   uint64
	done1     uint64 // 1 + the version of the last NOTIFY sent and answered (or given up); 0 for none
	cseq      uint32
	queue     chan notifyJob
	done      chan struct{}
	closeOnce sync.Once
}

type notifyJob struct {
	state string // Subscription-State
	body  []byte // nil = no body
	ver   uint64
}

// TB is the part of testing.TB that Start uses (an interface, so that the
// fake can be linked into a program, such as the demo, without the testing
// package).
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Start runs a fake PBX on 127.0.0.1 with an ephemeral port and stops it
// when the test ends.
func Start(t TB, opts Options) *PBX {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatalf("siptest: %v", err)
	}
	t.Cleanup(p.Close)
	return p
}

// New runs a fake PBX on 127.0.0.1 with an ephemeral port; Close stops it.
func New(opts Options) (*PBX, error) {
	if opts.Network == "" {
		opts.Network = "udp"
	}
	if opts.Domain == "" {
		opts.Domain = "pbx.test"
	}
	if opts.MaxExpires == 0 {
		opts.MaxExpires = 3600
	}
	switch opts.Network {
	case "udp", "tcp", "tls":
	default:
		return nil, fmt.Errorf("siptest: network %q is not udp, tcp or tls", opts.Network)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &PBX{log: log, opts: opts, realm: opts.Domain, subs: map[string]*subscription{}, calls: map[string]*Leg{},
		nonces: map[string]int{}, addr: "127.0.0.1:0"}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if opts.Network == "tls" {
		cert, pool, err := selfSigned()
		if err != nil {
			return nil, err
		}
		p.cert, p.certs = cert, pool
	}
	inst, err := p.listen()
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.inst = inst
	p.mu.Unlock()
	return p, nil
}

// listen starts an instance on p.addr and, the first time, learns the port.
func (p *PBX) listen() (_ *instance, err error) {
	log := p.log
	ua, err := sipgo.NewUA(sipgo.WithUserAgent("fakepbx"), sipgo.WithUserAgentHostname("127.0.0.1"),
		sipgo.WithUserAgentTransactionLayerOptions(gosip.WithTransactionLayerLogger(log)),
		sipgo.WithUserAgentTransportLayerOptions(gosip.WithTransportLayerLogger(log)))
	if err != nil {
		return nil, err
	}
	in := &instance{ua: ua}
	in.ctx, in.cancel = context.WithCancel(p.ctx)
	defer func() {
		if err != nil {
			in.close()
		}
	}()
	in.srv, _ = sipgo.NewServer(ua, sipgo.WithServerLogger(log))
	in.srv.OnSubscribe(p.onSubscribe)
	in.srv.OnOptions(func(req *gosip.Request, tx gosip.ServerTransaction) {
		p.mu.Lock()
		p.options++
		p.mu.Unlock()
		res := gosip.NewResponseFromRequest(req, gosip.StatusOK, "OK", nil)
		res.AppendHeader(gosip.NewHeader("Allow", "SUBSCRIBE, NOTIFY, OPTIONS"))
		res.AppendHeader(gosip.NewHeader("Server", "fakepbx"))
		_ = tx.Respond(res)
	})
	cliOpts := []sipgo.ClientOption{sipgo.WithClientHostname("127.0.0.1"), sipgo.WithClientLogger(log)}
	switch p.opts.Network {
	case "udp":
		pc, err := net.ListenPacket("udp4", p.addr)
		if err != nil {
			return nil, err
		}
		in.lis = pc
		p.learn(pc.LocalAddr().String())
		in.cli, _ = sipgo.NewClient(ua, append(cliOpts, sipgo.WithClientConnectionAddr(p.addr))...)
		in.serve(func() error { return in.srv.ServeUDP(pc) })
		if err := waitPooled(ua, p.addr); err != nil {
			return nil, err
		}
	case "tcp":
		l, err := net.Listen("tcp4", p.addr)
		if err != nil {
			return nil, err
		}
		in.lis = l
		p.learn(l.Addr().String())
		in.cli, _ = sipgo.NewClient(ua, cliOpts...)
		in.serve(func() error { return in.srv.ServeTCP(l) })
	case "tls":
		l, err := net.Listen("tcp4", p.addr)
		if err != nil {
			return nil, err
		}
		in.lis = l
		p.learn(l.Addr().String())
		in.cli, _ = sipgo.NewClient(ua, cliOpts...)
		tl := tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{p.cert}, MinVersion: tls.VersionTLS12})
		in.serve(func() error { return in.srv.ServeTLS(tl) })
	}
	return in, nil
}

// learn records the port of the first listen; a restart keeps it.
func (p *PBX) learn(addr string) {
	if strings.HasSuffix(p.addr, ":0") {
		p.addr = addr
	}
}

func (in *instance) serve(f func() error) {
	in.serving.Add(1)
	go func() {
		defer in.serving.Done()
		_ = f()
	}()
}

// close stops the instance's sockets and user agent (which closes its
// TCP and TLS connections).
func (in *instance) close() {
	in.cancel()
	if in.lis != nil {
		_ = in.lis.Close()
	}
	_ = in.ua.Close()
	in.serving.Wait()
}

func waitPooled(ua *sipgo.UserAgent, addr string) error {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if c := ua.TransportLayer().Pool("udp").Get(addr); c != nil {
			_, _ = c.TryClose()
			return nil
		}
	}
	return fmt.Errorf("siptest: udp listener %s not ready", addr)
}

// Stop stops the PBX as a crash or a restart does: its socket closes (over
// TCP and TLS every connection with it), it stops answering, and it forgets
// every subscription, call, nonce and scripted failure. What it received
// and sent so far (Subscribes, Notifies) stays readable. Start brings it
// back on the same address.
func (p *PBX) Stop() {
	p.mu.Lock()
	in := p.inst
	p.inst = nil
	for _, s := range p.subs {
		s.stop()
	}
	p.subs = map[string]*subscription{}
	p.calls = map[string]*Leg{}
	p.nonces = map[string]int{}
	p.failNext = nil
	p.mu.Unlock()
	if in == nil {
		return
	}
	in.cancel() // NOTIFYs still queued are not sent
	p.senders.Wait()
	p.mu.Lock()
	p.pending = 0
	p.mu.Unlock()
	in.close()
}

// Start brings a stopped PBX back on the address it had, with no memory of
// subscriptions (subscribers learn it from a 481 or by re-subscribing).
func (p *PBX) Start() error {
	p.mu.Lock()
	running := p.inst != nil
	p.mu.Unlock()
	if running || p.ctx.Err() != nil {
		return fmt.Errorf("siptest: PBX is running or closed")
	}
	// The port was ours a moment ago; over UDP the kernel may need a moment
	// more before it can be bound again.
	var in *instance
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if in, err = p.listen(); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("siptest: restart on %s: %w", p.addr, err)
	}
	p.mu.Lock()
	p.inst = in
	p.mu.Unlock()
	return nil
}

// Restart is Stop followed by Start after down (a PBX takes seconds to
// come back).
func (p *PBX) Restart(down time.Duration) error {
	p.Stop()
	select {
	case <-time.After(down):
	case <-p.ctx.Done():
	}
	return p.Start()
}

// Close stops the PBX: no NOTIFY is sent after it returns.
func (p *PBX) Close() {
	p.Stop()
	p.cancel()
}

// Addr is the PBX's host:port, usable as SIP_SERVER.
func (p *PBX) Addr() string { return p.addr }

// Network is "udp", "tcp" or "tls".
func (p *PBX) Network() string { return p.opts.Network }

// CertPool trusts the PBX's TLS certificate (nil unless Network is "tls").
func (p *PBX) CertPool() *x509.CertPool { return p.certs }

// selfSigned makes a short-lived certificate for 127.0.0.1.
func selfSigned() (tls.Certificate, *x509.CertPool, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "siptest PBX"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool, nil
}

// Domain is the host part of the URIs in the PBX's documents.
func (p *PBX) Domain() string { return p.opts.Domain }

// FailNext makes the next n SUBSCRIBEs (after authentication) fail with
// status; headers are "Name: value" lines added to the response.
func (p *PBX) FailNext(n, status int, headers ...string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for range n {
		p.failNext = append(p.failNext, canned{status: status, headers: headers})
	}
}

// Forget drops every subscription without telling anyone, as a PBX restart
// does: refreshes get 481 and NOTIFYs stop.
func (p *PBX) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, s := range p.subs {
		s.stop()
		delete(p.subs, id)
	}
}

// Terminate ends the subscriptions to ext with a NOTIFY carrying
// Subscription-State: terminated and the reason (and retry-after when > 0).
func (p *PBX) Terminate(ext, reason string, retryAfter int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	state := "terminated;reason=" + reason
	if retryAfter > 0 {
		state += ";retry-after=" + strconv.Itoa(retryAfter)
	}
	for id, s := range p.subs {
		if s.ext != ext {
			continue
		}
		p.push(s, notifyJob{state: state, ver: s.nextVersion()})
		s.stop()
		delete(p.subs, id)
	}
}

// Subscribes returns every SUBSCRIBE received so far.
func (p *PBX) Subscribes() []SubscribeRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]SubscribeRecord(nil), p.subscribes...)
}

// Notifies returns every NOTIFY sent so far and its answer.
func (p *PBX) Notifies() []NotifyResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]NotifyResult(nil), p.notifies...)
}

// Options returns how many OPTIONS requests (keep-alives) the PBX has
// answered, over all its restarts.
func (p *PBX) Options() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.options
}

// Subscribed returns how many subscriptions to ext are active.
func (p *PBX) Subscribed(ext string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.subs {
		if s.ext == ext {
			n++
		}
	}
	return n
}

// Settled reports whether every queued NOTIFY has been sent and its answer
// recorded.
func (p *PBX) Settled() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.pending == 0
}

func (p *PBX) onSubscribe(req *gosip.Request, tx gosip.ServerTransaction) {
	rec := SubscribeRecord{At: time.Now(), Expires: -1}
	if to := req.To(); to != nil {
		rec.Ext = to.Address.User
		_, rec.InDialog = to.Params.Get("tag")
	}
	if cid := req.CallID(); cid != nil {
		rec.CallID = cid.Value()
	}
	if h := req.GetHeader("Expires"); h != nil {
		rec.Expires, _ = strconv.Atoi(strings.TrimSpace(h.Value()))
	}
	res, after := p.subscribe(req, &rec)
	rec.Status = res.StatusCode
	p.mu.Lock()
	p.subscribes = append(p.subscribes, rec)
	p.mu.Unlock()
	_ = tx.Respond(res)
	if after != nil {
		after() // NOTIFY only after the 2xx went out (RFC 6665 §4.2.1.2)
	}
}

func (p *PBX) subscribe(req *gosip.Request, rec *SubscribeRecord) (*gosip.Response, func()) {
	if p.opts.Username != "" {
		if stale, ok := p.authorized(req); !ok {
			return p.challenge(req, stale), nil
		}
	}
	rec.Authorized = true
	if ev := req.GetHeader("Event"); ev == nil || !strings.EqualFold(strings.TrimSpace(strings.SplitN(ev.Value(), ";", 2)[0]), "dialog") {
		return gosip.NewResponseFromRequest(req, 489, "Bad Event", nil), nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.failNext) > 0 {
		c := p.failNext[0]
		p.failNext = p.failNext[1:]
		res := gosip.NewResponseFromRequest(req, c.status, "Scripted Failure", nil)
		for _, h := range c.headers {
			k, v, _ := strings.Cut(h, ":")
			res.AppendHeader(gosip.NewHeader(strings.TrimSpace(k), strings.TrimSpace(v)))
		}
		return res, nil
	}
	expires := 3600
	if rec.Expires >= 0 {
		expires = rec.Expires
	}
	if expires > 0 && expires < p.opts.MinExpires {
		res := gosip.NewResponseFromRequest(req, gosip.StatusIntervalToBrief, "Interval Too Brief", nil)
		res.AppendHeader(gosip.NewHeader("Min-Expires", strconv.Itoa(p.opts.MinExpires)))
		return res, nil
	}
	expires = min(expires, p.opts.MaxExpires)
	callID := rec.CallID
	fromTag, _ := req.From().Params.Get("tag")
	var s *subscription
	if rec.InDialog {
		toTag, _ := req.To().Params.Get("tag")
		s = p.subs[callID]
		if s == nil || s.localTag != toTag || s.remoteTag != fromTag {
			return gosip.NewResponseFromRequest(req, gosip.StatusCallTransactionDoesNotExists, "Subscription Does Not Exist", nil), nil
		}
	} else {
		if old := p.subs[callID]; old != nil { // a retransmission or a re-used Call-ID
			old.stop()
		}
		s = &subscription{callID: callID, localTag: token(8), remoteTag: fromTag, ext: rec.Ext,
			from: req.From().Address, to: req.To().Address, network: p.opts.Network,
			queue: make(chan notifyJob, 64), done: make(chan struct{})}
		if c := req.Contact(); c != nil {
			s.contact = c.Address
		}
		s.source = req.Source()
		p.subs[callID] = s
		if p.inst == nil { // stopped while this SUBSCRIBE was handled
			delete(p.subs, callID)
			return gosip.NewResponseFromRequest(req, gosip.StatusServiceUnavailable, "Stopping", nil), nil
		}
		p.senders.Add(1)
		go p.sender(s, p.inst)
	}
	res := gosip.NewResponseFromRequest(req, gosip.StatusOK, "OK", nil)
	// NewResponseFromRequest invents a To tag for a new dialog; ours must match.
	if to := res.To(); to != nil && !rec.InDialog {
		to.Params.Remove("tag")
		to.Params.Add("tag", s.localTag)
	}
	host, port, _ := net.SplitHostPort(p.addr)
	pn, _ := strconv.Atoi(port)
	res.AppendHeader(&gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", Host: host, Port: pn,
		UriParams: gosip.HeaderParams{{K: "transport", V: p.opts.Network}}}})
	res.AppendHeader(gosip.NewHeader("Expires", strconv.Itoa(expires)))
	if expires == 0 {
		delete(p.subs, callID)
		p.push(s, notifyJob{state: "terminated;reason=timeout", ver: s.nextVersion()})
		s.stop()
		return res, nil
	}
	state := "active;expires=" + strconv.Itoa(expires)
	return res, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.subs[callID] != s {
			return
		}
		v := s.nextVersion()
		p.push(s, notifyJob{state: state, body: p.document(s.ext, v, "full", nil), ver: v})
	}
}

func (s *subscription) nextVersion() uint64 {
	v := s.version
	s.version++
	return v
}

// push queues a NOTIFY for s and reports whether it was queued; p.mu is held.
func (p *PBX) push(s *subscription, j notifyJob) bool {
	select {
	case <-s.done:
	case s.queue <- j:
		p.pending++
		return true
	default: // a test flooding one subscription; the PBX would drop it too
	}
	return false
}

// stop lets the sender finish what is queued and exit.
func (s *subscription) stop() { s.closeOnce.Do(func() { close(s.done) }) }

// sender sends the NOTIFYs of one subscription one at a time, as RFC 6665
// §4.2.2 asks of a notifier.
func (p *PBX) sender(s *subscription, in *instance) {
	defer p.senders.Done()
	for {
		select {
		case j := <-s.queue:
			p.send(in, s, j)
		case <-s.done:
			for {
				select {
				case j := <-s.queue:
					p.send(in, s, j)
				default:
					return
				}
			}
		case <-in.ctx.Done():
			return
		}
	}
}

func (p *PBX) send(in *instance, s *subscription, j notifyJob) {
	defer func() {
		p.mu.Lock()
		p.pending--
		s.done1 = j.ver + 1 // one sender per subscription, versions in order
		p.mu.Unlock()
	}()
	for attempt := 0; ; attempt++ {
		status := p.sendOnce(in, s, j)
		if status < 500 || attempt >= p.opts.RetryNotify || in.ctx.Err() != nil {
			return
		}
		select {
		case <-in.ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (p *PBX) sendOnce(in *instance, s *subscription, j notifyJob) int {
	n := gosip.NewRequest(gosip.NOTIFY, s.contact)
	n.AppendHeader(&gosip.FromHeader{Address: s.to, Params: gosip.HeaderParams{{K: "tag", V: s.localTag}}})
	n.AppendHeader(&gosip.ToHeader{Address: s.from, Params: gosip.HeaderParams{{K: "tag", V: s.remoteTag}}})
	cid := gosip.CallIDHeader(s.callID)
	n.AppendHeader(&cid)
	s.cseq++
	n.AppendHeader(&gosip.CSeqHeader{SeqNo: s.cseq, MethodName: gosip.NOTIFY})
	host, port, _ := net.SplitHostPort(p.addr)
	pn, _ := strconv.Atoi(port)
	n.AppendHeader(&gosip.ContactHeader{Address: gosip.Uri{Scheme: "sip", Host: host, Port: pn}})
	n.AppendHeader(gosip.NewHeader("Event", "dialog"))
	n.AppendHeader(gosip.NewHeader("Subscription-State", j.state))
	if j.body != nil {
		n.AppendHeader(gosip.NewHeader("Content-Type", "application/dialog-info+xml"))
		n.SetBody(j.body)
	}
	n.SetTransport(strings.ToUpper(s.network))
	if s.network == "tls" {
		// Back over the subscriber's own connection, as PBXs do for TLS
		// (a subscriber without a certificate cannot accept one).
		n.SetDestination(s.source)
	}
	ctx, cancel := context.WithTimeout(in.ctx, 10*time.Second)
	defer cancel()
	res, err := in.cli.Do(ctx, n)
	status, why := 0, ""
	switch {
	case err != nil:
		why = err.Error()
		if in.ctx.Err() == nil {
			// Loud, not silent: a lost NOTIFY changes what a test sees.
			p.log.Error("siptest: NOTIFY not delivered", "ext", s.ext, "version", j.ver, "size", len(n.String()), "err", err)
		}
	case res != nil:
		status = res.StatusCode
	}
	p.mu.Lock()
	p.notifies = append(p.notifies, NotifyResult{Ext: s.ext, CallID: s.callID, Version: j.ver, State: j.state, Status: status, Body: string(j.body), Err: why})
	p.mu.Unlock()
	return status
}

// authorized checks the digest credentials of a request. stale reports a
// correct answer to a nonce that has been used up.
func (p *PBX) authorized(req *gosip.Request) (stale, ok bool) {
	name := "Authorization"
	if p.opts.Proxy {
		name = "Proxy-Authorization"
	}
	h := req.GetHeader(name)
	if h == nil {
		return false, false
	}
	cred, err := digest.ParseCredentials(h.Value())
	if err != nil || cred.Username != p.opts.Username || cred.Realm != p.realm {
		return false, false
	}
	p.mu.Lock()
	uses, known := p.nonces[cred.Nonce]
	if known {
		p.nonces[cred.Nonce] = uses + 1
	}
	p.mu.Unlock()
	if !known {
		return false, false
	}
	want, err := digest.Digest(&digest.Challenge{Realm: p.realm, Nonce: cred.Nonce, Algorithm: "MD5", QOP: []string{"auth"}},
		digest.Options{Method: string(req.Method), URI: cred.URI, Username: p.opts.Username, Password: p.opts.Password,
			Cnonce: cred.Cnonce, Count: cred.Nc})
	if err != nil || want.Response != cred.Response {
		return false, false
	}
	if p.opts.NonceUses > 0 && uses >= p.opts.NonceUses {
		return true, false
	}
	return false, true
}

func (p *PBX) challenge(req *gosip.Request, stale bool) *gosip.Response {
	nonce := token(16)
	p.mu.Lock()
	p.nonces[nonce] = 0
	p.mu.Unlock()
	status, reason, name := 401, "Unauthorized", "WWW-Authenticate"
	if p.opts.Proxy {
		status, reason, name = 407, "Proxy Authentication Required", "Proxy-Authenticate"
	}
	v := fmt.Sprintf(`Digest realm=%q, nonce=%q, algorithm=MD5, qop="auth"`, p.realm, nonce)
	if stale {
		v += ", stale=true"
	}
	res := gosip.NewResponseFromRequest(req, status, reason, nil)
	res.AppendHeader(gosip.NewHeader(name, v))
	return res
}

func token(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
