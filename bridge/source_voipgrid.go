package bridge

import (
	"context"

	"github.com/voipbridge/voipbridge/pbx/voipgrid"
)

// VoIPGRIDConfig configures the Voys / VoIPGRID call notifications (package
// pbx/voipgrid): with VOIPGRID_ENABLED=true the bridge takes them at
// POST /v1/webhooks/voipgrid, behind the shared webhook guard. The platform
// cannot set headers, so its URL carries the token as the last path segment
// (/v1/webhooks/voipgrid/<WEBHOOK_TOKEN>).
type VoIPGRIDConfig struct {
	Enabled bool `env:"VOIPGRID_ENABLED" envDefault:"false"`
}

// validate has nothing to check: the webhook's token, signature and address
// settings belong to the shared guard.
func (c VoIPGRIDConfig) validate() error { return nil }

var voipgridSecrets = []string{}

// startVoIPGRID mounts the call-notification handler when VOIPGRID_ENABLED
// is set. It answers the platform only after the signals are journaled.
func startVoIPGRID(ctx context.Context, c VoIPGRIDConfig, env *sourceEnv) error {
	if !c.Enabled {
		return nil
	}
	h, err := voipgrid.New(voipgrid.Options{
		Journal:    env.Journal,
		Logger:     env.Log,
		Registerer: env.Registry,
	})
	if err != nil {
		return err
	}
	env.Webhook(voipgrid.SourceName, h)
	env.Log.Info("VoIPGRID call notifications accepted", "path", voipgrid.Path)
	return nil
}
