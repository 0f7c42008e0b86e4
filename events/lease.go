package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// LeaseBucket holds the lease of a journal (prefixed with its name).
const LeaseBucket = "LEASE"

// ErrLeaseLost is returned by Hold when another bridge holds the lease now,
// or it could not be renewed in time: the holder must stop folding and
// delivering at once.
var ErrLeaseLost = errors.New("lease lost")

// Lease is the right of one bridge to fold a journal's signals and deliver
// its events, when several bridges share one journal on an external NATS:
// one is active, the others wait as hot standbys (they still journal
// webhooks). It is a key in a bucket whose entries expire TTL after their
// last write: the holder creates it, renews it every TTL/3 with a
// compare-and-set on its revision (a holder that lost it learns so at the
// next renewal), and stops by itself once it could not renew for 2/3 of
// the TTL, before any standby can take over.
type Lease struct {
	kv     jetstream.KeyValue
	holder string
	ttl    time.Duration
	log    *slog.Logger

	mu    sync.Mutex
	rev   uint64
	held  bool
	other string // the active holder while standing by
}

type leaseValue struct {
	Holder string    `json:"holder"`
	Since  time.Time `json:"since"`
}

const leaseKey = "active"

// Lease opens the journal's lease for holder (a name that tells bridges
// apart in logs: host and process).
func (j *Journal) Lease(ctx context.Context, holder string, ttl time.Duration, replicas int, log *slog.Logger) (*Lease, error) {
	if ttl < time.Second {
		return nil, fmt.Errorf("lease: TTL %s: want at least 1s", ttl)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	kv, err := j.ExpiringKeyValue(ctx, LeaseBucket, "which bridge folds and delivers this journal", replicas, ttl)
	if err != nil {
		return nil, err
	}
	return &Lease{kv: kv, holder: holder, ttl: ttl, log: log}, nil
}

// Held reports whether this bridge holds the lease, and else who does ("" if
// unknown).
func (l *Lease) Held() (bool, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.held, l.other
}

// Acquire waits until this bridge holds the lease, or ctx ends.
func (l *Lease) Acquire(ctx context.Context) error {
	val, _ := json.Marshal(leaseValue{Holder: l.holder, Since: time.Now().UTC()})
	logged := false
	for {
		actx, cancel := context.WithTimeout(ctx, l.ttl/3)
		rev, err := l.kv.Create(actx, leaseKey, val)
		cancel()
		if err == nil {
			l.mu.Lock()
			l.rev, l.held, l.other = rev, true, ""
			l.mu.Unlock()
			l.log.Info("lease acquired: this bridge folds and delivers", "holder", l.holder, "ttl", l.ttl.String())
			return nil
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			other := ""
			gctx, cancel := context.WithTimeout(ctx, l.ttl/3)
			if e, gerr := l.kv.Get(gctx, leaseKey); gerr == nil {
				var v leaseValue
				if json.Unmarshal(e.Value(), &v) == nil {
					other = v.Holder
				}
			}
			cancel()
			l.mu.Lock()
			l.other = other
			l.mu.Unlock()
			if !logged {
				l.log.Info("standing by: another bridge is active on this journal", "active", other)
				logged = true
			}
		} else if ctx.Err() == nil {
			l.log.Warn("lease: journal not answering", "err", err)
		}
		t := time.NewTimer(l.ttl / 4)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Hold renews the lease until ctx ends (then it gives the lease up, so a
// standby takes over at once) or the lease is lost (ErrLeaseLost).
func (l *Lease) Hold(ctx context.Context) error {
	val, _ := json.Marshal(leaseValue{Holder: l.holder, Since: time.Now().UTC()})
	lastOK := time.Now()
	t := time.NewTicker(l.ttl / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.release()
			return nil
		case <-t.C:
		}
		l.mu.Lock()
		rev := l.rev
		l.mu.Unlock()
		actx, cancel := context.WithTimeout(ctx, l.ttl/3)
		newRev, err := l.kv.Update(actx, leaseKey, val, rev)
		cancel()
		if err == nil {
			l.mu.Lock()
			l.rev = newRev
			l.mu.Unlock()
			lastOK = time.Now()
			continue
		}
		if ctx.Err() != nil {
			l.release()
			return nil
		}
		if wrongRevision(err) {
			l.lost()
			return fmt.Errorf("%w: another bridge holds it now", ErrLeaseLost)
		}
		if time.Since(lastOK) >= 2*l.ttl/3 {
			l.lost()
			return fmt.Errorf("%w: not renewed for %s (%v)", ErrLeaseLost, time.Since(lastOK).Round(time.Millisecond), err)
		}
		l.log.Warn("lease: renewal failed; retrying", "err", err)
	}
}

func (l *Lease) lost() {
	l.mu.Lock()
	l.held = false
	l.mu.Unlock()
}

// release deletes the lease if it is still ours.
func (l *Lease) release() {
	l.mu.Lock()
	rev, held := l.rev, l.held
	l.held = false
	l.mu.Unlock()
	if !held {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), l.ttl/3)
	defer cancel()
	if err := l.kv.Delete(ctx, leaseKey, jetstream.LastRevision(rev)); err != nil {
		l.log.Warn("lease: could not give it up; a standby takes over when it expires", "err", err)
		return
	}
	l.log.Info("lease given up")
}

// wrongRevision: the key was written by someone else since our revision
// (JetStream's "wrong last sequence", err_code 10071), or it expired and
// was created again.
func wrongRevision(err error) bool {
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) || errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return true
	}
	var api *jetstream.APIError
	return errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
