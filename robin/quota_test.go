package robin

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
)

// quotaViolations is the independent checker: an exact sliding log over
// every start. It reports each place where a window of some configured
// length holds more starts than its limit (at most a few).
func quotaViolations(starts []time.Time, windows []Window) []string {
	s := slices.Clone(starts)
	slices.SortFunc(s, func(a, b time.Time) int { return a.Compare(b) })
	var out []string
	for _, w := range windows {
		for k := w.Limit; k < len(s); k++ {
			// Starts k-Limit..k are Limit+1 starts; they fit in one window
			// (t-Per, t] exactly when the first is less than Per before the last.
			if d := s[k].Sub(s[k-w.Limit]); d < w.Per {
				out = append(out, fmt.Sprintf("window %s: %d starts within %v, from %s to %s",
					w, w.Limit+1, d, s[k-w.Limit].Format(time.StampMicro), s[k].Format(time.StampMicro)))
				if len(out) >= 5 {
					return out
				}
			}
		}
	}
	return out
}

// quotaGreedy returns the start offsets, from 0 up to elapsed, of an exact
// limiter that starts every request as early as the windows allow. That
// schedule is optimal: by induction its k-th start is never later than the
// k-th start of any schedule that keeps the windows.
func quotaGreedy(windows []Window, elapsed time.Duration) []time.Duration {
	var s []time.Duration
	for {
		var t time.Duration
		k := len(s)
		for _, w := range windows {
			if k >= w.Limit {
				t = max(t, s[k-w.Limit]+w.Per)
			}
		}
		if t > elapsed {
			return s
		}
		s = append(s, t)
	}
}

// quotaGreedyCount returns the most requests an exact limiter could start
// in an interval of the given length.
func quotaGreedyCount(windows []Window, elapsed time.Duration) int {
	return len(quotaGreedy(windows, elapsed))
}

// quotaUtilisation is the least, over every moment of the run, of the
// requests started so far divided by the most an exact limiter could have
// started in the same elapsed time (both counted from the first start).
// Taking the least moment matters: counted only at the end, a limiter
// that stalls a minute each time the hour rolls over would still score
// 100 %, because an exact one stalls at the end of the run too.
func quotaUtilisation(starts []time.Time, windows []Window) float64 {
	if len(starts) == 0 {
		return 0
	}
	s := slices.Clone(starts)
	slices.SortFunc(s, time.Time.Compare)
	greedy := quotaGreedy(windows, s[len(s)-1].Sub(s[0]))
	// Both counts are step functions; the ratio is least just before one
	// of ours starts, that is at each greedy start (with all of ours at
	// the same instant counted).
	least := 1.0
	ours := 0
	for i, g := range greedy {
		if i+1 < len(greedy) && greedy[i+1] == g {
			continue // count every greedy start at this instant
		}
		for ours < len(s) && s[ours].Sub(s[0]) <= g {
			ours++
		}
		least = min(least, float64(ours)/float64(i+1))
	}
	return least
}

func mustQuotaWindows(t testing.TB, s string) []Window {
	t.Helper()
	w, err := ParseWindows(s)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func newTestQuota(t testing.TB, o QuotaOptions) *Quota {
	t.Helper()
	q, err := NewQuota(context.Background(), o)
	if err != nil {
		t.Fatalf("NewQuota: %v", err)
	}
	return q
}

// quotaMemStore is an in-memory compare-and-set QuotaStore that counts its
// calls and can be told to fail.
type quotaMemStore struct {
	mu      sync.Mutex
	data    []byte
	rev     uint64
	loads   int
	updates int
	fail    error // returned by Update instead of writing, when set
}

func (s *quotaMemStore) Load(ctx context.Context) ([]byte, uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads++
	return slices.Clone(s.data), s.rev, nil
}

func (s *quotaMemStore) Update(ctx context.Context, rec []byte, last uint64) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return 0, s.fail
	}
	if last != s.rev {
		return 0, fmt.Errorf("revision %d, want %d: %w", last, s.rev, ErrQuotaConflict)
	}
	s.rev++
	s.updates++
	s.data = slices.Clone(rec)
	return s.rev, nil
}

// quotaRecorder collects start instants from concurrent workers.
type quotaRecorder struct {
	mu     sync.Mutex
	starts []time.Time
}

func (r *quotaRecorder) add(t time.Time) {
	r.mu.Lock()
	r.starts = append(r.starts, t)
	r.mu.Unlock()
}

// runQuotaBacklog starts n requests through q from several workers, as a
// backlog that is always waiting, and records when each started (the clock
// when Reserve returned). Priorities cycle through p.
func runQuotaBacklog(t *testing.T, q *Quota, n, workers int, rec *quotaRecorder, p ...Priority) {
	t.Helper()
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				if err := q.Reserve(context.Background(), p[i%len(p)]); err != nil {
					t.Errorf("Reserve: %v", err)
					return
				}
				rec.add(time.Now())
			}
		})
	}
	wg.Wait()
}

func TestQuotaChecker(t *testing.T) {
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(ms ...int) []time.Time {
		var out []time.Time
		for _, m := range ms {
			out = append(out, base.Add(time.Duration(m)*time.Millisecond))
		}
		return out
	}
	w := mustQuotaWindows(t, "3/1s")
	if v := quotaViolations(at(0, 0, 0, 1000, 1000, 1000, 2000), w); v != nil {
		t.Errorf("3 per whole second: unexpected violations %v", v)
	}
	if v := quotaViolations(at(0, 0, 1, 999), w); len(v) != 1 {
		t.Errorf("4 within 999ms: got %v, want one violation", v)
	}
	if v := quotaViolations(at(999, 0, 0, 1), w); len(v) != 1 {
		t.Errorf("unsorted input: got %v, want one violation", v)
	}
	if got := quotaGreedyCount(mustQuotaWindows(t, "3/1s,5/10s"), 10*time.Second); got != 8 {
		t.Errorf("greedy count: got %d, want 8 (3 at 0s, 2 at 1s, 3 at 10s)", got)
	}
}

func TestParseWindows(t *testing.T) {
	day := 24 * time.Hour
	good := []struct {
		in   string
		want []Window
	}{
		{DefaultWindows, []Window{{3, time.Second}, {180, time.Minute}, {10000, time.Hour}, {100000, day}}},
		{"100000/1d", []Window{{100000, day}}},
		{" 3/1s , 1000/1h ", []Window{{3, time.Second}, {1000, time.Hour}}},
		{"5/500ms,7/1d12h,9/2d", []Window{{5, 500 * time.Millisecond}, {7, 36 * time.Hour}, {9, 2 * day}}},
		{"1/1h30m", []Window{{1, 90 * time.Minute}}},
	}
	for _, tc := range good {
		got, err := ParseWindows(tc.in)
		if err != nil {
			t.Errorf("ParseWindows(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseWindows(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
	bad := []struct{ in, mention string }{
		{"", "empty"},
		{"  ", "empty"},
		{"3/1s,,180/1m", "entry 2"},
		{"3/1s,", "entry 2"},
		{"3", `"3"`},
		{"3/1s,180", `"180"`},
		{"0/1s", `"0/1s"`},
		{"-1/1s", `"-1/1s"`},
		{"x/1s", `"x/1s"`},
		{"1.5/1s", `"1.5/1s"`},
		{"99999999999/1s", "99999999999"},
		{"3/0s", `"3/0s"`},
		{"3/-1s", `"3/-1s"`},
		{"3/1x", `"3/1x"`},
		{"3/", `"3/"`},
		{"3/1.5d", `"3/1.5d"`},
		{"3/d", `"3/d"`},
		{"3/1d-1h", `"3/1d-1h"`},
		{"3/400d", "366 days"},
		{"3/1s,5/1000ms", "already given"},
		{"3/1d,5/24h", "already given"},
	}
	for _, tc := range bad {
		_, err := ParseWindows(tc.in)
		if err == nil {
			t.Errorf("ParseWindows(%q): no error", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.mention) {
			t.Errorf("ParseWindows(%q) = %q, want it to mention %q", tc.in, err, tc.mention)
		}
	}
}

func TestWindowString(t *testing.T) {
	for _, s := range []string{"3/1s", "180/1m", "10000/1h", "100000/1d", "5/500ms", "7/90m", "9/36h"} {
		w := mustQuotaWindows(t, s)
		if got := w[0].String(); got != s {
			t.Errorf("String of %q = %q", s, got)
		}
	}
}

func FuzzParseWindows(f *testing.F) {
	for _, s := range []string{DefaultWindows, "100000/1d", "1/1d12h", "3/1s,,", "5/1x", "9/-1d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ws, err := ParseWindows(s)
		if err != nil {
			return
		}
		var parts []string
		for _, w := range ws {
			if w.Limit < 1 || w.Per <= 0 || w.Per > quotaMaxPer {
				t.Fatalf("ParseWindows(%q) accepted %+v", s, w)
			}
			parts = append(parts, w.String())
		}
		again, err := ParseWindows(strings.Join(parts, ","))
		if err != nil || !slices.Equal(again, ws) {
			t.Fatalf("round trip of %q through %q: %v, %v", s, parts, again, err)
		}
	})
}

func TestQuotaLimits(t *testing.T) {
	type lims struct{ Lim, Norm []int }
	tests := []struct {
		name    string
		share   float64
		reserve float64
		want    lims
	}{
		{"defaults", 0, DefaultPresenceReserve, lims{[]int{3, 180, 10000, 100000}, []int{3, 162, 9000, 90000}}},
		{"no reserve", 1, 0, lims{[]int{3, 180, 10000, 100000}, []int{3, 180, 10000, 100000}}},
		{"share 0.6", 0.6, 0.1, lims{[]int{1, 108, 6000, 60000}, []int{1, 98, 5400, 54000}}},
		{"share 0.7", 0.7, 0.3, lims{[]int{2, 126, 7000, 70000}, []int{2, 89, 4900, 49000}}},
		{"tiny share keeps 1", 0.001, 0.5, lims{[]int{1, 1, 10, 100}, []int{1, 1, 5, 50}}},
		{"big reserve keeps 1", 1, 0.99, lims{[]int{3, 180, 10000, 100000}, []int{1, 2, 100, 1000}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := newTestQuota(t, QuotaOptions{Share: tc.share, PresenceReserve: tc.reserve})
			var got lims
			for _, w := range q.st.wins {
				got.Lim = append(got.Lim, w.lim)
				got.Norm = append(got.Norm, w.norm)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("limits (-want +got):\n%s", diff)
			}
			var eff []int
			for _, w := range q.Windows() {
				eff = append(eff, w.Limit)
			}
			if diff := cmp.Diff(tc.want.Lim, eff); diff != "" {
				t.Errorf("Windows() limits (-want +got):\n%s", diff)
			}
		})
	}
	for _, o := range []QuotaOptions{
		{Share: 1.5}, {Share: -0.1}, {Share: math.NaN()},
		{PresenceReserve: 1}, {PresenceReserve: -0.1}, {PresenceReserve: math.NaN()},
		{Windows: []Window{{0, time.Second}}}, {Windows: []Window{{1, 0}}},
		{Windows: []Window{{1, time.Second}, {2, time.Second}}},
	} {
		if _, err := NewQuota(context.Background(), o); err == nil {
			t.Errorf("NewQuota(%+v): no error", o)
		}
	}
}

// TestQuotaBurst: ten requests at once under 3/1s start three at a time,
// one second apart.
func TestQuotaBurst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newTestQuota(t, QuotaOptions{Windows: mustQuotaWindows(t, "3/1s")})
		start := time.Now()
		var rec quotaRecorder
		runQuotaBacklog(t, q, 10, 10, &rec, PriorityNormal)
		var got []time.Duration
		for _, s := range rec.starts {
			got = append(got, s.Sub(start))
		}
		slices.Sort(got)
		s := time.Second
		want := []time.Duration{0, 0, 0, s, s, s, 2 * s, 2 * s, 2 * s, 3 * s}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("start offsets (-want +got):\n%s", diff)
		}
	})
}

// TestQuotaBacklog drains 20 000 requests under ROBIN's limits: no window is
// ever exceeded and the quota is used to within 1 % of an exact limiter.
func TestQuotaBacklog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		windows := mustQuotaWindows(t, DefaultWindows)
		q := newTestQuota(t, QuotaOptions{Windows: windows})
		var rec quotaRecorder
		runQuotaBacklog(t, q, 20000, 16, &rec, PriorityNormal, PriorityAnswered, PriorityPresence)
		if len(rec.starts) != 20000 {
			t.Fatalf("%d starts, want 20000", len(rec.starts))
		}
		if v := quotaViolations(rec.starts, windows); v != nil {
			t.Fatalf("window violations:\n%s", strings.Join(v, "\n"))
		}
		u := quotaUtilisation(rec.starts, windows)
		took := slices.MaxFunc(rec.starts, time.Time.Compare).Sub(slices.MinFunc(rec.starts, time.Time.Compare))
		exact := quotaGreedy(windows, took)[20000-1]
		t.Logf("backlog: 20000 requests in %v (an exact limiter: %v), utilisation at least %.4f%% of an exact limiter at every moment",
			took, exact, 100*u)
		if u < 0.99 || u > 1 {
			t.Errorf("utilisation %.4f, want at least 0.99 (and at most 1)", u)
		}
	})
}

// TestQuotaRestart: a new Quota built from the store after half the backlog
// continues where the first one stopped, with no burst; without the store
// the same run exceeds the hour window, which proves the check can fail.
func TestQuotaRestart(t *testing.T) {
	windows := mustQuotaWindows(t, DefaultWindows)
	run := func(t *testing.T, keep bool) []time.Time {
		var rec quotaRecorder
		o := QuotaOptions{Windows: windows}
		store := &quotaMemStore{}
		if keep {
			o.Store = store
		}
		q1 := newTestQuota(t, o)
		runQuotaBacklog(t, q1, 10000, 8, &rec, PriorityNormal)
		q2 := newTestQuota(t, o)
		runQuotaBacklog(t, q2, 10000, 8, &rec, PriorityNormal)
		if keep {
			// One load per process and one write per request: a single
			// instance never reads back what it wrote.
			if store.loads != 2 || store.updates != 20000 {
				t.Errorf("store saw %d loads and %d updates, want 2 and 20000", store.loads, store.updates)
			}
		}
		return rec.starts
	}
	synctest.Test(t, func(t *testing.T) {
		starts := run(t, true)
		if v := quotaViolations(starts, windows); v != nil {
			t.Fatalf("window violations across the restart:\n%s", strings.Join(v, "\n"))
		}
		u := quotaUtilisation(starts, windows)
		t.Logf("restart: utilisation %.4f%%", 100*u)
		if u < 0.99 {
			t.Errorf("utilisation %.4f, want at least 0.99", u)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		if v := quotaViolations(run(t, false), windows); v == nil {
			t.Errorf("a restart that forgets the record did not exceed any window: the check cannot fail")
		}
	})
}

// TestQuotaTwoInstances: two Quotas sharing one store never exceed a window
// together; their compare-and-set conflicts are retried.
func TestQuotaTwoInstances(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		windows := mustQuotaWindows(t, DefaultWindows)
		store := &quotaMemStore{}
		q1 := newTestQuota(t, QuotaOptions{Windows: windows, Store: store})
		q2 := newTestQuota(t, QuotaOptions{Windows: windows, Store: store})
		var rec1, rec2 quotaRecorder
		var wg sync.WaitGroup
		wg.Go(func() { runQuotaBacklog(t, q1, 6000, 4, &rec1, PriorityNormal, PriorityAnswered) })
		wg.Go(func() { runQuotaBacklog(t, q2, 6000, 4, &rec2, PriorityNormal, PriorityPresence) })
		wg.Wait()
		all := append(slices.Clone(rec1.starts), rec2.starts...)
		if v := quotaViolations(all, windows); v != nil {
			t.Fatalf("window violations:\n%s", strings.Join(v, "\n"))
		}
		if q1.Conflicts()+q2.Conflicts() == 0 {
			t.Errorf("no compare-and-set conflicts between two busy instances")
		}
		u := quotaUtilisation(all, windows)
		t.Logf("two instances: utilisation %.4f%%, conflicts %d+%d", 100*u, q1.Conflicts(), q2.Conflicts())
		if u < 0.99 {
			t.Errorf("utilisation %.4f, want at least 0.99", u)
		}
	})
}

// TestQuotaPresenceReserve: while other traffic uses all it may, a presence
// look-up still starts at once, and the other traffic stays within its
// share of every window.
func TestQuotaPresenceReserve(t *testing.T) {
	for _, reserve := range []float64{DefaultPresenceReserve, 0} {
		t.Run(fmt.Sprintf("reserve=%v", reserve), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				// A 1 s window large enough that a tenth of it is a whole
				// request (the reserve is rounded down).
				windows := mustQuotaWindows(t, "10/1s,600/1m,10000/1h,100000/1d")
				q := newTestQuota(t, QuotaOptions{Windows: windows, PresenceReserve: reserve})
				ctx, cancel := context.WithCancel(context.Background())
				var normal, all quotaRecorder
				var wg sync.WaitGroup
				for range 6 {
					wg.Go(func() {
						for {
							if q.Reserve(ctx, PriorityNormal) != nil {
								return
							}
							normal.add(time.Now())
							all.add(time.Now())
						}
					})
				}
				start := time.Now()
				time.Sleep(100*time.Second + 500*time.Millisecond)
				ok, _, err := q.TryReserve(ctx, PriorityPresence)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					all.add(time.Now())
				}
				if want := reserve > 0; ok != want {
					t.Errorf("presence TryReserve mid-second under saturating traffic: ok=%v, want %v", ok, want)
				}
				// A blocking presence Reserve always gets through within the
				// 1 s window, ahead of the waiting normal requests.
				asked := time.Now()
				if err := q.Reserve(ctx, PriorityPresence); err != nil {
					t.Fatal(err)
				}
				all.add(time.Now())
				if d := time.Since(asked); d > time.Second {
					t.Errorf("presence Reserve waited %v, want at most 1s", d)
				}
				// End between two starts, so the count does not depend on
				// which goroutine runs first at a whole second.
				time.Sleep(20*time.Second - 250*time.Millisecond)
				cancel()
				wg.Wait()

				if v := quotaViolations(all.starts, windows); v != nil {
					t.Errorf("window violations:\n%s", strings.Join(v, "\n"))
				}
				share := mustQuotaWindows(t, "9/1s,540/1m,9000/1h,90000/1d")
				if reserve == 0 {
					share = windows
				}
				if v := quotaViolations(normal.starts, share); v != nil {
					t.Errorf("normal traffic exceeded its share:\n%s", strings.Join(v, "\n"))
				}
				// Normal traffic still uses its whole share, less the slots
				// the two presence requests took in the same second.
				if got, want := len(normal.starts), quotaGreedyCount(share, time.Since(start))-2; got < want {
					t.Errorf("normal traffic started %d requests in %v, want at least %d", got, time.Since(start), want)
				}
			})
		})
	}
}

// TestQuotaPriorityOrder: waiting requests start highest priority first,
// first come first served within a priority.
func TestQuotaPriorityOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newTestQuota(t, QuotaOptions{Windows: mustQuotaWindows(t, "1/1s")})
		if err := q.Reserve(context.Background(), PriorityNormal); err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var order []string
		var wg sync.WaitGroup
		for _, r := range []struct {
			name string
			p    Priority
		}{{"normal-1", PriorityNormal}, {"answered-1", PriorityAnswered}, {"normal-2", PriorityNormal}, {"presence", PriorityPresence}, {"answered-2", PriorityAnswered}} {
			wg.Go(func() {
				if err := q.Reserve(context.Background(), r.p); err != nil {
					t.Error(err)
				}
				mu.Lock()
				order = append(order, r.name)
				mu.Unlock()
			})
			synctest.Wait() // queued before the next arrives
		}
		wg.Wait()
		want := []string{"presence", "answered-1", "answered-2", "normal-1", "normal-2"}
		if diff := cmp.Diff(want, order); diff != "" {
			t.Errorf("start order (-want +got):\n%s", diff)
		}
	})
}

// TestQuotaTryReserveQueue: TryReserve does not jump ahead of a waiting
// Reserve of the same or higher priority, even when the windows have room.
func TestQuotaTryReserveQueue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A clock the test sets lets the windows open without the waiting
		// Reserve's timer firing first.
		clock := &quotaClock{}
		clock.set(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
		q := newTestQuota(t, QuotaOptions{Windows: mustQuotaWindows(t, "1/1s"), Now: clock.Now})
		if ok, _, _ := q.TryReserve(context.Background(), PriorityNormal); !ok {
			t.Fatal("first TryReserve refused")
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() { _ = q.Reserve(ctx, PriorityAnswered) })
		synctest.Wait()
		clock.set(clock.Now().Add(time.Second))
		for _, tc := range []struct {
			p    Priority
			want bool
		}{{PriorityNormal, false}, {PriorityAnswered, false}, {PriorityPresence, true}} {
			if ok, _, err := q.TryReserve(context.Background(), tc.p); ok != tc.want || err != nil {
				t.Errorf("TryReserve(%v) with an answered request waiting = %v, %v; want %v", tc.p, ok, err, tc.want)
			}
		}
		cancel()
		wg.Wait()
	})
}

// TestQuotaCancel: a Reserve whose context ends records nothing and lets the
// requests behind it through.
func TestQuotaCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newTestQuota(t, QuotaOptions{Windows: mustQuotaWindows(t, "1/1s")})
		start := time.Now()
		if err := q.Reserve(context.Background(), PriorityNormal); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := q.Reserve(ctx, PriorityPresence); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Reserve with expiring context = %v, want deadline exceeded", err)
			}
		})
		synctest.Wait()
		if err := q.Reserve(context.Background(), PriorityNormal); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("request behind a cancelled one started after %v, want 1s", d)
		}
		wg.Wait()
		if u := q.Usage()[0]; u.Used != 1 || u.Remaining != 0 {
			t.Errorf("usage %+v, want 1 used (the cancelled request not counted)", u)
		}
		if err := q.Reserve(ctx, PriorityNormal); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Reserve with ended context = %v", err)
		}
	})
}

// TestQuotaStoreFailure: when the store fails, Reserve fails and nothing is
// counted; once it recovers, requests go through again.
func TestQuotaStoreFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &quotaMemStore{}
		q := newTestQuota(t, QuotaOptions{Windows: mustQuotaWindows(t, "2/1s,100/1h"), Store: store})
		boom := errors.New("store unavailable")
		store.fail = boom
		if err := q.Reserve(context.Background(), PriorityNormal); !errors.Is(err, boom) {
			t.Fatalf("Reserve with failing store = %v, want %v", err, boom)
		}
		if ok, _, err := q.TryReserve(context.Background(), PriorityNormal); ok || !errors.Is(err, boom) {
			t.Fatalf("TryReserve with failing store = %v, %v", ok, err)
		}
		for _, u := range q.Usage() {
			if u.Used != 0 {
				t.Errorf("failed requests counted: %+v", u)
			}
		}
		store.fail = nil
		for range 2 {
			if ok, _, err := q.TryReserve(context.Background(), PriorityNormal); !ok || err != nil {
				t.Fatalf("TryReserve after recovery = %v, %v", ok, err)
			}
		}
		rec, err := decodeQuotaRecord(store.data)
		if err != nil {
			t.Fatal(err)
		}
		if len(rec.log) != 2 || len(rec.series) != 1 || len(rec.series[0].b) != 1 || rec.series[0].b[0].n != 2 {
			t.Errorf("stored record %+v, want two requests in the log and one bucket of 2", rec)
		}
	})
}

// TestQuotaConflict: an instance whose record is stale does not admit on
// it: the write conflicts, it reloads and waits for the window.
func TestQuotaConflict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &quotaMemStore{}
		windows := mustQuotaWindows(t, "1/1s")
		q1 := newTestQuota(t, QuotaOptions{Windows: windows, Store: store})
		q2 := newTestQuota(t, QuotaOptions{Windows: windows, Store: store})
		start := time.Now()
		if err := q1.Reserve(context.Background(), PriorityNormal); err != nil {
			t.Fatal(err)
		}
		if ok, ready, err := q2.TryReserve(context.Background(), PriorityNormal); ok || err != nil || !ready.Equal(start.Add(time.Second)) {
			t.Errorf("stale TryReserve = %v, %v, %v; want not ok, ready in 1s", ok, ready.Sub(start), err)
		}
		if err := q2.Reserve(context.Background(), PriorityNormal); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != time.Second {
			t.Errorf("second instance started after %v, want 1s", d)
		}
		if q2.Conflicts() != 1 || q1.Conflicts() != 0 {
			t.Errorf("conflicts %d and %d, want 0 and 1", q1.Conflicts(), q2.Conflicts())
		}
	})
}

func TestQuotaUsage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newTestQuota(t, QuotaOptions{Share: 0.5})
		for range 3 {
			if err := q.Reserve(context.Background(), PriorityNormal); err != nil {
				t.Fatal(err)
			}
		}
		want := []WindowUsage{
			{Window{1, time.Second}, 1, 0},
			{Window{90, time.Minute}, 3, 87},
			{Window{5000, time.Hour}, 3, 4997},
			{Window{50000, 24 * time.Hour}, 3, 49997},
		}
		if diff := cmp.Diff(want, q.Usage()); diff != "" {
			t.Errorf("usage after 2s (-want +got):\n%s", diff)
		}
		// The hour counts in one-second buckets, so the request at 2s
		// leaves it at 1h+3s, not 1h+2s.
		time.Sleep(time.Hour)
		if u := q.Usage()[2]; u.Used != 1 {
			t.Errorf("hour usage at 1h+2s %+v, want the last request still counted", u)
		}
		time.Sleep(time.Second)
		want = []WindowUsage{
			{Window{1, time.Second}, 0, 1},
			{Window{90, time.Minute}, 0, 90},
			{Window{5000, time.Hour}, 0, 5000},
			{Window{50000, 24 * time.Hour}, 3, 49997},
		}
		if diff := cmp.Diff(want, q.Usage()); diff != "" {
			t.Errorf("usage an hour later (-want +got):\n%s", diff)
		}
	})
}

// quotaClock is a settable clock for tests and benchmarks that drive the
// Quota with TryReserve.
type quotaClock struct{ ns atomic.Int64 }

func (c *quotaClock) Now() time.Time  { return time.Unix(0, c.ns.Load()) }
func (c *quotaClock) set(t time.Time) { c.ns.Store(t.UnixNano()) }

// TestQuotaRandomNeverOverAdmits drives random traffic with random clock
// steps (some backwards) and restarts that switch between two window layouts
// through a store, and checks with the exact log that no window common to
// both layouts is ever exceeded and that the bucketed windows lose little.
func TestQuotaRandomNeverOverAdmits(t *testing.T) {
	layoutA := mustQuotaWindows(t, "2/1s,30/2m,50/10m")
	layoutB := mustQuotaWindows(t, "2/1s,5/3s,30/2m,50/10m,40/5m")
	for seed := range uint64(4) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 42))
			clock := &quotaClock{}
			clock.set(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
			store := &quotaMemStore{}
			layouts := [][]Window{layoutA, layoutB}
			layout := 0
			newQ := func() *Quota {
				return newTestQuota(t, QuotaOptions{Windows: layouts[layout], Store: store, Now: clock.Now})
			}
			q := newQ()
			var starts []time.Time
			for i := range 20000 {
				switch r := rng.IntN(1000); {
				case r < 2:
					layout = rng.IntN(2)
					q = newQ()
				case r < 5:
					clock.set(clock.Now().Add(-time.Duration(rng.Int64N(int64(2 * time.Second)))))
				case r < 500:
					clock.set(q.ReadyAt(PriorityNormal))
				default:
					clock.set(clock.Now().Add(time.Duration(rng.ExpFloat64() * float64(time.Second))))
				}
				ok, at, err := q.TryReserve(context.Background(), PriorityNormal)
				if err != nil {
					t.Fatal(err)
				}
				if ok {
					if at.Before(clock.Now()) {
						t.Fatalf("step %d: recorded %v before now %v", i, at, clock.Now())
					}
					starts = append(starts, at)
				} else if !at.After(clock.Now()) {
					t.Fatalf("step %d: refused with ready time %v not after now %v", i, at, clock.Now())
				}
			}
			if v := quotaViolations(starts, layoutA); v != nil {
				t.Fatalf("%d starts, window violations:\n%s", len(starts), strings.Join(v, "\n"))
			}
			if len(starts) < 1000 {
				t.Errorf("only %d starts", len(starts))
			}
		})
	}
}

// BenchmarkQuotaDecide measures one decision on a full day's record at
// ROBIN's default limits, in memory: "blocked" is a refused TryReserve
// (decide and compute the ready time), "admit" moves the clock to the ready
// time and admits (decide, record, prune), "admit-store" also encodes the
// record and writes it to an in-memory compare-and-set store.
func BenchmarkQuotaDecide(b *testing.B) {
	fullDay := func(b *testing.B, store QuotaStore) (*Quota, *quotaClock) {
		clock := &quotaClock{}
		clock.set(time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC))
		q := newTestQuota(b, QuotaOptions{Now: clock.Now, PresenceReserve: DefaultPresenceReserve})
		end := clock.Now().Add(24 * time.Hour)
		for clock.Now().Before(end) {
			clock.set(q.ReadyAt(PriorityNormal))
			if ok, _, err := q.TryReserve(context.Background(), PriorityNormal); !ok || err != nil {
				b.Fatalf("filling: %v %v", ok, err)
			}
		}
		if store != nil {
			// Hand the full record to the store and load it back.
			q.store = store
			q.mu.Lock()
			rec := q.st.encode(nil, clock.Now().UnixNano())
			q.mu.Unlock()
			if _, err := store.Update(context.Background(), rec, 0); err != nil {
				b.Fatal(err)
			}
			if err := q.reload(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		return q, clock
	}
	b.Run("blocked", func(b *testing.B) {
		q, _ := fullDay(b, nil)
		for { // take whatever the current instant still allows
			if ok, _, _ := q.TryReserve(context.Background(), PriorityNormal); !ok {
				break
			}
		}
		b.ReportAllocs()
		for b.Loop() {
			if ok, _, _ := q.TryReserve(context.Background(), PriorityNormal); ok {
				b.Fatal("admitted on a full record")
			}
		}
	})
	admit := func(b *testing.B, store QuotaStore) {
		q, clock := fullDay(b, store)
		b.ReportAllocs()
		for b.Loop() {
			clock.set(q.ReadyAt(PriorityNormal))
			if ok, _, err := q.TryReserve(context.Background(), PriorityNormal); !ok || err != nil {
				b.Fatalf("not admitted at the ready time: %v", err)
			}
		}
		b.StopTimer()
		q.mu.Lock()
		b.ReportMetric(float64(len(q.st.encode(nil, clock.Now().UnixNano()))), "record-bytes")
		q.mu.Unlock()
	}
	b.Run("admit", func(b *testing.B) { admit(b, nil) })
	b.Run("admit-store", func(b *testing.B) { admit(b, &quotaMemStore{}) })
	// acquire-release-store is what a delivery pays: wait for the turn,
	// hold the place (stored), count it at the answer.
	b.Run("acquire-release-store", func(b *testing.B) {
		q, clock := fullDay(b, &quotaMemStore{})
		b.ReportAllocs()
		for b.Loop() {
			clock.set(q.ReadyAt(PriorityNormal))
			release, err := q.Acquire(context.Background(), PriorityNormal)
			if err != nil {
				b.Fatal(err)
			}
			release(true)
		}
	})
}
