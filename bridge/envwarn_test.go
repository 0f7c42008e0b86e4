package bridge

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestEnvWarnings: a variable that looks like the bridge's but is not read
// is named with the closest name the bridge reads; the environment of a
// container or a Kubernetes pod says nothing.
func TestEnvWarnings(t *testing.T) {
	base := []string{"ROBIN_API_KEY=key-1234", "WEBHOOK_TOKEN=tok"}
	quiet := []string{
		"PATH=/usr/bin", "HOME=/home/x", "HOSTNAME=pod-1", "TERM=xterm", "NO_COLOR=1", "TZ=UTC",
		"HTTP_PROXY=http://proxy:3128", "http_proxy=http://proxy:3128", "HTTPS_PROXY=x", "NO_PROXY=localhost",
		"SSL_CERT_DIR=/etc/ssl/private-ca",
		// Kubernetes service links of services named nats, robin and sip.
		"NATS_PORT=tcp://10.0.0.1:4222", "NATS_PORT_4222_TCP_ADDR=10.0.0.1", "NATS_SERVICE_HOST=10.0.0.1",
		"NATS_SERVICE_PORT_CLIENT=4222", "ROBIN_SERVICE_HOST=10.0.0.2", "SIP_PORT_5060_UDP_PROTO=udp",
		// Known names, NAME_FILE of secrets among them.
		"SIP_SERVER=pbx.example.com", "SIP_PASSWORD_FILE=", "ANONYMOUS_NUMBER=", "TLS_CERT_FILE=",
	}
	cfg, err := LoadConfig(append(base, quiet...))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Warnings) > 0 {
		t.Errorf("warnings for a clean environment:\n%s", strings.Join(cfg.Warnings, "\n"))
	}

	cfg, err = LoadConfig(append(base,
		"ROBIN_APIKEY=x", "SIP_SERVR=pbx", "SIP_SERVER=pbx", "EXTENSION_FILE=agents.csv", "ROBN_API_URL=x",
		"robin_timeout=5s", "WEBHOOK_MAX_BODY_FILE=/run/x", "ROUTE_TOKNE=x", "CHATWOOT_ACCOUNT_ID_NUMBER=x",
		"ROBIN_API_KEY_FILE=",
	))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"CHATWOOT_ACCOUNT_ID_NUMBER is set, but voipbridge does not read it; did you mean CHATWOOT_ACCOUNT_ID?",
		"EXTENSION_FILE is set, but voipbridge does not read it; did you mean EXTENSIONS_FILE?",
		"ROBIN_APIKEY is set, but voipbridge does not read it; did you mean ROBIN_API_KEY?",
		"ROBN_API_URL is set, but voipbridge does not read it; did you mean ROBIN_API_URL?",
		"ROUTE_TOKNE is set, but voipbridge does not read it; did you mean ROUTE_TOKEN?",
		"SIP_SERVR is set, but voipbridge does not read it; did you mean SIP_SERVER?",
		"WEBHOOK_MAX_BODY_FILE is set, but only secrets can be given as NAME_FILE: set WEBHOOK_MAX_BODY itself",
		"robin_timeout is set, but names are case-sensitive: voipbridge reads ROBIN_TIMEOUT",
	}
	if diff := cmp.Diff(want, cfg.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

// TestConfigErrorsNameTheVariableOnce: a value that cannot be read is one
// problem, named by its variable (not the Go field) and said once: the
// checks that would otherwise complain about the zero left behind stay
// quiet. A misspelt name is shown with the problem it causes.
func TestConfigErrorsNameTheVariableOnce(t *testing.T) {
	_, err := LoadConfig([]string{
		"WEBHOOK_INSECURE=yes",
		"ROBIN_APIKEY=key-1234",
		"ROBIN_TIMEOUT=ten seconds",
		"CALL_TIMEOUT=-",
		"NATS_REPLICAS=three",
		"INTERNAL_MAX_DIGITS=99999999999999999999",
		"ROBIN_QUOTA_SHARE=half",
		"ROBIN_BREAKER_FAILURES=-1",
		"LOG_LEVEL=loud",
		"VOIPGRID_ENABLED=yes",
		"SIP_SERVER=pbx.example.com",
		"SIP_EXPIRES=10m",
		"ROUTE_SKIP_OFFLINE=nope",
		"THREECX_URL=https://pbx.example.com",
		"THREECX_CLIENT_ID=bridge",
		"THREECX_CLIENT_SECRET_FILE=/nonexistent/secret",
	})
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		`CALL_TIMEOUT: "-" is not a duration; want a number with a unit, such as 500ms, 10s, 5m or 1h30m`,
		`INTERNAL_MAX_DIGITS: "99999999999999999999" is not a whole number (or too large)`,
		`LOG_LEVEL: "loud" is not a log level; want debug, info, warn or error`,
		`NATS_REPLICAS: "three" is not a whole number (or too large)`,
		`ROBIN_BREAKER_FAILURES: "-1" is not a whole number of 0 or more (or too large)`,
		`ROBIN_QUOTA_SHARE: "half" is not a number; want digits with a decimal point, such as 0.5`,
		`ROBIN_TIMEOUT: "ten seconds" is not a duration; want a number with a unit, such as 500ms, 10s, 5m or 1h30m`,
		`ROUTE_SKIP_OFFLINE: "nope": want true or false`,
		`SIP_EXPIRES: "10m" is not a whole number (or too large)`,
		`VOIPGRID_ENABLED: "yes": want true or false`,
		`WEBHOOK_INSECURE: "yes": want true or false`,
	}
	for _, w := range want {
		name, _, _ := strings.Cut(w, ":")
		var naming []string
		for _, l := range lines {
			if mentions(l, name) {
				naming = append(naming, l)
			}
		}
		if diff := cmp.Diff([]string{w}, naming); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	for _, not := range []string{"parse error", "RobinTimeout", "field", "THREECX_CLIENT_SECRET is empty", "WEBHOOK_TOKEN is required"} {
		if strings.Contains(err.Error(), not) {
			t.Errorf("the error says %q:\n%s", not, err)
		}
	}
	for _, w := range []string{
		"THREECX_CLIENT_SECRET_FILE: open /nonexistent/secret: no such file or directory",
		"ROBIN_API_KEY is required (or ROBIN_API_KEY_FILE)",
		"ROBIN_APIKEY is set, but voipbridge does not read it; did you mean ROBIN_API_KEY?",
	} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not say %q:\n%s", w, err)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		d    int
	}{
		{"", "", 0}, {"ROBIN_APIKEY", "ROBIN_API_KEY", 1}, {"SIP_SERVR", "SIP_SERVER", 1},
		{"ROUTE_TOKNE", "ROUTE_TOKEN", 1}, {"CA", "ABC", 3}, {"kitten", "sitting", 3}, {"", "abc", 3},
	} {
		if d := editDistance(tt.a, tt.b); d != tt.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, d, tt.d)
		}
		if d := editDistance(tt.b, tt.a); d != tt.d {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.b, tt.a, d, tt.d)
		}
	}
}
