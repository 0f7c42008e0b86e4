package threecx

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// Store keeps the legs the source has reported and not yet ended across
// restarts of the bridge. 3CX replays nothing, so without it a call that
// ended while the bridge was down would only end when the tracker's call
// timeout runs out; with it, the first snapshot after the restart ends it.
// Keys consist of the characters A-Z, a-z, 0-9, '-' and '_'; values are
// opaque.
type Store interface {
	Put(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
	// All returns every key and value; an empty store returns no error.
	All(ctx context.Context) (map[string][]byte, error)
}

// savedLeg is a leg as the store keeps it. Field names are part of the
// stored format.
type savedLeg struct {
	Path  string           `json:"path"`
	P     Participant      `json:"participant"`
	Agent bool             `json:"agent"`
	Sent  events.State     `json:"sent"`
	Dir   events.Direction `json:"direction"`
	// ReferredBy: see leg.referredBy. (Records of earlier versions held
	// linked_call_id instead; the tracker knows the link by then.)
	ReferredBy string `json:"referred_by,omitempty"`
}

func storeKey(path string) string { return base64.RawURLEncoding.EncodeToString([]byte(path)) }

// persist records the current state of the leg at path: stored while it is
// reported and live, deleted once it ended. A failure costs only the
// restart case, so it is logged, not fatal.
func (s *Source) persist(ctx context.Context, path string) {
	if s.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	var err error
	if l := s.book.legs[path]; l != nil && l.sent != "" {
		data, _ := json.Marshal(savedLeg{Path: path, P: l.p, Agent: l.agent, Sent: l.sent, Dir: l.dir, ReferredBy: l.referredBy})
		err = s.store.Put(ctx, storeKey(path), data)
	} else {
		err = s.store.Delete(ctx, storeKey(path))
	}
	if err != nil && ctx.Err() == nil {
		s.log.Warn("3CX leg state not saved; a restart may end this call late", "err", err)
	}
}

// restore loads the legs saved by an earlier run into the book.
func (s *Source) restore(ctx context.Context) error {
	if s.store == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	all, err := s.store.All(ctx)
	if err != nil {
		return fmt.Errorf("restore legs: %w", err)
	}
	n := 0
	for key, data := range all {
		var sl savedLeg
		if err := json.Unmarshal(data, &sl); err != nil || storeKey(sl.Path) != key || rank(sl.Sent) == 0 || sl.P.validate() != nil {
			s.log.Warn("3CX saved leg unreadable; dropped", "err", err)
			_ = s.store.Delete(ctx, key)
			continue
		}
		s.book.restore(sl, time.Now())
		n++
	}
	if n > 0 {
		s.log.Info("3CX legs restored from the last run", "count", n)
	}
	return nil
}

// restore adds a leg saved by an earlier run.
func (b *book) restore(sl savedLeg, now time.Time) {
	if _, ok := b.legs[sl.Path]; ok {
		return
	}
	b.legs[sl.Path] = &leg{p: sl.P, agent: sl.Agent, sent: sl.Sent, dir: sl.Dir, referredBy: sl.ReferredBy}
	c := b.calls[string(sl.P.CallID)]
	if c == nil {
		c = &callInfo{dir: sl.Dir}
		b.calls[string(sl.P.CallID)] = c
	}
	c.legs++
	// The line and DID of the call, as far as the saved participant shows
	// them, for the signals still to come (its end).
	b.learnCall(sl.P, now)
}
