package bridge

import (
	"context"
	"errors"

	"github.com/voipbridge/voipbridge/pbx/xelion"
)

// XelionConfig configures the Xelion source (package pbx/xelion). The source
// runs when XELION_URL is set. Xelion sends call events to admin sessions
// only, so the account must be an admin. The directory should map Xelion
// identifiers (the users' OIDs) to ROBIN extensions in EXTENSIONS.
type XelionConfig struct {
	// URL is the Xelion server, e.g. https://xelion.example.com.
	URL string `env:"XELION_URL"`
	// Tenant is the tenant, "master" on a single-tenant server.
	Tenant string `env:"XELION_TENANT" envDefault:"master"`
	// Username and Password are of an admin account; the password also
	// as XELION_PASSWORD_FILE.
	Username string `env:"XELION_USERNAME"`
	Password string `env:"XELION_PASSWORD"`
	// UserSpace names the bridge's session (default voipbridge-<hostname>).
	UserSpace string `env:"XELION_USERSPACE"`
	// TimeZone is the server's zone, for token expiry times it sends
	// without a zone.
	TimeZone string `env:"XELION_TIMEZONE" envDefault:"Europe/Amsterdam"`
}

func (c XelionConfig) source() xelion.Config {
	return xelion.Config{
		URL: c.URL, Tenant: c.Tenant, Username: c.Username, Password: c.Password,
		UserSpace: c.UserSpace, TimeZone: c.TimeZone,
	}
}

// validate reports every problem, nil when no XELION_ connection setting
// is given (the tenant and time zone have defaults).
func (c XelionConfig) validate() error {
	if c.URL == "" && c.Username == "" && c.Password == "" && c.UserSpace == "" {
		return nil
	}
	return c.source().Validate()
}

var xelionSecrets = []string{"XELION_PASSWORD"}

// startXelion starts the Xelion source when XELION_URL is set. It follows
// the tenant for the bridge's lifetime, reconnecting on its own; /readyz
// reports "xelion" not ready while its WebSocket is not open.
func startXelion(ctx context.Context, c XelionConfig, env *sourceEnv) error {
	if c.URL == "" {
		return nil
	}
	src, err := xelion.New(xelion.Options{
		Config:     c.source(),
		Journal:    env.Journal,
		Logger:     env.Log,
		Registerer: env.Registry,
	})
	if err != nil {
		return err
	}
	env.Go("xelion", src.Run)
	env.Ready("xelion", func() error {
		if !src.Connected() {
			return errors.New("not connected to the Xelion WebSocket")
		}
		return nil
	})
	if env.Dir.Open() {
		env.Log.Warn("the Xelion source reports users by their Xelion OID; without EXTENSIONS every OID is sent to the helpdesk as an extension")
	}
	env.Log.Info("Xelion source configured", "xelion", c.source())
	return nil
}
