package bridge

import (
	"fmt"
	"slices"
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
	for _, w := range slices.Concat(cfg.Warnings, directoryWarnings(cfg, dir)) {
		fmt.Fprintf(&b, "warning:    %s\n", w)
	}
	return b.String(), nil
}

// directoryWarnings names the sources whose agents the directory cannot map:
// a source with no entry that applies to it (scoped to it or unscoped), and
// SIP extensions watched without an entry. Their calls would be reported
// without an agent, or not at all.
func directoryWarnings(cfg Config, dir *extensions.Directory) []string {
	if dir.Open() {
		return nil
	}
	var out []string
	for _, s := range []struct {
		on         bool
		name, what string
	}{
		{cfg.SIP.Enabled(), "sip", "SIP"},
		{cfg.ThreeCX.URL != "", "threecx", "3CX"},
		{cfg.Xelion.URL != "", "xelion", "Xelion"},
		{cfg.VoIPGRID.Enabled, "voipgrid", "Voys/VoIPGRID"},
	} {
		if s.on && len(dir.Agents(s.name)) == 0 {
			out = append(out, fmt.Sprintf("%s is on, but no entry of EXTENSIONS/EXTENSIONS_FILE applies to it (source %q or none): its calls will have no agent", s.what, s.name))
		}
	}
	if cfg.SIP.Enabled() {
		var missing []string
		for _, ext := range cfg.SIP.Extensions {
			if _, ok := dir.Lookup("sip", ext); !ok {
				missing = append(missing, ext)
			}
		}
		if len(missing) > 0 {
			out = append(out, "SIP_EXTENSIONS without an agent in EXTENSIONS/EXTENSIONS_FILE: "+strings.Join(missing, ", "))
		}
	}
	return out
}
