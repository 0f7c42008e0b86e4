package bridge

import (
	"fmt"
	"strings"

	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/phone"
)

// Check validates what start-up would read, without opening the journal or
// the network: the configuration (already loaded), the number settings and
// the extension directory. It returns a short summary for a person.
func Check(cfg Config) (string, error) {
	if _, err := phone.New(phone.Options{Region: cfg.PhoneRegion, OutsideLinePrefix: cfg.OutsideLinePrefix, InternalMaxDigits: cfg.InternalMaxDigits}); err != nil {
		return "", fmt.Errorf("PHONE_REGION/OUTSIDE_LINE_PREFIX: %w", err)
	}
	dir, err := extensions.Load(cfg.Extensions, cfg.ExtensionsFile)
	if err != nil {
		return "", fmt.Errorf("extensions: %w", err)
	}
	var b strings.Builder
	journal := "embedded in " + cfg.DataDir
	if cfg.NATSURL != "" {
		journal = "external NATS"
	}
	if cfg.JournalName != "" {
		journal += ", journal " + cfg.JournalName
	}
	fmt.Fprintf(&b, "journal:    %s\n", journal)
	agents := "every extension, under its own number"
	if !dir.Open() {
		agents = fmt.Sprintf("%d from EXTENSIONS/EXTENSIONS_FILE", dir.Len())
	}
	fmt.Fprintf(&b, "agents:     %s\n", agents)
	sources := []string{"generic webhook"}
	if cfg.SIP.Enabled() {
		sources = append(sources, "SIP dialog events")
	}
	if cfg.ThreeCX.URL != "" {
		sources = append(sources, "3CX")
	}
	if cfg.Xelion.URL != "" {
		sources = append(sources, "Xelion")
	}
	if cfg.VoIPGRID.Enabled {
		sources = append(sources, "Voys/VoIPGRID")
	}
	fmt.Fprintf(&b, "sources:    %s\n", strings.Join(sources, ", "))
	fmt.Fprintf(&b, "helpdesk:   %s, limits %s at share %v\n", cfg.RobinAPIURL, cfg.Quota.RateLimits, cfg.Quota.Share)
	admin := "off (no ADMIN_TOKEN)"
	if cfg.AdminToken != "" {
		admin = "on"
	}
	fmt.Fprintf(&b, "admin API:  %s\n", admin)
	return b.String(), nil
}
