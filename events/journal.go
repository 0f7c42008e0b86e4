package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Stream and bucket names of the journal (with JournalOptions.Name, each is
// prefixed "<name>_"). They are part of the on-disk format: changing them
// orphans a journal written by an older version.
const (
	SignalsStream     = "SIGNALS"
	EventsStream      = "EVENTS"
	DeadLettersStream = "DEADLETTERS"
	CallsBucket       = "CALLS"

	// dedupWindow is how long JetStream remembers an event's id: the
	// tracker repeating itself (a replayed batch) within it is stored once.
	dedupWindow = 24 * time.Hour
	// signalDedupWindow is how long it remembers a signal's id. It is no
	// longer than a call id's reuse gap (CALL_ID_REUSE_AFTER), so that the
	// first signal of a call that reuses an id is never taken for a repeat;
	// the tracker's per-call records cover repeats after it.
	signalDedupWindow = 10 * time.Minute
)

// JournalOptions configure where the journal lives.
type JournalOptions struct {
	// DataDir holds the embedded server's file store. Ignored with URL.
	DataDir string
	// URL of an external NATS server or cluster; empty runs one in-process.
	URL string
	// Replicas of each stream on an external cluster (1 for the embedded one).
	Replicas int
	// SignalRetention is how long raw signals are kept for audit and replay.
	SignalRetention time.Duration
	// Name, when set, prefixes the journal's streams, subjects and buckets,
	// so that several bridges can keep separate journals on one NATS
	// (letters, digits, - and _).
	Name string
	// SignalDedup is how long a signal's id is remembered (default 10m,
	// at most SignalRetention); keep it no longer than CALL_ID_REUSE_AFTER.
	SignalDedup time.Duration
	// SignalMaxBytes bounds the SIGNALS stream (SIGNAL_MAX_BYTES, default
	// 1 GiB): beyond it the oldest signals, folded long ago, are dropped,
	// so the journal cannot fill its disk with its own audit trail.
	SignalMaxBytes int64
	// MinFree is the free space the embedded journal keeps on its disk
	// (JOURNAL_MIN_FREE, default DefaultMinFree): below it PublishSignal
	// refuses with ErrDiskFull, and takes signals again once there is room.
	MinFree uint64
	// freeSpace reads a directory's free bytes (tests); nil means statfs.
	freeSpace func(dir string) (uint64, error)
	// Logger receives the journal's own state changes.
	Logger *slog.Logger
}

// names are the streams, buckets and subject prefixes of one journal.
type names struct {
	signals, events, dead, calls      string
	signalsSubj, eventsSubj, deadSubj string
}

func journalNames(name string) names {
	if name == "" {
		return names{SignalsStream, EventsStream, DeadLettersStream, CallsBucket,
			"voipbridge.signals", "voipbridge.events", "voipbridge.deadletters"}
	}
	p := name + "_"
	return names{p + SignalsStream, p + EventsStream, p + DeadLettersStream, p + CallsBucket,
		"voipbridge." + name + ".signals", "voipbridge." + name + ".events", "voipbridge." + name + ".deadletters"}
}

// ValidJournalName reports whether name can prefix stream and bucket names.
func ValidJournalName(name string) bool {
	if len(name) > 32 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return false
		}
	}
	return true
}

// Journal is the durable store between the PBX and the helpdesk: raw signals,
// events waiting for delivery, dead letters and the tracker's call records,
// all in NATS JetStream. With the embedded server every write is fsynced
// before it is acknowledged (SyncAlways), so an acknowledged signal survives
// kill -9 and power loss.
type Journal struct {
	n       names
	log     *slog.Logger
	srv     *server.Server // nil with an external server
	lock    *os.File
	nc      *nats.Conn
	js      jetstream.JetStream
	signals jetstream.Stream
	events  jetstream.Stream
	dead    jetstream.Stream
	calls   jetstream.KeyValue
	disk    *diskGuard   // nil with an external server
	group   *groupCommit // nil with an external server
}

// OpenJournal starts (or connects to) JetStream and creates or updates the
// streams idempotently.
func OpenJournal(ctx context.Context, o JournalOptions) (*Journal, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	if o.SignalRetention <= 0 {
		o.SignalRetention = 7 * 24 * time.Hour
	}
	if o.SignalDedup <= 0 {
		o.SignalDedup = signalDedupWindow
	}
	if o.SignalMaxBytes <= 0 {
		o.SignalMaxBytes = 1 << 30
	}
	if o.MinFree == 0 {
		o.MinFree = DefaultMinFree
	}
	if o.freeSpace == nil {
		o.freeSpace = statfsFree
	}
	if !ValidJournalName(o.Name) {
		return nil, fmt.Errorf("journal: name %q: want at most 32 letters, digits, - or _", o.Name)
	}
	j := &Journal{log: o.Logger, n: journalNames(o.Name)}
	var err error
	if o.URL == "" {
		o.Replicas = 1
		if err := j.startEmbedded(o.DataDir); err != nil {
			return nil, err
		}
		j.disk = &diskGuard{dir: o.DataDir, minFree: o.MinFree, free: o.freeSpace}
		j.nc, err = nats.Connect("", nats.InProcessServer(j.srv), nats.Name("voipbridge"))
	} else {
		j.nc, err = nats.Connect(o.URL, nats.Name("voipbridge"), nats.MaxReconnects(-1),
			nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
				if err != nil {
					j.log.Warn("journal disconnected", "err", err)
				}
			}),
			nats.ReconnectHandler(func(*nats.Conn) { j.log.Info("journal reconnected") }))
	}
	if err != nil {
		j.Close()
		return nil, fmt.Errorf("journal: connect: %w", err)
	}
	// An asynchronous publish whose message is lost (a stream leader that
	// died before it answered) would otherwise wait for its ack forever and
	// stall the tracker's group commit; after the timeout it fails and is
	// published again, which the journal's deduplication absorbs.
	if j.js, err = jetstream.New(j.nc, jetstream.WithPublishAsyncTimeout(3*time.Second)); err != nil {
		j.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	if err := j.setup(ctx, o); err != nil {
		j.Close()
		return nil, err
	}
	if j.srv != nil {
		j.group = newGroupCommit(j.nc, j.js, j.log)
	}
	return j, nil
}

func (j *Journal) startEmbedded(dir string) error {
	if dir == "" {
		return errors.New("journal: DATA_DIR is empty")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	// Two processes on one file store corrupt it: hold an exclusive lock.
	f, err := os.OpenFile(filepath.Join(dir, "voipbridge.lock"), os.O_CREATE|os.O_RDWR, 0o640)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return fmt.Errorf("journal: data directory is in use by another process: %w", err)
	}
	j.lock = f
	srv, err := server.NewServer(&server.Options{
		ServerName: "voipbridge",
		JetStream:  true,
		StoreDir:   dir,
		DontListen: true,
		// JetStream's file store syncs every two minutes by default; a
		// single node must sync every write to keep what it acknowledged.
		SyncAlways: true,
		// Without a limit the server takes three quarters of the disk
		// space free at its start as its limit, so a start on a nearly
		// full disk would refuse every write even after space returns.
		// The disk guard keeps the reserve instead.
		JetStreamMaxStore: 1 << 50,
		NoSigs:            true,
		NoLog:             true,
	})
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("journal: embedded server did not start within 30s")
	}
	j.srv = srv
	return nil
}

func (j *Journal) setup(ctx context.Context, o JournalOptions) error {
	streams := []struct {
		dst *jetstream.Stream
		cfg jetstream.StreamConfig
	}{
		{&j.signals, jetstream.StreamConfig{
			Name:        j.n.signals,
			Description: "raw PBX signals, for the tracker, audit and replay",
			Subjects:    []string{j.n.signalsSubj + ".>"},
			MaxAge:      o.SignalRetention,
			MaxBytes:    o.SignalMaxBytes,
			Discard:     jetstream.DiscardOld,
			Duplicates:  min(o.SignalDedup, o.SignalRetention),
			// Concurrent signals share an fsync as one atomic batch
			// (groupcommit.go); only the embedded journal syncs every
			// write, so only its stream needs the option.
			AllowAtomicPublish: o.URL == "",
		}},
		{&j.events, jetstream.StreamConfig{
			Name:        j.n.events,
			Description: "events waiting for delivery; removed once the helpdesk accepted them",
			Subjects:    []string{j.n.eventsSubj + ".>"},
			Duplicates:  dedupWindow,
		}},
		{&j.dead, jetstream.StreamConfig{
			Name:        j.n.dead,
			Description: "events the helpdesk rejected, for inspection and replay",
			Subjects:    []string{j.n.deadSubj + ".>"},
		}},
	}
	for _, st := range streams {
		st.cfg.Storage, st.cfg.Retention, st.cfg.Replicas = jetstream.FileStorage, jetstream.LimitsPolicy, o.Replicas
		s, err := j.js.CreateOrUpdateStream(ctx, st.cfg)
		if err != nil {
			return fmt.Errorf("journal: stream %s: %w", st.cfg.Name, err)
		}
		*st.dst = s
	}
	var err error
	j.calls, err = j.SharedKeyValue(ctx, j.n.calls, "tracker state: one record per call in progress", o.Replicas)
	return err
}

// KeyValue creates or opens a key-value bucket of this journal (a source's
// state); with a journal name, the bucket's name is prefixed with it.
func (j *Journal) KeyValue(ctx context.Context, bucket, description string, replicas int) (jetstream.KeyValue, error) {
	if j.n.signals != SignalsStream {
		bucket = strings.TrimSuffix(j.n.signals, SignalsStream) + bucket
	}
	return j.SharedKeyValue(ctx, bucket, description, replicas)
}

// ExpiringKeyValue is KeyValue for a bucket whose keys expire ttl after
// their last write (routing's caller history).
func (j *Journal) ExpiringKeyValue(ctx context.Context, bucket, description string, replicas int, ttl time.Duration) (jetstream.KeyValue, error) {
	if j.n.signals != SignalsStream {
		bucket = strings.TrimSuffix(j.n.signals, SignalsStream) + bucket
	}
	return j.keyValue(ctx, bucket, description, replicas, ttl)
}

// SharedKeyValue creates or opens a key-value bucket under exactly this name,
// shared by every journal on the same NATS (the quota record).
func (j *Journal) SharedKeyValue(ctx context.Context, bucket, description string, replicas int) (jetstream.KeyValue, error) {
	return j.keyValue(ctx, bucket, description, replicas, 0)
}

func (j *Journal) keyValue(ctx context.Context, bucket, description string, replicas int, ttl time.Duration) (jetstream.KeyValue, error) {
	if replicas <= 0 {
		replicas = 1
	}
	kv, err := j.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: description,
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		TTL:         ttl,
	})
	if err != nil {
		return nil, fmt.Errorf("journal: bucket %s: %w", bucket, err)
	}
	return kv, nil
}

// PublishSignal stores a signal durably. It returns nil only once the signal
// is journaled (fsynced on the embedded server); only then may the source
// acknowledge the PBX. A signal whose dedup key was stored before is accepted
// and stored once. On the embedded server, concurrent calls may share an
// fsync (groupcommit.go).
func (j *Journal) PublishSignal(ctx context.Context, s Signal) error {
	if err := s.Validate(); err != nil {
		return err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	// The stored message is about twice the JSON (headers, index, and the
	// id the journal remembers for deduplication), and the headers of an
	// atomic batch when it is stored in one.
	if err := j.disk.check(2*len(data) + 64); err != nil {
		return err
	}
	subj, id := j.n.signalsSubj+"."+subjectToken(s.Source), signalMsgID(s)
	if j.group != nil {
		err = j.group.publish(ctx, subj, id, data)
	} else {
		_, err = j.js.Publish(ctx, subj, data, jetstream.WithMsgID(id))
	}
	if err != nil {
		return fmt.Errorf("journal: publish signal: %w", err)
	}
	return nil
}

// signalMsgID is the journal's deduplication id of a signal: its dedup key
// scoped to its call ("event 1 of call A" is not "event 1 of call B"),
// hashed so that no PBX string reaches a header.
func signalMsgID(s Signal) string {
	// The hash of the fields one after the other, each ended by a zero
	// byte, hashed in one piece rather than field by field.
	var buf [256]byte
	b := buf[:0]
	for _, p := range []string{s.Source, s.CallID, s.DedupKey} {
		b = append(append(b, p...), 0)
	}
	if s.State == Snapshot {
		b = append(b, s.State...)
	}
	sum := sha256.Sum256(b)
	var id [1 + 2*20]byte
	id[0] = 's'
	hex.Encode(id[1:], sum[:20])
	return string(id[:])
}

// publishEvent stores an event for delivery under its deterministic id, so the
// same event emitted twice (a replayed signal) is stored once.
func (j *Journal) publishEvent(ctx context.Context, env Envelope) error {
	data, err := json.Marshal(env)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := j.js.Publish(ctx, j.n.eventsSubj+"."+subjectToken(env.Source), data, jetstream.WithMsgID(env.MsgID)); err != nil {
		return fmt.Errorf("journal: publish event: %w", err)
	}
	return nil
}

// Pending returns how many events wait for delivery.
func (j *Journal) Pending(ctx context.Context) (uint64, error) {
	info, err := j.events.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("journal: %w", err)
	}
	return info.State.Msgs, nil
}

// Ready reports whether the journal can take writes.
func (j *Journal) Ready(ctx context.Context) error {
	if j.nc == nil || !j.nc.IsConnected() {
		return errors.New("journal: not connected")
	}
	if _, err := j.js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return j.disk.check(0)
}

// Embedded reports whether the journal runs in-process.
func (j *Journal) Embedded() bool { return j.srv != nil }

// Close flushes and stops the journal. It is safe to call more than once.
func (j *Journal) Close() {
	if j.nc != nil {
		_ = j.nc.Drain()
		j.nc.Close()
		j.nc = nil
	}
	if j.srv != nil {
		j.srv.Shutdown()
		j.srv.WaitForShutdown()
		j.srv = nil
	}
	if j.lock != nil {
		j.lock.Close()
		j.lock = nil
	}
}

// subjectToken makes s safe as one subject token.
func subjectToken(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return '_'
		}
		return r
	}, s)
}

// pending is one message of a group commit.
type pending struct {
	subj, id string // id: the message id, "" for none
	data     []byte
}

// errNotSent marks a message publishPipelined could not hand to the
// connection at all.
var errNotSent = errors.New("journal: not sent")

// publishPipelined publishes msgs without waiting between them, then waits
// for each one's answer: its ack, or its error (errNotSent when it never
// left). It returns early only when ctx ends.
func publishPipelined(ctx context.Context, js jetstream.JetStream, msgs []pending) ([]*jetstream.PubAck, []error, error) {
	acks := make([]*jetstream.PubAck, len(msgs))
	errs := make([]error, len(msgs))
	futures := make([]jetstream.PubAckFuture, len(msgs))
	for i, m := range msgs {
		var opts []jetstream.PublishOpt
		if m.id != "" {
			opts = append(opts, jetstream.WithMsgID(m.id))
		}
		f, err := js.PublishAsync(m.subj, m.data, opts...)
		if err != nil {
			errs[i] = fmt.Errorf("%w: %w", errNotSent, err)
			continue
		}
		futures[i] = f
	}
	for i, f := range futures {
		if f == nil {
			continue
		}
		select {
		case acks[i] = <-f.Ok():
		case errs[i] = <-f.Err():
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	return acks, errs, nil
}
