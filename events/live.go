package events

import (
	"slices"
	"sync"
	"time"
)

// LiveCall is a call in progress as an operator sees it (the board).
type LiveCall struct {
	Key       string    `json:"key"`
	Source    string    `json:"source"`
	CallID    string    `json:"call_id"`
	Direction Direction `json:"direction"`
	// Customer is the caller (inbound) or the number called (outbound), in
	// E.164 where it could be read; Anonymous when withheld.
	Customer  string `json:"customer,omitempty"`
	Anonymous bool   `json:"anonymous,omitempty"`
	// DID is the number the customer dialled, where known.
	DID string `json:"did,omitempty"`
	// State is "ringing", "answered" or "ending" (ended, waiting to see
	// whether the call continues elsewhere).
	State string `json:"state"`
	// Agent is the ROBIN extension of the agent on the call; Extensions the
	// PBX extensions with an open leg (ringing or answered).
	Agent      string    `json:"agent,omitempty"`
	Extensions []string  `json:"extensions,omitempty"`
	Transfers  int       `json:"transfers"`
	Internal   bool      `json:"internal,omitempty"`
	Started    time.Time `json:"started"`
}

// liveCalls is the tracker's view of calls in progress for readers on other
// goroutines, updated after each committed batch.
type liveCalls struct {
	mu      sync.RWMutex
	calls   map[string]LiveCall
	changed chan struct{} // closed and replaced on every change
}

func newLiveCalls() *liveCalls {
	return &liveCalls{calls: map[string]LiveCall{}, changed: make(chan struct{})}
}

// update takes the calls at keys from the machine: a call that is finished,
// ignored or gone leaves the view.
func (l *liveCalls) update(m *machine, keys []string) {
	if len(keys) == 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		c := m.calls[k]
		if c == nil || !c.Done.IsZero() || c.Ignore != "" {
			delete(l.calls, k)
			continue
		}
		l.calls[k] = c.live()
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

func (c *call) live() LiveCall {
	lc := LiveCall{Key: c.key, Source: c.Source, CallID: c.ID, Direction: c.Direction, Customer: c.Remote, Anonymous: c.Anonymous,
		DID: c.Referrer, Agent: c.Agent, Transfers: int(c.Transfers), Internal: c.Internal, Started: c.Started}
	if lc.Customer == "" {
		lc.Customer = c.RemoteRaw
	}
	switch {
	case !c.EndAt.IsZero():
		lc.State = "ending"
	case c.Phase == phaseAnswered:
		lc.State = "answered"
	default:
		lc.State = "ringing"
	}
	for _, g := range c.Legs {
		if g.State != Ended && g.Ext != "" && !slices.Contains(lc.Extensions, g.Ext) {
			lc.Extensions = append(lc.Extensions, g.Ext)
		}
	}
	return lc
}

// Live returns the calls in progress, oldest first, and a channel that is
// closed at the next change.
func (t *Tracker) Live() ([]LiveCall, <-chan struct{}) {
	t.live.mu.RLock()
	defer t.live.mu.RUnlock()
	out := make([]LiveCall, 0, len(t.live.calls))
	for _, c := range t.live.calls {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b LiveCall) int {
		if c := a.Started.Compare(b.Started); c != 0 {
			return c
		}
		return compareStrings(a.Key, b.Key)
	})
	return out, t.live.changed
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
