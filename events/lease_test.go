package events

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestLease: one holder at a time; a standby takes over at once when the
// active one gives the lease up, and within the TTL when it stops renewing;
// the old holder then learns at its next renewal that it lost the lease.
func TestLease(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	const ttl = time.Second
	a, err := j.Lease(t.Context(), "bridge-a", ttl, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := j.Lease(t.Context(), "bridge-b", ttl, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	holdCtx, stopA := context.WithCancel(t.Context())
	holdDone := make(chan error, 1)
	go func() { holdDone <- a.Hold(holdCtx) }()

	got := make(chan time.Time, 1)
	go func() {
		if err := b.Acquire(t.Context()); err != nil {
			t.Error(err)
		}
		got <- time.Now()
	}()
	// While a renews, b stands by for several TTLs and knows who is active.
	deadline := time.Now().Add(3 * ttl)
	for time.Now().Before(deadline) {
		select {
		case <-got:
			t.Fatal("the standby took the lease while the active bridge held it")
		case <-time.After(100 * time.Millisecond):
		}
	}
	if held, other := b.Held(); held || other != "bridge-a" {
		t.Errorf("standby Held() = %v, %q; want false, bridge-a", held, other)
	}
	// A clean stop gives the lease up: b takes over at once (one poll).
	stopped := time.Now()
	stopA()
	if err := <-holdDone; err != nil {
		t.Fatalf("Hold after a clean stop: %v", err)
	}
	at := <-got
	if d := at.Sub(stopped); d > ttl {
		t.Errorf("standby took over %v after a clean stop, want within a poll (%v)", d, ttl/4)
	}
	if held, _ := b.Held(); !held {
		t.Error("b does not hold the lease it acquired")
	}

	// b stops renewing (a crash): a takes over once it expires, and b's
	// next renewal finds it lost.
	crashed := time.Now()
	if err := a.Acquire(t.Context()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(crashed); d > 3*ttl {
		t.Errorf("takeover after a crash took %v, want about the TTL (%v)", d, ttl)
	}
	t.Logf("takeover after the holder stopped renewing: %v (TTL %v)", time.Since(crashed).Round(time.Millisecond), ttl)
	if err := b.Hold(t.Context()); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("the old holder's Hold = %v, want ErrLeaseLost", err)
	}
}
