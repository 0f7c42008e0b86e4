package bridge

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
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/route"
	"github.com/voipbridge/voipbridge/sip"
)

// CheckNumber is the caller the online checks look up at Chatwoot and the
// shop, and send-test-event's default caller: a number of the range the
// UK's regulator keeps for drama (020 7946 0000 to 0999), so it is valid
// and nobody's.
const CheckNumber = "+442079460000"

// checkEmail is the customer the ROBIN key-and-secret check asks for: an
// address under .invalid (RFC 2606), which no customer has.
const checkEmail = "voipbridge-check@example.invalid"

// DefaultCheckTimeout bounds each online check unless CheckOptions says
// otherwise.
const DefaultCheckTimeout = 10 * time.Second

// OnlineCheck is the outcome of one online check.
type OnlineCheck struct {
	// Name says what was checked: journal, robin, sip, 3cx, xelion,
	// chatwoot, shop.
	Name string
	// OK is true when the check passed.
	OK bool
	// Detail says what worked, or what failed and what to look at. It
	// never holds a key, secret, password or token.
	Detail string
}

// String is the check's report line: "ok" or "FAILED", the name, the detail.
func (c OnlineCheck) String() string {
	status := "ok"
	if !c.OK {
		status = "FAILED"
	}
	return fmt.Sprintf("%-6s  %-8s  %s", status, c.Name, c.Detail)
}

// CheckOptions tune CheckOnline; the zero value is fine.
type CheckOptions struct {
	// Timeout bounds each check (default DefaultCheckTimeout).
	Timeout time.Duration
	// Logger receives what the pieces used log (the SIP stack); default
	// nowhere.
	Logger *slog.Logger
}

// CheckOnline logs in to everything cfg configures and says, one check
// each, what works: the journal (and so the quota record), ROBIN's API key
// (a presence look-up) and, with ROBIN_API_SECRET, the key and secret (a
// conversation look-up for an address nobody has), the SIP PBX (a
// SUBSCRIBE to the first extension, unsubscribed at once), 3CX (a token
// and the Call Control API), Xelion (a login in a user space of its own,
// logged out at once), Chatwoot (the contact search routing uses) and the
// shop's customer endpoint. Requests to ROBIN go through the quota as the
// bridge's do. It changes nothing anywhere and takes at most about
// Timeout. cfg must be valid (LoadConfig).
func CheckOnline(ctx context.Context, cfg Config, o CheckOptions) []OnlineCheck {
	if o.Timeout <= 0 {
		o.Timeout = DefaultCheckTimeout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	octx, cancel := context.WithTimeout(ctx, o.Timeout)
	h, journal := openHelpdesk(octx, cfg, o.Logger)
	cancel()
	defer h.Close()
	out := []OnlineCheck{journal}
	var checks []func(context.Context) OnlineCheck
	if h.client == nil {
		out = append(out, OnlineCheck{Name: "robin", Detail: "not checked: no quota to send through"})
	} else {
		checks = append(checks, h.checkPresence)
		if cfg.RobinAPISecret != "" {
			checks = append(checks, h.checkSecret)
		}
	}
	dir, dirErr := extensions.Load(cfg.Extensions, cfg.ExtensionsFile)
	numbers, numErr := phone.New(phone.Options{Region: cfg.PhoneRegion, OutsideLinePrefix: cfg.OutsideLinePrefix, InternalMaxDigits: cfg.InternalMaxDigits})
	if err := errors.Join(dirErr, numErr); err != nil {
		return append(out, OnlineCheck{Name: "config", Detail: err.Error()})
	}
	if cfg.SIP.Enabled() {
		checks = append(checks, func(ctx context.Context) OnlineCheck { return checkSIP(ctx, cfg.SIP, dir, o) })
	}
	if cfg.ThreeCX.URL != "" {
		checks = append(checks, func(ctx context.Context) OnlineCheck { return checkThreeCX(ctx, cfg.ThreeCX) })
	}
	if cfg.Xelion.URL != "" {
		checks = append(checks, func(ctx context.Context) OnlineCheck { return checkXelion(ctx, cfg.Xelion) })
	}
	if cfg.Route.ChatwootURL != "" {
		checks = append(checks, func(ctx context.Context) OnlineCheck { return checkChatwoot(ctx, cfg.Route, dir, numbers, o.Timeout) })
	}
	if cfg.Route.CustomerLookupURL != "" {
		checks = append(checks, func(ctx context.Context) OnlineCheck { return checkShop(ctx, cfg.Route.CustomerLookupURL) })
	}
	results := make([]OnlineCheck, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(ctx, o.Timeout)
			defer cancel()
			results[i] = c(cctx)
		})
	}
	wg.Wait()
	return append(out, results...)
}

// journalOptions are the journal's options from cfg, the same for the
// bridge and the commands beside it.
func journalOptions(cfg Config, log *slog.Logger) events.JournalOptions {
	return events.JournalOptions{
		DataDir: cfg.DataDir, URL: cfg.NATSURL, Replicas: cfg.NATSReplicas, Name: cfg.JournalName,
		SignalRetention: cfg.SignalRetention, SignalDedup: cfg.CallIDReuse, Logger: log,
		SignalMaxBytes: cfg.SignalMaxBytes, MinFree: cfg.JournalMinFree,
	}
}

// Helpdesk is ROBIN's client behind the bridge's quota, for commands that
// make a few requests of their own beside a bridge (check --online,
// send-test-event).
type Helpdesk struct {
	client  *robin.Client
	quota   *robin.Quota
	journal *events.Journal // nil when the quota is kept in memory
	// Quota says where this command's requests are counted.
	Quota string
}

// OpenHelpdesk builds ROBIN's client and the quota the way the bridge
// does, on the journal's record of requests, so that this command's
// requests count against the limits the bridge keeps. When the journal is
// the embedded one and a running bridge holds it, or it cannot be opened,
// the quota is kept in memory: Helpdesk.Quota says so, and each request
// then counts at ROBIN but not in the bridge's record. Close it.
func OpenHelpdesk(ctx context.Context, cfg Config) (*Helpdesk, error) {
	h, journal := openHelpdesk(ctx, cfg, slog.New(slog.DiscardHandler))
	if h.client == nil {
		h.Close()
		return nil, errors.New(journal.Detail)
	}
	return h, nil
}

// openHelpdesk is OpenHelpdesk that also reports on the journal as a check.
func openHelpdesk(ctx context.Context, cfg Config, log *slog.Logger) (*Helpdesk, OnlineCheck) {
	h := &Helpdesk{}
	check := OnlineCheck{Name: "journal", OK: true}
	counted := "this command's requests to ROBIN count in the quota record the bridge keeps there"
	var err error
	switch _, statErr := os.Stat(cfg.DataDir); {
	case cfg.NATSURL == "" && errors.Is(statErr, os.ErrNotExist):
		check.Detail = fmt.Sprintf("DATA_DIR %s does not exist yet (the bridge creates it); this command's requests to ROBIN are not recorded for the bridge", cfg.DataDir)
	default:
		h.journal, err = events.OpenJournal(ctx, journalOptions(cfg, log))
		switch {
		case err == nil && cfg.NATSURL == "":
			check.Detail = "embedded in " + cfg.DataDir + "; " + counted
		case err == nil:
			check.Detail = "external NATS reached; " + counted
		case cfg.NATSURL == "" && errors.Is(err, syscall.EWOULDBLOCK):
			check.Detail = fmt.Sprintf("DATA_DIR %s is in use by a running bridge; this command's requests to ROBIN count at ROBIN but not in that bridge's quota record", cfg.DataDir)
		default:
			check.OK, check.Detail = false, err.Error()
		}
	}
	h.Quota = check.Detail
	if !check.OK {
		h.Quota = "the journal cannot be opened (" + err.Error() + "); this command's requests to ROBIN are not recorded for the bridge"
	}
	windows, _ := robin.ParseWindows(cfg.Quota.RateLimits) // checked by LoadConfig
	if h.journal != nil {
		b := &Bridge{cfg: cfg, journal: h.journal, reg: prometheus.NewRegistry()}
		h.quota, err = b.newQuota(ctx)
	} else {
		h.quota, err = robin.NewQuota(ctx, robin.QuotaOptions{
			Windows: windows, Share: cfg.Quota.Share, PresenceReserve: cfg.Quota.PresenceReserve,
		})
	}
	if err == nil {
		h.client, err = robin.NewClient(robin.Config{
			APIURL: cfg.RobinAPIURL, APIKey: cfg.RobinAPIKey, APISecret: cfg.RobinAPISecret,
			PresenceURL: cfg.RobinPresenceURL, Timeout: cfg.RobinTimeout, UserAgent: "voipbridge/" + Version,
			HTTPClient: &http.Client{Transport: answerRecorder{http.DefaultTransport.(*http.Transport).Clone()}},
		})
	}
	if err != nil {
		check.OK, check.Detail = false, "quota: "+err.Error()
		h.client = nil
	}
	return h, check
}

// Close closes the journal, if one was opened.
func (h *Helpdesk) Close() {
	if h.journal != nil {
		h.journal.Close()
		h.journal = nil
	}
}

// Answer is what ROBIN answered one request.
type Answer struct {
	// Status is the HTTP status; 0 when no answer came.
	Status int
	// Body is the start of the answer, the key and secret redacted.
	Body string
	// Err is nil for a 2xx; otherwise why the request failed.
	Err error
}

// String says what came back: "201 Created", "406 Not Acceptable: …" or
// "no answer: …".
func (a Answer) String() string {
	if a.Status == 0 {
		if a.Err == nil {
			return "nothing"
		}
		return "no answer: " + a.Err.Error()
	}
	s := fmt.Sprintf("%d %s", a.Status, http.StatusText(a.Status))
	if b := strings.TrimSpace(a.Body); b != "" {
		s += ": " + b
	}
	return s
}

// Send posts e to ROBIN's register-event through the quota and returns
// ROBIN's answer.
func (h *Helpdesk) Send(ctx context.Context, e events.Event) Answer {
	return h.do(ctx, robin.PriorityNormal, func(ctx context.Context) error { return h.client.Send(ctx, e) })
}

// do makes one request through the quota, as the bridge's requests go:
// it holds a place in every window until the answer, and one that never
// left is not counted.
func (h *Helpdesk) do(ctx context.Context, p robin.Priority, request func(context.Context) error) Answer {
	release, err := h.quota.Acquire(ctx, p)
	if err != nil {
		return Answer{Err: fmt.Errorf("quota: %w", err)}
	}
	rec := &recorded{}
	err = request(context.WithValue(ctx, recordedKey{}, rec))
	release(!events.NotSentOf(err))
	a := Answer{Status: rec.status, Body: h.client.Redact(clipBody(rec.body.String())), Err: err}
	var re *robin.Error
	if errors.As(err, &re) && re.Status != 0 {
		a.Status, a.Body = re.Status, re.Body
	}
	return a
}

func (h *Helpdesk) checkPresence(ctx context.Context) OnlineCheck {
	c := OnlineCheck{Name: "robin"}
	var online bool
	a := h.do(ctx, robin.PriorityPresence, func(ctx context.Context) (err error) {
		online, err = h.client.Presence(ctx, "Chat", "")
		return err
	})
	switch {
	case a.Err == nil:
		word := "Offline"
		if online {
			word = "Online"
		}
		c.OK, c.Detail = true, "API key accepted: presence answered "+word+" for channel Chat"
	case a.Status == http.StatusNotFound || a.Status == http.StatusUnauthorized || a.Status == http.StatusForbidden:
		c.Detail = "presence answered " + a.String() + ": is ROBIN_API_KEY right (and ROBIN_PRESENCE_URL)?"
	default:
		c.Detail = "presence: " + a.String()
	}
	return c
}

func (h *Helpdesk) checkSecret(ctx context.Context) OnlineCheck {
	c := OnlineCheck{Name: "robin"}
	a := h.do(ctx, robin.PriorityPresence, func(ctx context.Context) error {
		_, err := h.client.Conversations(ctx, checkEmail)
		return err
	})
	switch {
	case a.Err == nil:
		c.OK, c.Detail = true, "API key and secret accepted: conversations answered "+a.String()
	case a.Status == http.StatusUnauthorized || a.Status == http.StatusForbidden:
		c.Detail = "conversations answered " + a.String() + ": are ROBIN_API_KEY and ROBIN_API_SECRET right?"
	default:
		c.Detail = "conversations: " + a.String()
	}
	return c
}

// recordedKey carries a *recorded in a request's context.
type recordedKey struct{}

// recorded is the status and start of the body of one answer.
type recorded struct {
	status int
	body   bytes.Buffer
}

// answerRecorder keeps the status and the start of the body of answers
// whose request carries a *recorded: the helpdesk client reports a 2xx
// as nil, and a person testing wants to see what ROBIN said.
type answerRecorder struct{ next http.RoundTripper }

func (t answerRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if rec, ok := req.Context().Value(recordedKey{}).(*recorded); ok && err == nil {
		rec.status = resp.StatusCode
		resp.Body = &teeBody{ReadCloser: resp.Body, to: &rec.body}
	}
	return resp, err
}

// teeBody copies the first 512 bytes read to to.
type teeBody struct {
	io.ReadCloser
	to *bytes.Buffer
}

func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if room := 512 - b.to.Len(); room > 0 {
		b.to.Write(p[:min(n, room)])
	}
	return n, err
}

// clipBody makes an answer's start fit one line.
func clipBody(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "")), " ")
	if len(s) > 200 {
		s = strings.ToValidUTF8(s[:200], "") + "…"
	}
	return s
}

// checkSIP subscribes to the dialog state of the first extension with the
// bridge's own SIP monitor (transport, digest authentication, Contact) and
// unsubscribes at once. A bridge running on this machine holds SIP_LISTEN,
// so the check then listens on another port of the same address.
func checkSIP(ctx context.Context, c SIPConfig, dir *extensions.Directory, o CheckOptions) OnlineCheck {
	out := OnlineCheck{Name: "sip"}
	cfg := c.Config
	exts := cfg.Extensions
	if len(exts) == 0 {
		exts = sipExtensions(dir)
	}
	if len(exts) == 0 {
		out.Detail = "no extension to subscribe to: SIP_EXTENSIONS is empty and EXTENSIONS/EXTENSIONS_FILE list no agent for sip"
		return out
	}
	cfg.Extensions, cfg.Keepalive = exts[:1], 0
	tap := &logTap{changed: make(chan struct{}, 1), next: o.Logger.Handler()}
	opts := sip.Options{Logger: slog.New(tap), RequestTimeout: o.Timeout}
	mon, err := sip.New(cfg, discardJournal{}, opts)
	if err == nil {
		if err = mon.Listen(); err != nil {
			host, _, _ := net.SplitHostPort(cfg.Listen)
			cfg.Listen = net.JoinHostPort(host, "0")
			if mon, err = sip.New(cfg, discardJournal{}, opts); err == nil {
				err = mon.Listen()
			}
		}
	}
	if err != nil {
		out.Detail = err.Error()
		return out
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = mon.Run(runCtx)
	}()
	defer func() { stop(); <-done }() // unsubscribes
	what := fmt.Sprintf("SUBSCRIBE (dialog) for %s to %s", exts[0], cfg.Server)
	for {
		st := mon.Status()
		switch {
		case st.Active > 0:
			out.OK, out.Detail = true, what+" accepted"
			return out
		case st.Failing > 0:
			out.Detail = what + ": " + tap.reason()
			if strings.Contains(out.Detail, "status 401") || strings.Contains(out.Detail, "status 403") || strings.Contains(out.Detail, "status 407") {
				out.Detail += ": are SIP_USERNAME and SIP_PASSWORD right?"
			}
			return out
		}
		select {
		case <-tap.changed:
		case <-ctx.Done():
			out.Detail = what + ": no answer in time"
			if r := tap.reason(); r != "no reason" {
				out.Detail += " (" + r + ")"
			}
			return out
		}
	}
}

// discardJournal takes the signals of the check's subscription and keeps
// none: a check journals nothing.
type discardJournal struct{}

func (discardJournal) PublishSignal(context.Context, events.Signal) error { return nil }

// logTap hears every log record of the SIP monitor: it keeps the last
// "err" (the reason a subscription failed, which Status does not carry)
// and says that something happened, so the check looks again.
type logTap struct {
	next    slog.Handler
	changed chan struct{}
	mu      sync.Mutex
	last    string
}

func (t *logTap) Enabled(context.Context, slog.Level) bool { return true }

func (t *logTap) Handle(ctx context.Context, r slog.Record) error {
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "err" {
			t.mu.Lock()
			t.last = a.Value.String()
			t.mu.Unlock()
			return false
		}
		return true
	})
	select {
	case t.changed <- struct{}{}:
	default:
	}
	if t.next.Enabled(ctx, r.Level) {
		return t.next.Handle(ctx, r)
	}
	return nil
}

func (t *logTap) WithAttrs([]slog.Attr) slog.Handler { return t }
func (t *logTap) WithGroup(string) slog.Handler      { return t }

func (t *logTap) reason() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == "" {
		return "no reason"
	}
	return t.last
}

// checkClient is the HTTP client of the checks of the PBXs and services:
// it follows no redirect, so no credential travels to another host.
func checkClient() *http.Client {
	return &http.Client{
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// send makes one request and returns the status and up to 64 KiB of the
// answer; a failed round trip is returned without the URL.
func send(hc *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		if req.Context().Err() != nil {
			err = errors.New("no answer in time")
		}
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, b, err
}

// checkThreeCX asks the 3CX token endpoint for a token with the
// integration's client id and secret (as the source does) and reads the
// Call Control API's list of DNs with it.
func checkThreeCX(ctx context.Context, c ThreeCXConfig) OnlineCheck {
	out := OnlineCheck{Name: "3cx"}
	hc, base := checkClient(), strings.TrimRight(c.URL, "/")
	form := url.Values{"client_id": {c.ClientID}, "client_secret": {c.ClientSecret}, "grant_type": {"client_credentials"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/connect/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	status, body, err := send(hc, req)
	var tok struct {
		AccessToken string `json:"access_token"`
		Error       string `json:"error"`
	}
	_ = json.Unmarshal(body, &tok)
	switch {
	case err != nil:
		out.Detail = "token: " + err.Error()
		return out
	case status != http.StatusOK || tok.AccessToken == "":
		out.Detail = fmt.Sprintf("token: status %d", status)
		if tok.Error != "" && len(tok.Error) < 40 && !strings.ContainsAny(tok.Error, " \n") {
			out.Detail += " (" + tok.Error + ")" // an OAuth error code, safe to show
		}
		if status == http.StatusBadRequest || status == http.StatusUnauthorized || status == http.StatusForbidden {
			out.Detail += ": are THREECX_CLIENT_ID and THREECX_CLIENT_SECRET right?"
		}
		return out
	}
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, base+"/callcontrol", nil)
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	req.Header.Set("Accept", "application/json")
	status, body, err = send(hc, req)
	var dns []json.RawMessage
	switch {
	case err != nil:
		out.Detail = "token issued; Call Control API: " + err.Error()
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		out.Detail = fmt.Sprintf("token issued, but the Call Control API answered %d: does the integration have Call Control access?", status)
	case status != http.StatusOK || json.Unmarshal(body, &dns) != nil:
		out.Detail = fmt.Sprintf("token issued, but the Call Control API answered %d without its list of DNs", status)
	default:
		out.OK, out.Detail = true, fmt.Sprintf("token issued for client id %s; the Call Control API lists %d DNs", c.ClientID, len(dns))
	}
	return out
}

// checkXelion logs in as the source does, but in a user space of its own
// (Xelion refuses a second session in the bridge's), and logs out again.
func checkXelion(ctx context.Context, c XelionConfig) OnlineCheck {
	out := OnlineCheck{Name: "xelion"}
	base, err := xelionBase(c)
	if err != nil {
		out.Detail = err.Error()
		return out
	}
	space := c.UserSpace
	if space == "" {
		host, _ := os.Hostname()
		space = "voipbridge-" + host
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	creds, _ := json.Marshal(map[string]string{
		"userName": c.Username, "password": c.Password, "userSpace": space + "-check-" + hex.EncodeToString(suffix), "clientId": "voipbridge",
	})
	hc := checkClient()
	post := func(path, token string, body []byte) (int, []byte, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "xelion "+token)
		}
		return send(hc, req)
	}
	status, body, err := post("me/login", "", creds)
	var answer struct {
		Authentication string `json:"authentication"`
		ServerVersion  string `json:"serverVersion"`
		Code           int    `json:"code"`
	}
	_ = json.Unmarshal(body, &answer)
	switch {
	case err != nil:
		out.Detail = "login: " + err.Error()
	case status/100 != 2 || answer.Authentication == "":
		out.Detail = fmt.Sprintf("login: status %d", status)
		if answer.Code != 0 {
			out.Detail += fmt.Sprintf(" (xelion code %d)", answer.Code)
		}
		if status == http.StatusUnauthorized || status == http.StatusForbidden {
			out.Detail += ": are XELION_USERNAME, XELION_PASSWORD and XELION_TENANT right?"
		}
	default:
		out.OK, out.Detail = true, "logged in as "+c.Username
		if answer.ServerVersion != "" {
			out.Detail += " (server " + clipBody(answer.ServerVersion) + ")"
		}
		_, _, _ = post("me/logout", answer.Authentication, nil)
	}
	return out
}

// xelionBase is the REST base of XELION_URL, ending in "/": the URL, or
// the URL with /api/v1/<tenant>, as the source reads it.
func xelionBase(c XelionConfig) (string, error) {
	u, err := url.Parse(strings.TrimRight(c.URL, "/"))
	if err != nil {
		return "", errors.New("XELION_URL is not a URL")
	}
	tenant := c.Tenant
	if tenant == "" {
		tenant = "master"
	}
	switch p := strings.TrimRight(u.Path, "/"); {
	case strings.HasSuffix(p, "/api/v1"):
		u.Path = p + "/" + tenant
	case strings.Contains(p, "/api/v1/"):
		u.Path = p
	default:
		u.Path = p + "/api/v1/" + tenant
	}
	return u.String() + "/", nil
}

// checkChatwoot searches Chatwoot's contacts for CheckNumber with routing's
// own resolver: the same URL, account, header and token.
func checkChatwoot(ctx context.Context, c RouteConfig, dir *extensions.Directory, numbers *phone.Normalizer, timeout time.Duration) OnlineCheck {
	out := OnlineCheck{Name: "chatwoot"}
	limits, _ := robin.ParseWindows(c.ChatwootSearchLimit) // checked by LoadConfig
	cw, err := route.NewChatwoot(ctx, route.ChatwootOptions{
		URL: c.ChatwootURL, AccountID: c.ChatwootAccountID, Token: c.ChatwootAPIToken, HTTPClient: checkClient(),
		SearchLimit: limits, Wait: timeout, Numbers: numbers, Agents: route.Agents{Dir: dir, Sources: routeSources},
	})
	if err != nil {
		out.Detail = err.Error()
		return out
	}
	_, err = cw.Resolve(ctx, CheckNumber)
	switch st := httpStatus(err); {
	case err == nil || errors.Is(err, route.ErrNoMatch):
		out.OK, out.Detail = true, "contact search in account "+c.ChatwootAccountID+" answered"
	case st == http.StatusUnauthorized || st == http.StatusForbidden:
		out.Detail = err.Error() + ": is CHATWOOT_API_TOKEN right, and a user's access token (an agent bot's may not search contacts)?"
	case st == http.StatusNotFound:
		out.Detail = err.Error() + ": are CHATWOOT_URL and CHATWOOT_ACCOUNT_ID right?"
	default:
		out.Detail = err.Error()
	}
	return out
}

// httpStatus is the HTTP status a service answered, as the error carries
// it; 0 when it carries none.
func httpStatus(err error) int {
	var he *route.HTTPError
	if errors.As(err, &he) {
		return he.Status
	}
	var sc interface{ StatusCode() int }
	if errors.As(err, &sc) {
		return sc.StatusCode()
	}
	return 0
}

// checkShop asks the shop's customer endpoint for CheckNumber as routing
// would: any answer the endpoint documents (a customer, or 404 for none)
// shows it works.
func checkShop(ctx context.Context, template string) OnlineCheck {
	out := OnlineCheck{Name: "shop"}
	cust, err := route.NewCustomers(template, checkClient(), nil)
	if err == nil {
		_, err = cust.Email(ctx, CheckNumber)
	}
	switch {
	case err == nil:
		out.OK, out.Detail = true, "customer endpoint answered with a customer for "+CheckNumber
	case errors.Is(err, route.ErrNoMatch):
		out.OK, out.Detail = true, "customer endpoint answered: no customer with the test number "+CheckNumber
	default:
		out.Detail = err.Error() + " (CUSTOMER_LOOKUP_URL)"
	}
	return out
}
