package robin

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// runArrivals sends n requests from workers through q as a helpdesk sees
// them: each reaches the helpdesk some time after its admission (the store
// write, the network) and is answered some time after that. It records the
// arrivals, which is what the helpdesk counts. With acquire the requests
// hold their slot until answered; without, they are counted at admission.
func runArrivals(t *testing.T, q *Quota, n, workers int, acquire bool, seed uint64) []time.Time {
	t.Helper()
	var rec quotaRecorder
	var left atomic.Int64
	left.Store(int64(n))
	var wg sync.WaitGroup
	for i := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(i)))
		wg.Go(func() {
			for left.Add(-1) >= 0 {
				release := func(bool) {}
				if acquire {
					r, err := q.Acquire(context.Background(), PriorityNormal)
					if err != nil {
						t.Errorf("Acquire: %v", err)
						return
					}
					release = r
				} else if err := q.Reserve(context.Background(), PriorityNormal); err != nil {
					t.Errorf("Reserve: %v", err)
					return
				}
				// Admission to arrival: up to 300 ms, sometimes much less.
				time.Sleep(time.Duration(rng.ExpFloat64() * float64(60*time.Millisecond)))
				rec.add(time.Now())
				// Arrival to answer.
				time.Sleep(time.Duration(rng.IntN(200)) * time.Millisecond)
				release(true)
			}
		})
	}
	wg.Wait()
	return rec.starts
}

// overallUtilisation is the requests that arrived divided by those the
// fastest schedule keeping the windows could start in the same span.
func overallUtilisation(arrivals []time.Time, windows []Window) float64 {
	s := slices.Clone(arrivals)
	slices.SortFunc(s, time.Time.Compare)
	return float64(len(s)) / float64(len(quotaGreedy(windows, s[len(s)-1].Sub(s[0]))))
}

// TestQuotaHoldsOnHelpdeskClock: with requests that reach the helpdesk after
// a varying delay, counting at admission lets the helpdesk see bursts over
// its limits; holding the slot until the answer never does.
func TestQuotaHoldsOnHelpdeskClock(t *testing.T) {
	windows := mustQuotaWindows(t, "5/1s,20/5s")
	for _, tc := range []struct {
		name    string
		acquire bool
	}{{"counted at admission", false}, {"held until answered", true}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				q := newTestQuota(t, QuotaOptions{Windows: windows, Store: &quotaMemStore{}})
				arrivals := runArrivals(t, q, 400, 4, tc.acquire, 7)
				v := quotaViolations(arrivals, windows)
				u := overallUtilisation(arrivals, windows)
				t.Logf("%s: %d requests, utilisation %.3f, violations %d", tc.name, len(arrivals), u, len(v))
				switch {
				case tc.acquire && v != nil:
					t.Fatalf("the helpdesk saw requests over its limits:\n%s", strings.Join(v, "\n"))
				case !tc.acquire && v == nil:
					t.Fatalf("counting at admission never exceeded a window: the check cannot fail")
				}
				if tc.acquire && u < 0.9 {
					t.Errorf("utilisation %.3f, want at least 0.9", u)
				}
				if n := q.InFlight(); n != 0 {
					t.Errorf("%d requests still in flight after every release", n)
				}
			})
		})
	}
}

// TestQuotaInFlightStored: a request in flight is stored at its admission,
// so a process that loads the record (a restart after a crash, or a second
// bridge on the key) counts it; its real answer moves it with the next
// admission's write, and a reload does not count this process's own
// requests in flight twice.
func TestQuotaInFlightStored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		windows := mustQuotaWindows(t, "1/1s,3/1m")
		store := &quotaMemStore{}
		q1 := newTestQuota(t, QuotaOptions{Windows: windows, Store: store})
		start := time.Now()
		release, err := q1.Acquire(context.Background(), PriorityNormal)
		if err != nil {
			t.Fatal(err)
		}
		// The process "crashes" with the request in flight.
		q2 := newTestQuota(t, QuotaOptions{Windows: windows, Store: store})
		if ready := q2.ReadyAt(PriorityNormal); !ready.Equal(start.Add(time.Second)) {
			t.Errorf("after a crash in flight the record allows the next request at +%v, want +1s", ready.Sub(start))
		}
		// A reload (as after a compare-and-set conflict) does not count
		// q1's own request in flight twice.
		if err := q1.reload(context.Background()); err != nil {
			t.Fatal(err)
		}
		if u := q1.Usage(); u[1].Used != 1 {
			t.Errorf("after a reload the minute window holds %d, want 1 (the request in flight, once)", u[1].Used)
		}
		// The answer comes after 200 ms: the next request may go one window
		// after the answer.
		time.Sleep(200 * time.Millisecond)
		release(true)
		release(true) // a second call changes nothing
		if ready := q1.ReadyAt(PriorityNormal); !ready.Equal(start.Add(1200 * time.Millisecond)) {
			t.Errorf("after the answer at +200ms the next request may start at +%v, want +1.2s", ready.Sub(start))
		}
		if err := q1.Reserve(context.Background(), PriorityNormal); err != nil {
			t.Fatal(err)
		}
		if got := time.Since(start); got != 1200*time.Millisecond {
			t.Errorf("next request admitted at +%v, want +1.2s", got)
		}
		// That write stored the answer's instant: a fresh load sees both
		// requests, the first at its answer, and no more.
		q3 := newTestQuota(t, QuotaOptions{Windows: windows, Store: store})
		if u := q3.Usage(); u[1].Used != 2 {
			t.Errorf("a fresh load counts %d requests in the minute, want 2", u[1].Used)
		}
		if ready := q3.ReadyAt(PriorityNormal); !ready.Equal(start.Add(2200 * time.Millisecond)) {
			t.Errorf("a fresh load allows a request at +%v, want +2.2s", ready.Sub(start))
		}
	})
}

// TestQuotaInFlightFillsWindow: while the limit's worth of requests is in
// flight nothing more starts, however old their admissions are; the first
// answer lets the next request start one window later.
func TestQuotaInFlightFillsWindow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q := newTestQuota(t, QuotaOptions{Windows: mustQuotaWindows(t, "2/1s")})
		start := time.Now()
		var releases []func(bool)
		for range 2 {
			r, err := q.Acquire(context.Background(), PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			releases = append(releases, r)
		}
		admitted := make(chan time.Duration, 1)
		go func() {
			r, err := q.Acquire(context.Background(), PriorityPresence)
			if err != nil {
				t.Error(err)
				return
			}
			defer r(true)
			admitted <- time.Since(start)
		}()
		time.Sleep(5 * time.Second) // far longer than the window
		synctest.Wait()
		select {
		case d := <-admitted:
			t.Fatalf("a third request started at +%v with two in flight", d)
		default:
		}
		if u := q.Usage(); u[0].Used != 2 || u[0].Remaining != 0 {
			t.Errorf("usage with two in flight = %+v, want 2 used, 0 remaining", u[0])
		}
		releases[0](true)
		if d := <-admitted; d != 6*time.Second {
			t.Errorf("third request started at +%v, want +6s (one window after the first answer at +5s)", d)
		}
		releases[1](true)
	})
}

// TestQuotaNotSentIsNotCounted: a request whose connection could not be
// opened is released unsent and leaves the windows as they were, so an
// outage of any length spends no quota.
func TestQuotaNotSentIsNotCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		windows := mustQuotaWindows(t, "3/1s,100/1h")
		q := newTestQuota(t, QuotaOptions{Windows: windows, Store: &quotaMemStore{}})
		for range 1000 { // hours of probes against a helpdesk that is down
			release, err := q.Acquire(context.Background(), PriorityNormal)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Second)
			release(false)
		}
		for _, u := range q.Usage() {
			if u.Used != 0 {
				t.Errorf("window %s holds %d requests after an outage of unsent ones, want 0", u.Window, u.Used)
			}
		}
	})
}
