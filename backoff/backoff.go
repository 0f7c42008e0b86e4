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
	return jitter(d)
}

// OutageShare is the part of an outage that Reconnect waits between
// attempts: the time between the peer coming back and the next attempt is
// at most this share of how long it was gone (or lo, or hi).
const OutageShare = 8

// Reconnect is the wait before attempt n (n ≥ 1) to restore a connection
// that has been failing for down. The first attempt goes at once; every
// later one waits an eighth (OutageShare) of the outage so far, at least lo
// and at most hi, of which a random part up to half is taken off.
//
// It differs from Delay for the time it leaves a connection down after the
// peer is back: doubling makes each wait about as long as the outage so
// far, so a 6 s outage could stay unnoticed for another 4 s; here that is
// at most 0.75 s, while a long outage still costs the peer only one
// attempt every hi.
func Reconnect(n int, down, lo, hi time.Duration) time.Duration {
	if n <= 1 {
		return 0
	}
	if lo <= 0 {
		lo = time.Millisecond
	}
	if hi < lo {
		hi = lo
	}
	return jitter(min(max(down/OutageShare, lo), hi))
}

// jitter takes a random part up to half off d.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}
