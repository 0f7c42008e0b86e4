package chatwoot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/robin"
)

// Name is the sink's name in metrics, dead letters and the journal.
const Name = "chatwoot"

// maxSearchPages bounds the pages of contact search read for one number
// (15 contacts a page: numbers that contain the caller's as a substring).
const maxSearchPages = 4

// agentsTTL is how long the list of Chatwoot's agents is used before it
// is read again (for CHATWOOT_ASSIGN).
const agentsTTL = 10 * time.Minute

// Directory names the agents of the bridge's directory.
type Directory interface {
	// ByExtension returns the agent with this ROBIN extension (an event's
	// PhoneExtension) for the source.
	ByExtension(source, ext string) (extensions.Agent, bool)
	// Lookup returns the agent with this PBX id (the extensions that rang).
	Lookup(source, pbxID string) (extensions.Agent, bool)
}

// Store keeps a record per key; a jetstream.KeyValue satisfies it.
type Store interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
	Put(ctx context.Context, key string, value []byte) (uint64, error)
}

// SinkOptions configure the call log.
type SinkOptions struct {
	// Client talks to the account (required).
	Client *Client
	// InboxID is the inbox whose conversations carry the notes
	// (CHATWOOT_INBOX_ID, required).
	InboxID int64
	// Callers keeps, per caller, the contact and conversation found or
	// created (a journal bucket, required), so that a retry or a restart
	// creates neither twice.
	Callers Store
	// Quota is Chatwoot's rate limit (CHATWOOT_RATE_LIMITS): every request
	// takes a place in it. nil: no limit.
	Quota *robin.Quota
	// Numbers normalises the contacts' phone numbers for the exact match;
	// nil compares them as they are.
	Numbers Numbers
	// Agents names agents in the notes and gives their e-mail addresses
	// for Assign; nil names them by extension.
	Agents Directory
	// Assign makes the agent who answered (or took a transfer) the
	// conversation's assignee (CHATWOOT_ASSIGN), matched by e-mail address.
	Assign bool
	// Location is the time zone of the notes (TZ); nil means time.Local.
	Location *time.Location
	Logger   *slog.Logger
}

// Sink logs calls in Chatwoot: for each event of a call with a customer's
// number it finds the contact by number (or creates it), finds the
// contact's open conversation in the inbox (or opens one) and posts one
// private note saying what happened. Chatwoot has no call events of its own
// (research: helpdesk-apis §2.6), and a private note is what any inbox type
// accepts and only agents see.
//
// The note is the last request of a delivery: the lookups and creations
// before it are remembered in Callers, so a retry after a failure repeats
// none of them, and a retry after a lost answer finds what was created
// before creating anything. A note whose answer is lost is posted again by
// the retry: at most once more per request in flight.
type Sink struct {
	o    SinkOptions
	log  *slog.Logger
	stop context.Context
	halt context.CancelFunc

	mu       sync.Mutex
	agents   map[string]int64 // e-mail address (lower case) -> Chatwoot user id
	agentsAt time.Time
	unknown  map[string]bool // e-mail addresses already reported as not in Chatwoot
}

// NewSink checks o and returns the sink.
func NewSink(o SinkOptions) (*Sink, error) {
	switch {
	case o.Client == nil:
		return nil, errors.New("chatwoot: no client")
	case o.Callers == nil:
		return nil, errors.New("chatwoot: no bucket for the callers")
	case o.InboxID <= 0:
		return nil, errors.New("CHATWOOT_INBOX_ID: want the inbox's number")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Location == nil {
		o.Location = time.Local
	}
	stop, halt := context.WithCancel(context.Background())
	return &Sink{o: o, log: o.Logger, stop: stop, halt: halt, unknown: map[string]bool{}}, nil
}

// Close makes requests that wait for the rate limit give up (the bridge is
// stopping): their events stay journaled and are delivered after the
// restart. A request already sent finishes.
func (s *Sink) Close() { s.halt() }

// Wants picks the events the call log takes: Answered, Transfer and
// Disconnected (answered or missed) of calls with a customer's number;
// never anonymous callers or calls between extensions.
func Wants(env events.Envelope) bool {
	c := env.Call
	if c == nil || c.Anonymous || c.Internal || strings.TrimSpace(c.Customer) == "" {
		return false
	}
	switch env.Event.Type {
	case events.EventAnswered, events.EventTransfer, events.EventDisconnected:
		return true
	}
	return false
}

// caller is what Callers keeps per customer number.
type caller struct {
	Contact  int64  `json:"contact"`
	SourceID string `json:"source_id,omitempty"`
	// Conversation was chosen (found open, or opened) for Call.
	Conversation int64  `json:"conversation,omitempty"`
	Call         string `json:"call,omitempty"`
	// Assignee is the conversation's assignee as last seen or set.
	Assignee int64 `json:"assignee,omitempty"`
	// Agent is the ROBIN extension on Call after the event Event, Before
	// the one before it (who handed the call on).
	Agent  string `json:"agent,omitempty"`
	Before string `json:"before,omitempty"`
	Event  string `json:"event,omitempty"`
}

// SendEnvelope posts the note an event calls for, first finding or
// creating the contact and the conversation.
func (s *Sink) SendEnvelope(ctx context.Context, env events.Envelope) error {
	if !Wants(env) {
		return nil
	}
	key := events.BucketKey(env.Call.Customer)
	rec, err := s.load(ctx, key)
	if err != nil {
		return err
	}
	err = s.deliver(ctx, env, key, &rec)
	var ce *robin.Error
	if errors.As(err, &ce) && ce.Status == http.StatusNotFound && rec.Contact != 0 {
		// The contact or the conversation was deleted in Chatwoot: find
		// (or create) them again, once.
		s.log.Info("chatwoot: contact or conversation gone; looking again", "call_id", env.Event.ID, "err", err)
		rec = caller{}
		if err := s.save(ctx, key, rec); err != nil {
			return err
		}
		err = s.deliver(ctx, env, key, &rec)
	}
	return err
}

func (s *Sink) deliver(ctx context.Context, env events.Envelope, key string, rec *caller) error {
	if rec.Contact == 0 {
		ct, err := s.contact(ctx, env.Call.Customer)
		if err != nil {
			return err
		}
		*rec = caller{Contact: ct.ID, SourceID: ct.SourceID(s.o.InboxID)}
		if err := s.save(ctx, key, *rec); err != nil {
			return err
		}
	}
	if rec.Conversation == 0 || rec.Call != env.Event.ID {
		cv, err := s.conversation(ctx, *rec)
		if err != nil {
			return err
		}
		rec.Conversation, rec.Call, rec.Agent, rec.Before, rec.Event = cv.ID, env.Event.ID, "", "", ""
		rec.Assignee = 0
		if a := cv.Meta.Assignee; a != nil {
			rec.Assignee = a.ID
		}
		if err := s.save(ctx, key, *rec); err != nil {
			return err
		}
	}
	agentEvent := env.Event.Type == events.EventAnswered || env.Event.Type == events.EventTransfer
	if agentEvent && rec.Event != env.MsgID {
		rec.Before, rec.Agent, rec.Event = rec.Agent, env.Event.PhoneExtension, env.MsgID
		if err := s.save(ctx, key, *rec); err != nil {
			return err
		}
	}
	if s.o.Assign && agentEvent {
		if err := s.assign(ctx, env, key, rec); err != nil {
			return err
		}
	}
	note := s.note(env, *rec)
	return s.request(ctx, func(ctx context.Context) error { return s.o.Client.PostNote(ctx, rec.Conversation, note) })
}

// contact finds the contact whose number is number, or creates it.
func (s *Sink) contact(ctx context.Context, number string) (Contact, error) {
	if ct, ok, err := s.findContact(ctx, number); err != nil || ok {
		return ct, err
	}
	var ct Contact
	err := s.request(ctx, func(ctx context.Context) error {
		var err error
		ct, err = s.o.Client.CreateContact(ctx, s.o.InboxID, number, number)
		return err
	})
	var ce *robin.Error
	if errors.As(err, &ce) && ce.Status == http.StatusUnprocessableEntity && strings.Contains(strings.ToLower(ce.Body), "taken") {
		// Created meanwhile (by an agent, or by a request whose answer
		// was lost): it is there now.
		if found, ok, ferr := s.findContact(ctx, number); ferr == nil && ok {
			return found, nil
		}
	}
	return ct, err
}

// findContact searches contacts for number and keeps the one whose number
// is number (the search matches substrings).
func (s *Sink) findContact(ctx context.Context, number string) (Contact, bool, error) {
	for page := 1; page <= maxSearchPages; page++ {
		var list []Contact
		err := s.request(ctx, func(ctx context.Context) error {
			var err error
			list, err = s.o.Client.SearchContacts(ctx, number, page)
			return err
		})
		if err != nil {
			return Contact{}, false, err
		}
		if m := Matching(list, number, s.o.Numbers); len(m) > 0 {
			return m[0], true, nil
		}
		if len(list) < PageSize {
			break
		}
	}
	return Contact{}, false, nil
}

// conversation returns the contact's conversation in the inbox that is not
// resolved (the one used before if it still is, else the most recently
// active), or opens one.
func (s *Sink) conversation(ctx context.Context, rec caller) (Conversation, error) {
	var list []Conversation
	err := s.request(ctx, func(ctx context.Context) error {
		var err error
		list, err = s.o.Client.ContactConversations(ctx, rec.Contact)
		return err
	})
	if err != nil {
		return Conversation{}, err
	}
	var best *Conversation
	for i, cv := range list {
		if cv.InboxID != s.o.InboxID || cv.Status == "resolved" {
			continue
		}
		if cv.ID == rec.Conversation {
			return cv, nil
		}
		if best == nil || cv.LastActivityAt > best.LastActivityAt {
			best = &list[i]
		}
	}
	if best != nil {
		return *best, nil
	}
	var cv Conversation
	err = s.request(ctx, func(ctx context.Context) error {
		var err error
		cv, err = s.o.Client.CreateConversation(ctx, s.o.InboxID, rec.Contact, rec.SourceID)
		return err
	})
	return cv, err
}

// assign makes the event's agent the conversation's assignee. An agent not
// in the directory or not in Chatwoot, or an assignment Chatwoot refuses
// (4xx), is logged and leaves the note to be posted unassigned; other
// failures are returned, to be retried.
func (s *Sink) assign(ctx context.Context, env events.Envelope, key string, rec *caller) error {
	if s.o.Agents == nil {
		return nil
	}
	ag, ok := s.o.Agents.ByExtension(env.Source, env.Event.PhoneExtension)
	if !ok || ag.Email == "" {
		s.reportUnknown("ext:"+env.Event.PhoneExtension, "chatwoot: agent has no e-mail address in the directory; conversations are not assigned to them",
			"ext", env.Event.PhoneExtension)
		return nil
	}
	id, ok, err := s.agentID(ctx, ag.Email)
	if err != nil {
		return s.assignFailed(env, err)
	}
	if !ok {
		s.reportUnknown(strings.ToLower(ag.Email), "chatwoot: no Chatwoot agent with the directory's e-mail address; conversations are not assigned to them",
			"ext", env.Event.PhoneExtension, "email", ag.Email)
		return nil
	}
	if rec.Assignee == id {
		return nil
	}
	if err := s.request(ctx, func(ctx context.Context) error { return s.o.Client.Assign(ctx, rec.Conversation, id) }); err != nil {
		return s.assignFailed(env, err)
	}
	rec.Assignee = id
	return s.save(ctx, key, *rec)
}

// assignFailed returns err unless it is permanent, which is logged.
func (s *Sink) assignFailed(env events.Envelope, err error) error {
	if events.ClassOf(err) != events.Permanent {
		return err
	}
	s.log.Warn("chatwoot: assignment refused; the note is posted unassigned", "call_id", env.Event.ID, "ext", env.Event.PhoneExtension, "err", err)
	return nil
}

func (s *Sink) reportUnknown(key, msg string, attrs ...any) {
	s.mu.Lock()
	seen := s.unknown[key]
	s.unknown[key] = true
	s.mu.Unlock()
	if !seen {
		s.log.Warn(msg, attrs...)
	}
}

// agentID returns the id of the Chatwoot agent with this e-mail address,
// reading the agents at most once per agentsTTL.
func (s *Sink) agentID(ctx context.Context, email string) (int64, bool, error) {
	email = strings.ToLower(strings.TrimSpace(email))
	s.mu.Lock()
	id, ok := s.agents[email]
	fresh := !s.agentsAt.IsZero() && time.Since(s.agentsAt) < agentsTTL
	s.mu.Unlock()
	if ok || fresh {
		return id, ok, nil
	}
	var list []Agent
	if err := s.request(ctx, func(ctx context.Context) error {
		var err error
		list, err = s.o.Client.Agents(ctx)
		return err
	}); err != nil {
		return 0, false, err
	}
	m := make(map[string]int64, len(list))
	for _, a := range list {
		m[strings.ToLower(strings.TrimSpace(a.Email))] = a.ID
	}
	s.mu.Lock()
	s.agents, s.agentsAt = m, time.Now()
	s.mu.Unlock()
	id, ok = m[email]
	return id, ok, nil
}

// request runs one request to Chatwoot within the rate limit. A request
// that certainly never reached Chatwoot gives its place back.
func (s *Sink) request(ctx context.Context, f func(context.Context) error) error {
	if s.o.Quota == nil {
		return f(ctx)
	}
	qctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.stop, cancel)()
	release, err := s.o.Quota.Acquire(qctx, events.PriorityNormal)
	if err != nil {
		// Stopping (or the quota record failed): nothing was sent.
		return fmt.Errorf("chatwoot: waiting for CHATWOOT_RATE_LIMITS: %w", errors.Join(context.Canceled, err))
	}
	err = f(ctx)
	release(!events.NotSentOf(err))
	return err
}

func (s *Sink) load(ctx context.Context, key string) (caller, error) {
	var rec caller
	e, err := s.o.Callers.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return rec, nil
	case err != nil:
		return rec, fmt.Errorf("chatwoot: read the caller's contact: %w", err)
	}
	if json.Unmarshal(e.Value(), &rec) != nil {
		return caller{}, nil // unreadable: find everything again
	}
	return rec, nil
}

func (s *Sink) save(ctx context.Context, key string, rec caller) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if _, err := s.o.Callers.Put(ctx, key, data); err != nil {
		return fmt.Errorf("chatwoot: remember the caller's contact: %w", err)
	}
	return nil
}

// Limiter is the dispatcher's side of the rate limit: it lets a delivery
// start once the limit has room, and records nothing, since the sink
// counts each of the delivery's requests (one to six) itself. So a
// delivery waits for the limit before the breaker's slot is used, and
// /v1/status shows it waiting for "quota".
func (s *Sink) Limiter() events.Limiter { return admission{q: s.o.Quota} }

type admission struct{ q *robin.Quota }

func (a admission) Acquire(ctx context.Context, p events.Priority) (func(bool), error) {
	for a.q != nil {
		wait := time.Until(a.q.ReadyAt(p))
		if wait <= 0 {
			break
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return func(bool) {}, nil
}
