package robintest

import (
	"fmt"
	"sort"
	"time"
)

// Limit is one rolling window of the helpdesk's quota: at most N requests in
// any interval of length Per.
type Limit struct {
	N   int
	Per time.Duration
}

// String returns the limit as "3/1s".
func (l Limit) String() string { return fmt.Sprintf("%d/%s", l.N, l.Per) }

// DocumentedLimits returns ROBIN's documented limits: 3 per second, 180 per
// minute, 10 000 per hour and 100 000 per day, all verbs together. Each call
// returns a new slice.
func DocumentedLimits() []Limit {
	return []Limit{
		{N: 3, Per: time.Second},
		{N: 180, Per: time.Minute},
		{N: 10000, Per: time.Hour},
		{N: 100000, Per: 24 * time.Hour},
	}
}

// slidingLog is a sliding-log limiter over several windows. It keeps the times
// of admitted requests only (a refused request does not use up budget) and
// admits a request at now iff every window holds fewer than N of them in
// (now-Per, now]. Only the latest max(N) times can ever matter, so that is all
// it keeps.
type slidingLog struct {
	limits []Limit
	keep   int
	log    []time.Time // oldest first
}

func newSlidingLog(limits []Limit) *slidingLog {
	l := &slidingLog{limits: append([]Limit(nil), limits...)}
	for _, lim := range limits {
		if lim.N <= 0 || lim.Per <= 0 {
			panic(fmt.Sprintf("robintest: limit %v: N and Per must be positive", lim))
		}
		l.keep = max(l.keep, lim.N)
	}
	return l
}

// admit records a request at now and returns true when every window has room.
// Otherwise it records nothing and returns how long until every full window
// has a free slot again (always more than zero).
func (l *slidingLog) admit(now time.Time) (wait time.Duration, ok bool) {
	full := false
	for _, lim := range l.limits {
		cut := now.Add(-lim.Per)
		first := sort.Search(len(l.log), func(i int) bool { return l.log[i].After(cut) })
		if len(l.log)-first < lim.N {
			continue
		}
		// The window is full; it has room again once the N-th latest
		// admission has left it. That admission is after cut, so the wait is
		// positive.
		full = true
		wait = max(wait, l.log[len(l.log)-lim.N].Add(lim.Per).Sub(now))
	}
	if full {
		return wait, false
	}
	if len(l.limits) == 0 {
		return 0, true
	}
	l.log = append(l.log, now)
	if len(l.log) > l.keep {
		l.log = l.log[len(l.log)-l.keep:]
	}
	return 0, true
}
