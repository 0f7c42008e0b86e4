package bridge

import (
	"context"
	"errors"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin"
)

// helpdeskRequests counts every request to the helpdesk by endpoint and status class.
func helpdeskRequests(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "voipbridge_helpdesk_requests_total", Help: "Requests to the helpdesk, by endpoint and status class (2xx, 4xx, 5xx, error).",
	}, []string{"endpoint", "status"})
	reg.MustRegister(c)
	return c
}

// helpdeskDuration observes how long requests to the helpdesk take, by
// endpoint (registerevent, presence, conversations, messages).
func helpdeskDuration(reg prometheus.Registerer) *prometheus.HistogramVec {
	h := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "voipbridge_helpdesk_request_duration_seconds",
		Help:    "Time from sending a request to the helpdesk until its answer arrived (status and headers) or it failed, by endpoint.",
		Buckets: []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
	}, []string{"endpoint"})
	reg.MustRegister(h)
	return h
}

// statusClass is the metric label of a request's outcome.
func statusClass(err error) string {
	if err == nil {
		return "2xx"
	}
	var re *robin.Error
	if errors.As(err, &re) && re.Status > 0 {
		return strconv.Itoa(re.Status/100) + "xx"
	}
	return "error"
}

// countingSink counts register-event requests.
type countingSink struct {
	sink     events.Sink
	requests *prometheus.CounterVec
}

func newCountingSink(s events.Sink, requests *prometheus.CounterVec) *countingSink {
	return &countingSink{sink: s, requests: requests}
}

func (c *countingSink) Send(ctx context.Context, e events.Event) error {
	err := c.sink.Send(ctx, e)
	if !errors.Is(err, context.Canceled) {
		c.requests.WithLabelValues("registerevent", statusClass(err)).Inc()
	}
	return err
}
