package xelion

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"
)

// DefaultTenant is the tenant of a single-tenant Xelion server.
const DefaultTenant = "master"

// Config is the Xelion part of the bridge's environment.
type Config struct {
	// URL is the Xelion server, e.g. https://xelion.example.com; the API is
	// at <URL>/api/v1/<tenant>/. A URL that already ends in /api/v1 or
	// /api/v1/<tenant> is used as given (XELION_URL).
	URL string `env:"XELION_URL"`
	// Tenant is the tenant (user space of the URL), "master" for a
	// single-tenant server (XELION_TENANT).
	Tenant string `env:"XELION_TENANT" envDefault:"master"`
	// Username and Password are of an admin account: only admin sessions
	// receive the call events (XELION_USERNAME, XELION_PASSWORD).
	Username string `env:"XELION_USERNAME"`
	Password string `env:"XELION_PASSWORD"`
	// UserSpace names the bridge's session on the server; Xelion refuses a
	// second login with the same user space while a session lives
	// (XELION_USERSPACE, default "voipbridge-<hostname>").
	UserSpace string `env:"XELION_USERSPACE"`
	// TimeZone is the server's zone, for the token expiry Xelion sends as a
	// local time without zone (XELION_TIMEZONE, default Europe/Amsterdam).
	TimeZone string `env:"XELION_TIMEZONE" envDefault:"Europe/Amsterdam"`
}

// Enabled reports whether the Xelion source is configured at all.
func (c Config) Enabled() bool { return c.URL != "" }

// Validate reports every setting that keeps the source from starting
// (joined). Its errors never contain the password.
func (c Config) Validate() error {
	var errs []error
	u, err := url.Parse(c.URL)
	switch {
	case c.URL == "":
		errs = append(errs, errors.New("XELION_URL is empty"))
	case err != nil:
		errs = append(errs, errors.New("XELION_URL is not a URL"))
	case u.Scheme != "https" && u.Scheme != "http", u.Host == "":
		errs = append(errs, errors.New("XELION_URL must be an http or https URL with a host"))
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		errs = append(errs, errors.New("XELION_URL must not carry credentials, a query or a fragment"))
	}
	if strings.ContainsAny(c.Tenant, "/?#") {
		errs = append(errs, errors.New("XELION_TENANT must be a plain name"))
	}
	if c.Username == "" {
		errs = append(errs, errors.New("XELION_USERNAME is empty"))
	}
	if c.Password == "" {
		errs = append(errs, errors.New("XELION_PASSWORD is empty"))
	}
	if c.TimeZone != "" {
		if _, err := time.LoadLocation(c.TimeZone); err != nil {
			errs = append(errs, fmt.Errorf("XELION_TIMEZONE %q is not a known time zone", c.TimeZone))
		}
	}
	return errors.Join(errs...)
}

// LogValue shows the configuration without its password.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("url", c.URL),
		slog.String("tenant", c.tenant()),
		slog.String("username", c.Username),
		slog.Bool("password_set", c.Password != ""),
		slog.String("userspace", c.userSpace()),
		slog.String("timezone", c.TimeZone),
	)
}

func (c Config) tenant() string {
	if c.Tenant == "" {
		return DefaultTenant
	}
	return c.Tenant
}

func (c Config) userSpace() string {
	if c.UserSpace != "" {
		return c.UserSpace
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "voipbridge"
	}
	return "voipbridge-" + host
}

// apiBase returns the REST base URL, ending in "/".
func (c Config) apiBase() (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(c.URL, "/"))
	if err != nil {
		return nil, err
	}
	p := strings.TrimRight(u.Path, "/")
	switch {
	case strings.HasSuffix(p, "/api/v1"):
		p += "/" + c.tenant()
	case strings.Contains(p, "/api/v1/"):
	default:
		p += "/api/v1/" + c.tenant()
	}
	u.Path = p + "/"
	return u, nil
}
