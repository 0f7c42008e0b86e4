package sip

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestConfigSettings(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want settings
	}{
		{"host only", Config{Server: "pbx.example.nl", Extensions: []string{"201", " 202", "201"}},
			settings{server: "pbx.example.nl:5060", serverHost: "pbx.example.nl", domain: "pbx.example.nl", transport: "udp",
				listen: "0.0.0.0:5070", username: "voipbridge", expires: 600, rate: 20, extensions: []string{"201", "202"}}},
		{"host port and domain", Config{Server: "10.0.0.5:5080", Domain: "voip.example.nl", Transport: "TCP", Listen: "10.0.0.9:5090",
			ContactHost: "203.0.113.7", Username: "monitor", Password: "pw", Expires: 300, SubscribeRate: -1, Keepalive: 5 * time.Second},
			settings{server: "10.0.0.5:5080", serverHost: "10.0.0.5", domain: "voip.example.nl", transport: "tcp", listen: "10.0.0.9:5090",
				contact: "203.0.113.7", username: "monitor", password: "pw", expires: 300, rate: -1, keepalive: 5 * time.Second}},
		{"sip uri with transport", Config{Server: "sip:pbx.example.nl:5062;transport=tcp"},
			settings{server: "pbx.example.nl:5062", serverHost: "pbx.example.nl", domain: "pbx.example.nl", transport: "tcp",
				listen: "0.0.0.0:5070", username: "voipbridge", expires: 600, rate: 20}},
		{"sips uri means tls on 5061", Config{Server: "sips:pbx.example.nl"},
			settings{server: "pbx.example.nl:5061", serverHost: "pbx.example.nl", domain: "pbx.example.nl", transport: "tls",
				listen: "0.0.0.0:5070", username: "voipbridge", expires: 600, rate: 20}},
		{"ipv6", Config{Server: "[2001:db8::5]:5060"},
			settings{server: "[2001:db8::5]:5060", serverHost: "2001:db8::5", domain: "2001:db8::5", transport: "udp",
				listen: "0.0.0.0:5070", username: "voipbridge", expires: 600, rate: 20}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cfg.settings()
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got, cmp.AllowUnexported(settings{})); d != "" {
				t.Errorf("(-want +got):\n%s", d)
			}
		})
	}
}

func TestConfigRejects(t *testing.T) {
	for name, cfg := range map[string]Config{
		"no server":                {},
		"bad transport":            {Server: "pbx", Transport: "sctp"},
		"bad port":                 {Server: "pbx:99999"},
		"header injection in host": {Server: "pbx\r\nX: y"},
		"bad domain":               {Server: "pbx", Domain: "a b"},
		"bad listen":               {Server: "pbx", Listen: "5070"},
		"bad contact host":         {Server: "pbx", ContactHost: "<evil>"},
		"bad username":             {Server: "pbx", Username: "a@b"},
		"negative expires":         {Server: "pbx", Expires: -5},
		"negative keepalive":       {Server: "pbx", Keepalive: -time.Second},
		"keepalive too short":      {Server: "pbx", Keepalive: time.Millisecond},
		"keepalive too long":       {Server: "pbx", Keepalive: 2 * time.Hour},
		"bad extension":            {Server: "pbx", Extensions: []string{"201", "20 2"}},
		"extension too long":       {Server: "pbx", Extensions: []string{strings.Repeat("2", 65)}},
	} {
		if err := cfg.Validate(); err == nil {
			t.Errorf("%s: accepted %+v", name, cfg)
		}
	}
}

func TestConfigLogValueHidesPassword(t *testing.T) {
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "sip", Config{Server: "pbx", Password: "hunter2-secret"})
	if strings.Contains(buf.String(), "hunter2") || !strings.Contains(buf.String(), "redacted") {
		t.Errorf("log line: %s", buf.String())
	}
}
