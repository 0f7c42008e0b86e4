package bridge

import (
	"context"
	"errors"

	"github.com/voipbridge/voipbridge/pbx/threecx"
)

// ThreeCXConfig configures the 3CX V20 Call Control source (package
// pbx/threecx). The source runs when THREECX_URL is set.
type ThreeCXConfig struct {
	// URL is the PBX's base URL, e.g. https://pbx.example.com.
	URL string `env:"THREECX_URL"`
	// ClientID is the Client ID of the API integration (Admin Console →
	// Integrations → API, with Call Control access).
	ClientID string `env:"THREECX_CLIENT_ID"`
	// ClientSecret is the integration's API key; also THREECX_CLIENT_SECRET_FILE.
	ClientSecret string `env:"THREECX_CLIENT_SECRET"`
	// QueueDNs are DNs whose participants are never agents, for DNs the API
	// lists without a type (queues, IVRs and route points it names are
	// recognised anyway).
	QueueDNs []string `env:"THREECX_QUEUE_DNS" envSeparator:","`
}

func (c ThreeCXConfig) source() threecx.Config {
	return threecx.Config{URL: c.URL, ClientID: c.ClientID, ClientSecret: c.ClientSecret, QueueDNs: c.QueueDNs}
}

// validate reports every problem, nil when no THREECX_ variable is set.
func (c ThreeCXConfig) validate() error {
	if c.URL == "" && c.ClientID == "" && c.ClientSecret == "" && len(c.QueueDNs) == 0 {
		return nil
	}
	return c.source().Validate()
}

var threecxSecrets = []string{"THREECX_CLIENT_SECRET"}

// startThreeCX starts the 3CX source when THREECX_URL is set. It follows the
// PBX for the bridge's lifetime, reconnecting on its own; /readyz reports
// "threecx" not ready while it is not connected and in sync.
func startThreeCX(ctx context.Context, c ThreeCXConfig, env *sourceEnv) error {
	if c.URL == "" {
		return nil
	}
	src, err := threecx.New(threecx.Options{
		Config:     c.source(),
		Journal:    env.Journal,
		Logger:     env.Log,
		Registerer: env.Registry,
	})
	if err != nil {
		return err
	}
	env.Go("threecx", src.Run)
	env.Ready("threecx", func() error {
		if !src.Connected() {
			return errors.New("not connected to the 3CX call control API")
		}
		return nil
	})
	env.Log.Info("3CX source configured", "threecx", c.source())
	return nil
}
