package xelion

import (
	"crypto/sha256"
	"encoding/hex"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// SourceName is the Source of every signal this package journals, and the
// source name the directory maps Xelion identifiers under.
const SourceName = "xelion"

// Causes the source sets on ended signals.
const (
	// CauseMissed: Xelion reported the call missed (missedCallEvent).
	CauseMissed = "missed"
	// CauseChannel: one phone's channel hung up (a losing phone of a ring
	// group, a step of line hunting) while the call went on.
	CauseChannel = "channel-hungup"
	// CauseConsultEnded: an agent's call to another party (a consultation,
	// when the agent was on a customer call) hung up.
	CauseConsultEnded = "consultation-ended"
	// CauseGone: the call was live for the source but no longer among the
	// PBX's running calls when it read them after a (re)connect: it ended
	// while the source was not listening.
	CauseGone = "gone"
)

// How long the translator remembers things.
const (
	dupWindow   = 10 * time.Minute // hang-ups repeated by Xelion
	endedMemory = time.Hour        // an ended call, for late repeats
	idleMemory  = 24 * time.Hour   // any call without news
)

// leg is one local party's part in one Xelion call: the agent the call
// rang, or the agent who made it.
type leg struct {
	id    string
	ident string
	// consulting is the called party's identifier when the leg is its
	// agent's outgoing call to an identified party: a consultation if the
	// agent is on another call, which the tracker decides.
	consulting string
	state      events.State // "" until the leg is reported
	// hung: the leg ended with the call (hung up or missed), not only its
	// channel: what comes later for the same party is a late repeat.
	hung bool
	p    parties // as the message that started it said
}

// xcall is what the translator knows of one Xelion call id: the legs of
// its local parties, as the notifications showed them. It decides nothing
// about customer calls: which Xelion calls make up one, and when one is
// over, is the tracker's (see events.Signal.Consulting).
type xcall struct {
	id   string
	legs map[string]*leg // the latest leg of each party and shape
	gens map[string]int  // legs each party had
	seen time.Time
}

// translator turns call events into signals, one Xelion call id at a time.
// It is not safe for concurrent use: the source feeds it one message at a
// time.
type translator struct {
	now    func() time.Time
	xcalls map[string]*xcall    // by Xelion call id
	hangs  map[string]time.Time // hang-up messages seen, for Xelion's repeats
	sweep  time.Time
}

func newTranslator(now func() time.Time) *translator {
	return &translator{
		now:    now,
		xcalls: map[string]*xcall{},
		hangs:  map[string]time.Time{},
	}
}

// outcome is what one event produced: signals, or why it produced none.
type outcome struct {
	signals []events.Signal
	drop    string // a reason label when the event was not used
}

// messageKey identifies a Xelion message by its content: the same message
// repeated (as Xelion does with a hang-up on attended transfers) has the
// same key, and so do the dedup keys of its signals.
func messageKey(ev Event) string {
	c := ev.Call
	ref := func(r *Ref) string {
		if r == nil {
			return ""
		}
		return string(r.OID)
	}
	return strings.Join([]string{SourceName, ev.Type, string(c.CallID),
		c.CallerPhoneNumber, ref(c.CallerAddressable), c.CalleePhoneNumber, ref(c.CalleeAddressable), c.Date}, "|")
}

// apply folds one event into the state and returns its signals.
func (t *translator) apply(ev Event) outcome {
	now := t.now()
	t.gc(now)
	e := emitter{key: messageKey(ev), at: now}
	switch ev.Type {
	case NewCallEvent:
		t.started(ev, events.Ringing, &e)
	case CallConnectedEvent:
		t.started(ev, events.Answered, &e)
	case CallTransferredEvent:
		t.transferred(ev, &e)
	case CallHungUpEvent, MissedCallEvent, ChannelHungUpEvent:
		if at, ok := t.hangs[e.key]; ok && now.Sub(at) < dupWindow {
			return outcome{drop: reasonDuplicate}
		}
		t.hangs[e.key] = now
		t.hungUp(ev, &e)
	}
	if len(e.out) == 0 && e.drop == "" {
		e.drop = reasonNoChange
	}
	return outcome{signals: e.out, drop: e.drop}
}

// emitter collects the signals of one event.
type emitter struct {
	key  string
	at   time.Time
	out  []events.Signal
	drop string
}

// parties is what one message says of its call: the local party, and the
// leg's numbers.
type parties struct {
	ident, consulting string
	remote, dialled   string
	dir               events.Direction
}

// partiesOf reads the parties of a call event. An outgoing call to a party
// identified by its addressable carries that party as consulting.
func partiesOf(c CallEvent) parties {
	dir, _ := c.direction()
	local, remote := c.local(), c.remote()
	p := parties{ident: local.ident(), remote: remote.number, dir: dir}
	// The company's number is known when the local party is identified by
	// its addressable: its number is then the line or DID it was reached on.
	if local.ref != nil && string(local.ref.OID) != "" {
		p.dialled = local.number
	}
	if dir == events.Outbound && remote.ref != nil && strings.TrimSpace(string(remote.ref.OID)) != "" {
		p.consulting = remote.ident()
	}
	return p
}

// leg reports one leg's new state.
func (e *emitter) leg(x *xcall, l *leg, p parties, state events.State, cause string) {
	l.state = state
	e.out = append(e.out, events.Signal{
		Source: SourceName, CallID: x.id, LegID: l.id, Extension: l.ident, Consulting: l.consulting,
		Remote: p.remote, Dialled: p.dialled, Direction: p.dir,
		State: state, Cause: cause, Time: e.at,
		DedupKey: e.key + "|" + l.id,
	})
}

// xcall returns what the translator knows of call id, creating it when
// create is set; nil otherwise.
func (t *translator) xcall(id string, create bool, now time.Time) *xcall {
	x := t.xcalls[id]
	if x == nil && create {
		x = &xcall{id: id, legs: map[string]*leg{}, gens: map[string]int{}}
		t.xcalls[id] = x
	}
	if x != nil {
		x.seen = now
	}
	return x
}

// key names a party's legs of one shape in xcall.legs.
func (p parties) key() string { return p.ident + ">" + p.consulting }

// latest returns the party's latest leg of that shape, or nil.
func (x *xcall) latest(p parties) *leg { return x.legs[p.key()] }

// newLeg starts the party's next leg in this call.
func (x *xcall) newLeg(p parties) *leg {
	x.gens[p.ident]++
	l := &leg{id: x.id + "/" + p.ident + "/" + strconv.Itoa(x.gens[p.ident]), ident: p.ident, consulting: p.consulting, p: p}
	x.legs[p.key()] = l
	return l
}

// started folds a ringing (new call) or answered (connected) event.
func (t *translator) started(ev Event, state events.State, e *emitter) {
	p := partiesOf(ev.Call)
	if p.ident == "" {
		e.drop = reasonNoParty
		return
	}
	x := t.xcall(string(ev.Call.CallID), true, e.at)
	l := x.latest(p)
	switch {
	case l != nil && l.hung:
		e.drop = reasonAfterEnd
		return
	case l == nil || l.state == events.Ended:
		l = x.newLeg(p)
	case l.state == state || l.state == events.Answered:
		return // a repeat, or a ring after the answer
	}
	e.leg(x, l, p, state, "")
}

// transferred folds a transfer event: the consultation it names (or that
// it is about) became the transfer, or the call was handed to the party
// the event names.
func (t *translator) transferred(ev Event, e *emitter) {
	if x := t.xcalls[ev.Consultation]; x != nil {
		if l := x.consultation(); l != nil {
			e.leg(x, l, l.p, events.Transferred, "")
			return
		}
	}
	x := t.xcall(string(ev.Call.CallID), false, e.at)
	if x == nil {
		e.drop = reasonUnknownCall
		return
	}
	p := partiesOf(ev.Call)
	if p.consulting != "" {
		// The transfer is named on the agent's call to the consulted party.
		if l := x.latest(p); l != nil && l.state != events.Ended {
			e.leg(x, l, p, events.Transferred, "")
			return
		}
	}
	if p.ident == "" {
		e.drop = reasonNoTarget
		return
	}
	l := x.latest(p)
	switch {
	case l != nil && l.hung:
		e.drop = reasonAfterEnd
		return
	case l != nil && l.state == events.Answered:
		// The event names only the agent who has the call.
		e.drop = reasonNoTarget
		return
	case l == nil || l.state == events.Ended:
		l = x.newLeg(p)
	}
	// The number the event shows for the target is the target's own, not
	// the one the customer dialled.
	p.dialled = ""
	e.leg(x, l, p, events.Transferred, "")
}

// consultation returns the call's live leg that calls an identified
// party, or nil.
func (x *xcall) consultation() *leg {
	for _, k := range slices.Sorted(maps.Keys(x.legs)) {
		if l := x.legs[k]; l.consulting != "" && l.state != events.Ended {
			return l
		}
	}
	return nil
}

// unreadable folds a callTransferredEvent that could not be read: some
// call was transferred, to someone. Every answered call of an agent to an
// identified party gets a transferred signal with cause
// events.CauseUnconfirmed: if it is a consultation, the tracker hands the
// customer to the consulted agent once the consulting agent leaves them
// (Xelion's attended transfer), and forgets it if the consultation ends
// first. data is the message, for the signals' dedup keys.
func (t *translator) unreadable(data []byte) outcome {
	now := t.now()
	t.gc(now)
	h := sha256.Sum256(data)
	e := emitter{key: SourceName + "|unreadable|" + hex.EncodeToString(h[:12]), at: now}
	for _, id := range slices.Sorted(maps.Keys(t.xcalls)) {
		x := t.xcalls[id]
		if l := x.consultation(); l != nil && l.state == events.Answered {
			e.leg(x, l, l.p, events.Transferred, events.CauseUnconfirmed)
		}
	}
	return outcome{signals: e.out, drop: reasonTransfer}
}

// hungUp folds a hang-up, a missed call or a channel's hang-up: the end of
// the local party's leg. One that names no local party ends every live leg
// of the call.
func (t *translator) hungUp(ev Event, e *emitter) {
	p := partiesOf(ev.Call)
	x := t.xcall(string(ev.Call.CallID), p.ident != "", e.at)
	if x == nil {
		e.drop = reasonUnknownCall
		return
	}
	cause := ""
	switch ev.Type {
	case MissedCallEvent:
		cause = CauseMissed
	case ChannelHungUpEvent:
		cause = CauseChannel
	}
	if p.ident == "" {
		if ev.Type == ChannelHungUpEvent {
			// Only the customer's side is filled in: not a leg we report.
			e.drop = reasonNoParty
			return
		}
		for _, k := range slices.Sorted(maps.Keys(x.legs)) {
			if l := x.legs[k]; l.state != events.Ended {
				l.hung = true
				e.leg(x, l, l.p, events.Ended, cause)
			}
		}
		return
	}
	if p.consulting != "" && cause == "" {
		cause = CauseConsultEnded
	}
	l := x.latest(p)
	switch {
	case l != nil && l.hung:
		e.drop = reasonAfterEnd
		return
	case l != nil && l.state == events.Ended:
		// Its channel hung up before: the call's end adds nothing.
		l.hung = ev.Type != ChannelHungUpEvent
		return
	case l == nil:
		l = x.newLeg(p) // a leg we never saw start (we were not listening)
	}
	l.hung = ev.Type != ChannelHungUpEvent
	e.leg(x, l, p, events.Ended, cause)
}

// gc forgets calls and repeats that can no longer matter; it runs at most
// once a minute.
func (t *translator) gc(now time.Time) {
	if now.Sub(t.sweep) < time.Minute {
		return
	}
	t.sweep = now
	for k, at := range t.hangs {
		if now.Sub(at) >= dupWindow {
			delete(t.hangs, k)
		}
	}
	for id, x := range t.xcalls {
		idle := now.Sub(x.seen)
		if (!x.live() && idle >= endedMemory) || idle >= idleMemory {
			delete(t.xcalls, id)
		}
	}
}

// live reports whether any leg of the call is still ringing or answered.
func (x *xcall) live() bool {
	for _, l := range x.legs {
		if l.state != events.Ended {
			return true
		}
	}
	return false
}
