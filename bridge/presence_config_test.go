package bridge

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/voipbridge/voipbridge/presence"
)

// TestPresenceConfigDefaults: the documented defaults.
func TestPresenceConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig([]string{"ROBIN_API_KEY=key-1234", "WEBHOOK_TOKEN=tok"})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := cfg.Presence.config()
	if err != nil {
		t.Fatal(err)
	}
	want := presence.Config{TTL: 15 * time.Second, NegativeTTL: time.Minute, StaleMax: 10 * time.Minute, Timeout: 2 * time.Second, Fallback: presence.FallbackError}
	if diff := cmp.Diff(want, pc); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

// TestPresenceConfig: every setting is read, and every problem reported at
// once, naming its variable.
func TestPresenceConfig(t *testing.T) {
	cfg, err := LoadConfig([]string{
		"ROBIN_API_KEY=key-1234", "WEBHOOK_TOKEN=tok",
		"PRESENCE_TTL=30s", "PRESENCE_NEGATIVE_TTL=5m", "PRESENCE_STALE_MAX=0", "PRESENCE_TIMEOUT=500ms",
		"PRESENCE_FALLBACK=offline", "PRESENCE_EXTRA_CHANNELS=Google Business Messages, RCS",
		"PRESENCE_WARM=Chat,RCS|+31858770023;Email|shop.example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := cfg.Presence.config()
	if err != nil {
		t.Fatal(err)
	}
	want := presence.Config{
		TTL: 30 * time.Second, NegativeTTL: 5 * time.Minute, StaleMax: 0, Timeout: 500 * time.Millisecond,
		Fallback: presence.FallbackOffline, ExtraChannels: []string{"Google Business Messages", " RCS"},
		Warm: []presence.Key{{Channel: "Chat", Referrer: "+31858770023"}, {Channel: "RCS", Referrer: "+31858770023"}, {Channel: "Email", Referrer: "shop.example.com"}},
	}
	if diff := cmp.Diff(want, pc); diff != "" {
		t.Errorf("config (-want +got):\n%s", diff)
	}

	_, err = LoadConfig([]string{
		"ROBIN_API_KEY=key-1234", "WEBHOOK_TOKEN=tok",
		"PRESENCE_TTL=0", "PRESENCE_NEGATIVE_TTL=100ms", "PRESENCE_STALE_MAX=1s", "PRESENCE_TIMEOUT=5m",
		"PRESENCE_FALLBACK=maybe", "PRESENCE_EXTRA_CHANNELS=chat", "PRESENCE_WARM=Telegram|x|y",
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"PRESENCE_TTL is 0", "PRESENCE_NEGATIVE_TTL", "PRESENCE_STALE_MAX", "PRESENCE_TIMEOUT", "PRESENCE_FALLBACK", "PRESENCE_EXTRA_CHANNELS", "PRESENCE_WARM"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %s:\n%v", want, err)
		}
	}
	_, err = LoadConfig([]string{"ROBIN_API_KEY=key-1234", "WEBHOOK_TOKEN=tok", "PRESENCE_WARM=Telegram"})
	if err == nil || !strings.Contains(err.Error(), `unknown channel "Telegram"`) {
		t.Errorf("unknown warm channel: %v", err)
	}
}
