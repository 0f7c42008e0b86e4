package sip

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/voipbridge/voipbridge/events"
)

// Config is what an operator sets for the SIP dialog-event monitor. The env
// tags name the environment variables the bridge reads it from; the zero
// value of every optional field means "use the default".
type Config struct {
	// Server is the PBX: host[:port] or a SIP URI (sip:pbx.example.com:5060;transport=tcp).
	// Empty means SIP monitoring is off.
	Server string `env:"SIP_SERVER"`
	// Domain is the host part of the watched URIs sip:<ext>@<domain>;
	// default the server's host.
	Domain string `env:"SIP_DOMAIN"`
	// Transport is udp, tcp or tls; default udp, or what a SIP URI in Server says.
	Transport string `env:"SIP_TRANSPORT"`
	// Listen is our SIP address (host:port) for NOTIFYs; default 0.0.0.0:5070.
	Listen string `env:"SIP_LISTEN" envDefault:"0.0.0.0:5070"`
	// ContactHost is the host the PBX should send NOTIFYs to (the address the
	// PBX can reach us on, for NAT); default the local address that routes to
	// the server.
	ContactHost string `env:"SIP_CONTACT_HOST"`
	// Username and Password answer digest challenges (401 and 407). Username
	// is also the user part of our From URI, which is how Asterisk finds the
	// endpoint; it defaults to "voipbridge".
	Username string `env:"SIP_USERNAME"`
	Password string `env:"SIP_PASSWORD"`
	// Expires is the subscription duration we ask for, in seconds; default 600.
	// The PBX's answer (or a 423 Min-Expires) wins.
	Expires int `env:"SIP_EXPIRES" envDefault:"600"`
	// Extensions are the extensions to watch. The bridge fills in every
	// extension of the directory when the variable is empty.
	Extensions []string `env:"SIP_EXTENSIONS" envSeparator:","`
	// SubscribeRate is how many new subscriptions per second may be started
	// (initial SUBSCRIBEs and re-subscriptions; refreshes are not limited), so
	// that hundreds of extensions do not hit the PBX in one burst; default 20,
	// negative means unlimited.
	SubscribeRate float64 `env:"SIP_SUBSCRIBE_RATE" envDefault:"20"`
	// Keepalive is how often an OPTIONS goes to the PBX to notice at once
	// that it restarted and forgot every subscription (which a refresh would
	// notice only after up to three quarters of SIP_EXPIRES): an OPTIONS that
	// goes unanswered, or a TCP/TLS connection the PBX closed, makes every
	// extension re-subscribe as soon as the PBX answers again. The
	// environment default is 15s; 0 (also the zero value of the field) turns
	// it off; otherwise it must be 100ms to 1h.
	Keepalive time.Duration `env:"SIP_KEEPALIVE" envDefault:"15s"`
}

// Defaults used when a Config field is zero.
const (
	DefaultListen        = "0.0.0.0:5070"
	DefaultExpires       = 600
	DefaultSubscribeRate = 20
	DefaultKeepalive     = 15 * time.Second
	defaultUser          = "voipbridge"
)

// Enabled reports whether SIP monitoring is configured at all.
func (c Config) Enabled() bool { return strings.TrimSpace(c.Server) != "" }

// LogValue keeps the password out of every log line that prints a Config.
func (c Config) LogValue() slog.Value {
	pw := ""
	if c.Password != "" {
		pw = "[redacted]"
	}
	return slog.GroupValue(
		slog.String("server", c.Server), slog.String("domain", c.Domain),
		slog.String("transport", c.Transport), slog.String("listen", c.Listen),
		slog.String("contact_host", c.ContactHost), slog.String("username", c.Username),
		slog.String("password", pw), slog.Int("expires", c.Expires),
		slog.Int("extensions", len(c.Extensions)), slog.Float64("subscribe_rate", c.SubscribeRate),
		slog.String("keepalive", c.Keepalive.String()),
	)
}

// settings is a validated Config with every default applied.
type settings struct {
	server     string // host:port the SUBSCRIBEs go to
	serverHost string
	domain     string
	transport  string // "udp", "tcp" or "tls"
	listen     string
	contact    string // host for the Contact header, "" = work it out
	username   string
	password   string
	expires    int
	extensions []string
	rate       float64
	keepalive  time.Duration // 0 = off
}

func (c Config) settings() (settings, error) {
	s := settings{
		listen:    strings.TrimSpace(c.Listen),
		contact:   strings.TrimSpace(c.ContactHost),
		username:  strings.TrimSpace(c.Username),
		password:  c.Password,
		expires:   c.Expires,
		rate:      c.SubscribeRate,
		keepalive: c.Keepalive,
	}
	if !c.Enabled() {
		return s, errors.New("sip: SIP_SERVER is empty")
	}
	host, port, transport, err := parseServer(strings.TrimSpace(c.Server))
	if err != nil {
		return s, err
	}
	if t := strings.ToLower(strings.TrimSpace(c.Transport)); t != "" {
		transport = t
	}
	if transport == "" {
		transport = "udp"
	}
	switch transport {
	case "udp", "tcp", "tls":
	default:
		return s, fmt.Errorf("sip: SIP_TRANSPORT %q is not udp, tcp or tls", c.Transport)
	}
	if port == 0 {
		port = 5060
		if transport == "tls" {
			port = 5061
		}
	}
	s.transport = transport
	s.serverHost = host
	s.server = net.JoinHostPort(host, strconv.Itoa(port))
	s.domain = strings.TrimSpace(c.Domain)
	if s.domain == "" {
		s.domain = host
	}
	if !validHost(s.domain) {
		return s, fmt.Errorf("sip: SIP_DOMAIN %q is not a host name or address", c.Domain)
	}
	if s.listen == "" {
		s.listen = DefaultListen
	}
	if _, _, err := net.SplitHostPort(s.listen); err != nil {
		return s, fmt.Errorf("sip: SIP_LISTEN %q: %w", c.Listen, err)
	}
	if s.contact != "" && !validHost(s.contact) {
		return s, fmt.Errorf("sip: SIP_CONTACT_HOST %q is not a host name or address", c.ContactHost)
	}
	if s.username == "" {
		s.username = defaultUser
	}
	if !validUser(s.username) {
		return s, errors.New("sip: SIP_USERNAME contains characters a SIP user part cannot hold")
	}
	if s.expires == 0 {
		s.expires = DefaultExpires
	}
	if s.expires < 0 {
		return s, fmt.Errorf("sip: SIP_EXPIRES %d is negative", c.Expires)
	}
	if s.keepalive < 0 || (s.keepalive > 0 && s.keepalive < 100*time.Millisecond) || s.keepalive > time.Hour {
		return s, fmt.Errorf("sip: SIP_KEEPALIVE %s: want 0 (off) or 100ms to 1h", c.Keepalive)
	}
	if s.rate == 0 {
		s.rate = DefaultSubscribeRate
	}
	if s.extensions, err = cleanExtensions(c.Extensions); err != nil {
		return s, err
	}
	return s, nil
}

// Validate reports the first setting that keeps the monitor from starting.
func (c Config) Validate() error {
	_, err := c.settings()
	return err
}

// cleanExtensions trims, drops empty entries and duplicates, and rejects an
// extension that cannot be the user part of a SIP URI.
func cleanExtensions(exts []string) ([]string, error) {
	var out []string
	seen := map[string]bool{}
	for _, e := range exts {
		e = strings.TrimSpace(e)
		if e == "" || seen[e] {
			continue
		}
		if !validUser(e) {
			return nil, fmt.Errorf("sip: extension %q contains characters a SIP user part cannot hold", clip(e))
		}
		if len(e) > events.MaxExtensionBytes {
			return nil, fmt.Errorf("sip: extension %q is longer than %d bytes", clip(e), events.MaxExtensionBytes)
		}
		seen[e] = true
		out = append(out, e)
	}
	return out, nil
}

// parseServer accepts host, host:port, [v6]:port or a sip:/sips: URI.
func parseServer(v string) (host string, port int, transport string, err error) {
	lower := strings.ToLower(v)
	if strings.HasPrefix(lower, "sip:") || strings.HasPrefix(lower, "sips:") {
		var u gosip.Uri
		if err := gosip.ParseUri(v, &u); err != nil {
			return "", 0, "", fmt.Errorf("sip: SIP_SERVER %q: %w", v, err)
		}
		if t, ok := u.UriParams.Get("transport"); ok {
			transport = strings.ToLower(t)
		}
		if strings.EqualFold(u.Scheme, "sips") {
			transport = "tls"
		}
		host, port = strings.Trim(u.Host, "[]"), u.Port
	} else if h, p, splitErr := net.SplitHostPort(v); splitErr == nil {
		n, convErr := strconv.Atoi(p)
		if convErr != nil || n <= 0 || n > 65535 {
			return "", 0, "", fmt.Errorf("sip: SIP_SERVER %q: bad port", v)
		}
		host, port = h, n
	} else {
		host = strings.Trim(v, "[]")
	}
	if !validHost(host) {
		return "", 0, "", fmt.Errorf("sip: SIP_SERVER %q: no usable host", v)
	}
	return host, port, transport, nil
}

// validHost accepts DNS names and IP literals and nothing that could break a
// header (CR, LF, spaces, quotes, angle brackets).
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if net.ParseIP(h) != nil {
		return true
	}
	for _, r := range h {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '.', r == '_':
		default:
			return false
		}
	}
	return true
}

// validUser accepts the unreserved and user-unreserved characters of an
// RFC 3261 user part (no escapes), which covers every extension and
// account name seen in practice, and rejects anything that could inject a
// header or break a URI.
func validUser(u string) bool {
	if u == "" || len(u) > 128 {
		return false
	}
	for _, r := range u {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("-_.!~*'()&=+$,;?/", r):
		default:
			return false
		}
	}
	return true
}

// ValidExtension reports whether ext can be watched: it must be usable as
// the user part of a SIP URI and as the extension of a signal.
func ValidExtension(ext string) bool {
	ext = strings.TrimSpace(ext)
	return validUser(ext) && len(ext) <= events.MaxExtensionBytes
}
