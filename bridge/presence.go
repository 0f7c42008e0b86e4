package bridge

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/robin"
)

// STUB, owned by the presence work (issue 6): replace PresenceConfig,
// its validate method and startPresence; keep their names and presenceEnv's
// fields (add fields if needed).
//
// PresenceConfig is read from the environment with caarlos0/env tags; it is
// Config.Presence.
type PresenceConfig struct{}

func (c PresenceConfig) validate() error { return nil }

// presenceEnv is what the bridge hands the presence look-ups.
type presenceEnv struct {
	// Client asks ROBIN's presence endpoint (Client.Presence).
	Client *robin.Client
	// Quota must be reserved (robin.PriorityPresence) before every request to ROBIN.
	Quota *robin.Quota
	// Breaker must Allow every request to ROBIN and be told its outcome.
	Breaker *robin.Breaker
	// Numbers normalises a phone-number referrer to E.164.
	Numbers *phone.Normalizer
	// Requests counts requests to ROBIN: Requests.WithLabelValues("presence", statusClass(err)).Inc().
	Requests *prometheus.CounterVec
	Registry prometheus.Registerer
	Log      *slog.Logger
	// Mux is the bridge's HTTP mux: mount GET /v1/presence on it.
	Mux *http.ServeMux
	b   *Bridge
}

// Go runs f for the bridge's lifetime (for cache warming); f returns nil on ctx cancellation.
func (e *presenceEnv) Go(name string, f func(ctx context.Context) error) { e.b.goRun(name, f) }

func startPresence(ctx context.Context, c PresenceConfig, env *presenceEnv) error { return nil }
