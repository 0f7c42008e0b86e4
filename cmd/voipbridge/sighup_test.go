package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// TestSIGHUPReloadsExtensions: SIGHUP re-reads EXTENSIONS_FILE; a broken file
// keeps the directory that works.
func TestSIGHUPReloadsExtensions(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	fake := robintest.NewServer(robintest.Options{APIKey: "hup-key"})
	defer fake.Close()
	csv := filepath.Join(t.TempDir(), "agents.csv")
	write := func(body string) {
		if err := os.WriteFile(csv, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("pbx_id,robin_extension,name,email\n201,301,Ann,ann@example.com\n")
	addr := freeAddr(t)
	cmd := startProcess(t, bin, addr, []string{
		"HTTP_ADDR=" + addr, "DATA_DIR=" + t.TempDir(), "ROBIN_API_URL=" + fake.URL(), "ROBIN_PRESENCE_URL=" + fake.PresenceURL(),
		"ROBIN_API_KEY=hup-key", "WEBHOOK_TOKEN=tok", "EXTENSIONS_FILE=" + csv, "ROBIN_RATE_LIMITS=100/1s",
	})
	defer func() { cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	// Each call from its own number: the same caller on two calls at once
	// would be read as a transfer.
	answer := func(call string) string {
		t.Helper()
		n := len(fake.Events())
		body := fmt.Sprintf(`{"call_id":%q,"event":"answered","from":"061234567%d","extension":"201"}`, call, n)
		postWebhook(t, addr, "tok", body)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		got, err := fake.WaitEvents(ctx, n+1)
		if err != nil {
			t.Fatal(err)
		}
		return got[n].Event.PhoneExtension
	}
	if ext := answer("h1"); ext != "301" {
		t.Fatalf("before reload: ext %s, want 301", ext)
	}
	write("pbx_id,robin_extension,name,email\n201,401,Ann,ann@example.com\n")
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	if ext := answer("h2"); ext != "401" {
		t.Fatalf("after reload: ext %s, want 401", ext)
	}
	write("pbx_id,robin_extension,name,email\n201,501,Ann,not-an-address\n")
	cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(500 * time.Millisecond)
	if ext := answer("h3"); ext != "401" {
		t.Fatalf("after a broken file: ext %s, want the working 401", ext)
	}
}
