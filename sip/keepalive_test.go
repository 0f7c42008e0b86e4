package sip

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// TestKeepaliveNoticesRestarts scripts the answers to the keep-alive and
// checks when the keeper calls a restart: after a PBX that did not answer
// answers again, and when a TCP/TLS answer comes over a new connection; not
// while the PBX answers as before, and only once per outage.
func TestKeepaliveNoticesRestarts(t *testing.T) {
	down := errors.New("keep-alive: transaction timeout")
	connA, connB := new(int), new(int)
	tests := []struct {
		name     string
		answers  []any // an error, a connection, or nil (UDP answer)
		want     []string
		failures float64
	}{
		{"steady udp", []any{nil, nil, nil, nil}, nil, 0},
		{"steady tcp", []any{connA, connA, connA}, nil, 0},
		{"down then back", []any{nil, down, down, down, nil, nil},
			[]string{"answers again after the keep-alive failed: keep-alive: transaction timeout"}, 3},
		{"down at start", []any{down, nil}, []string{"answers again after the keep-alive failed: keep-alive: transaction timeout"}, 1},
		{"connection closed", []any{connA, connA, connB, connB}, []string{"closed our connection"}, 0},
		// The PBX closed the connection right after it answered: the answer
		// came, but its connection had left the pool when the keeper looked
		// (nil). The next answer's new connection is still a restart.
		{"connection closed right after the answer", []any{connA, nil, connB, connB}, []string{"closed our connection"}, 0},
		{"down over tcp then back", []any{connA, down, connB, connB}, []string{"answers again after the keep-alive failed: keep-alive: transaction timeout"}, 1},
		{"two restarts", []any{nil, down, nil, nil, down, nil},
			[]string{"answers again after the keep-alive failed: keep-alive: transaction timeout", "answers again after the keep-alive failed: keep-alive: transaction timeout"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				met, _ := newMetrics(nil)
				var mu sync.Mutex
				var got []string
				var at []time.Duration
				start := time.Now()
				n := 0
				k := &keeper{every: 15 * time.Second, timeout: 5 * time.Second, log: slog.New(slog.DiscardHandler), metrics: met,
					restarted: func(why string) { mu.Lock(); got = append(got, why); mu.Unlock() },
					probe: func(ctx context.Context) (any, error) {
						at = append(at, time.Since(start))
						if n >= len(tt.answers) {
							return nil, nil // the script ended: plain answers
						}
						a := tt.answers[n]
						n++
						if err, ok := a.(error); ok {
							<-ctx.Done() // an unanswered OPTIONS takes the whole timeout
							return nil, err
						}
						return a, nil
					}}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() { defer close(done); k.run(ctx) }()
				time.Sleep(time.Duration(len(tt.answers)) * 20 * time.Second)
				synctest.Wait()
				cancel()
				<-done
				if d := cmp.Diff(tt.want, got); d != "" {
					t.Errorf("restarts (-want +got):\n%s", d)
				}
				if f := counter(met.keepaliveFailures); f != tt.failures {
					t.Errorf("keep-alive failures = %v, want %v", f, tt.failures)
				}
				if at[0] != 0 || (len(at) > 1 && at[1] < 15*time.Second) {
					t.Errorf("probes at %v: want the first at once, the next one interval later", at)
				}
			})
		})
	}
}

func TestProbeTimeout(t *testing.T) {
	for every, want := range map[time.Duration]time.Duration{
		500 * time.Millisecond: time.Second, 3 * time.Second: 3 * time.Second, 15 * time.Second: 5 * time.Second,
	} {
		if got := probeTimeout(every); got != want {
			t.Errorf("probeTimeout(%s) = %s, want %s", every, got, want)
		}
	}
}

// TestRestartResubscribesAtOnceAndRefreshesEarly: a watch told that the
// PBX restarted drops its subscription without an unsubscribe, makes a new
// one at once (new Call-ID) and refreshes that one after core.early rather
// than at three quarters of the granted time; a watch waiting out a backoff
// stops waiting.
func TestRestartResubscribesAtOnceAndRefreshesEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now()}
		c := testCore(t, f, 0)
		w, stop := runWatch(c, "201", 3600)
		time.Sleep(100 * time.Second)
		w.restart()
		time.Sleep(100 * time.Second)
		stop()
		want := []call{
			{At: 0, CallID: "sub1", Expires: 3600},
			{At: s(100), CallID: "sub2", Expires: 3600}, // at once: jitter is 0 in tests
			{At: s(130), CallID: "sub2", Expires: 3600}, // early refresh
			{At: s(200), CallID: "sub2", Expires: 0},
		}
		if d := cmp.Diff(want, f.log()); d != "" {
			t.Errorf("SUBSCRIBEs (-want +got):\n%s", d)
		}
		if n := counter(c.metrics.restartResubs); n != 1 {
			t.Errorf("restart resubscriptions = %v, want 1", n)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now(), answer: func(n int, _ *subscription, expires int) (reply, error) {
			if n <= 4 {
				return reply{status: 503}, nil // the PBX is down: backoff 1, 2, 4, 8 s
			}
			return reply{status: 200, expires: expires}, nil
		}}
		c := testCore(t, f, 0)
		w, stop := runWatch(c, "201", 3600)
		time.Sleep(5 * time.Second) // tries at 0, 0.5, 1.5 and 3.5 s; the fifth is due at 7.5 s
		w.restart()
		synctest.Wait()
		got := f.log()
		stop()
		if len(got) < 5 || got[4].At != s(5) || got[4].CallID != "sub5" {
			t.Errorf("SUBSCRIBEs %+v: want the fifth at 5 s, at once after the restart", got)
		}
	})
}

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	_ = c.Write(&m)
	return m.GetCounter().GetValue()
}
