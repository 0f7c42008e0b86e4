package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/voipbridge/voipbridge/events"
)

// DefaultHistoryTTL is the default of ROUTE_HISTORY_TTL: a caller goes back
// to the agent who had them on an answered call within the last 30 days.
const DefaultHistoryTTL = 30 * 24 * time.Hour

// HistoryBucket is the journal's key-value bucket of the history: one key
// per caller (the E.164 digits), expiring ROUTE_HISTORY_TTL after its last
// write.
const HistoryBucket = "VOIPBRIDGE_ROUTE_HISTORY"

// maxPending bounds the records waiting to be saved; beyond it new callers
// are not recorded until the store catches up.
const maxPending = 100_000

// Store keeps the history durably. Load returns nil and no error for an
// absent key.
type Store interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Save(ctx context.Context, key string, value []byte) error
}

// KVStore keeps the history in a journal bucket.
func KVStore(kv jetstream.KeyValue) Store { return kvStore{kv} }

type kvStore struct{ kv jetstream.KeyValue }

func (s kvStore) Load(ctx context.Context, key string) ([]byte, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

func (s kvStore) Save(ctx context.Context, key string, value []byte) error {
	_, err := s.kv.Put(ctx, key, value)
	return err
}

// memStore is a Store in memory, for a History without a journal.
type memStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *memStore) Load(_ context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[key], nil
}

func (s *memStore) Save(_ context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = value
	return nil
}

// HistoryOptions configure a History.
type HistoryOptions struct {
	// Store keeps the records; nil keeps them in memory only.
	Store Store
	// TTL is how long an answered call routes its caller back
	// (ROUTE_HISTORY_TTL); zero means DefaultHistoryTTL. The store should
	// expire keys after the same time.
	TTL time.Duration
	// Agents maps a ROBIN extension back to the PBX extension.
	Agents Agents
	// Logger receives one line when saving starts or stops failing.
	Logger *slog.Logger
}

// record is what the history keeps per caller: the agent who last had them
// on an answered call.
type record struct {
	Ext    string    `json:"ext"` // the ROBIN PhoneExtension of the event
	Source string    `json:"source"`
	Call   string    `json:"call"`
	At     time.Time `json:"at"`
}

// History is the bridge's own record of who answered whom, fed with the
// tracker's committed events: for every caller, the last PhoneExtension of
// an Answered or Transfer event (the agent who answered, or to whom the call
// was handed). It costs no helpdesk request. Records are kept in memory
// until a background writer (Run) has saved them, so feeding it never waits
// on the store; a crash loses at most the records not yet saved.
type History struct {
	store  Store
	ttl    time.Duration
	agents Agents
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string]record // caller → record not yet saved
	dropped int
	failing bool
	wake    chan struct{}
}

// NewHistory returns a History.
func NewHistory(o HistoryOptions) *History {
	h := &History{store: o.Store, ttl: o.TTL, agents: o.Agents, log: o.Logger,
		pending: map[string]record{}, wake: make(chan struct{}, 1)}
	if h.store == nil {
		h.store = &memStore{m: map[string][]byte{}}
	}
	if h.ttl <= 0 {
		h.ttl = DefaultHistoryTTL
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	return h
}

// Name returns "history".
func (h *History) Name() string { return ViaHistory }

// historyKey is the store's key for a caller in E.164, or "" for anything
// else (an anonymous or internal number).
func historyKey(caller string) string {
	digits, ok := strings.CutPrefix(caller, "+")
	if !ok || digits == "" || len(digits) > 15 {
		return ""
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return ""
		}
	}
	return digits
}

// Record takes a committed batch of events (events.TrackerOptions
// OnCommitted). It only updates memory, so the tracker never waits on the
// store; a batch seen again after a restart changes nothing.
func (h *History) Record(batch []events.Envelope) {
	h.mu.Lock()
	defer h.mu.Unlock()
	added := false
	for _, env := range batch {
		e := env.Event
		if (e.Type != events.EventAnswered && e.Type != events.EventTransfer) || e.PhoneExtension == "" {
			continue
		}
		key := historyKey(e.PhoneNumber)
		if key == "" {
			continue
		}
		if old, ok := h.pending[key]; ok && old.At.After(env.Created) {
			continue
		} else if !ok && len(h.pending) >= maxPending {
			h.dropped++
			continue
		}
		h.pending[key] = record{Ext: e.PhoneExtension, Source: env.Source, Call: e.ID, At: env.Created}
		added = true
	}
	if added {
		select {
		case h.wake <- struct{}{}:
		default:
		}
	}
}

// Resolve returns the agent who last had caller on an answered call within
// the TTL, mapped to the PBX extension through the directory.
func (h *History) Resolve(ctx context.Context, caller string) (Match, error) {
	key := historyKey(caller)
	h.mu.Lock()
	rec, ok := h.pending[key]
	h.mu.Unlock()
	if !ok {
		b, err := h.store.Load(ctx, key)
		if err != nil {
			return Match{}, fmt.Errorf("history: %w", err)
		}
		if b == nil {
			return Match{}, none("history: no answered call from this caller")
		}
		if err := json.Unmarshal(b, &rec); err != nil {
			return Match{}, fmt.Errorf("history: unreadable record: %w", err)
		}
	}
	if time.Since(rec.At) > h.ttl {
		return Match{}, none("history: the last answered call is older than ROUTE_HISTORY_TTL")
	}
	ag, ok := h.agents.ByExtension(rec.Source, rec.Ext)
	if !ok {
		return Match{}, none("history: extension " + rec.Ext + " is no longer in the directory")
	}
	return match(ag, rec.Call, rec.At), nil
}

// Run saves the records as they come until ctx ends, then saves what is
// left (for up to five seconds) and returns nil. A failing store is retried
// every second.
func (h *History) Run(ctx context.Context) error {
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			h.flush(fctx)
			return nil
		case <-h.wake:
		case <-retry.C:
		}
		if !h.flush(ctx) {
			retry.Reset(time.Second)
		}
	}
}

// flush saves the pending records; a record stays pending (and visible to
// Resolve) until it is saved, unless a newer one replaced it. It reports
// whether everything was saved.
func (h *History) flush(ctx context.Context) bool {
	h.mu.Lock()
	batch := make(map[string]record, len(h.pending))
	for k, r := range h.pending {
		batch[k] = r
	}
	if h.dropped > 0 {
		h.log.Warn("route history: records waiting to be saved exceed the limit; some callers were not recorded", "dropped", h.dropped)
		h.dropped = 0
	}
	h.mu.Unlock()
	var failed error
	for k, r := range batch {
		b, _ := json.Marshal(r)
		if err := h.store.Save(ctx, k, b); err != nil {
			failed = err
			break
		}
		h.mu.Lock()
		if h.pending[k] == r {
			delete(h.pending, k)
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case failed != nil && !h.failing && ctx.Err() == nil:
		h.failing = true
		h.log.Warn("route history: cannot save; retrying every second", "err", failed, "pending", len(h.pending))
	case failed == nil && h.failing:
		h.failing = false
		h.log.Info("route history: saving again")
	}
	return failed == nil
}
