package events

import (
	"container/heap"
	"time"
)

// timer is one deadline of a call. Timers are never removed when a deadline
// moves: the tick checks the call's state when one is due, so a call has at
// most one timer of each kind that matters.
type timer struct {
	at   time.Time
	key  string
	kind uint8
}

// timers is a min-heap of deadlines.
type timers []timer

func (h timers) Len() int           { return len(h) }
func (h timers) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timers) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timers) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timers) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

func (h *timers) push(at time.Time, key string, kind uint8) {
	heap.Push(h, timer{at: at, key: key, kind: kind})
}

// popDue removes and returns the earliest timer due at now.
func (h *timers) popDue(now time.Time) (timer, bool) {
	if len(*h) == 0 || (*h)[0].at.After(now) {
		return timer{}, false
	}
	return heap.Pop(h).(timer), true
}
