package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Queue is what the dispatcher needs of the journal: the events to deliver
// in journal order, and a way to settle each (remove it, or dead-letter
// it). The journal implements it (JournalQueue); tests use a recording fake.
type Queue interface {
	// Next blocks until the next event is there, or ctx ends (then it
	// returns ctx's error).
	Next(ctx context.Context) (Queued, error)
	// Remove deletes a delivered event. An event that is already gone
	// counts as removed.
	Remove(ctx context.Context, seq uint64) error
	// DeadLetter stores dl and then removes the event seq. Storing the
	// same dead letter twice keeps one.
	DeadLetter(ctx context.Context, seq uint64, dl DeadLetter) error
}

// Queued is one journaled event.
type Queued struct {
	Env      Envelope
	Seq      uint64    // its sequence in the journal
	Received time.Time // when it was journaled
	// Unreadable holds the raw message when it could not be decoded; it is
	// dead-lettered as it is.
	Unreadable []byte
}

// JournalQueue reads the EVENTS stream in order through an ordered
// consumer; Close stops it.
type JournalQueue struct {
	j      *Journal
	stream jetstream.Stream
	name   string // the stream's name
	sink   string // "" for register-event's EVENTS

	mu sync.Mutex
	it jetstream.MessagesContext
}

// NewJournalQueue returns the journal's events as a Queue.
func NewJournalQueue(j *Journal) *JournalQueue {
	return &JournalQueue{j: j, stream: j.events, name: j.n.events}
}

// Next implements Queue. The consumer starts with the first call.
func (q *JournalQueue) Next(ctx context.Context) (Queued, error) {
	q.mu.Lock()
	it := q.it
	if it == nil {
		cons, err := q.j.js.OrderedConsumer(ctx, q.name, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy})
		if err != nil {
			q.mu.Unlock()
			return Queued{}, fmt.Errorf("events consumer: %w", err)
		}
		if it, err = cons.Messages(jetstream.PullMaxMessages(256)); err != nil {
			q.mu.Unlock()
			return Queued{}, fmt.Errorf("events consumer: %w", err)
		}
		q.it = it
		context.AfterFunc(ctx, it.Stop)
	}
	q.mu.Unlock()
	msg, err := it.Next()
	if err != nil {
		if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return Queued{}, errors.Join(context.Canceled, err)
		}
		return Queued{}, fmt.Errorf("read events: %w", err)
	}
	md, err := msg.Metadata()
	if err != nil {
		return Queued{}, err
	}
	out := Queued{Seq: md.Sequence.Stream, Received: md.Timestamp}
	if err := json.Unmarshal(msg.Data(), &out.Env); err != nil {
		out.Unreadable = msg.Data()
		out.Env = Envelope{MsgID: fmt.Sprintf("unreadable-%d", out.Seq)}
	}
	return out, nil
}

// Close stops reading.
func (q *JournalQueue) Close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.it != nil {
		q.it.Stop()
	}
}

// Remove implements Queue.
func (q *JournalQueue) Remove(ctx context.Context, seq uint64) error {
	err := q.stream.DeleteMsg(ctx, seq)
	if err == nil || alreadyRemoved(err) {
		return nil
	}
	return err
}

// alreadyRemoved: the journal answers a removal of a message that is gone
// with "no message found" (err_code 10057) wrapped in a generic failure,
// for example when the first attempt succeeded on a leader that lost its
// place before it answered.
func alreadyRemoved(err error) bool {
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return true
	}
	var api *jetstream.APIError
	if errors.As(err, &api) && (api.ErrorCode == 10057 || api.ErrorCode == jetstream.JSErrCodeMessageNotFound) {
		return true
	}
	s := err.Error()
	return errors.Is(err, jetstream.ErrMsgDeleteUnsuccessful) && (strings.Contains(s, "err_code=10057") || strings.Contains(s, "no message found"))
}

// DeadLetter implements Queue.
func (q *JournalQueue) DeadLetter(ctx context.Context, seq uint64, dl DeadLetter) error {
	data, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	if _, err := q.j.js.Publish(ctx, q.j.n.deadSubj+"."+subjectToken(dl.Envelope.Source), data,
		jetstream.WithMsgID(fmt.Sprintf("dl|%s|%d", dl.Envelope.MsgID, seq))); err != nil {
		return fmt.Errorf("store dead letter: %w", err)
	}
	return q.Remove(ctx, seq)
}

// DeadCount returns how many dead letters are kept (for metrics).
func (q *JournalQueue) DeadCount(ctx context.Context) (uint64, error) {
	info, err := q.j.dead.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// sinkSubject is the subject prefix of a sink's stream.
func (j *Journal) sinkSubject(sink string) string {
	return strings.TrimSuffix(j.n.eventsSubj, ".events") + ".sink." + subjectToken(sink)
}

// sinkStreamName is the stream that holds a sink's events.
func (j *Journal) sinkStreamName(sink string) string {
	return strings.TrimSuffix(j.n.events, EventsStream) + "SINK_" + strings.ToUpper(subjectToken(sink))
}

// SinkQueue creates (or opens) the stream of a sink beyond register-event
// and returns it as the sink's Queue. The tracker journals into it the
// events the sink wants (TrackerOptions.Sinks); the sink's dispatcher
// removes each once the sink accepted it, so a slow or broken sink never
// holds another back.
func (j *Journal) SinkQueue(ctx context.Context, sink string, replicas int) (*JournalQueue, error) {
	if replicas <= 0 {
		replicas = 1
	}
	name := j.sinkStreamName(sink)
	s, err := j.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "events waiting for delivery to the " + sink + " sink; removed once it accepted them",
		Subjects:    []string{j.sinkSubject(sink) + ".>"},
		Duplicates:  dedupWindow,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("journal: stream %s: %w", name, err)
	}
	return &JournalQueue{j: j, stream: s, name: name, sink: sink}, nil
}

// StreamName is the name of the stream the queue reads.
func (q *JournalQueue) StreamName() string { return q.name }

// Pending returns how many events wait in the queue's stream.
func (q *JournalQueue) Pending(ctx context.Context) (uint64, error) {
	info, err := q.stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}
