package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/robin"
)

// QuotaConfig is the share of the helpdesk's request quota the bridge may
// use, and the breaker in front of it.
type QuotaConfig struct {
	RateLimits      string        `env:"ROBIN_RATE_LIMITS" envDefault:"3/1s,180/1m,10000/1h,100000/24h"`
	Share           float64       `env:"ROBIN_QUOTA_SHARE" envDefault:"1.0"`
	PresenceReserve float64       `env:"ROBIN_PRESENCE_RESERVE" envDefault:"0.10"`
	BreakerFailures uint32        `env:"ROBIN_BREAKER_FAILURES" envDefault:"5"`
	BreakerInterval time.Duration `env:"ROBIN_BREAKER_INTERVAL" envDefault:"30s"`
	// RetryMax bounds the backoff between retries of a failing delivery.
	RetryMax time.Duration `env:"ROBIN_RETRY_MAX" envDefault:"5m"`
	// AuthProbe is how often delivery is tried while ROBIN refuses the key.
	AuthProbe time.Duration `env:"ROBIN_AUTH_PROBE" envDefault:"1m"`
}

func (c QuotaConfig) validate() error {
	var errs []error
	if _, err := robin.ParseWindows(c.RateLimits); err != nil {
		errs = append(errs, fmt.Errorf("ROBIN_RATE_LIMITS: %w", err))
	}
	if !(c.Share > 0 && c.Share <= 1) {
		errs = append(errs, fmt.Errorf("ROBIN_QUOTA_SHARE %v: want more than 0 and at most 1", c.Share))
	}
	if !(c.PresenceReserve >= 0 && c.PresenceReserve < 1) {
		errs = append(errs, fmt.Errorf("ROBIN_PRESENCE_RESERVE %v: want at least 0 and less than 1", c.PresenceReserve))
	}
	if c.BreakerFailures < 1 {
		errs = append(errs, errors.New("ROBIN_BREAKER_FAILURES: want at least 1"))
	}
	if c.BreakerInterval < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("ROBIN_BREAKER_INTERVAL %s: want at least 100ms", c.BreakerInterval))
	}
	if c.AuthProbe < 100*time.Millisecond {
		errs = append(errs, fmt.Errorf("ROBIN_AUTH_PROBE %s: want at least 100ms", c.AuthProbe))
	}
	if c.RetryMax < time.Second {
		errs = append(errs, fmt.Errorf("ROBIN_RETRY_MAX %s: want at least 1s", c.RetryMax))
	}
	return errors.Join(errs...)
}

// quotaBucket is shared by every bridge on one NATS: bridges on the same API
// key share one record, so together they stay within the key's limits.
const quotaBucket = "VOIPBRIDGE_QUOTA"

// quotaKey names the record of one API key without revealing the key.
func quotaKey(apiKey string) string {
	h := sha256.Sum256([]byte("voipbridge quota " + apiKey))
	return "key-" + hex.EncodeToString(h[:12])
}

// newQuota builds the limiter on its journal record.
func (b *Bridge) newQuota(ctx context.Context) (*robin.Quota, error) {
	windows, err := robin.ParseWindows(b.cfg.Quota.RateLimits)
	if err != nil {
		return nil, err
	}
	kv, err := b.journal.SharedKeyValue(ctx, quotaBucket, "requests started to the helpdesk, per API key", b.cfg.NATSReplicas)
	if err != nil {
		return nil, err
	}
	q, err := robin.NewQuota(ctx, robin.QuotaOptions{
		Windows: windows, Share: b.cfg.Quota.Share, PresenceReserve: b.cfg.Quota.PresenceReserve,
		Store: robin.NewKVQuotaStore(kv, quotaKey(b.cfg.RobinAPIKey)),
	})
	if err != nil {
		return nil, fmt.Errorf("quota: %w", err)
	}
	b.reg.MustRegister(&quotaCollector{q: q, labels: windowLabels(b.cfg.Quota.RateLimits)})
	return q, nil
}

// quotaCollector exports the quota's use per window at scrape time.
type quotaCollector struct {
	q *robin.Quota
	// labels name each window's length as ROBIN_RATE_LIMITS spells it
	// ("24h", or "1d" where it says 1d).
	labels map[time.Duration]string
}

// windowLabels maps each window's length in limits (ROBIN_RATE_LIMITS) to
// its spelling there, so the metrics' window label is what the operator
// configured.
func windowLabels(limits string) map[time.Duration]string {
	out := map[time.Duration]string{}
	for _, e := range strings.Split(limits, ",") {
		ws, err := robin.ParseWindows(e)
		_, per, _ := strings.Cut(e, "/")
		if err == nil && len(ws) == 1 {
			out[ws[0].Per] = strings.TrimSpace(per)
		}
	}
	return out
}

var (
	quotaUsedDesc      = prometheus.NewDesc("voipbridge_quota_used", "Requests to the helpdesk started within each rolling window.", []string{"window"}, nil)
	quotaRemainingDesc = prometheus.NewDesc("voipbridge_quota_remaining", "Requests the bridge may still start within each rolling window.", []string{"window"}, nil)
)

func (c *quotaCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- quotaUsedDesc
	ch <- quotaRemainingDesc
}

func (c *quotaCollector) Collect(ch chan<- prometheus.Metric) {
	for _, u := range c.q.Usage() {
		w, ok := c.labels[u.Window.Per]
		if !ok {
			_, w, _ = strings.Cut(u.Window.String(), "/")
		}
		ch <- prometheus.MustNewConstMetric(quotaUsedDesc, prometheus.GaugeValue, float64(u.Used), w)
		ch <- prometheus.MustNewConstMetric(quotaRemainingDesc, prometheus.GaugeValue, float64(u.Remaining), w)
	}
}

// deliveryWorkers is DELIVERY_WORKERS, or with 0 what the quota can use: a
// request holds its place in every window until ROBIN answers, so no more
// deliveries can be in flight than the smallest window's limit (3 at
// ROBIN's 3 per second). Each one in flight at a crash may be sent once
// more after the restart, so fewer workers also mean fewer repeats.
func deliveryWorkers(configured int, windows []robin.Window) int {
	if configured > 0 {
		return configured
	}
	n := 64
	for _, w := range windows {
		n = min(n, w.Limit)
	}
	return max(n, 1)
}
