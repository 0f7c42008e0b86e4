package bridge

import (
	"strings"
	"testing"
)

// TestCheckSummaryWarns: voipbridge check prints the variables that look
// like the bridge's but are not read, with the name meant.
func TestCheckSummaryWarns(t *testing.T) {
	cfg, err := LoadConfig([]string{"ROBIN_API_KEY=key-1234", "WEBHOOK_TOKEN=tok", "SIP_SERVR=pbx.example.com", "EXTENSIONS=201"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := Check(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if want := "warning:    SIP_SERVR is set, but voipbridge does not read it; did you mean SIP_SERVER?\n"; !strings.Contains(out, want) {
		t.Errorf("the summary does not warn %q:\n%s", want, out)
	}
}
