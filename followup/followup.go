// Package followup turns missed calls into follow-ups in ROBIN: ROBIN's
// register-event has no missed-call event (a missed inbound call is only a
// Disconnected no agent sees), so each missed inbound call also becomes a
// message on a custom channel (ROBIN's Channel API), one conversation per
// caller, and when that caller later reaches an agent (or an agent calls
// them back) one more message says so, so the follow-up can be closed.
//
// It is a sink of the delivery pipeline: the tracker journals the events it
// wants (Wants) into its own stream, and its dispatcher sends them below
// register-event in priority, through the shared ROBIN quota.
package followup

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin"
)

// Name is the sink's name in metrics, dead letters and the journal.
const Name = "followups"

// Poster sends a Channel API message; *robin.Client satisfies it.
type Poster interface {
	PostMessage(ctx context.Context, m robin.ChannelMessage) error
}

// Sink sends the follow-up messages.
type Sink struct {
	Poster  Poster
	Channel string // MISSED_CALL_CHANNEL: the custom channel's external identifier
	// Open remembers the callers with an open follow-up (a journal bucket),
	// so that the message about reaching them is sent once, after a restart
	// too.
	Open jetstream.KeyValue
	// Agent names an agent by ROBIN extension for the messages ("" if
	// unknown).
	Agent func(ext string) string
	// Location is the time zone of the messages (TZ); nil means time.Local.
	Location *time.Location
}

// Wants picks the events the sink needs: the Disconnected of a missed
// inbound call, and every Answered (a call taken from, or a call-back to, a
// customer), never for anonymous callers or calls between extensions.
func Wants(env events.Envelope) bool {
	c := env.Call
	if c == nil || c.Anonymous || c.Internal || c.Customer == "" || !strings.HasPrefix(c.Customer, "+") {
		return false
	}
	switch env.Event.Type {
	case events.EventDisconnected:
		return c.Missed && env.Event.Direction == events.DirectionLabel(events.Inbound)
	case events.EventAnswered:
		return true
	}
	return false
}

// open is what the bucket keeps per caller with an open follow-up.
type open struct {
	Missed int       `json:"missed"`
	Last   time.Time `json:"last"`
}

// SendEnvelope sends the message an event calls for, if any.
func (s *Sink) SendEnvelope(ctx context.Context, env events.Envelope) error {
	if !Wants(env) {
		return nil
	}
	c := env.Call
	key := events.BucketKey(c.Customer)
	var cur open
	entry, err := s.Open.Get(ctx, key)
	switch {
	case err == nil:
		if json.Unmarshal(entry.Value(), &cur) != nil {
			cur = open{}
		}
	case errors.Is(err, jetstream.ErrKeyNotFound):
	default:
		return fmt.Errorf("follow-ups: read open follow-up: %w", err)
	}
	if env.Event.Type == events.EventDisconnected {
		return s.missed(ctx, env, key, cur)
	}
	if cur.Missed == 0 {
		return nil // nothing to close
	}
	return s.reached(ctx, env, key, cur)
}

func (s *Sink) loc() *time.Location {
	if s.Location != nil {
		return s.Location
	}
	return time.Local
}

func (s *Sink) missed(ctx context.Context, env events.Envelope, key string, cur open) error {
	c := env.Call
	ended := c.Ended
	if ended.IsZero() {
		ended = env.Created
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Missed call from %s at %s", c.Customer, ended.In(s.loc()).Format("Mon 2 Jan 15:04"))
	if c.DID != "" {
		fmt.Fprintf(&b, " to %s", c.DID)
	}
	if len(c.Rang) > 0 {
		fmt.Fprintf(&b, "; rang %s", strings.Join(c.Rang, ", "))
	} else {
		b.WriteString("; no phone rang")
	}
	if !c.Started.IsZero() && ended.After(c.Started) {
		fmt.Fprintf(&b, " for %s", ended.Sub(c.Started).Round(time.Second))
	}
	b.WriteString(".")
	if cur.Missed > 0 {
		fmt.Fprintf(&b, " (%d missed calls from this number since the first.)", cur.Missed+1)
	}
	err := s.Poster.PostMessage(ctx, robin.ChannelMessage{
		ChannelAccountExternalIdentifier: s.Channel,
		ConversationExternalIdentifier:   c.Customer,
		MessageExternalIdentifier:        messageID(env, "missed"),
		RelationExternalIdentifier:       c.Customer,
		RelationName:                     c.Customer,
		Subject:                          "Missed call",
		Content:                          b.String(),
		SentDateTime:                     ended.In(s.loc()).Format("2006-01-02T15:04:05"),
	})
	if err != nil {
		return err
	}
	cur.Missed++
	cur.Last = ended
	data, _ := json.Marshal(cur)
	if _, err := s.Open.Put(ctx, key, data); err != nil {
		// ROBIN has the message; without the record the closing message
		// would not be sent. Retrying sends the same message id again.
		return fmt.Errorf("follow-ups: remember open follow-up: %w", err)
	}
	return nil
}

func (s *Sink) reached(ctx context.Context, env events.Envelope, key string, cur open) error {
	c := env.Call
	at := c.Answered
	if at.IsZero() {
		at = env.Created
	}
	who := env.Event.PhoneExtension
	if s.Agent != nil {
		if name := s.Agent(who); name != "" {
			who = name + " (" + env.Event.PhoneExtension + ")"
		}
	}
	verb := "took a call from"
	if env.Event.Direction == events.DirectionLabel(events.Outbound) {
		verb = "called back"
	}
	content := fmt.Sprintf("%s %s %s at %s: the follow-up can be closed.", who, verb, c.Customer, at.In(s.loc()).Format("Mon 2 Jan 15:04"))
	err := s.Poster.PostMessage(ctx, robin.ChannelMessage{
		ChannelAccountExternalIdentifier: s.Channel,
		ConversationExternalIdentifier:   c.Customer,
		MessageExternalIdentifier:        messageID(env, "reached"),
		RelationExternalIdentifier:       c.Customer,
		RelationName:                     c.Customer,
		Content:                          content,
		SentDateTime:                     at.In(s.loc()).Format("2006-01-02T15:04:05"),
	})
	if err != nil {
		return err
	}
	if err := s.Open.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("follow-ups: close follow-up: %w", err)
	}
	return nil
}

// messageID is the message's external id: the call id, told apart by what
// the message says (a retry sends the same id).
func messageID(env events.Envelope, kind string) string {
	return env.Event.ID + "|" + kind
}
