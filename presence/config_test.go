package presence

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestParseWarm(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []Key
		err  string
	}{
		{in: "", want: nil},
		{in: " ; ", want: nil},
		{in: "Chat", want: []Key{{"Chat", ""}}},
		{in: "Chat,WhatsApp|+31858770023", want: []Key{{"Chat", "+31858770023"}, {"WhatsApp", "+31858770023"}}},
		{in: "Chat,WhatsApp|+31858770023; Email | shop.example.com ;Chat;", want: []Key{
			{"Chat", "+31858770023"}, {"WhatsApp", "+31858770023"}, {"Email", "shop.example.com"}, {"Chat", ""},
		}},
		{in: "Chat|a;Chat|a;chat|a", want: []Key{{"Chat", "a"}, {"chat", "a"}}}, // canonicalised by New
		{in: "Facebook Messenger|", want: []Key{{"Facebook Messenger", ""}}},
		{in: "Chat,,SMS", err: "empty channel"},
		{in: "|+31858770023", err: "empty channel"},
		{in: "Chat|a|b", err: "more than one '|'"},
		{in: manyKeys(65), err: "at most 64"},
	} {
		got, err := ParseWarm(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseWarm(%q) error %v; want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseWarm(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseWarm(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func manyKeys(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, "Chat|r"+string(rune('A'+i%26))+string(rune('a'+i/26)))
	}
	return strings.Join(parts, ";")
}

func TestKeyString(t *testing.T) {
	if got := (Key{"Chat", "+31858770023"}).String(); got != "Chat|+31858770023" {
		t.Errorf("String = %q", got)
	}
	if got := (Key{Channel: "Email"}).String(); got != "Email" {
		t.Errorf("String = %q", got)
	}
}

func TestParseFallback(t *testing.T) {
	for in, want := range map[string]Fallback{"error": FallbackError, "Online": FallbackOnline, "OFFLINE": FallbackOffline, " online ": FallbackOnline} {
		got, err := ParseFallback(in)
		if err != nil || got != want {
			t.Errorf("ParseFallback(%q) = %v, %v; want %v", in, got, err, want)
		}
		if in == "error" && got.String() != "error" || in == "Online" && got.String() != "Online" {
			t.Errorf("String of %v = %q", got, got.String())
		}
	}
	if _, err := ParseFallback("maybe"); err == nil || !strings.Contains(err.Error(), "PRESENCE_FALLBACK") {
		t.Errorf("ParseFallback(maybe) = %v; want an error naming PRESENCE_FALLBACK", err)
	}
}

// TestConfigValidate: every problem is reported, each naming its variable.
func TestConfigValidate(t *testing.T) {
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config (defaults): %v", err)
	}
	if err := (Config{StaleMax: DefaultStaleMax, ExtraChannels: []string{"RCS"}, Warm: []Key{{"rcs", ""}, {"Chat", "+31858770023"}}}).Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	bad := Config{
		TTL:           500 * time.Millisecond,
		NegativeTTL:   48 * time.Hour,
		StaleMax:      100 * time.Millisecond,
		Timeout:       2 * time.Minute,
		Fallback:      Fallback(7),
		ExtraChannels: []string{"Chat"},
	}
	err := bad.Validate()
	for _, want := range []string{"PRESENCE_TTL", "PRESENCE_NEGATIVE_TTL", "PRESENCE_STALE_MAX", "PRESENCE_TIMEOUT", "PRESENCE_FALLBACK", "PRESENCE_EXTRA_CHANNELS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not name %s", err, want)
		}
	}
	err = Config{Warm: []Key{{"Telegram", ""}, {"Chat", "a\nb"}}}.Validate()
	if err == nil || !strings.Contains(err.Error(), `unknown channel "Telegram"`) || !strings.Contains(err.Error(), "control character") {
		t.Errorf("bad warm keys: %v", err)
	}
	if _, err := New(Options{Config: Config{}}); err == nil {
		t.Error("New without an Asker succeeded")
	}
}

func TestNewChannels(t *testing.T) {
	for _, tc := range []struct {
		extra []string
		err   string
	}{
		{extra: []string{"Google Business Messages", "RCS", "", "  "}},
		{extra: []string{"whats app"}, err: `same channel as "WhatsApp"`},
		{extra: []string{"RCS", "rcs"}, err: "same channel"},
		{extra: []string{"---"}, err: "no letters or digits"},
		{extra: []string{"A,B"}, err: "contains"},
		{extra: []string{"A|B"}, err: "contains"},
		{extra: []string{"bell\a"}, err: "contains"},
		{extra: []string{strings.Repeat("x", 65)}, err: "longer than"},
		{extra: []string{"\xff"}, err: "UTF-8"},
	} {
		c, err := NewChannels(tc.extra)
		if tc.err == "" {
			if err != nil {
				t.Errorf("NewChannels(%q): %v", tc.extra, err)
			} else if n := len(c.Names()); n != len(DocumentedChannels)+2 {
				t.Errorf("NewChannels(%q): %d names", tc.extra, n)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("NewChannels(%q) error %v; want %q", tc.extra, err, tc.err)
		}
	}
}
