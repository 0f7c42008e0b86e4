package chatwoot

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/route/routetest"
)

// agents is a directory of two agents.
type agents map[string]extensions.Agent

func (a agents) ByExtension(_, ext string) (extensions.Agent, bool) {
	for _, ag := range a {
		if ag.Extension == ext {
			return ag, true
		}
	}
	return extensions.Agent{}, false
}

func (a agents) Lookup(_, id string) (extensions.Agent, bool) {
	ag, ok := a[id]
	return ag, ok
}

var directory = agents{
	"201": {PBXID: "201", Extension: "201", Name: "Petra", Email: "petra@shop.example"},
	"202": {PBXID: "202", Extension: "202", Name: "Sam", Email: "Sam@Shop.example"},
}

// world is a fake Chatwoot account with an inbox (a phone inbox, not an
// API one) and two agents, and a journal bucket for the sink.
type world struct {
	cw      *routetest.Chatwoot
	url     string
	callers jetstream.KeyValue
}

func newWorld(t *testing.T) *world {
	t.Helper()
	cw := routetest.NewChatwoot(account, token)
	cw.AddInbox(routetest.ChatwootInbox{ID: inbox, Name: "Phone", ChannelType: "Channel::TwilioSms"})
	cw.AddInbox(routetest.ChatwootInbox{ID: 9, Name: "E-mail", ChannelType: "Channel::Email"})
	cw.AddAgent(routetest.ChatwootAgent{ID: 31, Name: "Petra", Email: "petra@shop.example", Role: "agent"})
	cw.AddAgent(routetest.ChatwootAgent{ID: 32, Name: "Sam", Email: "sam@shop.example", Role: "agent"})
	j, err := events.OpenJournal(t.Context(), events.JournalOptions{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(j.Close)
	kv, err := j.KeyValue(t.Context(), "CHATWOOT_TEST", "callers", 1)
	if err != nil {
		t.Fatal(err)
	}
	return &world{cw: cw, url: routetest.Start(t, cw), callers: kv}
}

// sink builds a sink on the world, through h when not nil.
func (w *world) sink(t *testing.T, assign bool, h http.Handler) *Sink {
	t.Helper()
	u := w.url
	if h != nil {
		u = routetest.Start(t, h)
	}
	cl, err := New(Options{URL: u, AccountID: fmt.Sprint(account), Token: token, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewSink(SinkOptions{Client: cl, InboxID: inbox, Callers: w.callers, Agents: directory, Assign: assign, Location: time.UTC})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var t0 = time.Date(2025, 3, 4, 10, 0, 0, 0, time.UTC)

// call makes the envelopes of an inbound call from number: answered by
// 201 after 10s, transferred to 202, ended after 3m 20s; or, with
// missed, ringing 201 and 202 for 25s.
func call(id, number string, missed bool) []events.Envelope {
	sum := func(t events.EventType, ext string, created time.Time) events.Envelope {
		c := &events.CallSummary{Customer: number, DID: did, Rang: []string{"201", "202"}, Started: t0}
		if !missed {
			c.Answered = t0.Add(10 * time.Second)
		}
		if t == events.EventDisconnected {
			c.Missed = missed
			c.Ended = created
		}
		return events.Envelope{
			Event: events.Event{ID: id, Type: t, PhoneNumber: number, PhoneExtension: ext, Direction: "Inbound", PhoneReferrer: did},
			MsgID: id + "|" + string(t), CallKey: id, Source: "generic", Created: created, Call: c,
		}
	}
	if missed {
		return []events.Envelope{sum(events.EventDisconnected, "202", t0.Add(25*time.Second))}
	}
	return []events.Envelope{
		sum(events.EventAnswered, "201", t0.Add(10*time.Second)),
		sum(events.EventTransfer, "202", t0.Add(70*time.Second)),
		sum(events.EventDisconnected, "202", t0.Add(210*time.Second)),
	}
}

func send(t *testing.T, s *Sink, envs ...events.Envelope) {
	t.Helper()
	for _, env := range envs {
		if err := s.SendEnvelope(t.Context(), env); err != nil {
			t.Fatalf("%s %s: %v", env.Event.ID, env.Event.Type, err)
		}
	}
}

type note struct {
	Conversation int
	Content      string
}

func notes(cw *routetest.Chatwoot) []note {
	var out []note
	for _, m := range cw.Messages() {
		if !m.Private || m.MessageType != 1 {
			out = append(out, note{m.Conversation, "NOT A PRIVATE NOTE: " + m.Content})
			continue
		}
		out = append(out, note{m.Conversation, m.Content})
	}
	return out
}

// TestCallLogNotes: an answered, transferred call and a missed call from
// one number become four private notes on one new conversation in the
// inbox, for one new contact with the caller's E.164 number; a contact
// whose number merely contains the caller's (the search's substring match)
// is left alone, and so is the caller's conversation in another inbox.
func TestCallLogNotes(t *testing.T) {
	w := newWorld(t)
	w.cw.AddContact(routetest.ChatwootContact{ID: 50, Name: "Other", PhoneNumber: number + "9"})
	w.cw.AddConversation(routetest.ChatwootConversation{DisplayID: 1, ContactID: 50, InboxID: inbox, Status: "open", LastActivityAt: t0})
	s := w.sink(t, false, nil)
	send(t, s, call("c1", number, false)...)
	send(t, s, call("c2", number, true)...)

	contacts := w.cw.Contacts()
	if len(contacts) != 2 || contacts[1].PhoneNumber != number || contacts[1].Name != number {
		t.Fatalf("contacts %+v: want one new contact with the caller's number", contacts)
	}
	convs := w.cw.Conversations()
	if len(convs) != 2 || convs[1].ContactID != contacts[1].ID || convs[1].InboxID != inbox || convs[1].Status != "open" {
		t.Fatalf("conversations %+v: want one new, open, in inbox %d", convs, inbox)
	}
	d := convs[1].DisplayID
	want := []note{
		{d, "Call from +31612345678 to +31858770023 answered by Petra (201) at Tue 4 Mar 10:00."},
		{d, "Call transferred from Petra (201) to Sam (202) at Tue 4 Mar 10:01."},
		{d, "Call ended at Tue 4 Mar 10:03 after 3m 20s (3m 30s with ringing); last with Sam (202)."},
		{d, "Missed call from +31612345678 to +31858770023 at Tue 4 Mar 10:00; rang Petra (201), Sam (202) for 25s."},
	}
	if diff := cmp.Diff(want, notes(w.cw)); diff != "" {
		t.Errorf("notes (-want +got):\n%s", diff)
	}
	if n := w.cw.Requests("contacts/search") + w.cw.Requests("contacts") + w.cw.Requests("conversations"); n != 3 {
		t.Errorf("%d searches and creations; want 3: the contact and conversation are found or made once", n)
	}
	if n := w.cw.Requests("contact conversations"); n != 2 {
		t.Errorf("%d conversation lists; want one per call", n)
	}
}

// TestCallLogOnceAcrossSinks: a second sink on the same bucket (a
// restart) creates neither contact nor conversation again; an existing
// contact and its open conversation are used; a resolved one is not.
func TestCallLogOnceAcrossSinks(t *testing.T) {
	w := newWorld(t)
	w.cw.AddContact(routetest.ChatwootContact{ID: 60, Name: "Nick", PhoneNumber: number})
	w.cw.AddConversation(routetest.ChatwootConversation{DisplayID: 3, ContactID: 60, InboxID: inbox, Status: "resolved", LastActivityAt: t0})
	w.cw.AddConversation(routetest.ChatwootConversation{DisplayID: 4, ContactID: 60, InboxID: 9, Status: "open", LastActivityAt: t0})
	w.cw.AddConversation(routetest.ChatwootConversation{DisplayID: 5, ContactID: 60, InboxID: inbox, Status: "open", LastActivityAt: t0})
	send(t, w.sink(t, false, nil), call("c1", number, false)[0])
	send(t, w.sink(t, false, nil), call("c1", number, false)[1:]...)
	send(t, w.sink(t, false, nil), call("c2", number, true)...)
	if n := len(w.cw.Contacts()); n != 1 {
		t.Errorf("%d contacts, want the one there was", n)
	}
	if n := len(w.cw.Conversations()); n != 3 {
		t.Errorf("%d conversations, want the three there were", n)
	}
	for _, n := range notes(w.cw) {
		if n.Conversation != 5 {
			t.Errorf("note %+v: want it on the open conversation in the inbox (5)", n)
		}
	}
	if n := len(notes(w.cw)); n != 4 {
		t.Errorf("%d notes, want 4", n)
	}
	if n := w.cw.Requests("contacts/search"); n != 1 {
		t.Errorf("%d searches, want 1", n)
	}

	// An agent resolves it: the next call opens a new conversation.
	w.cw.SetConversationStatus(5, "resolved")
	send(t, w.sink(t, false, nil), call("c3", number, true)...)
	convs := w.cw.Conversations()
	if len(convs) != 4 || convs[3].InboxID != inbox || convs[3].ContactID != 60 {
		t.Fatalf("conversations %+v: want a new one for the contact in the inbox", convs)
	}
	if got := notes(w.cw); got[len(got)-1].Conversation != convs[3].DisplayID {
		t.Errorf("last note %+v: want it on the new conversation", got[len(got)-1])
	}
}

// loseAnswers passes requests to h, but the first answer to each listed
// endpoint is lost on the way back (a proxy times out after Chatwoot did
// the work).
type loseAnswers struct {
	h    http.Handler
	mu   sync.Mutex
	lose map[string]bool // "POST /api/v1/accounts/7/contacts" → still to lose
}

func (l *loseAnswers) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Method + " " + r.URL.Path
	l.mu.Lock()
	lose := l.lose[key]
	delete(l.lose, key)
	l.mu.Unlock()
	if !lose {
		l.h.ServeHTTP(w, r)
		return
	}
	l.h.ServeHTTP(httptest.NewRecorder(), r)
	w.WriteHeader(http.StatusGatewayTimeout)
}

// TestCallLogFindsBeforeCreating: when the answers to creating the
// contact and the conversation are lost, the retries find them instead of
// creating them again.
func TestCallLogFindsBeforeCreating(t *testing.T) {
	w := newWorld(t)
	base := fmt.Sprintf("/api/v1/accounts/%d/", account)
	s := w.sink(t, false, &loseAnswers{h: w.cw, lose: map[string]bool{"POST " + base + "contacts": true, "POST " + base + "conversations": true}})
	env := call("c1", number, false)[0]
	for i, want := range []string{"contacts", "conversations"} {
		err := s.SendEnvelope(t.Context(), env)
		if events.ClassOf(err) != events.Retryable || !strings.Contains(err.Error(), "chatwoot "+want+": status 504") {
			t.Fatalf("attempt %d: %v; want the lost answer of %s, retryable", i+1, err, want)
		}
	}
	send(t, s, env)
	if c, v, n := len(w.cw.Contacts()), len(w.cw.Conversations()), len(w.cw.Messages()); c != 1 || v != 1 || n != 1 {
		t.Errorf("%d contacts, %d conversations, %d notes; want one of each", c, v, n)
	}
}

// TestCallLogRejected: a number that is not E.164 is refused by Chatwoot
// (422): a permanent failure, which the dispatcher dead-letters, with
// Chatwoot's message.
func TestCallLogRejected(t *testing.T) {
	w := newWorld(t)
	s := w.sink(t, false, nil)
	err := s.SendEnvelope(t.Context(), call("c1", "0123456789012345678", true)[0])
	var ce *robin.Error
	if !errors.As(err, &ce) || ce.Status != 422 || events.ClassOf(err) != events.Permanent || ce.ResponseBody() != "Phone number should be in e164 format" {
		t.Fatalf("err %v (%#v); want a permanent 422 with Chatwoot's message", err, ce)
	}
	if len(w.cw.Contacts()) != 0 || len(w.cw.Messages()) != 0 {
		t.Error("something was created")
	}
}

// TestCallLogAssign: with Assign the agent who answered, then the one who
// took the transfer, becomes the conversation's assignee (matched by
// e-mail address, case aside); an agent Chatwoot does not know leaves the
// conversation as it is and the note is posted anyway.
func TestCallLogAssign(t *testing.T) {
	w := newWorld(t)
	s := w.sink(t, true, nil)
	envs := call("c1", number, false)
	send(t, s, envs[0])
	if a := w.cw.Conversations()[0].Assignee; a == nil || a.ID != 31 {
		t.Fatalf("assignee after the answer %+v, want Petra (31)", a)
	}
	send(t, s, envs[1:]...)
	if a := w.cw.Conversations()[0].Assignee; a == nil || a.ID != 32 {
		t.Fatalf("assignee after the transfer %+v, want Sam (32)", a)
	}
	if n := w.cw.Requests("assignments"); n != 2 {
		t.Errorf("%d assignments, want 2", n)
	}
	if n := w.cw.Requests("agents"); n != 1 {
		t.Errorf("%d agent lists, want 1 (kept for a while)", n)
	}
	// A third agent, not in Chatwoot.
	env := call("c2", number, false)[0]
	env.Event.PhoneExtension = "203"
	s.o.Agents = agents{"203": {PBXID: "203", Extension: "203", Name: "Olga", Email: "olga@shop.example"}}
	send(t, s, env)
	if a := w.cw.Conversations()[0].Assignee; a == nil || a.ID != 32 {
		t.Errorf("assignee %+v, want it unchanged", a)
	}
	if n := len(w.cw.Messages()); n != 4 {
		t.Errorf("%d notes, want 4", n)
	}
}

// TestCallLogRateLimit: every request of a delivery takes a place in
// CHATWOOT_RATE_LIMITS; the dispatcher's side waits for room and records
// nothing; Close makes a waiting request give up unsent.
func TestCallLogRateLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cw := routetest.NewChatwoot(account, token)
		cw.AddInbox(routetest.ChatwootInbox{ID: inbox, ChannelType: "Channel::Api"})
		cl, _ := New(Options{URL: "http://chatwoot.test", AccountID: "7", Token: token, HTTPClient: routetest.Client(cw)})
		windows, _ := robin.ParseWindows("4/1m")
		q, err := robin.NewQuota(t.Context(), robin.QuotaOptions{Windows: windows})
		if err != nil {
			t.Fatal(err)
		}
		s, err := NewSink(SinkOptions{Client: cl, InboxID: inbox, Callers: newMemKV(), Quota: q})
		if err != nil {
			t.Fatal(err)
		}
		used := func() int { return q.Usage()[0].Used }
		// A new caller: search, create the contact, list the
		// conversations, open one, post the note: five requests, the
		// fifth when the first has left the window.
		start := time.Now()
		send(t, s, call("c1", number, true)...)
		if took := time.Since(start); took < time.Minute || took > time.Minute+time.Second {
			t.Errorf("first delivery took %v, want a minute (5 requests at 4/1m)", took)
		}
		if u := used(); u != 1 {
			t.Fatalf("%d requests in the window, want the note's", u)
		}
		// The next call: the conversation list and the note; then one
		// more, whose note must wait, and the bridge stops.
		send(t, s, call("c2", number, true)...)
		errc := make(chan error, 1)
		go func() { errc <- s.SendEnvelope(context.Background(), call("c3", number, true)[0]) }()
		synctest.Wait()
		if u := used(); u != 4 {
			t.Fatalf("%d requests in the window, want 4", u)
		}
		s.Close()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Errorf("after Close: %v, want a cancelled wait", err)
		}
		if n := len(cw.Messages()); n != 2 {
			t.Errorf("%d notes, want 2", n)
		}
		// The dispatcher's side waits for room and takes none.
		before := time.Now()
		if _, err := s.Limiter().Acquire(t.Context(), events.PriorityNormal); err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(before); waited < 59*time.Second {
			t.Errorf("the dispatcher's side waited %v, want until the window had room (a minute)", waited)
		}
		if u := used(); u != 0 {
			t.Errorf("%d requests in the window after the dispatcher's side, want none", u)
		}
	})
}

// memKV is a Store in memory (a journal needs real time and disk).
type memKV struct {
	mu sync.Mutex
	m  map[string][]byte
}

func newMemKV() *memKV { return &memKV{m: map[string][]byte{}} }

type memEntry struct {
	jetstream.KeyValueEntry
	v []byte
}

func (e memEntry) Value() []byte { return e.v }

func (k *memKV) Get(_ context.Context, key string) (jetstream.KeyValueEntry, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok {
		return nil, jetstream.ErrKeyNotFound
	}
	return memEntry{v: v}, nil
}

func (k *memKV) Put(_ context.Context, key string, value []byte) (uint64, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = value
	return uint64(len(k.m)), nil
}
