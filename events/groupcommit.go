package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit of signals on the embedded journal.
//
// With SyncAlways the embedded server writes and fsyncs every message on
// its own, one after the other: concurrent publishes queue for the disk,
// one fsync each. An atomic batch (ADR-50, stream option allow_atomic) is
// the one way JetStream stores many messages under one durability
// boundary: on a single-replica file stream with SyncAlways the server
// writes the whole batch, fsyncs, and only then acknowledges the commit;
// each message keeps its own Nats-Msg-Id and deduplication. A batch has a
// fixed cost of its own (the server stages it in a file store of its own,
// created, synced and removed per batch) of about a dozen fsyncs, so it
// only pays when many signals wait at once.
//
// So PublishSignal publishes a signal on its own, as it always did, while
// fewer than maxDirect are being published. Beyond that, signals queue
// here, and one caller at a time, the leader, publishes the whole queue as
// one group: from minBatch signals on as one atomic batch, else as
// pipelined ordinary publishes. Signals that arrive meanwhile form the
// next group; once the leader's group is stored and its callers answered,
// one of the waiting callers leads the next. When nothing waits, callers
// publish on their own again.
//
// Every caller returns only once its own signal is acknowledged, that is
// fsynced. A batch the server refuses (a signal in it duplicates one
// stored before, or the stream lacks the option) is published again
// signal by signal by the callers themselves, with the same message ids,
// so each signal ends as an ordinary publish would have ended.

// Header names of an atomic batch publish (ADR-50); the client library has
// no API for it yet.
const (
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"
)

const (
	// defaultMinBatch is the smallest group committed as one atomic batch,
	// and the default of maxDirect. A batch costs about as much as a dozen
	// single publishes, plus a little per message (measured with an fsync
	// of ~0.2 ms: 2.5 ms for a batch of one message, 3.2 ms for 16, 4.3
	// ms for 64); below this it would be slower than a publish for each.
	defaultMinBatch = 16
	// maxSignalBatch is the largest atomic batch the server takes by
	// default.
	maxSignalBatch = 1000
	// batchTimeout bounds the wait for a batch's commit. A batch that
	// times out is published again signal by signal; deduplication
	// absorbs one the server committed after all.
	batchTimeout = 5 * time.Second
)

// errPublishAlone tells a queued caller to publish its signal itself.
var errPublishAlone = errors.New("journal: publish the signal on its own")

type groupCommit struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	log *slog.Logger
	// minBatch is the smallest group published as one atomic batch.
	minBatch int
	// maxDirect is how many signals may be published on their own at once
	// before more are queued for a group.
	maxDirect int

	mu      sync.Mutex
	direct  int // signals being published on their own
	queue   []*queuedSignal
	leading bool // a leader is committing a group, or the baton waits for a taker
	// baton (capacity 1) is passed to the waiting callers when a leader is
	// done and signals wait: the one that takes it leads the next group.
	baton chan struct{}

	batches atomic.Uint64 // groups committed as one atomic batch (tests)
	hold    func()        // tests: called by a leader before it takes its group
}

type queuedSignal struct {
	ctx      context.Context
	subj, id string
	data     []byte
	err      error
	done     chan struct{}
}

func newGroupCommit(nc *nats.Conn, js jetstream.JetStream, log *slog.Logger) *groupCommit {
	return &groupCommit{nc: nc, js: js, log: log, minBatch: defaultMinBatch, maxDirect: defaultMinBatch,
		baton: make(chan struct{}, 1)}
}

// publish stores one signal and returns once it is acknowledged. When ctx
// ends first it returns at once, and the signal may be stored all the same,
// as with an ordinary publish.
func (g *groupCommit) publish(ctx context.Context, subj, id string, data []byte) error {
	g.mu.Lock()
	if !g.leading && g.direct < g.maxDirect {
		g.direct++
		g.mu.Unlock()
		_, err := g.js.Publish(ctx, subj, data, jetstream.WithMsgID(id))
		g.mu.Lock()
		g.direct--
		g.mu.Unlock()
		return err
	}
	s := &queuedSignal{ctx: ctx, subj: subj, id: id, data: data, done: make(chan struct{})}
	g.queue = append(g.queue, s)
	lead := !g.leading
	g.leading = true
	g.mu.Unlock()
	if lead {
		g.lead()
	}
	for {
		// Prefer the own result to the baton, when both are ready.
		select {
		case <-s.done:
			return g.result(s)
		default:
		}
		select {
		case <-s.done:
			return g.result(s)
		case <-g.baton:
			g.lead()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (g *groupCommit) result(s *queuedSignal) error {
	if s.err == errPublishAlone {
		_, err := g.js.Publish(s.ctx, s.subj, s.data, jetstream.WithMsgID(s.id))
		return err
	}
	return s.err
}

// lead commits the signals waiting now as one group, then passes the baton
// to the waiting callers if more signals arrived meanwhile.
func (g *groupCommit) lead() {
	if g.hold != nil {
		g.hold()
	}
	g.mu.Lock()
	n := min(len(g.queue), maxSignalBatch)
	group := g.queue[:n:n]
	if g.queue = g.queue[n:]; len(g.queue) == 0 {
		g.queue = nil
	}
	g.mu.Unlock()

	g.commit(group)

	g.mu.Lock()
	if len(g.queue) == 0 {
		g.leading = false
	} else {
		// Only the leader sends it: the channel is empty.
		g.baton <- struct{}{}
	}
	g.mu.Unlock()
}

func (s *queuedSignal) finish(err error) {
	s.err = err
	close(s.done)
}

// commit stores a group and answers its callers.
func (g *groupCommit) commit(group []*queuedSignal) {
	// A caller that gave up is not published for: an ordinary publish
	// with a done context would not have been either.
	live := make([]*queuedSignal, 0, len(group))
	for _, s := range group {
		if err := s.ctx.Err(); err != nil {
			s.finish(err)
			continue
		}
		live = append(live, s)
	}
	switch {
	case len(live) == 0:
	case len(live) == 1:
		s := live[0]
		_, err := g.js.Publish(s.ctx, s.subj, s.data, jetstream.WithMsgID(s.id))
		s.finish(err)
	case len(live) < g.minBatch:
		// Pipelined; the server stores them one by one, as it does
		// concurrent publishes.
		msgs := make([]pending, len(live))
		for i, s := range live {
			msgs[i] = pending{subj: s.subj, id: s.id, data: s.data}
		}
		_, errs, _ := publishPipelined(context.Background(), g.js, msgs)
		for i, err := range errs {
			if errors.Is(err, errNotSent) {
				err = errPublishAlone
			}
			live[i].finish(err)
		}
	default:
		err := g.commitBatch(live)
		if err == nil {
			g.batches.Add(1)
		} else {
			g.log.Debug("journal: signal batch refused; publishing its signals one by one", "signals", len(live), "err", err)
			err = errPublishAlone
		}
		for _, s := range live {
			s.finish(err)
		}
	}
}

// batchAck is the server's answer to an atomic batch's commit.
type batchAck struct {
	Batch string              `json:"batch"`
	Count int                 `json:"count"`
	Error *jetstream.APIError `json:"error,omitempty"`
}

// commitBatch publishes the signals as one atomic batch and returns nil once
// the server stored all of them, which on the embedded server is after its
// one fsync.
func (g *groupCommit) commitBatch(signals []*queuedSignal) error {
	id := strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix)
	last := len(signals) - 1
	for i, s := range signals[:last] {
		// Staged without an answer: a message the server refuses fails
		// the commit.
		m := &nats.Msg{Subject: s.subj, Data: s.data, Header: nats.Header{
			jetstream.MsgIDHeader: {s.id},
			batchIDHeader:         {id},
			batchSeqHeader:        {strconv.Itoa(i + 1)},
		}}
		if err := g.nc.PublishMsg(m); err != nil {
			return err
		}
	}
	s := signals[last]
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	resp, err := g.nc.RequestMsgWithContext(ctx, &nats.Msg{Subject: s.subj, Data: s.data, Header: nats.Header{
		jetstream.MsgIDHeader: {s.id},
		batchIDHeader:         {id},
		batchSeqHeader:        {strconv.Itoa(last + 1)},
		batchCommitHeader:     {"1"},
	}})
	if err != nil {
		return err
	}
	var ack batchAck
	if err := json.Unmarshal(resp.Data, &ack); err != nil {
		return fmt.Errorf("batch ack: %w", err)
	}
	if ack.Error != nil {
		return ack.Error
	}
	if ack.Batch != id || ack.Count != len(signals) {
		return fmt.Errorf("batch ack for %q with %d messages, want %q with %d", ack.Batch, ack.Count, id, len(signals))
	}
	return nil
}
