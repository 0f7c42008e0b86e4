package xelion

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/voipbridge/voipbridge/events"
)

// typeOther labels messages that are not call notifications.
const typeOther = "other"

// reasonInvalid labels signals dropped because the journal refused them as
// invalid (events.ErrInvalidSignal).
const reasonInvalid = "invalid"

// Session requests, the label of the session counter.
const (
	reqLogin     = "login"
	reqRenew     = "renew"
	reqWebsocket = "websocket"
	reqLogout    = "logout"
)

// metrics are the source's Prometheus series. Labels carry only fixed
// vocabularies (notification types, reasons, states), never ids or secrets.
type metrics struct {
	received   *prometheus.CounterVec // by notification type
	dropped    *prometheus.CounterVec // by reason
	signals    *prometheus.CounterVec // by state
	sigDrops   *prometheus.CounterVec // signals not journaled, by reason
	session    *prometheus.CounterVec // by request and result
	reconnects prometheus.Counter
	connected  prometheus.Gauge
	// resync counts readings of the running calls after a (re)connect, by
	// result; resyncEnded the calls they ended.
	resync      *prometheus.CounterVec
	resyncEnded prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	m := &metrics{
		received: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_xelion_messages_received_total",
			Help: "Xelion WebSocket messages received, by notification type (other: not a call notification).",
		}, []string{"type"}),
		dropped: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_xelion_messages_dropped_total",
			Help: "Xelion messages that gave no signal, by reason (bad_json, duplicate, consultation, ...).",
		}, []string{"reason"}),
		signals: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_xelion_signals_total",
			Help: "Signals journaled from Xelion, by state.",
		}, []string{"state"}),
		sigDrops: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_xelion_signals_dropped_total",
			Help: "Signals translated from Xelion and dropped instead of journaled, by reason (invalid: an identifier the journal refuses, such as a call id with control characters or over the length limit).",
		}, []string{"reason"}),
		session: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_xelion_session_requests_total",
			Help: "Xelion session requests (login, renew, websocket, logout), by result (ok, error).",
		}, []string{"request", "result"}),
		reconnects: f.NewCounter(prometheus.CounterOpts{
			Name: "voipbridge_xelion_reconnects_total",
			Help: "Attempts to reconnect to the Xelion WebSocket after a lost or failed connection.",
		}),
		connected: f.NewGauge(prometheus.GaugeOpts{
			Name: "voipbridge_xelion_connected",
			Help: "1 while the Xelion WebSocket is open and subscribed, else 0.",
		}),
		resync: f.NewCounterVec(prometheus.CounterOpts{
			Name: "voipbridge_xelion_resync_total",
			Help: "Readings of the running calls (GET communications/active_channels) after a (re)connect, by result (ok; error: not read; unmatched: names no call the source knows, not used).",
		}, []string{"result"}),
		resyncEnded: f.NewCounter(prometheus.CounterOpts{
			Name: "voipbridge_xelion_resync_ended_calls_total",
			Help: "Calls ended because they were no longer running on Xelion after a (re)connect: their hang-up was missed while disconnected.",
		}),
	}
	for _, t := range append([]string{typeOther}, Subscriptions...) {
		m.received.WithLabelValues(t)
	}
	for _, r := range []string{reasonJSON, reasonNoType, reasonUnknownType, reasonNoCallID, reasonDuplicate,
		reasonUnknownCall, reasonNoParty, reasonNoTarget, reasonAfterEnd, reasonNoChange, reasonTransfer} {
		m.dropped.WithLabelValues(r)
	}
	for _, s := range []events.State{events.Ringing, events.Answered, events.Transferred, events.Ended} {
		m.signals.WithLabelValues(string(s))
	}
	m.sigDrops.WithLabelValues(reasonInvalid)
	for _, r := range []string{resyncOK, resyncError, resyncUnmatched} {
		m.resync.WithLabelValues(r)
	}
	return m
}
