package bridge

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/pbx/threecx"
	"github.com/voipbridge/voipbridge/pbx/voipgrid"
	"github.com/voipbridge/voipbridge/pbx/webhook"
	"github.com/voipbridge/voipbridge/pbx/xelion"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/route"
	"github.com/voipbridge/voipbridge/sip"
)

// routeSources are the sources whose scoped directory entries routing
// searches for an agent's e-mail address, after the unscoped ones.
var routeSources = []string{sip.SourceName, threecx.SourceName, xelion.SourceName, voipgrid.SourceName, webhook.Source}

// openRouteHistory opens the caller history in the journal (keys expire
// ROUTE_HISTORY_TTL after their last write). The tracker feeds it through
// TrackerOptions.OnCommitted; startRoute runs its writer.
func openRouteHistory(ctx context.Context, cfg Config, j *events.Journal, dir *extensions.Directory, log *slog.Logger) (*route.History, error) {
	kv, err := j.ExpiringKeyValue(ctx, route.HistoryBucket, "routing: the agent who last had each caller on an answered call",
		cfg.NATSReplicas, cfg.Route.HistoryTTL)
	if err != nil {
		return nil, err
	}
	return route.NewHistory(route.HistoryOptions{
		Store: route.KVStore(kv), TTL: cfg.Route.HistoryTTL, Logger: log,
		Agents: route.Agents{Dir: dir, Sources: routeSources},
	}), nil
}

// startRoute builds the resolvers in ROUTE_ORDER and the router, mounts
// GET /v1/route behind ROUTE_ALLOW_CIDRS and ROUTE_TOKEN, and runs the
// history's writer and the router for the bridge's lifetime.
func startRoute(ctx context.Context, b *Bridge, hist *route.History) error {
	c := b.cfg.Route
	order, err := c.order()
	if err != nil {
		return err
	}
	agents := route.Agents{Dir: b.dir, Sources: routeSources}
	spent := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "voipbridge_route_helpdesk_requests_total",
		Help: "Requests routing look-ups sent, by service (shop, robin, chatwoot), endpoint and status class (2xx, 4xx, 5xx, error).",
	}, []string{"helpdesk", "endpoint", "status"})
	b.reg.MustRegister(spent)
	// The shop and Chatwoot get a client that never follows redirects:
	// the credentials would travel to another host.
	hc := &http.Client{
		Transport:     http.DefaultTransport.(*http.Transport).Clone(),
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	var resolvers []route.Resolver
	for _, name := range order {
		switch name {
		case route.ViaHistory:
			resolvers = append(resolvers, hist)
		case route.ViaRobin:
			cust, err := route.NewCustomers(c.CustomerLookupURL, hc, func(status string) {
				spent.WithLabelValues("shop", "customers", status).Inc()
			})
			if err != nil {
				return err
			}
			resolvers = append(resolvers, &route.Robin{
				Customers: cust, Conversations: b.robin, Agents: agents,
				// Every request to ROBIN counts against the quota shared
				// with call events, at presence priority, through the
				// shared breaker.
				Gate: route.Gate{Quota: b.quota, Priority: robin.PriorityPresence, Wait: c.Timeout, Breaker: b.breaker},
				Count: func(err error) {
					if errors.Is(err, context.Canceled) {
						return
					}
					b.requests.WithLabelValues(robin.OpConversations, statusClass(err)).Inc()
					spent.WithLabelValues("robin", robin.OpConversations, statusClass(err)).Inc()
				},
			})
		case route.ViaChatwoot:
			limits, err := robin.ParseWindows(c.ChatwootSearchLimit)
			if err != nil {
				return err
			}
			cw, err := route.NewChatwoot(ctx, route.ChatwootOptions{
				URL: c.ChatwootURL, AccountID: c.ChatwootAccountID, Token: c.ChatwootAPIToken, HTTPClient: hc,
				SearchLimit: limits, SkipOffline: c.SkipOffline, Wait: c.Timeout,
				Breaker: robin.NewBreaker(robin.BreakerOptions{Failures: b.cfg.Quota.BreakerFailures, Interval: b.cfg.Quota.BreakerInterval}),
				Numbers: b.numbers, Agents: agents,
				Count: func(endpoint, status string) { spent.WithLabelValues("chatwoot", endpoint, status).Inc() },
			})
			if err != nil {
				return err
			}
			resolvers = append(resolvers, cw)
		}
	}
	router, err := route.New(route.Options{Config: c.config(), Resolvers: resolvers, Numbers: b.numbers, Registry: b.reg, Logger: b.log})
	if err != nil {
		return err
	}
	allow, err := webhook.ParseCIDRs(c.AllowCIDRs)
	if err != nil {
		return err
	}
	var h http.Handler = router
	if len(allow) > 0 || c.Token != "" {
		// The webhook guard: the allow-list and the Bearer token, no body.
		h = (&webhook.Guard{Allow: allow, Token: c.Token, Logger: b.log}).Wrap("route", router)
	}
	b.mux.Handle("GET /v1/route", h)
	b.goRun("route history", hist.Run)
	b.goRun("route", router.Run)
	b.log.Info("routing look-ups on GET /v1/route", "order", strings.Join(order, ","), "timeout", c.Timeout.String())
	return nil
}
