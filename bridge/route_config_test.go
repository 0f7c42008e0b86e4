package bridge

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRouteConfig: defaults, the order of the resolvers, and every problem
// named by its variable, without echoing a secret.
func TestRouteConfig(t *testing.T) {
	base := []string{"ROBIN_API_KEY=key-1234", "WEBHOOK_TOKEN=tok"}
	cfg, err := LoadConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	r := cfg.Route
	if r.Timeout != 1500*time.Millisecond || r.CacheTTL != time.Minute || r.HistoryTTL != 30*24*time.Hour || !r.SkipOffline ||
		r.StaleMax != 10*time.Minute || r.ChatwootSearchLimit != "60/1m" {
		t.Fatalf("defaults: %+v", r)
	}
	if order, _ := r.order(); !slices.Equal(order, []string{"history"}) {
		t.Errorf("default order without helpdesks: %v", order)
	}

	dir := t.TempDir()
	tok := filepath.Join(dir, "cw")
	if err := os.WriteFile(tok, []byte("cw-secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	full := append(slices.Clone(base), "ROBIN_API_SECRET=s", "CUSTOMER_LOOKUP_URL=https://shop.example/customers?phone={phone}",
		"CHATWOOT_URL=https://chat.example", "CHATWOOT_ACCOUNT_ID=1", "CHATWOOT_API_TOKEN_FILE="+tok, "ROUTE_TOKEN_FILE="+tok)
	cfg, err = LoadConfig(full)
	if err != nil {
		t.Fatal(err)
	}
	if order, _ := cfg.Route.order(); !slices.Equal(order, []string{"history", "robin", "chatwoot"}) {
		t.Errorf("default order: %v", order)
	}
	if cfg.Route.ChatwootAPIToken != "cw-secret-token" || cfg.Route.Token != "cw-secret-token" {
		t.Errorf("secrets from files: %q %q", cfg.Route.ChatwootAPIToken, cfg.Route.Token)
	}
	cfg, err = LoadConfig(append(full, "ROUTE_ORDER=Chatwoot, history"))
	if err != nil {
		t.Fatal(err)
	}
	if order, _ := cfg.Route.order(); !slices.Equal(order, []string{"chatwoot", "history"}) {
		t.Errorf("ROUTE_ORDER: %v", order)
	}

	_, err = LoadConfig(append(slices.Clone(base),
		"ROUTE_ORDER=history,robin,chatwoot,history,zendesk",
		"ROUTE_TIMEOUT=0s", "ROUTE_CACHE_TTL=100h", "ROUTE_HISTORY_TTL=1m", "ROUTE_STALE_MAX=1s",
		"ROUTE_ALLOW_CIDRS=10.0.0.0/33",
		"CUSTOMER_LOOKUP_URL=https://user:hunter2@shop.example/customers",
		"CHATWOOT_URL=chat.example", "CHATWOOT_API_TOKEN=", "CHATWOOT_SEARCH_LIMIT=lots"))
	if err == nil {
		t.Fatal("no error")
	}
	msg := err.Error()
	for _, want := range []string{
		"ROUTE_ORDER names history twice", `unknown resolver "zendesk"`, "ROUTE_TIMEOUT is 0", "ROUTE_CACHE_TTL 100h",
		"ROUTE_HISTORY_TTL", "ROUTE_STALE_MAX", "ROUTE_ALLOW_CIDRS", "no {phone}", "ROBIN_API_SECRET is not",
		"CHATWOOT_URL: want", "CHATWOOT_ACCOUNT_ID", "CHATWOOT_API_TOKEN is not", "CHATWOOT_SEARCH_LIMIT",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error does not mention %q:\n%s", want, msg)
		}
	}
	if strings.Contains(msg, "hunter2") {
		t.Fatal("the error shows a secret")
	}
	_, err = LoadConfig(append(slices.Clone(base), "ROUTE_ORDER=robin,chatwoot"))
	if err == nil || !strings.Contains(err.Error(), "CUSTOMER_LOOKUP_URL is not set") || !strings.Contains(err.Error(), "CHATWOOT_URL is not set") {
		t.Errorf("resolvers not configured: %v", err)
	}
}
