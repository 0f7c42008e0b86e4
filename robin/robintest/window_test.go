package robintest

import (
	"testing"
	"time"
)

func TestSlidingLog(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type step struct {
		at       time.Duration
		wantOK   bool
		wantWait time.Duration // when refused
	}
	tests := []struct {
		name   string
		limits []Limit
		steps  []step
	}{
		{
			name:   "burst of 10 at 3/s admits 3",
			limits: []Limit{{N: 3, Per: time.Second}},
			steps: []step{
				{0, true, 0}, {0, true, 0}, {0, true, 0},
				{0, false, time.Second}, {0, false, time.Second}, {0, false, time.Second}, {0, false, time.Second},
				{0, false, time.Second}, {0, false, time.Second}, {0, false, time.Second},
				{999 * time.Millisecond, false, time.Millisecond},
				// (now-1s, now]: the admissions at 0 have left exactly at 1s.
				{time.Second, true, 0}, {time.Second, true, 0}, {time.Second, true, 0},
				{time.Second, false, time.Second},
			},
		},
		{
			name:   "sliding, not fixed: the window moves with each admission",
			limits: []Limit{{N: 2, Per: time.Second}},
			steps: []step{
				{0, true, 0},
				{600 * time.Millisecond, true, 0},
				{1100 * time.Millisecond, true, 0},                       // the one at 0 left
				{1500 * time.Millisecond, false, 100 * time.Millisecond}, // 0.6 leaves at 1.6
				{1600 * time.Millisecond, true, 0},
			},
		},
		{
			name:   "refused requests use no budget",
			limits: []Limit{{N: 1, Per: time.Second}},
			steps: []step{
				{0, true, 0},
				{500 * time.Millisecond, false, 500 * time.Millisecond},
				{900 * time.Millisecond, false, 100 * time.Millisecond},
				{time.Second, true, 0},
			},
		},
		{
			name:   "the longest full window decides the wait",
			limits: []Limit{{N: 2, Per: time.Second}, {N: 3, Per: time.Minute}},
			steps: []step{
				{0, true, 0}, {0, true, 0},
				{0, false, time.Second},
				{time.Second, true, 0},
				// Both windows full: the minute one frees at 60s.
				{time.Second, false, 59 * time.Second},
				{2 * time.Second, false, 58 * time.Second},
				{time.Minute, true, 0},
			},
		},
		{
			name:   "no limits admits everything",
			limits: nil,
			steps:  []step{{0, true, 0}, {0, true, 0}, {0, true, 0}, {0, true, 0}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newSlidingLog(tt.limits)
			for i, st := range tt.steps {
				wait, ok := l.admit(at(st.at))
				if ok != st.wantOK || (!ok && wait != st.wantWait) {
					t.Fatalf("step %d at %v: admit = %v, %v; want %v, %v", i, st.at, wait, ok, st.wantWait, st.wantOK)
				}
			}
		})
	}
}

// TestSlidingLogMemory checks that the log keeps no more than the largest N,
// however long it runs.
func TestSlidingLogMemory(t *testing.T) {
	l := newSlidingLog([]Limit{{N: 5, Per: time.Second}, {N: 50, Per: time.Hour}})
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	admitted := 0
	for i := range 100000 {
		if _, ok := l.admit(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			admitted++
		}
	}
	if len(l.log) > 50 {
		t.Errorf("log holds %d times, want at most 50", len(l.log))
	}
	// 10 000 s is 2.78 h: 50 per rolling hour gives 150 in three windows' worth.
	if admitted != 150 {
		t.Errorf("admitted %d over 10 000 s at 50/h, want 150", admitted)
	}
}

func TestSlidingLogRejectsBadLimits(t *testing.T) {
	for _, lim := range []Limit{{N: 0, Per: time.Second}, {N: 3, Per: 0}, {N: -1, Per: time.Second}} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("newSlidingLog(%v) did not panic", lim)
				}
			}()
			newSlidingLog([]Limit{lim})
		}()
	}
}
