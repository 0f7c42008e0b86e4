// Package bridge assembles voipbridge: it reads the configuration, opens the
// journal, starts the tracker, the dispatcher, the HTTP API and every
// configured PBX source, and stops them in order. cmd/voipbridge is a thin
// shell around it, and tests start it in-process.
package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
	"github.com/voipbridge/voipbridge/events"
)

// Config is every setting of the bridge, read from environment variables.
// The README's table is the reference for users; keep both in step.
type Config struct {
	HTTPAddr  string     `env:"HTTP_ADDR" envDefault:":8080"`
	LogLevel  slog.Level `env:"LOG_LEVEL" envDefault:"info"`
	LogFormat string     `env:"LOG_FORMAT" envDefault:"auto"`

	DataDir         string        `env:"DATA_DIR" envDefault:"./data"`
	NATSURL         string        `env:"NATS_URL"`
	NATSReplicas    int           `env:"NATS_REPLICAS" envDefault:"1"`
	JournalName     string        `env:"JOURNAL_NAME"`
	SignalRetention time.Duration `env:"SIGNAL_RETENTION" envDefault:"168h"`
	SignalMaxBytes  int64         `env:"SIGNAL_MAX_BYTES" envDefault:"1073741824"`
	JournalMinFree  uint64        `env:"JOURNAL_MIN_FREE" envDefault:"67108864"`

	RobinAPIURL      string        `env:"ROBIN_API_URL" envDefault:"https://api.robinhq.com"`
	RobinAPIKey      string        `env:"ROBIN_API_KEY"`
	RobinAPISecret   string        `env:"ROBIN_API_SECRET"`
	RobinPresenceURL string        `env:"ROBIN_PRESENCE_URL" envDefault:"https://presence.robinhq.com/api/v1"`
	RobinTimeout     time.Duration `env:"ROBIN_TIMEOUT" envDefault:"10s"`
	DeliveryWorkers  int           `env:"DELIVERY_WORKERS" envDefault:"0"` // 0: what the quota can use

	AdminToken string `env:"ADMIN_TOKEN"`

	WebhookToken      string   `env:"WEBHOOK_TOKEN"`
	WebhookInsecure   bool     `env:"WEBHOOK_INSECURE" envDefault:"false"`
	WebhookHMACSecret string   `env:"WEBHOOK_HMAC_SECRET"`
	WebhookAllowCIDRs []string `env:"WEBHOOK_ALLOW_CIDRS" envSeparator:","`
	WebhookMaxBody    int64    `env:"WEBHOOK_MAX_BODY" envDefault:"65536"`
	// WebhookProfilesDir holds extra webhook profiles (*.json); empty: only the built-in ones.
	WebhookProfilesDir string `env:"WEBHOOK_PROFILES_DIR"`

	PhoneRegion       string `env:"PHONE_REGION" envDefault:"NL"`
	OutsideLinePrefix string `env:"OUTSIDE_LINE_PREFIX"`
	InternalMaxDigits int    `env:"INTERNAL_MAX_DIGITS" envDefault:"6"`

	Extensions     string `env:"EXTENSIONS"`
	ExtensionsFile string `env:"EXTENSIONS_FILE"`

	MissedCalls     string        `env:"MISSED_CALLS" envDefault:"report"`
	InternalCalls   string        `env:"INTERNAL_CALLS" envDefault:"ignore"`
	AnonymousNumber string        `env:"-"` // ANONYMOUS_NUMBER: set in Load, empty is meaningful
	CallTimeout     time.Duration `env:"CALL_TIMEOUT" envDefault:"4h"`
	TransferWindow  time.Duration `env:"TRANSFER_WINDOW" envDefault:"2s"`
	CallIDReuse     time.Duration `env:"CALL_ID_REUSE_AFTER" envDefault:"10m"`
	// DIDMap: DID_MAP, "source:line=number,…" and "source=number" (the
	// source's default), parsed by ParseDIDMap.
	DIDMap        string        `env:"DID_MAP"`
	TrackerMaxLag time.Duration `env:"TRACKER_MAX_LAG" envDefault:"30s"`

	HTTP     HTTPConfig
	Quota    QuotaConfig
	Lease    LeaseConfig
	Sinks    SinksConfig
	SIP      SIPConfig
	ThreeCX  ThreeCXConfig
	Xelion   XelionConfig
	VoIPGRID VoIPGRIDConfig
	Presence PresenceConfig
	Route    RouteConfig
	Board    BoardConfig

	// Warnings name the variables that look like the bridge's but are not
	// read (ROBIN_APIKEY), each with the closest name it reads; set by
	// LoadConfig, logged at start and printed by voipbridge check.
	Warnings []string `env:"-"`
}

// secretNames are the variables that may also be given as NAME_FILE (the
// path of a file holding the value, as Docker and Kubernetes secrets do).
func secretNames() []string {
	return slices.Concat(
		[]string{"ROBIN_API_KEY", "ROBIN_API_SECRET", "WEBHOOK_TOKEN", "WEBHOOK_HMAC_SECRET", "ADMIN_TOKEN"},
		sipSecrets, threecxSecrets, xelionSecrets, voipgridSecrets, routeSecrets,
	)
}

// LoadConfig reads the configuration from environ (os.Environ() form) and
// reports every problem at once, each naming its variable once. It sets
// Config.Warnings whether or not the configuration is valid; when it is
// not, the warnings end the error too (a misspelt name is often why a
// variable is missing).
func LoadConfig(environ []string) (Config, error) {
	m := env.ToMap(environ)
	warnings := envWarnings(m)
	var errs []error
	var unread []string // variables whose value could not be used
	for _, k := range secretNames() {
		p, ok := m[k+"_FILE"]
		if !ok || p == "" {
			continue
		}
		if m[k] != "" {
			errs, unread = append(errs, fmt.Errorf("%s and %s_FILE are both set; set one", k, k)), append(unread, k)
			continue
		}
		b, err := os.ReadFile(p)
		if err != nil {
			errs, unread = append(errs, fmt.Errorf("%s_FILE: %w", k, err)), append(unread, k)
			continue
		}
		m[k] = strings.TrimRight(string(b), "\r\n")
	}
	cfg, err := env.ParseAsWithOptions[Config](env.Options{Environment: m})
	if err != nil {
		bad, perrs := parseErrors(m, err)
		errs, unread = append(errs, perrs...), append(unread, bad...)
		// The defaults stand in for the values that could not be read, so
		// the checks below see a whole configuration.
		for _, k := range bad {
			delete(m, k)
		}
		cfg, _ = env.ParseAsWithOptions[Config](env.Options{Environment: m})
	}
	cfg.Warnings = warnings
	if v, ok := m["ANONYMOUS_NUMBER"]; ok {
		cfg.AnonymousNumber = v
	} else {
		cfg.AnonymousNumber = "anonymous"
	}
	errs = append(errs, withoutMentions(cfg.validate(), unread)...)
	if len(errs) > 0 {
		for _, w := range warnings {
			errs = append(errs, errors.New(w))
		}
	}
	return cfg, errors.Join(errs...)
}

// validate checks what the types cannot; every problem is reported.
func (c *Config) validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch c.LogFormat {
	case "auto", "text", "json":
	default:
		bad("LOG_FORMAT %q: want auto, text or json", c.LogFormat)
	}
	if c.NATSURL == "" && c.DataDir == "" {
		bad("DATA_DIR is empty: the embedded journal needs a directory")
	}
	if c.NATSReplicas < 1 || c.NATSReplicas > 5 {
		bad("NATS_REPLICAS %d: want 1 to 5", c.NATSReplicas)
	}
	if !events.ValidJournalName(c.JournalName) {
		bad("JOURNAL_NAME %q: want at most 32 letters, digits, - or _", c.JournalName)
	}
	if c.SignalRetention < time.Hour {
		bad("SIGNAL_RETENTION %s: want at least 1h", c.SignalRetention)
	}
	if c.SignalMaxBytes < 1<<20 {
		bad("SIGNAL_MAX_BYTES %d: want at least 1048576 (1 MiB)", c.SignalMaxBytes)
	}
	if c.JournalMinFree < 1<<20 {
		bad("JOURNAL_MIN_FREE %d: want at least 1048576 (1 MiB)", c.JournalMinFree)
	}
	for name, u := range map[string]string{"ROBIN_API_URL": c.RobinAPIURL, "ROBIN_PRESENCE_URL": c.RobinPresenceURL} {
		if p, err := url.Parse(u); err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
			bad("%s %q: want an http(s) URL", name, u)
		}
	}
	if c.RobinAPIKey == "" {
		bad("ROBIN_API_KEY is required (or ROBIN_API_KEY_FILE)")
	}
	if c.RobinTimeout <= 0 {
		bad("ROBIN_TIMEOUT %s: want a positive duration", c.RobinTimeout)
	}
	if c.DeliveryWorkers < 0 || c.DeliveryWorkers > 64 {
		bad("DELIVERY_WORKERS %d: want 1 to 64, or 0 for what the quota can use", c.DeliveryWorkers)
	}
	if c.WebhookToken == "" && !c.WebhookInsecure {
		bad("WEBHOOK_TOKEN is required (or WEBHOOK_TOKEN_FILE); set WEBHOOK_INSECURE=true to accept unauthenticated webhooks")
	}
	if c.WebhookMaxBody < 1024 {
		bad("WEBHOOK_MAX_BODY %d: want at least 1024", c.WebhookMaxBody)
	}
	switch c.MissedCalls {
	case "report", "ignore":
	default:
		bad("MISSED_CALLS %q: want report or ignore", c.MissedCalls)
	}
	switch c.InternalCalls {
	case "report", "ignore":
	default:
		bad("INTERNAL_CALLS %q: want ignore or report", c.InternalCalls)
	}
	if c.CallTimeout < time.Minute {
		bad("CALL_TIMEOUT %s: want at least 1m", c.CallTimeout)
	}
	if c.TransferWindow < 0 || c.TransferWindow > 5*time.Minute {
		bad("TRANSFER_WINDOW %s: want 0 to 5m", c.TransferWindow)
	}
	if c.CallIDReuse < time.Minute || c.CallIDReuse > 24*time.Hour {
		bad("CALL_ID_REUSE_AFTER %s: want 1m to 24h", c.CallIDReuse)
	}
	if c.TrackerMaxLag < time.Second {
		bad("TRACKER_MAX_LAG %s: want at least 1s", c.TrackerMaxLag)
	}
	if _, err := ParseDIDMap(c.DIDMap); err != nil {
		errs = append(errs, err)
	}
	if c.InternalMaxDigits < 1 || c.InternalMaxDigits > 10 {
		bad("INTERNAL_MAX_DIGITS %d: want 1 to 10", c.InternalMaxDigits)
	}
	errs = append(errs, c.HTTP.validate(c.HTTPAddr))
	errs = append(errs, c.Sinks.validate(c), c.Lease.validate(), c.Quota.validate(), c.SIP.validate(), c.ThreeCX.validate(), c.Xelion.validate(), c.VoIPGRID.validate(), c.Presence.validate())
	errs = append(errs, c.Route.validate(c.RobinAPISecret))
	errs = append(errs, c.Board.validate())
	return errors.Join(errs...)
}

// ParseDIDMap reads DID_MAP: comma-separated "source:line=number" entries,
// and "source=number" for a source's default (stored as "source:*"). The
// numbers are checked against the phone plan when the bridge starts.
func ParseDIDMap(v string) (map[string]string, error) {
	out := map[string]string{}
	for _, e := range strings.Split(v, ",") {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		key, num, ok := strings.Cut(e, "=")
		key, num = strings.TrimSpace(key), strings.TrimSpace(num)
		if !ok || key == "" || num == "" {
			return nil, fmt.Errorf("DID_MAP %q: want source:line=number or source=number", e)
		}
		source, line, hasLine := strings.Cut(key, ":")
		if !hasLine || line == "" {
			line = "*"
		}
		if source == "" || events.CheckText(line, events.MaxIDBytes) != "" {
			return nil, fmt.Errorf("DID_MAP %q: the source or line is not usable", e)
		}
		k := source + ":" + line
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("DID_MAP: %s is given twice", k)
		}
		out[k] = num
	}
	return out, nil
}
