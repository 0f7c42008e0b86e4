package route

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of one resolver in a flight: the outcome label of
// voipbridge_route_lookups_total.
const (
	OutcomeHit     = "hit"
	OutcomeNone    = "none"
	OutcomeTimeout = "timeout"
	OutcomeError   = "error"
)

// metrics are the router's Prometheus collectors.
type metrics struct {
	resolvers *prometheus.CounterVec
	answers   *prometheus.CounterVec
	latencies *prometheus.HistogramVec
	cacheHits prometheus.Counter
	names     []string
	// The children of answers and latency, resolved once so that a cache
	// hit costs no label look-up: keyed by label values.
	answerOf  map[answerKey]prometheus.Counter
	latencyOf map[Result]prometheus.Observer
}

type answerKey struct {
	via    string
	result Result
}

var allResults = []Result{ResultHit, ResultCached, ResultStale, ResultNone, ResultTimeout, ResultError, ResultInvalid}

func newMetrics(reg prometheus.Registerer, names []string, entries func() float64) *metrics {
	m := &metrics{
		resolvers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_route_lookups_total",
			Help: "Routing look-ups by resolver and outcome: hit (found an agent), none, timeout (no answer before a look-up's deadline, or the request timed out), error.",
		}, []string{"resolver", "outcome"}),
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_route_answers_total",
			Help: "Answers of GET /v1/route by the resolver that found the agent (\"\" for none) and result: hit, cached, stale, none, timeout, error, invalid.",
		}, []string{"via", "result"}),
		latencies: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "voipbridge_route_lookup_duration_seconds",
			Help:    "Time to answer a routing look-up, by result.",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .25, .5, 1, 1.5, 2, 5},
		}, []string{"result"}),
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "voipbridge_route_cache_hits_total",
			Help: "Routing look-ups answered from the cache (an agent or none).",
		}),
		names: names,
	}
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "voipbridge_route_cache_entries",
		Help: "Callers the routing cache holds.",
	}, entries)
	if reg != nil {
		reg.MustRegister(m.resolvers, m.answers, m.latencies, m.cacheHits, size)
	}
	m.answerOf = map[answerKey]prometheus.Counter{}
	m.latencyOf = map[Result]prometheus.Observer{}
	for _, res := range allResults {
		m.latencyOf[res] = m.latencies.WithLabelValues(string(res))
		for _, via := range append([]string{""}, names...) {
			m.answerOf[answerKey{via, res}] = m.answers.WithLabelValues(via, string(res))
		}
	}
	for _, n := range names {
		for _, o := range []string{OutcomeHit, OutcomeNone, OutcomeTimeout, OutcomeError} {
			m.resolvers.WithLabelValues(n, o)
		}
	}
	return m
}

func (m *metrics) answer(a Answer, start time.Time) {
	via := a.Via
	if a.Extension == "" {
		via = ""
	}
	m.answerOf[answerKey{via, a.Result}].Inc()
	m.latencyOf[a.Result].Observe(time.Since(start).Seconds())
	if a.Result == ResultCached {
		m.cacheHits.Inc()
	}
}

// resolved counts a resolver's outcome.
func (m *metrics) resolved(name string, err error) {
	o := OutcomeError
	switch {
	case err == nil:
		o = OutcomeHit
	case errors.Is(err, ErrNoMatch):
		o = OutcomeNone
	case isTimeout(err):
		o = OutcomeTimeout
	}
	m.resolvers.WithLabelValues(name, o).Inc()
}

// leftOut counts, as timeouts, the resolvers still out when the first
// look-up sharing the flight ran out of time; once per flight.
func (m *metrics) leftOut(f *flight) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.leftOut {
		return
	}
	f.leftOut = true
	for i, o := range f.outs {
		if f.started[i] && !o.done {
			m.resolvers.WithLabelValues(m.names[i], OutcomeTimeout).Inc()
		}
	}
}
