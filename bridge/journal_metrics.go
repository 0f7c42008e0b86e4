package bridge

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/events"
)

// journalCollector exports the journal's size and its disk's free space at
// scrape time.
type journalCollector struct{ j *events.Journal }

var (
	journalBytesDesc = prometheus.NewDesc("voipbridge_journal_bytes", "Bytes held by each of the journal's streams.", []string{"stream"}, nil)
	journalFreeDesc  = prometheus.NewDesc("voipbridge_journal_disk_free_bytes", "Free space on the embedded journal's disk; intake stops below JOURNAL_MIN_FREE.", nil, nil)
)

func (c *journalCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- journalBytesDesc
	ch <- journalFreeDesc
}

func (c *journalCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if sizes, err := c.j.StreamBytes(ctx); err == nil {
		for name, n := range sizes {
			ch <- prometheus.MustNewConstMetric(journalBytesDesc, prometheus.GaugeValue, float64(n), name)
		}
	}
	if free, ok := c.j.DiskFree(); ok {
		ch <- prometheus.MustNewConstMetric(journalFreeDesc, prometheus.GaugeValue, float64(free))
	}
}
