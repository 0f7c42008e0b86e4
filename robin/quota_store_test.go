package robin

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// These tests run in real time: synctest cannot drive a NATS server, whose
// goroutines block on I/O. They use short windows and check recorded
// instants, not wall-clock durations, so a loaded machine slows them down
// but cannot make them fail.

// startQuotaNATS starts an embedded JetStream server without any network
// listener and returns a function that opens a new connection to it and
// the quota bucket.
func startQuotaNATS(t *testing.T) func() jetstream.KeyValue {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		JetStream:  true,
		StoreDir:   t.TempDir(),
		DontListen: true,
		SyncAlways: true,
		NoSigs:     true,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(srv.Shutdown)
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	connect := func() jetstream.KeyValue {
		nc, err := nats.Connect("", nats.InProcessServer(srv))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "quota", History: 1})
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
	return connect
}

func TestKVQuotaStore(t *testing.T) {
	kv := startQuotaNATS(t)()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := NewKVQuotaStore(kv, "robin")

	if rec, rev, err := s.Load(ctx); rec != nil || rev != 0 || err != nil {
		t.Fatalf("Load of a missing key = %q, %d, %v; want nil, 0, nil", rec, rev, err)
	}
	r1, err := s.Update(ctx, []byte("one"), 0)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := s.Update(ctx, []byte("two"), 0); !errors.Is(err, ErrQuotaConflict) {
		t.Fatalf("second create = %v, want a conflict", err)
	}
	r2, err := s.Update(ctx, []byte("two"), r1)
	if err != nil {
		t.Fatalf("update at the current revision: %v", err)
	}
	if _, err := s.Update(ctx, []byte("three"), r1); !errors.Is(err, ErrQuotaConflict) {
		t.Fatalf("update at a stale revision = %v, want a conflict", err)
	}
	if rec, rev, err := s.Load(ctx); string(rec) != "two" || rev != r2 || err != nil {
		t.Fatalf("Load = %q, %d, %v; want two, %d", rec, rev, err, r2)
	}
	// A deleted key reads as empty and can be written again from revision 0.
	if err := kv.Delete(ctx, "robin"); err != nil {
		t.Fatal(err)
	}
	if rec, rev, err := s.Load(ctx); rec != nil || rev != 0 || err != nil {
		t.Fatalf("Load of a deleted key = %q, %d, %v", rec, rev, err)
	}
	if _, err := s.Update(ctx, []byte("again"), 0); err != nil {
		t.Fatalf("create after delete: %v", err)
	}
	// Other failures are not conflicts.
	if _, err := NewKVQuotaStore(kv, "bad key!").Update(ctx, []byte("x"), 0); err == nil || errors.Is(err, ErrQuotaConflict) {
		t.Fatalf("write to an invalid key = %v, want a non-conflict error", err)
	}
}

// quotaKVRun starts n requests through q from a few workers and returns
// the instants recorded, checking each lies within its Reserve call.
func quotaKVRun(t *testing.T, ctx context.Context, q *Quota, n int) []time.Time {
	t.Helper()
	var mu sync.Mutex
	var out []time.Time
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				called := time.Now()
				at, err := q.Admit(ctx, PriorityNormal)
				returned := time.Now()
				if err != nil {
					t.Errorf("Admit: %v", err)
					return
				}
				if at.Before(called.Round(0)) || at.After(returned.Round(0)) {
					t.Errorf("recorded instant %v outside the call [%v, %v]", at, called, returned)
				}
				mu.Lock()
				out = append(out, at)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// TestQuotaKVRestart: a Quota built from the KV record after a restart keeps
// counting what the previous one sent.
func TestQuotaKVRestart(t *testing.T) {
	connect := startQuotaNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	windows := mustQuotaWindows(t, "5/1s,10/3s")
	q1, err := NewQuota(ctx, QuotaOptions{Windows: windows, Store: NewKVQuotaStore(connect(), "robin")})
	if err != nil {
		t.Fatal(err)
	}
	starts := quotaKVRun(t, ctx, q1, 8)
	q2, err := NewQuota(ctx, QuotaOptions{Windows: windows, Store: NewKVQuotaStore(connect(), "robin")})
	if err != nil {
		t.Fatal(err)
	}
	if got := q2.Usage()[1].Used; got < 8 {
		t.Errorf("restarted quota sees %d requests in the 3s window, want the 8 sent before", got)
	}
	starts = append(starts, quotaKVRun(t, ctx, q2, 7)...)
	if v := quotaViolations(starts, windows); v != nil {
		t.Errorf("window violations across the restart:\n%s", strings.Join(v, "\n"))
	}
}

// TestQuotaKVTwoInstances: two Quotas on separate connections share one KV
// record; together they never exceed a window, and their conflicts are
// retried.
func TestQuotaKVTwoInstances(t *testing.T) {
	connect := startQuotaNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	windows := mustQuotaWindows(t, "4/1s,10/2s")
	q1, err := NewQuota(ctx, QuotaOptions{Windows: windows, Store: NewKVQuotaStore(connect(), "robin")})
	if err != nil {
		t.Fatal(err)
	}
	q2, err := NewQuota(ctx, QuotaOptions{Windows: windows, Store: NewKVQuotaStore(connect(), "robin")})
	if err != nil {
		t.Fatal(err)
	}
	var s1, s2 []time.Time
	var wg sync.WaitGroup
	wg.Go(func() { s1 = quotaKVRun(t, ctx, q1, 7) })
	wg.Go(func() { s2 = quotaKVRun(t, ctx, q2, 7) })
	wg.Wait()
	all := append(slices.Clone(s1), s2...)
	if v := quotaViolations(all, windows); v != nil {
		t.Errorf("window violations:\n%s", strings.Join(v, "\n"))
	}
	if len(all) != 14 {
		t.Errorf("%d requests started, want 14", len(all))
	}
	if q1.Conflicts()+q2.Conflicts() == 0 {
		t.Errorf("no compare-and-set conflicts between two busy instances")
	}
	t.Logf("two instances on NATS KV: %d requests in %v, conflicts %d+%d",
		len(all), slices.MaxFunc(all, time.Time.Compare).Sub(slices.MinFunc(all, time.Time.Compare)),
		q1.Conflicts(), q2.Conflicts())
}
