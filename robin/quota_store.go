package robin

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// QuotaStore persists the Quota's record of started requests. With a shared
// store (an external NATS server) several bridge processes share one record
// and so one quota; Update must therefore be compare-and-set.
type QuotaStore interface {
	// Load returns the stored record and its revision, or (nil, 0, nil) when
	// nothing is stored yet.
	Load(ctx context.Context) (record []byte, revision uint64, err error)
	// Update stores record if the stored revision is still lastRevision
	// (0: nothing stored yet) and returns the new revision. It returns an
	// error matching ErrQuotaConflict when someone else wrote first; any
	// other error leaves it unknown whether the write happened.
	Update(ctx context.Context, record []byte, lastRevision uint64) (revision uint64, err error)
}

// ErrQuotaConflict is returned by QuotaStore.Update when the stored record
// changed since the revision the caller read: another process recorded a
// request first. The Quota then reloads and decides again.
var ErrQuotaConflict = errors.New("quota record changed concurrently")

// kvQuotaStore keeps the record under one key of a JetStream KV bucket.
type kvQuotaStore struct {
	kv  jetstream.KeyValue
	key string
}

// NewKVQuotaStore returns a QuotaStore that keeps the record under key in a
// NATS JetStream key-value bucket, using the key's revision for
// compare-and-set. The bucket needs no history beyond the latest value
// (History 1); for a record that survives power loss the server must sync
// every write, and for one that survives losing a node the bucket needs
// replicas. Every process that shares the key must use the same windows,
// and their clocks must agree: the record holds wall-clock instants, so a
// process whose clock runs d ahead sees the others' requests leave the
// windows up to d early. Deleting the key forgets every recorded request.
func NewKVQuotaStore(kv jetstream.KeyValue, key string) QuotaStore {
	return &kvQuotaStore{kv: kv, key: key}
}

func (s *kvQuotaStore) Load(ctx context.Context) ([]byte, uint64, error) {
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Also a deleted key: Update with revision 0 creates it again.
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("get quota key %s: %w", s.key, err)
	}
	return e.Value(), e.Revision(), nil
}

func (s *kvQuotaStore) Update(ctx context.Context, record []byte, lastRevision uint64) (uint64, error) {
	var (
		rev uint64
		err error
	)
	if lastRevision == 0 {
		rev, err = s.kv.Create(ctx, s.key, record)
	} else {
		rev, err = s.kv.Update(ctx, s.key, record, lastRevision)
	}
	switch {
	case err == nil:
		return rev, nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch), isQuotaWrongLastSequence(err):
		return 0, fmt.Errorf("%w: %w", ErrQuotaConflict, err)
	}
	return 0, fmt.Errorf("write quota key %s: %w", s.key, err)
}

// isQuotaWrongLastSequence reports JetStream's "wrong last sequence" answer
// to a compare-and-set publish: 10071, or 10164 on replicated streams.
func isQuotaWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	return apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant
}
