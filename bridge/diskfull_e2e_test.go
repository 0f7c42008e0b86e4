package bridge

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// TestDiskFullIntake: with its disk below JOURNAL_MIN_FREE the bridge
// answers webhooks 503 (never a false 202) and /readyz 503 with the reason;
// once space returns, both recover without a restart. The disk is a small
// tmpfs, which needs root (as in CI's container); elsewhere it is skipped.
func TestDiskFullIntake(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=32m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); events.TestDiskGuard covers the logic", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key"})
	t.Cleanup(fake.Close)
	tb := startBridgeWith(t, fake, filepath.Join(mnt, "data"), "JOURNAL_MIN_FREE=8388608")
	body := `{"call_id":"disk-1","event":"ringing","from":"+31612345678","to":"+31858770023","extension":"201"}`
	if st := tb.Post(t, "/v1/webhooks/generic", body); st != http.StatusAccepted {
		t.Fatalf("webhook with room on the disk: %d", st)
	}
	// Fill the disk to below the reserve.
	var st syscall.Statfs_t
	if err := syscall.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * int64(st.Bsize)
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, free-4<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "webhooks refused with 503", func() bool {
		return tb.Post(t, "/v1/webhooks/generic", body) == http.StatusServiceUnavailable
	})
	code, checks := readyz(t, tb)
	if code != http.StatusServiceUnavailable || !strings.Contains(checks["journal"], "disk nearly full") {
		t.Errorf("readyz with a full disk = %d %v, want 503 naming the disk", code, checks)
	}
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	eventually(t, "webhooks taken again", func() bool {
		return tb.Post(t, "/v1/webhooks/generic", body) == http.StatusAccepted
	})
	if code, checks := readyz(t, tb); code != http.StatusOK {
		t.Errorf("readyz after space returned = %d %v, want 200", code, checks)
	}
	t.Logf("intake back %v after the space returned, without a restart", time.Since(start).Round(time.Millisecond))
}
