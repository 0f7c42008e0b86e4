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
