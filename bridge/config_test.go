package bridge

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := LoadConfig([]string{"ROBIN_API_KEY=key-1234", "WEBHOOK_TOKEN=tok"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8080" || cfg.DataDir != "./data" || cfg.AnonymousNumber != "anonymous" ||
		cfg.CallTimeout != 4*time.Hour || cfg.TransferWindow != 2*time.Second || cfg.CallIDReuse != 10*time.Minute || cfg.TrackerMaxLag != 30*time.Second || cfg.MissedCalls != "report" ||
		cfg.InternalCalls != "ignore" || cfg.PhoneRegion != "NL" || cfg.SignalRetention != 7*24*time.Hour ||
		cfg.RobinTimeout != 10*time.Second || cfg.Quota.RateLimits != "3/1s,180/1m,10000/1h,100000/24h" {
		t.Fatalf("defaults: %+v", cfg)
	}
}

// TestConfigReportsEveryProblem: one start-up tells the operator everything
// that is wrong, and never echoes a secret.
func TestConfigReportsEveryProblem(t *testing.T) {
	_, err := LoadConfig([]string{
		"ROBIN_API_SECRET=hunter2-secret",
		"CALL_TIMEOUT=soon",
		"MISSED_CALLS=sometimes",
		"LOG_FORMAT=xml",
		"ROBIN_RATE_LIMITS=3/s",
		"ROBIN_QUOTA_SHARE=2",
		"NATS_REPLICAS=9",
		"ROBIN_API_URL=ftp://x",
		"JOURNAL_NAME=a.b",
		"DID_MAP=threecx:trunk",
	})
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{"ROBIN_API_KEY is required", "WEBHOOK_TOKEN is required", "CALL_TIMEOUT", "MISSED_CALLS", "LOG_FORMAT", "ROBIN_RATE_LIMITS", "ROBIN_QUOTA_SHARE", "NATS_REPLICAS", "ROBIN_API_URL", "JOURNAL_NAME", "DID_MAP"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %s:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Fatal("the error shows a secret")
	}
}

func TestConfigSecretsFromFiles(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	os.WriteFile(key, []byte("from-file-key\n"), 0o600)
	cfg, err := LoadConfig([]string{"ROBIN_API_KEY_FILE=" + key, "WEBHOOK_INSECURE=true", "ANONYMOUS_NUMBER="})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RobinAPIKey != "from-file-key" {
		t.Fatalf("key %q (trailing newline must go)", cfg.RobinAPIKey)
	}
	if cfg.AnonymousNumber != "" {
		t.Fatalf("ANONYMOUS_NUMBER set empty must stay empty, got %q", cfg.AnonymousNumber)
	}
	_, err = LoadConfig([]string{"ROBIN_API_KEY_FILE=" + key, "ROBIN_API_KEY=also", "WEBHOOK_TOKEN=t"})
	if err == nil || !strings.Contains(err.Error(), "both set") {
		t.Fatalf("both set: %v", err)
	}
	_, err = LoadConfig([]string{"ROBIN_API_KEY_FILE=" + filepath.Join(dir, "missing"), "WEBHOOK_TOKEN=t"})
	if err == nil || !strings.Contains(err.Error(), "ROBIN_API_KEY_FILE") {
		t.Fatalf("missing file: %v", err)
	}
}

// TestParseDIDMap: lines and per-source defaults; clear errors.
func TestParseDIDMap(t *testing.T) {
	m, err := ParseDIDMap(" threecx:10001=+31858770023, xelion=0858770099 ,")
	if err != nil {
		t.Fatal(err)
	}
	if m["threecx:10001"] != "+31858770023" || m["xelion:*"] != "0858770099" || len(m) != 2 {
		t.Fatalf("parsed %v", m)
	}
	for _, bad := range []string{"threecx", "=+3185", "threecx:a=1,threecx:a=2", "threecx:\x1b=1"} {
		if _, err := ParseDIDMap(bad); err == nil || !strings.Contains(err.Error(), "DID_MAP") {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
