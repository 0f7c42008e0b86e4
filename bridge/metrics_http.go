package bridge

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/events"
)

// webhookRequests counts the webhook requests the shared guard saw, by
// source and the status they were answered (202, 400, 401, 403, 413, 503,
// …), and returns the guard's Observe hook: one place for every source,
// refusals and answers alike.
func webhookRequests(reg prometheus.Registerer) func(source string, status int) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "voipbridge_webhook_requests_total",
		Help: "Webhook requests, by source and the HTTP status they were answered (refusals of the guard included).",
	}, []string{"source", "status"})
	reg.MustRegister(c)
	return func(source string, status int) { c.WithLabelValues(source, strconv.Itoa(status)).Inc() }
}

// timedTransport observes how long each request to the helpdesk takes,
// from sending it until ROBIN's answer (status and headers) arrives or the
// request fails, by endpoint. Every request the helpdesk client makes
// (events, presence, look-ups) passes here, so none is left out.
type timedTransport struct {
	next     http.RoundTripper
	duration *prometheus.HistogramVec
	presence *url.URL // ROBIN_PRESENCE_URL
}

// helpdeskHTTPClient is the helpdesk client's HTTP client: the default
// transport (a clone, as the client would take), timed.
func helpdeskHTTPClient(duration *prometheus.HistogramVec, presenceURL string) *http.Client {
	p, _ := url.Parse(presenceURL) // checked by the configuration
	return &http.Client{Transport: &timedTransport{
		next: http.DefaultTransport.(*http.Transport).Clone(), duration: duration, presence: p,
	}}
}

func (t *timedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	start := time.Now()
	resp, err := t.next.RoundTrip(req)
	t.duration.WithLabelValues(t.endpoint(req.URL)).Observe(time.Since(start).Seconds())
	return resp, err
}

// endpoint names the helpdesk endpoint of u as the request counter does,
// never with the path itself (register-event's path holds the API key).
func (t *timedTransport) endpoint(u *url.URL) string {
	path := strings.TrimRight(u.Path, "/")
	switch {
	case strings.Contains(u.Path, "/voip/registerevent/"):
		return "registerevent"
	case t.presence != nil && u.Host == t.presence.Host && path == strings.TrimRight(t.presence.Path, "/"):
		return "presence"
	case strings.HasSuffix(path, "/conversations"):
		return "conversations"
	case strings.HasSuffix(path, "/messages"):
		return "messages"
	}
	return "other"
}

// deliveryLatency observes, for every event ROBIN accepted (2xx), how long
// it took from being journaled to that answer: what an agent waits beyond
// the PBX. It returns the dispatcher's OnDelivery hook.
func deliveryLatency(reg prometheus.Registerer) func(events.DeliveryOutcome) {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "voipbridge_delivery_latency_seconds",
		Help:    "From an event being journaled to the helpdesk's 2xx for it, retries and waits for the quota included.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600},
	})
	reg.MustRegister(h)
	return func(o events.DeliveryOutcome) {
		if o.Outcome == "delivered" {
			h.Observe(o.Age.Seconds())
		}
	}
}

// onDeliveries tells each of hooks (nil ones left out) every delivery
// outcome, in order: the dispatcher has one OnDelivery, and several want it.
func onDeliveries(hooks ...func(events.DeliveryOutcome)) func(events.DeliveryOutcome) {
	var hs []func(events.DeliveryOutcome)
	for _, h := range hooks {
		if h != nil {
			hs = append(hs, h)
		}
	}
	switch len(hs) {
	case 0:
		return nil
	case 1:
		return hs[0]
	}
	return func(o events.DeliveryOutcome) {
		for _, h := range hs {
			h(o)
		}
	}
}
