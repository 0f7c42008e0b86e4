package bridge

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/voipbridge/voipbridge/sip/siptest"
)

var sipBase = []string{"ROBIN_API_KEY=k", "WEBHOOK_TOKEN=t", "DATA_DIR=data"}

func TestSIPConfigFromEnvironment(t *testing.T) {
	pwFile := filepath.Join(t.TempDir(), "sip-password")
	if err := os.WriteFile(pwFile, []byte("from-a-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(append(sipBase,
		"SIP_SERVER=sip:pbx.example.nl;transport=tcp", "SIP_USERNAME=monitor", "SIP_PASSWORD_FILE="+pwFile,
		"SIP_EXPIRES=300", "SIP_EXTENSIONS=201, 202", "SIP_CONTACT_HOST=203.0.113.9"))
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.SIP
	if c.Server != "sip:pbx.example.nl;transport=tcp" || c.Username != "monitor" || c.Password != "from-a-file" ||
		c.Expires != 300 || len(c.Extensions) != 2 || c.Listen != "0.0.0.0:5070" || c.SubscribeRate != 20 || c.ContactHost != "203.0.113.9" {
		t.Errorf("SIP config %+v", c)
	}

	off, err := LoadConfig(sipBase)
	if err != nil || off.SIP.Enabled() {
		t.Errorf("without SIP_SERVER: enabled=%v err=%v", off.SIP.Enabled(), err)
	}
	for _, bad := range [][]string{
		{"SIP_USERNAME=monitor"}, // half configured
		{"SIP_SERVER=pbx", "SIP_TRANSPORT=sctp"},
		{"SIP_SERVER=pbx", "SIP_EXTENSIONS=201,2 02"},
		{"SIP_SERVER=pbx", "SIP_EXPIRES=soon"},
	} {
		if _, err := LoadConfig(append(sipBase, bad...)); err == nil {
			t.Errorf("LoadConfig accepted %v", bad)
		} else if strings.Contains(err.Error(), "from-a-file") {
			t.Errorf("error shows the password: %v", err)
		}
	}
}

// TestSIPExtensionsFromDirectory: without SIP_EXTENSIONS the bridge watches
// every agent of the directory, and /readyz reports the SIP source.
func TestSIPExtensionsFromDirectory(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Username: sipUser, Password: sipPass})
	tb := startBridge(t,
		"SIP_SERVER="+pbx.Addr(), "SIP_LISTEN=127.0.0.1:0", "SIP_USERNAME="+sipUser, "SIP_PASSWORD="+sipPass,
		"SIP_SUBSCRIBE_RATE=-1", "EXTENSIONS=301,302:agent-b,agent@xelion")
	waitUntil(t, "directory extensions subscribed", func() bool { return pbx.Subscribed("301") == 1 && pbx.Subscribed("302") == 1 })
	for _, s := range pbx.Subscribes() {
		if s.Ext != "301" && s.Ext != "302" {
			t.Errorf("subscribed to %q, which is not a SIP extension of the directory", s.Ext)
		}
	}
	var ready map[string]string
	waitUntil(t, "ready", func() bool {
		resp, err := http.Get(tb.URL + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ready = nil
		_ = json.Unmarshal(b, &ready)
		return resp.StatusCode == http.StatusOK
	})
	if _, ok := ready["sip"]; !ok {
		t.Errorf("/readyz does not report the SIP source: %v", ready)
	}
}

// TestSIPNotReadyWithoutSubscriptions: a PBX that refuses every
// subscription is named on /readyz as degraded, with why (webhook intake
// still works, so the answer stays 200).
func TestSIPNotReadyWithoutSubscriptions(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Username: sipUser, Password: "not-what-we-have"})
	tb := startBridge(t,
		"SIP_SERVER="+pbx.Addr(), "SIP_LISTEN=127.0.0.1:0", "SIP_USERNAME="+sipUser, "SIP_PASSWORD="+sipPass,
		"SIP_EXTENSIONS=401")
	var body string
	waitUntil(t, "readyz to name the failing subscription", func() bool {
		resp, err := http.Get(tb.URL + "/readyz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		body = string(b)
		return resp.StatusCode == http.StatusOK && strings.Contains(body, `"sip":"degraded: `) && strings.Contains(body, "1 failing")
	})
	if strings.Contains(body, sipPass) {
		t.Errorf("/readyz shows the SIP password: %s", body)
	}
}

// TestSIPListenFailureStopsStart: a SIP_LISTEN address that is taken makes
// the bridge fail to start instead of dying later.
func TestSIPListenFailureStopsStart(t *testing.T) {
	taken, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	cfg, err := LoadConfig(append([]string{"DATA_DIR=" + t.TempDir(), "HTTP_ADDR=127.0.0.1:0", "ROBIN_API_KEY=k", "WEBHOOK_TOKEN=t"},
		"SIP_SERVER=127.0.0.1:5060", "SIP_LISTEN="+taken.LocalAddr().String(), "SIP_EXTENSIONS=201"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		b.close()
		t.Fatal("bridge started with its SIP port taken")
	}
	if !strings.Contains(err.Error(), "listen udp") {
		t.Errorf("error %v does not say what failed", err)
	}
}
