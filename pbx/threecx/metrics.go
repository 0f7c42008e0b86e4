package threecx

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// reasonInvalid labels signals dropped because the journal refused them as
// invalid (events.ErrInvalidSignal).
const reasonInvalid = "invalid"

// metrics are the source's Prometheus series. Labels carry only fixed
// vocabularies (message types, reasons, states), never ids or secrets.
type metrics struct {
	received   *prometheus.CounterVec // by message type
	processed  prometheus.Counter
	dropped    *prometheus.CounterVec // by reason
	signals    *prometheus.CounterVec // by state
	sigDrops   *prometheus.CounterVec // signals not journaled, by reason
	resyncs    *prometheus.CounterVec // by reason
	reconnects prometheus.Counter
	tokens     prometheus.Counter
	connected  prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		received: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_threecx_messages_received_total",
			Help: "3CX Call Control WebSocket messages received, by event type.",
		}, []string{"type"}),
		processed: f.NewCounter(prometheus.CounterOpts{
			Name: "voipbridge_threecx_messages_processed_total",
			Help: "3CX WebSocket messages completely handled: their signals journaled, or dropped as unusable.",
		}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_threecx_messages_dropped_total",
			Help: "3CX messages and payloads that could not be used, by reason.",
		}, []string{"reason"}),
		signals: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_threecx_signals_total",
			Help: "Signals journaled from 3CX, by state.",
		}, []string{"state"}),
		sigDrops: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_threecx_signals_dropped_total",
			Help: "Signals derived from 3CX and dropped instead of journaled, by reason (invalid: an identifier the journal refuses, such as a callid with control characters or over the length limit).",
		}, []string{"reason"}),
		resyncs: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_threecx_snapshots_total",
			Help: "Full GET /callcontrol snapshots taken, by reason (connect, sequence_gap, fetch_failed).",
		}, []string{"reason"}),
		reconnects: f.NewCounter(prometheus.CounterOpts{
			Name: "voipbridge_threecx_reconnects_total",
			Help: "Attempts to reconnect to the 3CX Call Control API after a lost or failed connection.",
		}),
		tokens: f.NewCounter(prometheus.CounterOpts{
			Name: "voipbridge_threecx_token_requests_total",
			Help: "OAuth2 access tokens requested from 3CX.",
		}),
		connected: f.NewGauge(prometheus.GaugeOpts{
			Name: "voipbridge_threecx_connected",
			Help: "1 while the 3CX Call Control WebSocket is connected and in sync, else 0.",
		}),
	}
	for _, t := range []EventType{EventUpsert, EventRemove, EventDTMF, EventPromptPlaybackFinished, EventResponse, -1} {
		m.received.WithLabelValues(t.String())
	}
	for _, r := range []string{reasonJSON, reasonNoEvent, reasonNoEntity, reasonUnknownType, reasonBadEntity, reasonParticipant, reasonSnapshot} {
		m.dropped.WithLabelValues(r)
	}
	m.sigDrops.WithLabelValues(reasonInvalid)
	return m
}
