package board

import (
	"slices"
	"time"
)

// chartMinutes is how far back the chart goes: one bucket per minute.
const chartMinutes = 60

// maxSamples bounds the latencies kept per minute. ROBIN takes at most 180
// requests a minute, so this keeps every one at its limits; beyond it the
// first ones of the minute stand for the rest.
const maxSamples = 512

// minute is one bucket of the chart's ring.
type minute struct {
	at        int64 // Unix minute; 0 for a bucket never used
	events    int   // events journaled
	delivered int
	failed    int      // attempts that failed (retried, dead-lettered, refused)
	samples   []uint32 // delivery latencies in microseconds (journaled to accepted)
	dirty     bool     // samples changed since p50/p95 were computed
	p50, p95  float64  // milliseconds
}

// chart is a ring of the last chartMinutes minutes. Not safe for concurrent
// use: the board holds its lock.
type chart struct {
	buckets [chartMinutes]minute
}

func (c *chart) bucket(now time.Time) *minute {
	m := now.Unix() / 60
	b := &c.buckets[m%chartMinutes]
	if b.at != m {
		*b = minute{at: m, samples: b.samples[:0]}
	}
	return b
}

func (c *chart) addEvents(now time.Time, n int) { c.bucket(now).events += n }

func (c *chart) addDelivered(now time.Time, latency time.Duration) {
	b := c.bucket(now)
	b.delivered++
	if len(b.samples) < maxSamples {
		b.samples = append(b.samples, uint32(min(latency.Microseconds(), 1<<32-1)))
		b.dirty = true
	}
}

func (c *chart) addFailed(now time.Time) { c.bucket(now).failed++ }

// Minute is one minute of the chart as the board sends it.
type Minute struct {
	// At is the minute's start (Unix seconds).
	At        int64 `json:"t"`
	Events    int   `json:"events,omitempty"`
	Delivered int   `json:"delivered,omitempty"`
	Failed    int   `json:"failed,omitempty"`
	// P50 and P95 are the delivery latency (from the event being journaled
	// to the helpdesk's acceptance) in milliseconds, 0 without deliveries.
	P50 float64 `json:"p50,omitempty"`
	P95 float64 `json:"p95,omitempty"`
}

// minutes returns the last chartMinutes minutes up to now, oldest first,
// with empty minutes included so the chart's x axis is time.
func (c *chart) minutes(now time.Time) []Minute {
	cur := now.Unix() / 60
	out := make([]Minute, 0, chartMinutes)
	for m := cur - chartMinutes + 1; m <= cur; m++ {
		b := &c.buckets[((m%chartMinutes)+chartMinutes)%chartMinutes]
		x := Minute{At: m * 60}
		if b.at == m {
			if b.dirty {
				b.p50, b.p95 = quantiles(b.samples)
				b.dirty = false
			}
			x.Events, x.Delivered, x.Failed, x.P50, x.P95 = b.events, b.delivered, b.failed, b.p50, b.p95
		}
		out = append(out, x)
	}
	return out
}

// quantiles returns the median and the 95th percentile of samples
// (microseconds) in milliseconds, by the nearest-rank method.
func quantiles(samples []uint32) (p50, p95 float64) {
	if len(samples) == 0 {
		return 0, 0
	}
	s := slices.Clone(samples)
	slices.Sort(s)
	rank := func(q float64) float64 {
		i := int(q*float64(len(s))+0.999999) - 1
		return float64(s[max(min(i, len(s)-1), 0)]) / 1000
	}
	return rank(0.50), rank(0.95)
}
