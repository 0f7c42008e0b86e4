package bridge

import (
	"cmp"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/voipbridge/voipbridge/events"
)

// mountAdmin adds the admin endpoints, on the admin listener when
// ADMIN_ADDR is set; without ADMIN_TOKEN they are not mounted at all (404).
func (b *Bridge) mountAdmin() {
	if b.cfg.AdminToken == "" {
		return
	}
	b.edge.admin.Handle("GET /v1/deadletters", b.admin(b.listDeadLetters))
	b.edge.admin.Handle("POST /v1/deadletters/replay", b.admin(b.replayAll))
	b.edge.admin.Handle("POST /v1/deadletters/{id}/replay", b.admin(b.replayOne))
	b.edge.admin.Handle("GET /v1/signals/recent", b.admin(func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{"signals": b.tracker.Recent()})
	}))
}

func (b *Bridge) admin(h http.HandlerFunc) http.Handler {
	want := []byte(b.cfg.AdminToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") || subtle.ConstantTimeCompare([]byte(strings.TrimSpace(tok)), want) != 1 {
			b.log.Warn("admin request refused: missing or wrong token", "path", r.URL.Path, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong admin token"})
			return
		}
		h(w, r)
	})
}

func (b *Bridge) listDeadLetters(w http.ResponseWriter, r *http.Request) {
	limit := 0
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "limit must be a whole number"})
			return
		}
		limit = n
	}
	all, err := b.journal.DeadLetters(r.Context(), limit)
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		return
	}
	type item struct {
		ID     uint64       `json:"id"`
		CallID string       `json:"call_id"`
		Event  events.Event `json:"event"`
		Sink   string       `json:"sink"` // where a replay sends it
		Status int          `json:"status,omitempty"`
		Body   string       `json:"body,omitempty"`
		Reason string       `json:"reason"`
		Time   string       `json:"time"`
	}
	out := make([]item, 0, len(all))
	for _, dl := range all {
		out = append(out, item{dl.ID, dl.Envelope.Event.ID, dl.Envelope.Event, cmp.Or(dl.Sink, "robin"), dl.Status, dl.Body, dl.Reason, dl.Time.Format("2006-01-02T15:04:05Z07:00")})
	}
	writeJSON(w, http.StatusOK, map[string]any{"deadletters": out})
}

func (b *Bridge) replayOne(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "id must be a dead letter's number"})
		return
	}
	if err := b.journal.ReplayDeadLetter(r.Context(), id); err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, events.ErrNoDeadLetter) {
			status = http.StatusNotFound
		}
		writeJSON(w, status, map[string]string{"error": err.Error()})
		return
	}
	b.log.Info("dead letter replayed", "id", id)
	writeJSON(w, http.StatusOK, map[string]any{"replayed": 1})
}

func (b *Bridge) replayAll(w http.ResponseWriter, r *http.Request) {
	n, err := b.journal.ReplayDeadLetters(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"error": err.Error(), "replayed": n})
		return
	}
	b.log.Info("dead letters replayed", "count", n)
	writeJSON(w, http.StatusOK, map[string]any{"replayed": n})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
