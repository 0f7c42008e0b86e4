package bridge

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"
)

// LeaseConfig: with an external NATS, bridges that share a journal
// (JOURNAL_NAME) elect one active bridge; the others stand by.
type LeaseConfig struct {
	// TTL is how long a lease lasts without renewal: a standby takes over
	// within it when the active bridge dies (LEASE_TTL).
	TTL time.Duration `env:"LEASE_TTL" envDefault:"10s"`
}

func (c LeaseConfig) validate() error {
	if c.TTL < time.Second || c.TTL > 5*time.Minute {
		return fmt.Errorf("LEASE_TTL %s: want 1s to 5m", c.TTL)
	}
	return nil
}

// leaseHolder names this process in the lease: host, process and a random
// part, so that two bridges on one host are told apart.
func leaseHolder() string {
	host, _ := os.Hostname()
	var r [3]byte
	_, _ = rand.Read(r[:])
	return fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(r[:]))
}

// openLease takes part in the election on an external NATS. The embedded
// journal needs none: its data directory is locked to one process.
func (b *Bridge) openLease(ctx context.Context) error {
	if b.journal.Embedded() {
		return nil
	}
	l, err := b.journal.Lease(ctx, leaseHolder(), b.cfg.Lease.TTL, b.cfg.NATSReplicas, b.log)
	if err != nil {
		return err
	}
	b.lease = l
	b.addReady("lease", b.leaseCheck)
	return nil
}

// errStandby: another bridge is active on this journal. Intake works (the
// webhooks are journaled for it), so readiness stays 200.
var errStandby = errors.New("standby")

func (b *Bridge) leaseCheck() error {
	if b.lease == nil {
		return nil
	}
	if held, other := b.lease.Held(); !held {
		if other != "" {
			return fmt.Errorf("%w: %s is active on this journal", errStandby, other)
		}
		return errStandby
	}
	return nil
}

// runActive folds and delivers: at once with the embedded journal, else
// once this bridge holds the lease. Losing the lease stops the bridge (its
// supervisor restarts it as a standby).
func (b *Bridge) runActive() {
	if b.lease == nil {
		b.goRun("tracker", b.tracker.Run)
		b.goRun("dispatcher", b.disp.Run)
		b.runSinks()
		return
	}
	b.goRun("lease", func(ctx context.Context) error {
		if err := b.lease.Acquire(ctx); err != nil {
			return nil // stopping
		}
		b.goRun("tracker", b.tracker.Run)
		b.goRun("dispatcher", b.disp.Run)
		b.runSinks()
		return b.lease.Hold(ctx)
	})
}
