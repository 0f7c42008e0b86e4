package events

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// holdGroup makes the journal's next leader wait, before it takes its
// group, until n signals are queued, so that they are committed as one
// group.
func holdGroup(t *testing.T, j *Journal, n int) {
	t.Helper()
	j.group.maxDirect = 0
	var once sync.Once
	j.group.hold = func() {
		once.Do(func() {
			deadline := time.Now().Add(10 * time.Second)
			for {
				j.group.mu.Lock()
				queued := len(j.group.queue)
				j.group.mu.Unlock()
				if queued >= n {
					return
				}
				if time.Now().After(deadline) {
					t.Errorf("only %d of %d signals queued", queued, n)
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
}

// publishAll publishes the signals concurrently and returns their errors.
func publishAll(ctx context.Context, j *Journal, sigs []Signal) []error {
	errs := make([]error, len(sigs))
	var wg sync.WaitGroup
	for i, s := range sigs {
		wg.Go(func() { errs[i] = j.PublishSignal(ctx, s) })
	}
	wg.Wait()
	return errs
}

// storedIDs returns the message id of every signal in the stream, in order.
func storedIDs(t *testing.T, j *Journal) []string {
	t.Helper()
	info, err := j.signals.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := j.signals.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, m.Header.Get(jetstream.MsgIDHeader))
	}
	return ids
}

func countIDs(ids []string) map[string]int {
	n := map[string]int{}
	for _, id := range ids {
		n[id]++
	}
	return n
}

// TestGroupCommitBatch: signals that wait together are stored as one atomic
// batch, each under its own message id, and every caller is answered.
func TestGroupCommitBatch(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	const n = 40
	holdGroup(t, j, n)
	sigs := make([]Signal, n)
	for i := range sigs {
		sigs[i] = diskSignal(i, "")
	}
	for i, err := range publishAll(t.Context(), j, sigs) {
		if err != nil {
			t.Fatalf("signal %d: %v", i, err)
		}
	}
	if got := j.group.batches.Load(); got != 1 {
		t.Errorf("%d batches, want 1", got)
	}
	stored := countIDs(storedIDs(t, j))
	if len(stored) != n {
		t.Errorf("%d signals stored, want %d", len(stored), n)
	}
	for i, s := range sigs {
		if id := signalMsgID(s); stored[id] != 1 {
			t.Errorf("signal %d (%s) stored %d times", i, id, stored[id])
		}
	}
}

// TestGroupCommitDuplicates: a group holding signals stored before, or the
// same signal twice, is refused as a batch; its signals are then published
// one by one and each is stored once, as ordinary publishes would.
func TestGroupCommitDuplicates(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	for i := range 5 {
		if err := j.PublishSignal(t.Context(), diskSignal(i, "")); err != nil {
			t.Fatal(err)
		}
	}
	var sigs []Signal
	for i := range 30 {
		sigs = append(sigs, diskSignal(i, "")) // 0-4 are stored already
	}
	sigs = append(sigs, diskSignal(7, "")) // twice in the group
	holdGroup(t, j, len(sigs))
	for i, err := range publishAll(t.Context(), j, sigs) {
		if err != nil {
			t.Fatalf("signal %d: %v", i, err)
		}
	}
	if got := j.group.batches.Load(); got != 0 {
		t.Errorf("%d batches committed, want the one refused", got)
	}
	stored := countIDs(storedIDs(t, j))
	if len(stored) != 30 {
		t.Errorf("%d signals stored, want 30", len(stored))
	}
	for id, n := range stored {
		if n != 1 {
			t.Errorf("%s stored %d times", id, n)
		}
	}
}

// TestGroupCommitCanceled: a caller whose context ends while its signal
// waits returns at once with the context's error, and the signal is not
// published for it; the others are.
func TestGroupCommitCanceled(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	j.group.maxDirect = 0
	entered, release := make(chan struct{}), make(chan struct{})
	j.group.maxDirect = 0
	var once sync.Once
	j.group.hold = func() { once.Do(func() { close(entered); <-release }) }
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := j.PublishSignal(t.Context(), diskSignal(1, "")); err != nil {
			t.Error(err)
		}
	})
	<-entered // the first caller leads, and waits before it takes its group
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- j.PublishSignal(ctx, diskSignal(2, "")) }()
	for {
		j.group.mu.Lock()
		queued := len(j.group.queue)
		j.group.mu.Unlock()
		if queued == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("canceled caller got %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("canceled caller still waits")
	}
	close(release)
	wg.Wait()
	ids := storedIDs(t, j)
	if len(ids) != 1 || ids[0] != signalMsgID(diskSignal(1, "")) {
		t.Errorf("stored %v, want only signal 1", ids)
	}
}

// TestGroupCommitStreamUpgrade: a SIGNALS stream made without atomic
// batches (an older version's) gets them when the journal opens it, and a
// journal whose server refuses batches still stores every signal.
func TestGroupCommitStreamUpgrade(t *testing.T) {
	dir := t.TempDir()
	j := openJournal(t, dir)
	info, err := j.signals.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cfg := info.Config
	cfg.AllowAtomicPublish = false
	if _, err := j.js.UpdateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	// Refused batches fall back to single publishes.
	holdGroup(t, j, 20)
	sigs := make([]Signal, 20)
	for i := range sigs {
		sigs[i] = diskSignal(i, "")
	}
	for i, err := range publishAll(t.Context(), j, sigs) {
		if err != nil {
			t.Fatalf("signal %d: %v", i, err)
		}
	}
	if n := len(countIDs(storedIDs(t, j))); n != 20 || j.group.batches.Load() != 0 {
		t.Errorf("%d signals stored in %d batches, want 20 in none", n, j.group.batches.Load())
	}
	j.Close()

	j = openJournal(t, dir)
	defer j.Close()
	if info, err := j.signals.Info(t.Context()); err != nil || !info.Config.AllowAtomicPublish {
		t.Fatalf("reopened stream: allow_atomic %v, %v", info != nil && info.Config.AllowAtomicPublish, err)
	}
	holdGroup(t, j, 20)
	for i := range sigs {
		sigs[i] = diskSignal(100+i, "")
	}
	for i, err := range publishAll(t.Context(), j, sigs) {
		if err != nil {
			t.Fatalf("signal %d: %v", i, err)
		}
	}
	if n := len(countIDs(storedIDs(t, j))); n != 40 || j.group.batches.Load() != 1 {
		t.Errorf("%d signals stored in %d batches, want 40 in 1", n, j.group.batches.Load())
	}
}

// TestGroupCommitKill: every signal acknowledged before the process is
// killed (SIGKILL, mid-stream, with groups and batches in flight) is in the
// journal when it is opened again.
func TestGroupCommitKill(t *testing.T) {
	if dir := os.Getenv("VOIPBRIDGE_GROUP_KILL_DIR"); dir != "" {
		groupKillChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run", "^TestGroupCommitKill$")
	cmd.Env = append(os.Environ(), "VOIPBRIDGE_GROUP_KILL_DIR="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	batches := ""
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 || f[0] != "acked" {
			continue
		}
		acked[f[1]], batches = true, f[2]
		if len(acked) == 2000 {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	_ = cmd.Wait()
	if len(acked) < 2000 {
		t.Fatalf("child acknowledged only %d signals", len(acked))
	}
	j := openJournal(t, dir)
	defer j.Close()
	stored := countIDs(storedIDs(t, j))
	for id := range acked {
		if stored[id] != 1 {
			t.Errorf("acknowledged signal %s stored %d times", id, stored[id])
		}
	}
	t.Logf("%d acknowledged (%s batches), %d stored", len(acked), batches, len(stored))
}

// groupKillChild publishes signals from 64 goroutines until it is killed,
// printing each one's id once PublishSignal returned nil, and how many
// batches the journal committed so far.
func groupKillChild(dir string) {
	j, err := OpenJournal(context.Background(), JournalOptions{DataDir: dir})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			for i := 0; ; i++ {
				s := diskSignal(g*1_000_000+i, "")
				if err := j.PublishSignal(context.Background(), s); err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintln(w, "acked", signalMsgID(s), j.group.batches.Load())
				w.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestSignalMsgIDUnchanged: signal ids are what they were when each field
// was written to the hash on its own (ids stored before an upgrade must
// still deduplicate).
func TestSignalMsgIDUnchanged(t *testing.T) {
	old := func(s Signal) string {
		h := sha256.New()
		for _, p := range []string{s.Source, s.CallID, s.DedupKey} {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		if s.State == Snapshot {
			h.Write([]byte(s.State))
		}
		return "s" + hex.EncodeToString(h.Sum(nil)[:20])
	}
	long := strings.Repeat("x", 300)
	for _, s := range []Signal{
		{},
		{Source: "generic", CallID: "b1", DedupKey: "id:1", State: Ringing},
		{Source: "sip", CallID: "b1", DedupKey: "id:1", State: Snapshot},
		{Source: "generic", CallID: long, DedupKey: "sha256:" + long, State: Ended},
		{Source: long, CallID: "é\x00", DedupKey: "", State: Snapshot},
	} {
		if got, want := signalMsgID(s), old(s); got != want {
			t.Errorf("%+v: id %s, want %s", s, got, want)
		}
	}
}
