package events

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the pipeline's Prometheus metrics.
type Metrics struct {
	signals    *prometheus.CounterVec
	events     *prometheus.CounterVec
	calls      prometheus.Gauge
	lagSignals prometheus.Gauge
	lagSeconds prometheus.Gauge
	deliveries *prometheus.CounterVec
	queueDepth *prometheus.GaugeVec
	oldest     *prometheus.GaugeVec
	dead       prometheus.Gauge
	paused     *prometheus.GaugeVec
}

// NewMetrics creates the pipeline metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		signals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_signals_total", Help: "Signals folded by the tracker, by source and outcome.",
		}, []string{"source", "outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_events_total", Help: "Events emitted by the tracker, by type.",
		}, []string{"type"}),
		calls: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "voipbridge_calls_tracked", Help: "Calls the tracker holds (in progress or recently ended).",
		}),
		lagSignals: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "voipbridge_tracker_lag_signals", Help: "Signals journaled but not yet folded by the tracker.",
		}),
		lagSeconds: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "voipbridge_tracker_lag_seconds", Help: "How long the oldest signal not yet folded has waited.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_deliveries_total", Help: "Delivery attempts to the helpdesk, by sink, status class and reason.",
		}, []string{"sink", "status", "reason"}),
		queueDepth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "voipbridge_queue_depth", Help: "Events waiting for delivery, by sink and priority.",
		}, []string{"sink", "priority"}),
		oldest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "voipbridge_queue_oldest_age_seconds", Help: "Age of the oldest undelivered event, by sink and priority.",
		}, []string{"sink", "priority"}),
		dead: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "voipbridge_deadletters", Help: "Events in the dead-letter stream.",
		}),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "voipbridge_delivery_paused", Help: "1 while delivery is paused, by sink and reason.",
		}, []string{"sink", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.signals, m.events, m.calls, m.lagSignals, m.lagSeconds, m.deliveries, m.queueDepth, m.oldest, m.dead, m.paused)
	}
	return m
}
