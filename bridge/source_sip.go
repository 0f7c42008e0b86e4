package bridge

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/sip"
)

// SIPConfig configures the SIP dialog-event source (package sip): one
// SUBSCRIBE (Event: dialog) per extension to the PBX at SIP_SERVER. The
// variables are those of sip.Config (SIP_SERVER, SIP_DOMAIN, SIP_TRANSPORT,
// SIP_LISTEN, SIP_CONTACT_HOST, SIP_USERNAME, SIP_PASSWORD, SIP_EXPIRES,
// SIP_EXTENSIONS, SIP_SUBSCRIBE_RATE, SIP_KEEPALIVE). The source runs when
// SIP_SERVER is set.
type SIPConfig struct {
	sip.Config
}

// validate reports nil when SIP is not configured at all, and an error when
// it is half configured or a setting is unusable.
func (c SIPConfig) validate() error {
	if !c.Enabled() {
		if c.Domain != "" || c.Transport != "" || c.ContactHost != "" || c.Username != "" || c.Password != "" || len(c.Extensions) > 0 {
			return errors.New("SIP_SERVER is empty but other SIP_ settings are set; set SIP_SERVER to monitor a PBX over SIP")
		}
		return nil
	}
	return c.Validate()
}

var sipSecrets = []string{"SIP_PASSWORD"}

// sipDirectoryPoll is how often the watched extensions follow the directory
// (EXTENSIONS, EXTENSIONS_FILE, reloaded on SIGHUP) when SIP_EXTENSIONS is
// not set.
const sipDirectoryPoll = 5 * time.Second

// startSIP starts the SIP monitor when SIP_SERVER is set. It watches
// SIP_EXTENSIONS, or else every agent of the directory that applies to the
// "sip" source, following directory reloads. /readyz reports "sip" not
// ready while no subscription is up, and says how many are.
func startSIP(ctx context.Context, c SIPConfig, env *sourceEnv) error {
	if !c.Enabled() {
		return nil
	}
	cfg := c.Config
	fromDir := len(cfg.Extensions) == 0
	if fromDir {
		cfg.Extensions = sipExtensions(env.Dir)
		if len(cfg.Extensions) == 0 {
			return errors.New("sip: SIP_EXTENSIONS is empty and EXTENSIONS/EXTENSIONS_FILE list no agents: there is nothing to watch")
		}
	}
	mon, err := sip.New(cfg, env.Journal, sip.Options{Logger: env.Log, Registerer: env.Registry})
	if err != nil {
		return err
	}
	if err := mon.Listen(); err != nil { // a taken SIP_LISTEN port stops the start, not the running bridge
		return err
	}
	env.Go("sip", mon.Run)
	if fromDir {
		env.Go("sip-directory", func(ctx context.Context) error {
			t := time.NewTicker(sipDirectoryPoll)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return nil
				case <-t.C:
				}
				exts := sipExtensions(env.Dir)
				if len(exts) == 0 || slices.Equal(exts, mon.Extensions()) {
					continue // an emptied directory keeps the last list rather than unsubscribing all
				}
				if err := mon.SetExtensions(exts); err != nil {
					env.Log.Warn("sip: directory extensions not usable", "err", err)
				}
			}
		})
	}
	env.Ready("sip", func() error {
		st := mon.Status()
		if st.Watched > 0 && st.Active == 0 {
			return fmt.Errorf("no SIP subscription is up (0 of %d, %d failing)", st.Watched, st.Failing)
		}
		return nil
	})
	env.Log.Info("SIP source configured", "sip", cfg)
	return nil
}

// sipExtensions lists the directory's PBX ids for the SIP source, sorted,
// leaving out ids that cannot be a SIP user (another source's identifiers in
// an unscoped directory).
func sipExtensions(dir *extensions.Directory) []string {
	var out []string
	for _, a := range dir.Agents(sip.SourceName) {
		if sip.ValidExtension(a.PBXID) {
			out = append(out, a.PBXID)
		}
	}
	return out
}
