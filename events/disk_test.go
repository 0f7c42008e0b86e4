package events

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func diskSignal(i int, pad string) Signal {
	return Signal{Source: "generic", CallID: fmt.Sprint("c", i), State: Ringing, Extension: "201", Remote: "+31612345678",
		Time: time.Now(), DedupKey: fmt.Sprint("d", i) + pad}
}

// TestDiskGuard: below the reserve the journal refuses signals with
// ErrDiskFull and says so in Ready; when space returns it takes signals
// again, without a restart.
func TestDiskGuard(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 30)
	j, err := OpenJournal(t.Context(), JournalOptions{DataDir: t.TempDir(), MinFree: 64 << 20,
		freeSpace: func(string) (uint64, error) { return free.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if err := j.PublishSignal(t.Context(), diskSignal(1, "")); err != nil {
		t.Fatal(err)
	}
	free.Store(10 << 20)
	// The guard reads the disk at most once a second while it is fine.
	deadline := time.Now().Add(5 * time.Second)
	for i := 2; ; i++ {
		err := j.PublishSignal(t.Context(), diskSignal(i, ""))
		if errors.Is(err, ErrDiskFull) {
			break
		}
		if err != nil || time.Now().After(deadline) {
			t.Fatalf("publish with 10 MiB free = %v, want ErrDiskFull within a second", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := j.Ready(t.Context()); !errors.Is(err, ErrDiskFull) || !strings.Contains(err.Error(), "10 MiB free") {
		t.Errorf("Ready = %v, want ErrDiskFull naming the free space", err)
	}
	free.Store(1 << 30)
	if err := j.PublishSignal(t.Context(), diskSignal(3, "")); err != nil {
		t.Fatalf("publish after space returned = %v, want it taken", err)
	}
	if err := j.Ready(t.Context()); err != nil {
		t.Errorf("Ready after space returned = %v", err)
	}
}

// TestDiskFullForReal fills a small tmpfs: the journal refuses signals
// before JetStream runs out of space, and takes them again once a file is
// removed, in the same process. It needs root to mount the tmpfs (as in CI's
// container); elsewhere it is skipped.
func TestDiskFullForReal(t *testing.T) {
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (%v: %s); TestDiskGuard covers the logic", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", mnt).Run() })
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, make([]byte, 8<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	j, err := OpenJournal(t.Context(), JournalOptions{DataDir: filepath.Join(mnt, "journal"), MinFree: 4 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	pad := strings.Repeat("x", 200)
	n := 0
	for ; ; n++ {
		err = j.PublishSignal(t.Context(), diskSignal(n, pad))
		if err != nil {
			break
		}
		if n > 1_000_000 {
			t.Fatal("the disk never filled")
		}
	}
	if !errors.Is(err, ErrDiskFull) {
		t.Fatalf("after %d signals the journal failed with %v, want ErrDiskFull before JetStream ran out of space", n, err)
	}
	t.Logf("refused after %d signals: %v", n, err)
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	if err := j.PublishSignal(t.Context(), diskSignal(n, pad)); err != nil {
		t.Fatalf("after freeing space: %v, want the signal taken without a restart", err)
	}
	if err := j.Ready(t.Context()); err != nil {
		t.Errorf("Ready after freeing space: %v", err)
	}
}
