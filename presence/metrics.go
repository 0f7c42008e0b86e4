package presence

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Result says where a look-up's answer came from; it is the result label of
// voipbridge_presence_lookups_total.
type Result string

// The results of a look-up.
const (
	// ResultHit is an answer from the cache, within its TTL.
	ResultHit Result = "hit"
	// ResultMiss is an answer ROBIN gave while the caller waited (the
	// caller's own request or one it shared).
	ResultMiss Result = "miss"
	// ResultStale is an earlier answer served because ROBIN could not be
	// asked or did not answer in time.
	ResultStale Result = "stale"
	// ResultFallback is the configured fallback (Online or Offline).
	ResultFallback Result = "fallback"
	// ResultError is a 503: nothing usable known and PRESENCE_FALLBACK=error.
	ResultError Result = "error"
	// ResultInvalid is a look-up refused before the cache: an unknown
	// channel or an unusable referrer (400).
	ResultInvalid Result = "invalid"
)

var results = [...]Result{ResultHit, ResultMiss, ResultStale, ResultFallback, ResultError, ResultInvalid}

func (r Result) index() int {
	switch r {
	case ResultHit:
		return 0
	case ResultMiss:
		return 1
	case ResultStale:
		return 2
	case ResultFallback:
		return 3
	case ResultError:
		return 4
	}
	return 5
}

// metrics are the cache's Prometheus collectors, with the label values
// resolved once (indexed like results) so that a cache hit costs no label
// look-up.
type metrics struct {
	lookups [len(results)]prometheus.Counter
	latency [len(results)]prometheus.Observer
	robin   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, entries func() float64) *metrics {
	lookups := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "voipbridge_presence_lookups_total",
		Help: "Presence look-ups by result: hit (cache), miss (asked ROBIN), stale, fallback, error (503), invalid (400).",
	}, []string{"result"})
	latency := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "voipbridge_presence_lookup_duration_seconds",
		Help:    "Time to answer a presence look-up, by result.",
		Buckets: []float64{.0001, .0005, .001, .005, .01, .05, .1, .25, .5, 1, 2, 5},
	}, []string{"result"})
	robinLatency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "voipbridge_presence_robin_duration_seconds",
		Help:    "Duration of requests to ROBIN's presence endpoint, whatever their outcome.",
		Buckets: prometheus.DefBuckets,
	})
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "voipbridge_presence_cache_entries",
		Help: "Keys (channel, referrer) the presence cache holds.",
	}, entries)
	if reg != nil {
		reg.MustRegister(lookups, latency, robinLatency, size)
	}
	m := &metrics{robin: robinLatency}
	for i, r := range results {
		m.lookups[i] = lookups.WithLabelValues(string(r))
		m.latency[i] = latency.WithLabelValues(string(r))
	}
	return m
}

func (m *metrics) lookup(r Result, start time.Time) {
	i := r.index()
	m.lookups[i].Inc()
	m.latency[i].Observe(time.Since(start).Seconds())
}
