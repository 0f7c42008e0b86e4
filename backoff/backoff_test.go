package backoff

import (
	"testing"
	"time"
)

func TestDelay(t *testing.T) {
	for _, tc := range []struct {
		n      int
		lo, hi time.Duration
		capped time.Duration
	}{
		{1, time.Second, time.Minute, time.Second},
		{2, time.Second, time.Minute, 2 * time.Second},
		{4, time.Second, time.Minute, 8 * time.Second},
		{7, time.Second, time.Minute, time.Minute},
		{1000, time.Second, time.Minute, time.Minute},
		{0, time.Second, time.Minute, time.Second},
		{3, time.Second, 0, time.Second},
	} {
		for range 200 {
			d := Delay(tc.n, tc.lo, tc.hi)
			if d < tc.capped/2 || d > tc.capped {
				t.Fatalf("Delay(%d, %v, %v) = %v, want within [%v, %v]", tc.n, tc.lo, tc.hi, d, tc.capped/2, tc.capped)
			}
		}
	}
}

func TestReconnect(t *testing.T) {
	const lo, hi = 250 * time.Millisecond, 15 * time.Second
	for _, tc := range []struct {
		n      int
		down   time.Duration
		capped time.Duration
	}{
		// The first attempt after a loss goes at once, however long the
		// connection has been failing.
		{1, 0, 0},
		{1, time.Hour, 0},
		{0, time.Minute, 0},
		{2, 0, lo},
		{2, time.Second, lo},
		{3, 6 * time.Second, 750 * time.Millisecond},
		{9, 60 * time.Second, 7500 * time.Millisecond},
		{30, 10 * time.Minute, hi},
	} {
		for range 200 {
			d := Reconnect(tc.n, tc.down, lo, hi)
			if d < tc.capped/2 || d > tc.capped {
				t.Fatalf("Reconnect(%d, %v) = %v, want within [%v, %v]", tc.n, tc.down, d, tc.capped/2, tc.capped)
			}
		}
	}
}

// TestReconnectBlindTime checks the promise of Reconnect: whenever the peer
// comes back, the next attempt follows within an eighth of the outage (or
// lo), where Delay's doubling can leave the connection down for about as
// long again.
func TestReconnectBlindTime(t *testing.T) {
	const lo, hi = 250 * time.Millisecond, 15 * time.Second
	for _, outage := range []time.Duration{time.Second, 6 * time.Second, 40 * time.Second, 10 * time.Minute} {
		for range 100 {
			var at time.Duration
			for n := 1; at < outage; n++ {
				at += Reconnect(n, at, lo, hi)
			}
			if blind, limit := at-outage, min(max(outage/OutageShare, lo), hi); blind > limit {
				t.Fatalf("after a %v outage the next attempt came %v later, want at most %v", outage, blind, limit)
			}
		}
	}
}
