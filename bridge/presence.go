package bridge

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/pbx/webhook"
	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/presence"
	"github.com/voipbridge/voipbridge/robin"
)

// PresenceConfig configures the presence look-ups (GET /v1/presence); it is
// Config.Presence. The endpoint is always served; these settings only shape
// its cache.
type PresenceConfig struct {
	TTL           time.Duration `env:"PRESENCE_TTL" envDefault:"15s"`
	NegativeTTL   time.Duration `env:"PRESENCE_NEGATIVE_TTL" envDefault:"1m"`
	StaleMax      time.Duration `env:"PRESENCE_STALE_MAX" envDefault:"10m"`
	Timeout       time.Duration `env:"PRESENCE_TIMEOUT" envDefault:"2s"`
	Fallback      string        `env:"PRESENCE_FALLBACK" envDefault:"error"`
	ExtraChannels []string      `env:"PRESENCE_EXTRA_CHANNELS" envSeparator:","`
	Warm          string        `env:"PRESENCE_WARM"`
	// AllowCIDRs limits who may ask: every look-up can cost quota.
	AllowCIDRs []string `env:"PRESENCE_ALLOW_CIDRS" envSeparator:","`
}

// config turns the environment's settings into the cache's policy,
// reporting every problem.
func (c PresenceConfig) config() (presence.Config, error) {
	var errs []error
	fb, err := presence.ParseFallback(c.Fallback)
	if err != nil {
		errs = append(errs, err)
	}
	warm, err := presence.ParseWarm(c.Warm)
	if err != nil {
		errs = append(errs, err)
	}
	pc := presence.Config{
		TTL: c.TTL, NegativeTTL: c.NegativeTTL, StaleMax: c.StaleMax, Timeout: c.Timeout,
		Fallback: fb, ExtraChannels: c.ExtraChannels, Warm: warm,
	}
	// A zero duration would silently take the default: say so instead.
	for name, d := range map[string]time.Duration{
		"PRESENCE_TTL": c.TTL, "PRESENCE_NEGATIVE_TTL": c.NegativeTTL, "PRESENCE_TIMEOUT": c.Timeout,
	} {
		if d == 0 {
			errs = append(errs, errors.New(name+" is 0: want a positive duration"))
		}
	}
	errs = append(errs, pc.Validate())
	return pc, errors.Join(errs...)
}

func (c PresenceConfig) validate() error {
	_, err := c.config()
	if _, cerr := webhook.ParseCIDRs(c.AllowCIDRs); cerr != nil {
		err = errors.Join(err, errors.New("PRESENCE_ALLOW_CIDRS: "+strings.TrimPrefix(cerr.Error(), "WEBHOOK_ALLOW_CIDRS: ")))
	}
	return err
}

// presenceEnv is what the bridge hands the presence look-ups.
type presenceEnv struct {
	// Client asks ROBIN's presence endpoint (Client.Presence).
	Client *robin.Client
	// Quota must be reserved (robin.PriorityPresence) before every request to ROBIN.
	Quota *robin.Quota
	// Breaker must Allow every request to ROBIN and be told its outcome.
	Breaker *robin.Breaker
	// Numbers normalises a phone-number referrer to E.164.
	Numbers *phone.Normalizer
	// Requests counts requests to ROBIN: Requests.WithLabelValues("presence", statusClass(err)).Inc().
	Requests *prometheus.CounterVec
	Registry prometheus.Registerer
	Log      *slog.Logger
	// Mux is the bridge's HTTP mux: mount GET /v1/presence on it.
	Mux *http.ServeMux
	b   *Bridge
}

// Go runs f for the bridge's lifetime (for cache warming); f returns nil on ctx cancellation.
func (e *presenceEnv) Go(name string, f func(ctx context.Context) error) { e.b.goRun(name, f) }

// startPresence builds the presence cache in front of ROBIN's presence
// endpoint, mounts GET /v1/presence and runs the cache (warming, and the end
// of background requests when the bridge stops).
func startPresence(ctx context.Context, c PresenceConfig, env *presenceEnv) error {
	pc, err := c.config()
	if err != nil {
		return err
	}
	cache, err := presence.New(presence.Options{
		Config:   pc,
		Asker:    countingAsker{client: env.Client, requests: env.Requests},
		Quota:    env.Quota,
		Breaker:  env.Breaker,
		Numbers:  env.Numbers,
		Registry: env.Registry,
		Logger:   env.Log,
		Redact:   env.Client.Redact,
	})
	if err != nil {
		return err
	}
	allow, err := webhook.ParseCIDRs(c.AllowCIDRs)
	if err != nil {
		return err
	}
	var h http.Handler = cache
	if len(allow) > 0 {
		// The webhook guard with only an allow-list: no token, no body.
		h = (&webhook.Guard{Allow: allow, Logger: env.Log}).Wrap("presence", cache)
	}
	env.Mux.Handle("GET /v1/presence", h)
	env.Go("presence", cache.Run)
	return nil
}

// countingAsker counts every request to ROBIN's presence endpoint on the
// bridge's helpdesk request counter.
type countingAsker struct {
	client   *robin.Client
	requests *prometheus.CounterVec
}

func (a countingAsker) Presence(ctx context.Context, channel, referrer string) (bool, error) {
	online, err := a.client.Presence(ctx, channel, referrer)
	if !errors.Is(err, context.Canceled) {
		a.requests.WithLabelValues("presence", statusClass(err)).Inc()
	}
	return online, err
}
