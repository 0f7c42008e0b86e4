package voipgrid

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/voipbridge/voipbridge/events"
)

// Path is where the bridge serves the handler.
const Path = "/v1/webhooks/voipgrid"

// DefaultMaxBody is the largest notification accepted (64 KiB); a larger
// body is answered 413.
const DefaultMaxBody = 64 << 10

// Journal stores signals durably. PublishSignal returns nil only once the
// signal is journaled; the handler answers the platform only after that.
type Journal interface {
	PublishSignal(ctx context.Context, s events.Signal) error
}

// Options is what a Handler needs. Journal is required.
type Options struct {
	Journal Journal
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Registerer receives the handler's metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock for notifications without a timestamp (default
	// time.Now).
	Now func() time.Time
	// MaxBody bounds a notification (default DefaultMaxBody).
	MaxBody int64
}

// Handler is the http.Handler for POST /v1/webhooks/voipgrid. It journals
// the signals of every notification with a known status before it answers
// 200; a notification with an unknown status is answered 202 and only
// logged and counted, so the platform never retries or disables the hook
// over a status the bridge does not know. A signal the journal refuses as
// invalid is dropped, logged and counted, never answered 503: no retry
// could make it valid. Authentication is the job of the
// wrapper the bridge puts in front of it.
type Handler struct {
	journal Journal
	log     *slog.Logger
	m       *metrics
	now     func() time.Time
	maxBody int64
}

// New returns a Handler, or an error when the options are unusable.
func New(o Options) (*Handler, error) {
	if o.Journal == nil {
		return nil, errors.New("voipgrid: no journal")
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	h := &Handler{
		journal: o.Journal,
		log:     log.With("source", SourceName),
		m:       newMetrics(o.Registerer),
		now:     now,
		maxBody: cmpOr(o.MaxBody, DefaultMaxBody),
	}
	return h, nil
}

func cmpOr[T int | int64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// ServeHTTP answers one notification:
//   - 200 {"signals": n} once its n signals are journaled;
//   - 200 {"signals": n, "dropped": [{"field": ..., "problem": ...}]}
//     when n of its signals were journaled and the others would be invalid
//     (an extension with control characters, say): those are dropped;
//   - 202 {"ignored": ...} for a status the bridge does not know;
//   - 400 {"error": ...} for malformed JSON or a missing call_id, and
//     400 {"error": ..., "field": ...} when none of its signals could be
//     journaled because they would be invalid (a call_id with control
//     characters or over events.MaxIDBytes, say): a retry cannot help;
//   - 405 for another method, 413 for a body over the limit;
//   - 503 {"error": ...} when the journal failed (the platform may retry;
//     the same notification gives the same dedup keys).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		h.m.rejected.WithLabelValues(reasonMethod).Inc()
		w.Header().Set("Allow", http.MethodPost)
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "only POST is accepted"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.maxBody))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			h.refuse(w, http.StatusRequestEntityTooLarge, reasonTooLarge, fmt.Sprintf("body is larger than %d bytes", h.maxBody))
			return
		}
		h.refuse(w, http.StatusBadRequest, reasonUnread, "could not read the body")
		return
	}
	n, err := Decode(body)
	switch {
	case errors.Is(err, ErrNoCallID):
		h.refuse(w, http.StatusBadRequest, reasonNoCallID, "call_id is missing")
		return
	case err != nil:
		h.refuse(w, http.StatusBadRequest, reasonJSON, err.Error())
		return
	}
	// Every signal would carry the call id: one the journal refuses makes the
	// whole notification unusable. Checked before it names a remembered call
	// or reaches a log line.
	if p := events.CheckText(n.CallID, events.MaxIDBytes); p != "" {
		h.refuseInvalid(w, &events.FieldError{Field: "call_id", Problem: p}, "", 0)
		return
	}
	status := ParseStatus(n.Status)
	h.m.received.WithLabelValues(string(status)).Inc()
	if status == StatusUnknown {
		h.log.Warn("notification with an unknown status accepted and not journaled",
			"call_id", clip(n.CallID), "status", clip(n.Status))
		writeJSON(w, http.StatusAccepted, ignoredBody{Ignored: "unknown status", Status: clip(n.Status)})
		return
	}
	now := h.now()
	t, timed := newNote(n, status, body, now)
	if !timed {
		h.m.timeless.Inc()
		h.log.Warn("notification without a readable timestamp placed at its arrival",
			"call_id", clip(n.CallID), "status", string(status))
	}

	// Each notification is translated on its own: the tracker places it
	// among the call's others by its timestamp, whatever the order of
	// arrival.
	sigs := t.signals()
	// A signal the journal refuses as invalid (an extension that is not
	// printable or too long, a dedup key over the limit) is dropped: the
	// platform would send the same body again, and it would fail the same
	// way. If nothing of the notification could be journaled, it is refused
	// with 400 naming the field; otherwise the signals that were journaled
	// stand and the answer is 200 with the dropped fields listed, so that the platform neither retries it nor loses its good
	// part.
	journaled := 0
	var dropped []*events.FieldError
	for _, s := range sigs {
		err := h.journal.PublishSignal(r.Context(), s)
		if errors.Is(err, events.ErrInvalidSignal) {
			h.m.sigDrops.WithLabelValues(reasonInvalid).Inc()
			fe, ok := errors.AsType[*events.FieldError](err)
			if !ok {
				fe = &events.FieldError{Problem: err.Error()}
			}
			dropped = append(dropped, fe)
			continue
		}
		if err != nil {
			h.m.rejected.WithLabelValues(reasonJournal).Inc()
			h.log.Error("journal refused a signal; answering 503",
				"call_id", clip(n.CallID), "status", string(status), "err", err)
			writeJSON(w, http.StatusServiceUnavailable, errorBody{Error: "journal unavailable, retry later"})
			return
		}
		h.m.signals.WithLabelValues(string(s.State)).Inc()
		journaled++
	}
	if len(dropped) > 0 && journaled == 0 {
		h.refuseInvalid(w, dropped[0], n.CallID, len(dropped))
		return
	}
	ans := acceptedBody{Signals: journaled}
	if len(dropped) > 0 {
		h.log.Warn("notification signals dropped: the journal refuses them as invalid",
			"call_id", clip(n.CallID), "status", string(status), "reason", reasonInvalid,
			"field", dropped[0].Field, "problem", dropped[0].Problem, "dropped", len(dropped), "signals", journaled)
		for _, fe := range dropped {
			ans.Dropped = append(ans.Dropped, fieldProblem{fe.Field, fe.Problem})
		}
	}
	writeJSON(w, http.StatusOK, ans)
}

func (h *Handler) refuse(w http.ResponseWriter, status int, reason, msg string) {
	h.m.rejected.WithLabelValues(reason).Inc()
	h.log.Warn("notification refused", "status", status, "reason", reason)
	writeJSON(w, status, errorBody{Error: msg})
}

// refuseInvalid answers 400 for a notification none of whose signals the
// journal can take; fe names the first field at fault, signals counts the
// signals dropped. The log line names the field and the problem, never the
// value; callID is logged only when it is usable (not empty).
func (h *Handler) refuseInvalid(w http.ResponseWriter, fe *events.FieldError, callID string, signals int) {
	h.m.rejected.WithLabelValues(reasonInvalid).Inc()
	args := []any{"status", http.StatusBadRequest, "reason", reasonInvalid,
		"field", fe.Field, "problem", fe.Problem, "dropped", signals}
	if callID != "" {
		args = append(args, "call_id", clip(callID))
	}
	h.log.Warn("notification refused: the journal refuses its signals as invalid", args...)
	writeJSON(w, http.StatusBadRequest, errorBody{Error: fe.Error(), Field: fe.Field})
}

type errorBody struct {
	Error string `json:"error"`
	// Field names the field at fault when a signal of the notification
	// would be invalid.
	Field string `json:"field,omitempty"`
}

type fieldProblem struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

type ignoredBody struct {
	Ignored string `json:"ignored"`
	Status  string `json:"status"`
}

type acceptedBody struct {
	Signals int `json:"signals"`
	// Dropped lists the signals of the notification the journal refused as
	// invalid, by field.
	Dropped []fieldProblem `json:"dropped,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// clip bounds a string from the request before it reaches a log line.
func clip(s string) string {
	const max = 80
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
