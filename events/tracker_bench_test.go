package events

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// heldCalls fills m with n answered calls in progress, each from its own
// number, as a busy contact centre holds them.
func heldCalls(m *machine, n int, at time.Time) {
	for i := range n {
		s := Signal{Source: "generic", CallID: fmt.Sprintf("held-%d", i), Extension: "201", State: Answered,
			Remote: fmt.Sprintf("+3161%07d", i), Dialled: did, Direction: Inbound, Time: at, DedupKey: fmt.Sprint("h", i)}
		m.apply(s, 0, at)
	}
}

// callSignals returns the signals of n calls of three signals each
// (ringing, answered, ended), every call from another number.
func callSignals(n int, at time.Time) []Signal {
	out := make([]Signal, 0, 3*n)
	for i := range n {
		id := fmt.Sprintf("new-%d", i)
		for k, st := range []State{Ringing, Answered, Ended} {
			out = append(out, Signal{Source: "generic", CallID: id, Extension: "202", State: st,
				Remote: fmt.Sprintf("+3162%07d", i), Dialled: did, Direction: Inbound, Time: at.Add(time.Duration(k) * time.Second),
				DedupKey: fmt.Sprint(id, k)})
		}
	}
	return out
}

// BenchmarkMachineFold: the call model alone (no journal), one op one
// signal, with 1 000 to 100 000 calls held. The cost must not grow with the
// calls held.
func BenchmarkMachineFold(b *testing.B) {
	for _, held := range []int{1_000, 10_000, 100_000} {
		for _, cont := range []bool{false, true} {
			b.Run(fmt.Sprintf("held=%d/continuing=%v", held, cont), func(b *testing.B) {
				pol := defaultPolicies()
				if cont {
					continuing(&pol)
				}
				m := newTestMachine(b, pol, "")
				heldCalls(m, held, t0)
				sigs := callSignals(b.N/3+1, t0)
				b.ReportAllocs()
				b.ResetTimer()
				for i := range b.N {
					m.apply(sigs[i], uint64(i+1), t0.Add(time.Duration(i)*time.Millisecond))
					if i%1000 == 0 {
						m.tick(t0.Add(time.Duration(i) * time.Millisecond))
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signals/s")
			})
		}
	}
}

// BenchmarkHeldCallMemory: heap bytes per answered call in progress.
func BenchmarkHeldCallMemory(b *testing.B) {
	const n = 100_000
	for range b.N {
		m := newTestMachine(b, defaultPolicies(), "")
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		heldCalls(m, n, t0)
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/call")
		runtime.KeepAlive(m)
	}
}

// seedCalls journals n held calls' records, as a tracker holding them would
// have saved them.
func seedCalls(b *testing.B, tr *Tracker, n int) {
	b.Helper()
	heldCalls(tr.m, n, time.Now()) // in progress now: no timeout falls due
	for _, c := range tr.m.calls {
		c.Updated = time.Now()
	}
	var r result
	for k := range tr.m.calls {
		r.changed = append(r.changed, k)
	}
	for i := 0; i < len(r.changed); i += 5000 {
		part := result{changed: r.changed[i:min(i+5000, len(r.changed))]}
		if err := tr.commit(context.Background(), part); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTrackerFold: signals folded per second through the journal (read,
// folded, events and call records committed in groups) with 1 000 to
// 100 000 calls held. One op is one signal. Beside it, the floor: raw
// asynchronous publishes to the same journal (SyncAlways: every message
// is fsynced), one op one message.
func BenchmarkTrackerFold(b *testing.B) {
	b.Run("raw-publish", func(b *testing.B) {
		j := openJournal(b, b.TempDir())
		data := make([]byte, 300)
		b.ResetTimer()
		var futures []jetstream.PubAckFuture
		for i := range b.N {
			f, err := j.js.PublishAsync(j.n.eventsSubj+".bench", data, jetstream.WithMsgID(fmt.Sprint("m", i)))
			if err != nil {
				b.Fatal(err)
			}
			futures = append(futures, f)
			if len(futures) == maxBatch || i == b.N-1 {
				for _, f := range futures {
					select {
					case <-f.Ok():
					case err := <-f.Err():
						b.Fatal(err)
					}
				}
				futures = futures[:0]
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	for _, held := range []int{1_000, 10_000, 100_000} {
		b.Run(fmt.Sprintf("held=%d", held), func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			j := openJournal(b, dir)
			numbers, d := benchDeps(b)
			seed, err := NewTracker(ctx, TrackerOptions{Journal: j, Numbers: numbers, Dir: d, Policies: defaultPolicies()})
			if err != nil {
				b.Fatal(err)
			}
			seedCalls(b, seed, held)
			sigs := callSignals(b.N/3+1, time.Now())[:b.N]
			for _, s := range sigs {
				if err := j.PublishSignal(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
			tr, err := NewTracker(ctx, TrackerOptions{Journal: j, Numbers: numbers, Dir: d, Policies: defaultPolicies()})
			if err != nil {
				b.Fatal(err)
			}
			rctx, stop := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { tr.Run(rctx); close(done) }()
			for !tr.restored.Load() {
				time.Sleep(time.Millisecond)
			}
			b.ResetTimer()
			for tr.Applied() < uint64(b.N) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			stop()
			<-done
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "signals/s")
		})
	}
}

// BenchmarkTrackerRestore: a restart's read of 100 000 held calls, from
// the start of Run to the tracker being ready (Status ""). One op is one
// restart.
func BenchmarkTrackerRestore(b *testing.B) {
	ctx := context.Background()
	j := openJournal(b, b.TempDir())
	numbers, d := benchDeps(b)
	seed, err := NewTracker(ctx, TrackerOptions{Journal: j, Numbers: numbers, Dir: d, Policies: defaultPolicies()})
	if err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	seedCalls(b, seed, n)
	b.ResetTimer()
	for range b.N {
		tr, err := NewTracker(ctx, TrackerOptions{Journal: j, Numbers: numbers, Dir: d, Policies: defaultPolicies()})
		if err != nil {
			b.Fatal(err)
		}
		if err := tr.restore(ctx); err != nil {
			b.Fatal(err)
		}
		if got := len(tr.m.calls); got != n {
			b.Fatalf("restored %d calls, want %d", got, n)
		}
	}
	b.ReportMetric(float64(n), "calls")
}

func benchDeps(b *testing.B) (Numbers, Directory) {
	m := newTestMachine(b, defaultPolicies(), "")
	return m.numbers, m.dir
}
