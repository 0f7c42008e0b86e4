package bridge

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/voipbridge/voipbridge/pbx/webhook"
)

// startWebhookProfiles mounts every webhook profile, built in (K2M and
// Komplit 3CX add-ons, the 3CX CRM template) and those of dir
// (WEBHOOK_PROFILES_DIR; "" adds none), at /v1/webhooks/{source} and
// /v1/webhooks/{source}/{token}, behind the shared webhook guard. A profile
// that cannot be read stops the start with an error naming its file.
func startWebhookProfiles(dir string, env *sourceEnv) error {
	ps, err := webhook.LoadProfiles(dir)
	if err != nil {
		return err
	}
	mountWebhookProfiles(ps, env.Journal, env.Log, webhook.NewProfileMetrics(env.Registry), nil, env.Webhook)
	return nil
}

// mountWebhookProfiles mounts each profile's handler with mount (the
// bridge's sourceEnv.Webhook) on the methods its encodings need; now is
// the clock for requests without a time (nil: time.Now).
func mountWebhookProfiles(ps []*webhook.Profile, j webhook.Journal, log *slog.Logger, m *webhook.ProfileMetrics,
	now func() time.Time, mount func(source string, h http.Handler, methods ...string)) {
	for _, p := range ps {
		mount(p.Source, webhook.NewProfileHandler(p, webhook.ProfileOptions{Journal: j, Logger: log, Metrics: m, Now: now}), p.Methods()...)
		log.Info("webhook profile mounted", "source", p.Source, "path", "/v1/webhooks/"+p.Source, "methods", p.Methods())
	}
}
