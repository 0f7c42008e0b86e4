// Package backoff computes how long to wait before trying again.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Delay is the wait before attempt n (n ≥ 1) of something that keeps
// failing: lo·2^(n-1), capped at hi, of which a random part up to half is
// taken off, so that many callers failing together do not retry in step.
// It is always between half the capped delay and the capped delay.
func Delay(n int, lo, hi time.Duration) time.Duration {
	if lo <= 0 {
		lo = time.Millisecond
	}
	if hi < lo {
		hi = lo
	}
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return d/2 + rand.N(d/2+1)
}
