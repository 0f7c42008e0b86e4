package bridge

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/pbx/webhook"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/route"
)

// RouteConfig configures the routing look-ups (GET /v1/route); it is
// Config.Route. The endpoint is always served; the history resolver needs
// nothing, ROBIN needs CUSTOMER_LOOKUP_URL (and ROBIN_API_SECRET), Chatwoot
// needs CHATWOOT_URL, CHATWOOT_ACCOUNT_ID and CHATWOOT_API_TOKEN.
type RouteConfig struct {
	// Order names the resolvers in the order they are asked; empty: every
	// one configured, in the order history, robin, chatwoot.
	Order      []string      `env:"ROUTE_ORDER" envSeparator:","`
	Timeout    time.Duration `env:"ROUTE_TIMEOUT" envDefault:"1500ms"`
	CacheTTL   time.Duration `env:"ROUTE_CACHE_TTL" envDefault:"1m"`
	StaleMax   time.Duration `env:"ROUTE_STALE_MAX" envDefault:"10m"`
	HistoryTTL time.Duration `env:"ROUTE_HISTORY_TTL" envDefault:"720h"`
	// SkipOffline skips a Chatwoot assignee whose status is offline.
	SkipOffline bool `env:"ROUTE_SKIP_OFFLINE" envDefault:"true"`
	// AllowCIDRs and Token limit who may ask: a look-up can cost helpdesk
	// requests and names who handles a customer.
	AllowCIDRs []string `env:"ROUTE_ALLOW_CIDRS" envSeparator:","`
	Token      string   `env:"ROUTE_TOKEN"`

	// CustomerLookupURL is the shop's customer endpoint, {phone} standing
	// for the caller in E.164.
	CustomerLookupURL string `env:"CUSTOMER_LOOKUP_URL"`

	ChatwootURL         string `env:"CHATWOOT_URL"`
	ChatwootAccountID   string `env:"CHATWOOT_ACCOUNT_ID"`
	ChatwootAPIToken    string `env:"CHATWOOT_API_TOKEN"`
	ChatwootSearchLimit string `env:"CHATWOOT_SEARCH_LIMIT" envDefault:"60/1m"`
}

// routeSecrets may also be given as NAME_FILE.
var routeSecrets = []string{"CHATWOOT_API_TOKEN", "ROUTE_TOKEN"}

// order returns the resolvers to ask, in order, checking that each named
// one is known, configured and named once.
func (c RouteConfig) order() ([]string, error) {
	configured := map[string]bool{
		route.ViaHistory:  true,
		route.ViaRobin:    c.CustomerLookupURL != "",
		route.ViaChatwoot: c.ChatwootURL != "",
	}
	if len(c.Order) == 0 {
		var out []string
		for _, n := range []string{route.ViaHistory, route.ViaRobin, route.ViaChatwoot} {
			if configured[n] {
				out = append(out, n)
			}
		}
		return out, nil
	}
	var (
		out  []string
		errs []error
	)
	for _, n := range c.Order {
		n = strings.ToLower(strings.TrimSpace(n))
		known, ok := configured[n]
		switch {
		case n == "":
			continue
		case !ok:
			errs = append(errs, fmt.Errorf("ROUTE_ORDER: unknown resolver %q; want history, robin or chatwoot", n))
		case !known && n == route.ViaRobin:
			errs = append(errs, errors.New("ROUTE_ORDER names robin but CUSTOMER_LOOKUP_URL is not set"))
		case !known:
			errs = append(errs, errors.New("ROUTE_ORDER names chatwoot but CHATWOOT_URL is not set"))
		case slices.Contains(out, n):
			errs = append(errs, fmt.Errorf("ROUTE_ORDER names %s twice", n))
		default:
			out = append(out, n)
		}
	}
	return out, errors.Join(errs...)
}

// config is the router's policy.
func (c RouteConfig) config() route.Config {
	return route.Config{Timeout: c.Timeout, CacheTTL: c.CacheTTL, StaleMax: c.StaleMax}
}

// validate reports every problem; robinSecret is ROBIN_API_SECRET, which
// ROBIN's conversation retrieval needs.
func (c RouteConfig) validate(robinSecret string) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if _, err := c.order(); err != nil {
		errs = append(errs, err)
	}
	// A zero duration would silently take the default: say so instead.
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"ROUTE_TIMEOUT", c.Timeout}, {"ROUTE_CACHE_TTL", c.CacheTTL}} {
		if d.v == 0 {
			bad("%s is 0: want a positive duration", d.name)
		}
	}
	errs = append(errs, c.config().Validate())
	if c.HistoryTTL < time.Hour || c.HistoryTTL > 366*24*time.Hour {
		bad("ROUTE_HISTORY_TTL %s: want 1h to 366 days", c.HistoryTTL)
	}
	if _, err := webhook.ParseCIDRs(c.AllowCIDRs); err != nil {
		bad("ROUTE_ALLOW_CIDRS: %s", strings.TrimPrefix(err.Error(), "WEBHOOK_ALLOW_CIDRS: "))
	}
	if c.CustomerLookupURL != "" {
		if err := route.CheckCustomerURL(c.CustomerLookupURL); err != nil {
			errs = append(errs, err)
		}
		if robinSecret == "" {
			bad("CUSTOMER_LOOKUP_URL is set but ROBIN_API_SECRET is not: ROBIN's conversations need the API key and secret")
		}
	}
	if c.ChatwootURL != "" {
		if err := route.CheckChatwoot(c.ChatwootURL, c.ChatwootAccountID); err != nil {
			errs = append(errs, err)
		}
		if c.ChatwootAPIToken == "" {
			bad("CHATWOOT_URL is set but CHATWOOT_API_TOKEN is not (or CHATWOOT_API_TOKEN_FILE)")
		}
		if _, err := robin.ParseWindows(c.ChatwootSearchLimit); err != nil {
			bad("CHATWOOT_SEARCH_LIMIT: %v", err)
		}
	}
	return errors.Join(errs...)
}
