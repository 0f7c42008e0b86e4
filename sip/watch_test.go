package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
)

// call is one SUBSCRIBE the state machine sent, as a fake network saw it.
type call struct {
	At      time.Duration // since the test started (virtual time)
	CallID  string        // replaced by "sub1", "sub2", ... in order of appearance
	Expires int
}

// fakeNet plays the PBX for the state machine: answer decides the reply to
// each SUBSCRIBE (n counts from 1).
type fakeNet struct {
	start  time.Time
	answer func(n int, sub *subscription, expires int) (reply, error)

	mu    sync.Mutex
	calls []call
	names map[string]string
	subs  map[string]*subscription
}

func (f *fakeNet) subscribe(ctx context.Context, sub *subscription, expires int) (reply, error) {
	f.mu.Lock()
	if f.names == nil {
		f.names, f.subs = map[string]string{}, map[string]*subscription{}
	}
	name, ok := f.names[sub.callID]
	if !ok {
		name = fmt.Sprintf("sub%d", len(f.names)+1)
		f.names[sub.callID] = name
		f.subs[name] = sub
	}
	f.calls = append(f.calls, call{At: time.Since(f.start), CallID: name, Expires: expires})
	n := len(f.calls)
	f.mu.Unlock()
	if f.answer == nil {
		return reply{status: 200, expires: expires}, nil
	}
	rep, err := f.answer(n, sub, expires)
	if errors.Is(err, context.DeadlineExceeded) {
		<-ctx.Done() // a transaction timing out takes the whole deadline
		return reply{}, ctx.Err()
	}
	return rep, err
}

func (f *fakeNet) log() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

func (f *fakeNet) sub(name string) *subscription {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.subs[name]
}

func testCore(t *testing.T, net requester, rate float64) *core {
	t.Helper()
	met, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := newCore(settings{domain: "pbx.test", rate: rate}, Options{Backoff: Backoff{Initial: time.Second, Max: 8 * time.Second, Long: 40 * time.Minute}},
		&nopJournal{}, slog.New(slog.DiscardHandler), met)
	c.req = net
	c.jitter = func() float64 { return 0 } // delays at the low end of their range, exactly
	return c
}

type nopJournal struct{}

func (nopJournal) PublishSignal(context.Context, events.Signal) error { return nil }

// runWatch starts one watch in the bubble and returns a stop function that
// cancels it and waits for it to finish.
func runWatch(c *core, ext string, expires int) (*watch, func()) {
	w := newWatch(c, ext)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, expires)
	}()
	return w, func() { cancel(); <-done }
}

func s(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }

func TestRefreshHonoursGrantedExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now(), answer: func(n int, _ *subscription, expires int) (reply, error) {
			if n == 1 {
				return reply{status: 200, expires: 120}, nil // the PBX grants less than asked
			}
			return reply{status: 200, expires: expires}, nil
		}}
		c := testCore(t, f, 0)
		_, stop := runWatch(c, "201", 600)
		time.Sleep(1000 * time.Second)
		stop()
		want := []call{
			{At: 0, CallID: "sub1", Expires: 600},
			{At: s(85), CallID: "sub1", Expires: 600},  // 120 s granted: refresh 35 s before expiry
			{At: s(535), CallID: "sub1", Expires: 600}, // then 600 granted: at three quarters
			{At: s(985), CallID: "sub1", Expires: 600},
			{At: s(1000), CallID: "sub1", Expires: 0}, // unsubscribe at shutdown
		}
		if d := cmp.Diff(want, f.log()); d != "" {
			t.Errorf("SUBSCRIBEs (-want +got):\n%s", d)
		}
		if got := c.active.Load(); got != 0 {
			t.Errorf("active after stop = %d", got)
		}
	})
}

func TestIntervalTooBriefRaisesExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now(), answer: func(n int, _ *subscription, expires int) (reply, error) {
			if expires < 900 && expires != 0 {
				return reply{status: 423, minExpires: 900}, nil
			}
			return reply{status: 200, expires: expires}, nil
		}}
		c := testCore(t, f, 0)
		_, stop := runWatch(c, "201", 60)
		time.Sleep(700 * time.Second)
		stop()
		want := []call{
			{At: 0, CallID: "sub1", Expires: 60},
			{At: 0, CallID: "sub1", Expires: 900},
			{At: s(675), CallID: "sub1", Expires: 900}, // the raised value sticks for refreshes
			{At: s(700), CallID: "sub1", Expires: 0},
		}
		if d := cmp.Diff(want, f.log()); d != "" {
			t.Errorf("SUBSCRIBEs (-want +got):\n%s", d)
		}
	})
}

func TestRefreshRejectedWith481Resubscribes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now(), answer: func(n int, _ *subscription, expires int) (reply, error) {
			if n == 2 {
				return reply{status: 481}, nil // the PBX restarted and forgot us
			}
			return reply{status: 200, expires: 100}, nil
		}}
		c := testCore(t, f, 0)
		_, stop := runWatch(c, "201", 100)
		time.Sleep(66 * time.Second)
		stop()
		want := []call{
			{At: 0, CallID: "sub1", Expires: 100},
			{At: s(65), CallID: "sub1", Expires: 100},
			{At: s(65), CallID: "sub2", Expires: 100}, // new Call-ID, at once
			{At: s(66), CallID: "sub2", Expires: 0},
		}
		if d := cmp.Diff(want, f.log()); d != "" {
			t.Errorf("SUBSCRIBEs (-want +got):\n%s", d)
		}
		if c.index.get(f.sub("sub1").callID) != nil {
			t.Error("replaced subscription still matches NOTIFYs")
		}
	})
}

func TestTransientFailuresBackOffExponentiallyWithCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now(), answer: func(n int, _ *subscription, expires int) (reply, error) {
			switch {
			case n <= 3:
				return reply{}, errors.New("connection refused")
			case n <= 6:
				return reply{status: 500}, nil
			case n == 7:
				return reply{}, context.DeadlineExceeded
			}
			return reply{status: 200, expires: expires}, nil
		}}
		c := testCore(t, f, 0)
		c.reqTO = 32 * time.Second
		w, stop := runWatch(c, "201", 600)
		time.Sleep(time.Second / 2)
		if c.failing.Load() != 1 || c.active.Load() != 0 {
			t.Errorf("failing=%d active=%d while failing", c.failing.Load(), c.active.Load())
		}
		time.Sleep(100 * time.Second)
		if c.failing.Load() != 0 || c.active.Load() != 1 {
			t.Errorf("failing=%d active=%d after recovery", c.failing.Load(), c.active.Load())
		}
		stop()
		// Delays (jitter pinned to its low end, half the nominal delay):
		// 0.5, 1, 2, 4, 4 (capped at 8/2), 4, then a 32 s timeout, 4.
		var at []time.Duration
		for _, cl := range f.log() {
			at = append(at, cl.At)
		}
		want := []time.Duration{0, s(0.5), s(1.5), s(3.5), s(7.5), s(11.5), s(15.5), s(51.5), s(100.5)}
		if d := cmp.Diff(want, at); d != "" {
			t.Errorf("attempt times (-want +got):\n%s", d)
		}
		if names := map[string]bool{}; true {
			for _, cl := range f.log()[:8] {
				names[cl.CallID] = true
			}
			if len(names) != 8 {
				t.Errorf("each attempt needs a new Call-ID, got %d distinct of 8", len(names))
			}
		}
		_ = w
	})
}

func TestRetryAfterAndRefusalsAreHonoured(t *testing.T) {
	tests := []struct {
		name  string
		reply reply
		next  time.Duration
	}{
		{"503 with Retry-After", reply{status: 503, retryAfter: 120 * time.Second}, 120 * time.Second},
		{"403 forbidden", reply{status: 403}, 30 * time.Minute}, // Long*3/4 with jitter at its low end
		{"404 no such extension", reply{status: 404}, 30 * time.Minute},
		{"489 bad event", reply{status: 489}, 30 * time.Minute},
		{"401 wrong password", reply{status: 401}, 30 * time.Minute},
		{"407 wrong password", reply{status: 407}, 30 * time.Minute},
		{"403 with longer Retry-After", reply{status: 403, retryAfter: 2 * time.Hour}, 2 * time.Hour},
		{"absurd Retry-After is capped", reply{status: 503, retryAfter: 100 * 24 * time.Hour}, maxRetryAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeNet{start: time.Now(), answer: func(n int, _ *subscription, expires int) (reply, error) {
					if n == 1 {
						return tt.reply, nil
					}
					return reply{status: 200, expires: expires}, nil
				}}
				c := testCore(t, f, 0)
				_, stop := runWatch(c, "201", 600)
				time.Sleep(tt.next - time.Second)
				if n := len(f.log()); n != 1 {
					t.Fatalf("%d SUBSCRIBEs before the delay was over", n)
				}
				time.Sleep(2 * time.Second)
				stop()
				if got := f.log(); len(got) < 2 || got[1].At != tt.next {
					t.Fatalf("second SUBSCRIBE %+v, want at %v", got, tt.next)
				}
			})
		})
	}
}

func TestTerminatedByPBX(t *testing.T) {
	tests := []struct {
		reason     string
		retryAfter time.Duration
		next       time.Duration
	}{
		{"deactivated", 0, 0},
		{"timeout", 0, 0},
		{"probation", 60 * time.Second, 60 * time.Second},
		{"giveup", 0, s(0.5)},
		{"", 0, s(0.5)},
		{"rejected", 0, 30 * time.Minute},
		{"noresource", 0, 30 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(orNone(tt.reason), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := &fakeNet{start: time.Now()}
				c := testCore(t, f, 0)
				w, stop := runWatch(c, "201", 600)
				time.Sleep(200 * time.Second)
				w.mbox.post(notice{sub: f.sub("sub1"), kind: noticeTerminated, reason: tt.reason, retryAfter: tt.retryAfter})
				synctest.Wait()
				if tt.next > 0 && c.active.Load() != 0 {
					t.Error("still active after termination")
				}
				time.Sleep(tt.next)
				synctest.Wait()
				stop()
				got := f.log()
				if len(got) < 2 || got[1].CallID != "sub2" || got[1].At != 200*time.Second+tt.next {
					t.Fatalf("SUBSCRIBEs %+v, want a new subscription %v after the termination", got, tt.next)
				}
			})
		})
	}
}

func TestFlappingSubscriptionBacksOff(t *testing.T) {
	// A PBX that accepts and at once terminates must not be hit in a loop.
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now()}
		c := testCore(t, f, 0)
		w, stop := runWatch(c, "201", 600)
		var posted []time.Duration
		for i := 1; i <= 6; i++ {
			for len(f.log()) < i {
				time.Sleep(100 * time.Millisecond)
			}
			synctest.Wait()
			posted = append(posted, time.Since(f.start))
			w.mbox.post(notice{sub: f.sub(fmt.Sprintf("sub%d", i)), kind: noticeTerminated, reason: "deactivated"})
		}
		for len(f.log()) < 7 {
			time.Sleep(100 * time.Millisecond)
		}
		stop()
		var gaps []time.Duration // from each termination to the next subscription
		log := f.log()
		for i, p := range posted {
			gaps = append(gaps, log[i+1].At-p)
		}
		want := []time.Duration{0, s(0.5), s(1), s(2), s(4), s(4)}
		if d := cmp.Diff(want, gaps[:len(want)]); d != "" {
			t.Errorf("gaps between subscriptions (-want +got):\n%s", d)
		}
	})
}

func TestShorterExpiresFromNotifyAndResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now()}
		c := testCore(t, f, 0)
		w, stop := runWatch(c, "201", 600)
		time.Sleep(10 * time.Second)
		// Subscription-State: active;expires=100 shortens the subscription.
		w.mbox.post(notice{sub: f.sub("sub1"), kind: noticeExpires, expires: 100 * time.Second})
		time.Sleep(100 * time.Second)
		// A NOTIFY that could not be journaled asks for full state soon.
		w.mbox.post(notice{sub: f.sub("sub1"), kind: noticeResync})
		time.Sleep(10 * time.Second)
		stop()
		want := []call{
			{At: 0, CallID: "sub1", Expires: 600},
			{At: s(75), CallID: "sub1", Expires: 600},  // 10 + refreshIn(100)
			{At: s(115), CallID: "sub1", Expires: 600}, // 110 + resync delay
			{At: s(120), CallID: "sub1", Expires: 0},
		}
		if d := cmp.Diff(want, f.log()); d != "" {
			t.Errorf("SUBSCRIBEs (-want +got):\n%s", d)
		}
	})
}

func TestInitialSubscriptionsAreSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now()}
		c := testCore(t, f, 10) // 10 per second
		var stops []func()
		for i := range 5 {
			_, stop := runWatch(c, fmt.Sprint(200+i), 600)
			stops = append(stops, stop)
		}
		time.Sleep(time.Second)
		var at []time.Duration
		for _, cl := range f.log() {
			at = append(at, cl.At)
		}
		want := []time.Duration{0, s(0.1), s(0.2), s(0.3), s(0.4)}
		if d := cmp.Diff(want, at); d != "" {
			t.Errorf("start times (-want +got):\n%s", d)
		}
		if c.active.Load() != 5 {
			t.Errorf("active = %d", c.active.Load())
		}
		for _, stop := range stops {
			stop()
		}
	})
}

func TestShutdownWhileFailingSendsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now(), answer: func(int, *subscription, int) (reply, error) { return reply{status: 503}, nil }}
		c := testCore(t, f, 0)
		_, stop := runWatch(c, "201", 600)
		time.Sleep(2 * time.Second)
		stop()
		for _, cl := range f.log() {
			if cl.Expires == 0 {
				t.Errorf("unsubscribe sent for a subscription that never existed: %+v", cl)
			}
		}
		if c.failing.Load() != 0 || c.active.Load() != 0 {
			t.Errorf("gauges not reset: failing=%d active=%d", c.failing.Load(), c.active.Load())
		}
	})
}

func TestRefreshIn(t *testing.T) {
	for _, tt := range []struct{ granted, want time.Duration }{
		{3600 * time.Second, 2700 * time.Second},
		{600 * time.Second, 450 * time.Second},
		{120 * time.Second, 85 * time.Second},
		{60 * time.Second, 30 * time.Second},
		{10 * time.Second, 5 * time.Second},
	} {
		if got := refreshIn(tt.granted); got != tt.want {
			t.Errorf("refreshIn(%v) = %v, want %v", tt.granted, got, tt.want)
		}
	}
}

func TestRemainingTimeInNotifiesDoesNotDelayRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := &fakeNet{start: time.Now()}
		c := testCore(t, f, 0)
		w, stop := runWatch(c, "201", 600)
		// A PBX that repeats the remaining time, rounded down, in each NOTIFY.
		for at := 100; at <= 440; at += 20 {
			time.Sleep(time.Until(f.start.Add(time.Duration(at) * time.Second)))
			w.mbox.post(notice{sub: f.sub("sub1"), kind: noticeExpires, expires: time.Duration(600-at-1) * time.Second})
		}
		time.Sleep(time.Until(f.start.Add(460 * time.Second)))
		stop()
		log := f.log()
		if len(log) < 2 || log[1].At > 450*time.Second {
			t.Errorf("refresh at %v, want no later than 450s: %+v", log[1].At, log)
		}
	})
}
