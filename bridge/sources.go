package bridge

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/pbx/webhook"
)

// sourceEnv is what the bridge hands every PBX source.
type sourceEnv struct {
	// Journal is where signals go: a source acknowledges the PBX only after
	// PublishSignal returned nil.
	Journal *events.Journal
	// Dir is the extension directory (reloaded on SIGHUP).
	Dir *extensions.Directory
	// Log is the bridge's logger.
	Log *slog.Logger
	// Registry is where a source registers its metrics.
	Registry prometheus.Registerer

	mux   *http.ServeMux
	guard *webhook.Guard
	b     *Bridge
}

// Webhook mounts h at POST /v1/webhooks/{source} and, for platforms that
// cannot set headers, POST /v1/webhooks/{source}/{token}, behind the shared
// guard (token, HMAC, address allow-list, body limit).
func (e *sourceEnv) Webhook(source string, h http.Handler, methods ...string) {
	if len(methods) == 0 {
		methods = []string{http.MethodPost}
	}
	g := e.guard.Wrap(source, h)
	for _, m := range methods {
		e.mux.Handle(m+" /v1/webhooks/"+source, g)
		e.mux.Handle(m+" /v1/webhooks/"+source+"/{token}", g)
	}
}

// Go runs f for the bridge's lifetime. f must return when ctx is cancelled
// (returning nil); an error it returns is logged and stops the bridge.
func (e *sourceEnv) Go(name string, f func(ctx context.Context) error) {
	e.b.goRun(name, f)
}

// Ready adds a readiness check shown on /readyz; nil means ready.
func (e *sourceEnv) Ready(name string, check func() error) {
	e.b.addReady(name, check)
}
