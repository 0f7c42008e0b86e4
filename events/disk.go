package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultMinFree is the default of JOURNAL_MIN_FREE: the embedded journal
// stops taking signals while its disk has less free space than this, so
// that JetStream itself never runs out of space (it cannot recover from
// that without a restart) and the tracker and delivery, which free space,
// keep working.
const DefaultMinFree = 64 << 20

// ErrDiskFull is returned by PublishSignal while the journal's disk has less
// free space than its reserve; intake resumes by itself when space returns.
var ErrDiskFull = errors.New("journal disk nearly full")

// diskGuard checks the free space of the embedded journal's disk: on every
// call while it is short, and otherwise once a second or once an eighth of
// the reserve was written since the last look, whichever comes first, so
// that no burst of intake can write through the reserve unseen.
type diskGuard struct {
	dir     string
	minFree uint64
	free    func(dir string) (uint64, error)

	mu      sync.Mutex
	checked time.Time
	written uint64 // bytes published since the last look
	last    error
	bytes   uint64
}

func statfsFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// check returns ErrDiskFull (with the figures) while free space is below the
// reserve. A failing statfs is not a full disk: the write decides.
func (g *diskGuard) check(n int) error {
	if g == nil {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.written += uint64(n)
	if g.last == nil && time.Since(g.checked) < time.Second && g.written < g.minFree/8 {
		return nil
	}
	g.checked, g.written = time.Now(), 0
	free, err := g.free(g.dir)
	if err != nil {
		g.last = nil
		return nil
	}
	g.bytes = free
	if free < g.minFree {
		g.last = fmt.Errorf("%w: %d MiB free, %d MiB kept in reserve", ErrDiskFull, free>>20, g.minFree>>20)
		return g.last
	}
	g.last = nil
	return nil
}

// DiskFree returns the free bytes of the embedded journal's disk (ok false
// with an external journal, or when it cannot be read).
func (j *Journal) DiskFree() (uint64, bool) {
	if j.disk == nil {
		return 0, false
	}
	free, err := j.disk.free(j.disk.dir)
	return free, err == nil
}

// StreamBytes returns the bytes each of the journal's streams holds, by
// stream name.
func (j *Journal) StreamBytes(ctx context.Context) (map[string]uint64, error) {
	out := map[string]uint64{}
	for _, s := range []jetstream.Stream{j.signals, j.events, j.dead} {
		info, err := s.Info(ctx)
		if err != nil {
			return nil, err
		}
		out[info.Config.Name] = info.State.Bytes
	}
	return out, nil
}
