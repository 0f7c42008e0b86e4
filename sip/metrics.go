package sip

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the monitor's Prometheus series. None carries an extension
// label: hundreds of extensions would make the series count explode, and the
// log says which extension is failing.
type metrics struct {
	active      prometheus.Gauge
	failing     prometheus.Gauge
	notifies    *prometheus.CounterVec
	parseErrors prometheus.Counter
	signals     prometheus.Counter
	dropped     *prometheus.CounterVec
	// keepaliveFailures counts OPTIONS keep-alives the PBX did not answer
	// (timeout or transport error); restarts counts PBX restarts the
	// keep-alive detected; restartResubs counts the subscriptions re-made
	// because of one.
	keepaliveFailures prometheus.Counter
	restarts          prometheus.Counter
	restartResubs     prometheus.Counter
}

// reasonInvalid labels signals dropped because the journal refused them as
// invalid (events.ErrInvalidSignal).
const reasonInvalid = "invalid"

// NOTIFY results, the values of the result label of
// voipbridge_sip_notifies_received_total.
const (
	resultOK           = "ok"            // handled and journaled (or nothing to journal)
	resultStale        = "stale"         // older version than already applied; dropped
	resultUnknown      = "unknown"       // no such subscription; answered 481
	resultBadEvent     = "bad_event"     // not the dialog package; answered 489
	resultParseError   = "parse_error"   // body could not be decoded; answered 200
	resultJournalError = "journal_error" // journal failed; answered 500 so the PBX retries
	resultShutdown     = "shutdown"      // monitor stopping; answered 503
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		active: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "voipbridge", Subsystem: "sip", Name: "subscriptions_active",
			Help: "Dialog-event subscriptions currently established with the PBX.",
		}),
		failing: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "voipbridge", Subsystem: "sip", Name: "subscriptions_failing",
			Help: "Watched extensions whose subscription is down and being retried.",
		}),
		notifies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "voipbridge", Subsystem: "sip", Name: "notifies_received_total",
			Help: "NOTIFY requests received, by how they were handled.",
		}, []string{"result"}),
		parseErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "voipbridge", Subsystem: "sip", Name: "parse_errors_total",
			Help: "NOTIFY bodies that were not a usable dialog-info document.",
		}),
		signals: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "voipbridge", Subsystem: "sip", Name: "signals_journaled_total",
			Help: "Call signals derived from NOTIFYs and accepted by the journal.",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "voipbridge", Subsystem: "sip", Name: "signals_dropped_total",
			Help: "Signals derived from NOTIFYs and dropped instead of journaled, by reason (invalid: the journal refuses an identifier).",
		}, []string{"reason"}),
		keepaliveFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "voipbridge", Subsystem: "sip", Name: "keepalive_failures_total",
			Help: "OPTIONS keep-alives (SIP_KEEPALIVE) the PBX did not answer: timeouts and transport errors.",
		}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "voipbridge", Subsystem: "sip", Name: "pbx_restarts_total",
			Help: "PBX restarts noticed by the keep-alive (it answered again after not answering, or it closed our TCP/TLS connection).",
		}),
		restartResubs: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "voipbridge", Subsystem: "sip", Name: "restart_resubscriptions_total",
			Help: "Subscriptions re-made at once because the keep-alive noticed a PBX restart.",
		}),
	}
	m.dropped.WithLabelValues(reasonInvalid)
	for _, r := range []string{resultOK, resultStale, resultUnknown, resultBadEvent, resultParseError, resultJournalError, resultShutdown} {
		m.notifies.WithLabelValues(r) // export every result from the start
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.active, m.failing, m.notifies, m.parseErrors, m.signals, m.dropped,
		m.keepaliveFailures, m.restarts, m.restartResubs} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("sip: metrics already registered (one monitor per registry)")
			}
			return nil, err
		}
	}
	return m, nil
}
