package voipgrid

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/voipbridge/voipbridge/events"
)

// Reasons a notification is refused, the label of the rejected counter.
const (
	reasonMethod   = "method"
	reasonTooLarge = "too_large"
	reasonUnread   = "unreadable"
	reasonJSON     = "bad_json"
	reasonNoCallID = "missing_call_id"
	reasonJournal  = "journal"
	// reasonInvalid: the journal refuses the notification's signals as
	// invalid (events.ErrInvalidSignal). Also the label of the signals
	// dropped counter.
	reasonInvalid = "invalid"
)

// metrics are the handler's Prometheus series. Labels carry only fixed
// vocabularies (canonical statuses, reasons, states), never ids.
type metrics struct {
	received *prometheus.CounterVec // by canonical status ("unknown" for the rest)
	rejected *prometheus.CounterVec // by reason
	signals  *prometheus.CounterVec // by state
	sigDrops *prometheus.CounterVec // signals not journaled, by reason
	timeless prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		received: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_voipgrid_notifications_received_total",
			Help: "VoIPGRID call notifications received with a call_id, by status (unknown statuses are accepted but not journaled).",
		}, []string{"status"}),
		rejected: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_voipgrid_notifications_rejected_total",
			Help: "VoIPGRID call notifications answered with an error, by reason.",
		}, []string{"reason"}),
		signals: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_voipgrid_signals_total",
			Help: "Signals journaled from VoIPGRID call notifications, by state.",
		}, []string{"state"}),
		sigDrops: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_voipgrid_signals_dropped_total",
			Help: "Signals of VoIPGRID call notifications dropped instead of journaled, by reason (invalid: an identifier the journal refuses, such as an extension with control characters or over the length limit).",
		}, []string{"reason"}),
		timeless: f.NewCounter(prometheus.CounterOpts{
			Name: "voipbridge_voipgrid_notifications_without_timestamp_total",
			Help: "VoIPGRID call notifications whose timestamp was missing or unreadable; they were placed at their arrival time.",
		}),
	}
	for _, s := range []Status{StatusCreated, StatusRinging, StatusInProgress, StatusWarmTransfer, StatusColdTransfer, StatusEnded, StatusUnknown} {
		m.received.WithLabelValues(string(s))
	}
	for _, r := range []string{reasonMethod, reasonTooLarge, reasonUnread, reasonJSON, reasonNoCallID, reasonJournal, reasonInvalid} {
		m.rejected.WithLabelValues(r)
	}
	for _, s := range []events.State{events.Ringing, events.Answered, events.Transferred, events.Ended} {
		m.signals.WithLabelValues(string(s))
	}
	m.sigDrops.WithLabelValues(reasonInvalid)
	return m
}
