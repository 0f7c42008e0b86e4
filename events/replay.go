package events

import (
	"slices"
	"time"
)

// Replay folds signals through the call model as the tracker would, each
// arriving at its own Time (or at the previous arrival, if that is later),
// lets every window pass, and returns the events in the order they were
// emitted. It does no I/O. Sources test their translation of a PBX's
// messages against the one model with it, instead of a model of their own.
func Replay(pol Policies, numbers Numbers, dir Directory, sigs []Signal) []Event {
	m := newMachine(pol, numbers, dir)
	var out []Event
	add := func(r result) {
		for _, e := range r.events {
			out = append(out, e.Event)
		}
	}
	var now time.Time
	for i, s := range sigs {
		if s.Time.After(now) {
			now = s.Time
		}
		add(m.tick(now))
		add(m.apply(s, uint64(i+1), now))
	}
	wait := max(pol.TransferWindow, 0) + time.Second
	add(m.tick(now.Add(wait)))
	if pol.CallTimeout > 0 {
		add(m.tick(now.Add(wait + pol.CallTimeout)))
	}
	return slices.Clip(out)
}
