package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// StoredDeadLetter is a dead letter with its id (its sequence in DEADLETTERS).
type StoredDeadLetter struct {
	ID uint64 `json:"id"`
	DeadLetter
}

// ErrNoDeadLetter is returned for an id that is not (or no longer) in DEADLETTERS.
var ErrNoDeadLetter = errors.New("no such dead letter")

// DeadLetters lists the dead letters, oldest first, at most limit (0: all).
func (j *Journal) DeadLetters(ctx context.Context, limit int) ([]StoredDeadLetter, error) {
	info, err := j.dead.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("dead letters: %w", err)
	}
	var out []StoredDeadLetter
	if info.State.Msgs == 0 {
		return out, nil
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		if limit > 0 && len(out) >= limit {
			break
		}
		dl, err := j.deadLetter(ctx, seq)
		if errors.Is(err, ErrNoDeadLetter) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, dl)
	}
	return out, nil
}

func (j *Journal) deadLetter(ctx context.Context, id uint64) (StoredDeadLetter, error) {
	m, err := j.dead.GetMsg(ctx, id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return StoredDeadLetter{}, ErrNoDeadLetter
	}
	if err != nil {
		return StoredDeadLetter{}, fmt.Errorf("dead letters: %w", err)
	}
	dl := StoredDeadLetter{ID: id}
	if err := json.Unmarshal(m.Data, &dl.DeadLetter); err != nil {
		return StoredDeadLetter{}, fmt.Errorf("dead letter %d: %w", id, err)
	}
	return dl, nil
}

// ReplayDeadLetter puts a dead letter back in the delivery queue (behind what
// is queued) and removes it from DEADLETTERS. It is journaled under a new id,
// so the journal's dedup does not swallow it.
func (j *Journal) ReplayDeadLetter(ctx context.Context, id uint64) error {
	dl, err := j.deadLetter(ctx, id)
	if err != nil {
		return err
	}
	env := dl.Envelope
	if env.MsgID == "" || env.Event.ID == "" {
		return fmt.Errorf("dead letter %d holds no event (%s); it can only be inspected", id, dl.Reason)
	}
	env.MsgID = fmt.Sprintf("%s|replay|%d", env.MsgID, id)
	if dl.Sink != "" && dl.Sink != "robin" {
		// Back to the sink that rejected it, and only to that one.
		data, err := json.Marshal(env)
		if err != nil {
			return err
		}
		if _, err := j.js.Publish(ctx, j.sinkSubject(dl.Sink)+"."+subjectToken(env.Source), data, jetstream.WithMsgID(env.MsgID)); err != nil {
			return fmt.Errorf("replay to sink %s (is it still configured?): %w", dl.Sink, err)
		}
	} else if err := j.publishEvent(ctx, env); err != nil {
		return err
	}
	if err := j.dead.DeleteMsg(ctx, id); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("dead letters: %w", err)
	}
	return nil
}

// ReplayDeadLetters replays every dead letter that holds an event and
// returns how many it replayed.
func (j *Journal) ReplayDeadLetters(ctx context.Context) (int, error) {
	all, err := j.DeadLetters(ctx, 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, dl := range all {
		if dl.Envelope.Event.ID == "" {
			continue
		}
		if err := j.ReplayDeadLetter(ctx, dl.ID); err != nil && !errors.Is(err, ErrNoDeadLetter) {
			return n, err
		}
		n++
	}
	return n, nil
}
