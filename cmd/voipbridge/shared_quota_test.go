package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// TestTwoBridgesShareOneQuota: two bridge processes with their own journals
// on one external NATS server, using one ROBIN key, stay within the key's
// limits together. The bridges are configured for 3/1s and 12/5s and ROBIN
// enforces 5/1s and 20/5s: two bridges that did not share would start up
// to 6/1s and 24/5s and be refused, while the headroom absorbs requests
// that leave a loaded machine later than the quota admitted them.
func TestTwoBridgesShareOneQuota(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	ns, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true, SyncAlways: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	defer ns.Shutdown()

	fake := robintest.NewServer(robintest.Options{APIKey: "shared-key", Limits: []robintest.Limit{{N: 5, Per: time.Second}, {N: 20, Per: 5 * time.Second}}})
	defer fake.Close()
	bin := buildBinary(t)
	var addrs []string
	for _, name := range []string{"east", "west"} {
		addr := freeAddr(t)
		addrs = append(addrs, addr)
		cmd := startProcess(t, bin, addr, []string{
			"HTTP_ADDR=" + addr, "NATS_URL=" + ns.ClientURL(), "JOURNAL_NAME=" + name, "LOG_FORMAT=json",
			"ROBIN_API_URL=" + fake.URL(), "ROBIN_PRESENCE_URL=" + fake.PresenceURL(), "ROBIN_API_KEY=shared-key",
			"ROBIN_RATE_LIMITS=3/1s,12/5s", "ROBIN_PRESENCE_RESERVE=0", "WEBHOOK_TOKEN=tok", "TRANSFER_WINDOW=0s",
		})
		defer func() { cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	}
	const calls = 8
	for i, addr := range addrs {
		postCalls(t, addr, "tok", fmt.Sprintf("b%d-", i), calls)
	}
	want := 2 * 2 * calls
	deadline := time.Now().Add(90 * time.Second)
	for len(fake.Events()) < want {
		if time.Now().After(deadline) {
			t.Fatalf("ROBIN has %d of %d events", len(fake.Events()), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v := fake.Violations(); v != 0 {
		t.Fatalf("the two bridges together exceeded ROBIN's windows %d times", v)
	}
	// Both bridges delivered (neither sat idle while the other used the quota).
	per := map[byte]int{}
	for _, r := range fake.Events() {
		per[r.Event.ID[1]]++
	}
	if per['0'] != 2*calls || per['1'] != 2*calls {
		t.Fatalf("events per bridge: %v", per)
	}
}
