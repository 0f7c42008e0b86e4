package xelion

import (
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
	// CauseConsultEnded: a consultation ended without a transfer.
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

// leg is one party's part in a customer call.
type leg struct {
	id    string
	ident string
	state events.State // "" until the leg is reported
}

// call is a customer call: the call a signal's CallID names. Xelion may
// spread it over several call ids (a consultation, a transfer); the first
// one names it.
type call struct {
	id       string
	dir      events.Direction
	remote   string // the customer's number, raw
	dialled  string
	legs     map[string]*leg // the current leg of each party, by ident
	gens     map[string]int  // legs each party had
	answered bool
	pending  bool // a consultation or transfer is under way
	ended    bool
	// adopted: first seen by a hang-up (we were not listening when it
	// began). Its legs end, but the source never declares the call over:
	// it does not know the legs it missed; the tracker does.
	adopted  bool
	consults []*xcall // consultations of this call
	seen     time.Time
}

// xcall is what the translator knows of one Xelion call id.
type xcall struct {
	call string // the customer call it belongs to
	// A consultation: an agent of the customer call (by) calling target.
	consult     bool
	by, target  string
	up          bool // the consultation was answered
	transferred bool // the customer was handed to target
	// unsure: a transfer event that could not be read came while this
	// consultation was up; it may have handed the customer to target, so
	// the consultation's own end does not end target's leg (see unreadable).
	unsure bool
}

// translator turns call events into signals. It is not safe for concurrent
// use: the source feeds it one message at a time.
type translator struct {
	now     func() time.Time
	calls   map[string]*call     // by customer call id
	pending map[string]*call     // live calls with a consultation or transfer under way
	xcalls  map[string]*xcall    // by Xelion call id
	active  map[string]string    // agent ident → customer call they are answered on
	hangs   map[string]time.Time // hang-up messages seen, for Xelion's repeats
	sweep   time.Time
}

func newTranslator(now func() time.Time) *translator {
	return &translator{
		now:     now,
		calls:   map[string]*call{},
		pending: map[string]*call{},
		xcalls:  map[string]*xcall{},
		active:  map[string]string{},
		hangs:   map[string]time.Time{},
	}
}

// markPending notes that a consultation or transfer of c is under way.
func (t *translator) markPending(c *call) {
	c.pending = true
	t.pending[c.id] = c
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
	e := emitter{t: t, key: messageKey(ev), at: now}
	switch ev.Type {
	case NewCallEvent:
		t.newCall(ev, &e)
	case CallConnectedEvent:
		t.connected(ev, &e)
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
	t    *translator
	key  string
	at   time.Time
	out  []events.Signal
	drop string
}

// leg reports one leg's new state.
func (e *emitter) leg(c *call, l *leg, state events.State, cause string) {
	l.state = state
	e.out = append(e.out, events.Signal{
		Source: SourceName, CallID: c.id, LegID: l.id, Extension: l.ident,
		Remote: c.remote, Dialled: c.dialled, Direction: c.dir,
		State: state, Cause: cause, Time: e.at,
		DedupKey: e.key + "|" + l.id,
	})
}

// end reports that the customer call is over: a signal without leg, which
// ends every leg the tracker knows of.
func (e *emitter) end(c *call, cause string) {
	c.ended = true
	delete(e.t.pending, c.id)
	for _, l := range c.legs {
		if l.state != events.Ended {
			l.state = events.Ended
		}
		if e.t.active[l.ident] == c.id {
			delete(e.t.active, l.ident)
		}
	}
	e.out = append(e.out, events.Signal{
		Source: SourceName, CallID: c.id,
		Remote: c.remote, Dialled: c.dialled, Direction: c.dir,
		State: events.Ended, Cause: cause, Time: e.at,
		DedupKey: e.key + "|call",
	})
}

// newCustomerCall starts a customer call from the event that first names it.
func (t *translator) newCustomerCall(ev Event, now time.Time) *call {
	c := ev.Call
	dir, _ := c.direction()
	local, remote := c.local(), c.remote()
	cl := &call{
		id: string(c.CallID), dir: dir, remote: remote.number,
		legs: map[string]*leg{}, gens: map[string]int{}, seen: now,
	}
	// The company's number is known when the local party is identified by
	// its addressable: its number is then the line or DID it was reached on.
	if local.ref != nil && string(local.ref.OID) != "" {
		cl.dialled = local.number
	}
	t.calls[cl.id] = cl
	t.xcalls[cl.id] = &xcall{call: cl.id}
	return cl
}

// legOf returns the party's live leg, or a new one.
func (c *call) legOf(ident string) *leg {
	if l := c.legs[ident]; l != nil && l.state != events.Ended {
		return l
	}
	c.gens[ident]++
	l := &leg{id: c.id + "/" + ident + "/" + strconv.Itoa(c.gens[ident]), ident: ident}
	c.legs[ident] = l
	return l
}

// live reports whether any leg of the call is still ringing or answered.
func (c *call) live() bool {
	for _, l := range c.legs {
		if l.state != events.Ended {
			return true
		}
	}
	return false
}

// resolve finds the customer call a Xelion call id belongs to. An id never
// seen before continues a customer call when that call's customer is one of
// its parties and a consultation or transfer of that call is under way (a
// transfer may carry on under a new call id).
func (t *translator) resolve(ev Event) (*xcall, *call) {
	if x := t.xcalls[string(ev.Call.CallID)]; x != nil {
		if c := t.calls[x.call]; c != nil {
			return x, c
		}
	}
	caller, callee := ev.Call.caller().number, ev.Call.callee().number
	var best *call
	for _, c := range t.pending {
		if c.ended || c.remote == "" || (c.remote != caller && c.remote != callee) {
			continue
		}
		if best == nil || c.seen.After(best.seen) {
			best = c
		}
	}
	if best == nil {
		return nil, nil
	}
	x := &xcall{call: best.id}
	t.xcalls[string(ev.Call.CallID)] = x
	return x, best
}

// consultation recognises a call started by an agent who is answered on a
// live customer call, to someone other than that call's customer.
func (t *translator) consultation(ev Event) (*call, string, string) {
	by := ev.Call.caller().ident()
	id, ok := t.active[by]
	if !ok || by == "" {
		return nil, "", ""
	}
	c := t.calls[id]
	target := ev.Call.callee()
	if c == nil || c.ended || target.ident() == "" || (c.remote != "" && target.number == c.remote) {
		return nil, "", ""
	}
	return c, by, target.ident()
}

func (t *translator) newCall(ev Event, e *emitter) {
	x, c := t.resolve(ev)
	if x == nil {
		if cc, by, target := t.consultation(ev); cc != nil {
			x = &xcall{call: cc.id, consult: true, by: by, target: target}
			t.xcalls[string(ev.Call.CallID)] = x
			cc.consults = append(cc.consults, x)
			t.markPending(cc)
			cc.seen = e.at
			// The consulted party is a leg of the customer call from now
			// on: the call is not over while it lasts, whoever hangs up.
			e.leg(cc, cc.legOf(target), events.Ringing, "")
			return
		}
		c = t.newCustomerCall(ev, e.at)
		x = t.xcalls[c.id]
	}
	ident, ok := t.party(x, c, ev, e, false)
	if !ok {
		return
	}
	if l := c.legOf(ident); l.state == "" {
		e.leg(c, l, events.Ringing, "")
	}
}

// party checks a ringing or connected event against its call and returns
// the local party; ok is false when the event changes nothing (e.drop says
// why). answered marks a consultation as up.
func (t *translator) party(x *xcall, c *call, ev Event, e *emitter, answered bool) (ident string, ok bool) {
	if x.consult {
		x.up = x.up || answered
		e.drop = reasonConsult
		return "", false
	}
	if c.ended {
		e.drop = reasonAfterEnd
		return "", false
	}
	c.seen = e.at
	ident = ev.Call.local().ident()
	if ident == "" {
		e.drop = reasonNoParty
		return "", false
	}
	return ident, true
}

func (t *translator) connected(ev Event, e *emitter) {
	x, c := t.resolve(ev)
	if x == nil {
		// The call began before we listened (a reconnect): start it here.
		c = t.newCustomerCall(ev, e.at)
		x = t.xcalls[c.id]
	}
	if x.consult && x.up && !x.transferred && !c.ended && withCustomer(c, ev) {
		// The customer talks to the consulted party under the
		// consultation's id: the call was handed over, whether or not a
		// transfer event said so.
		c.seen = e.at
		t.handOver(c, x, e)
		return
	}
	ident, ok := t.party(x, c, ev, e, true)
	if !ok {
		return
	}
	if o := c.upConsult(ident); o != nil && withCustomer(c, ev) {
		// The consulted party connected to the customer under the
		// customer call's (or a new) id.
		t.handOver(c, o, e)
		return
	}
	l := c.legOf(ident)
	if l.state == events.Answered {
		return
	}
	// As the tracker does: the first answer ends the phones that were
	// still ringing, a later one takes the call from the agent who had it.
	for _, o := range c.legs {
		if o == l || o.state == events.Ended || t.isConsultTarget(c, o.ident) {
			continue
		}
		if (!c.answered && o.state == events.Ringing) || o.state == events.Answered || o.state == events.Transferred {
			o.state = events.Ended
			if t.active[o.ident] == c.id {
				delete(t.active, o.ident)
			}
		}
	}
	c.answered = true
	e.leg(c, l, events.Answered, "")
	t.active[ident] = c.id
}

// isConsultTarget reports whether ident is being consulted on call c.
func (t *translator) isConsultTarget(c *call, ident string) bool {
	for _, x := range c.consults {
		if x.target == ident && !x.transferred {
			return true
		}
	}
	return false
}

// unreadable folds a callTransferredEvent that could not be read: some
// call was transferred, to someone. Which one the events that follow tell:
// Xelion ends the consultation (A→B, twice) right after an attended
// transfer, which without the transfer event looks like a consultation
// ending after the customer hung up, and would end the customer's call while
// the customer talks to B. So every live call's answered consultation is
// marked unsure: its own end then leaves its target's leg alive, and the
// first event that shows the target with the customer (connected or hung up
// under any of the call's ids) hands the call over. A consultation that was
// not a transfer after all keeps its call open until the call's hang-up,
// the resync after a reconnect or the tracker's timeout: a late end rather
// than a customer call ended while it runs.
func (t *translator) unreadable() outcome {
	now := t.now()
	t.gc(now)
	for _, c := range t.pending {
		if c.ended {
			continue
		}
		for _, x := range c.consults {
			if x.up && !x.transferred {
				x.unsure = true
			}
		}
	}
	return outcome{drop: reasonTransfer}
}

// handOver hands call c to the consulted party of consultation x, who is
// seen talking to the customer: an attended transfer whose transfer event
// did not say so. It returns the target's leg.
func (t *translator) handOver(c *call, x *xcall, e *emitter) *leg {
	x.transferred = true
	for ident, id := range t.active {
		if id == c.id && ident != x.target {
			delete(t.active, ident)
		}
	}
	t.active[x.target] = c.id
	l := c.legOf(x.target)
	if l.state != events.Answered {
		e.leg(c, l, events.Answered, "")
		// A hang-up that shows the hand-over also ends this leg: the two
		// signals of one message and leg need keys of their own.
		e.out[len(e.out)-1].DedupKey += "|handover"
	}
	return l
}

// withCustomer reports whether the event names call c's customer.
func withCustomer(c *call, ev Event) bool {
	return c.remote != "" && (ev.Call.caller().number == c.remote || ev.Call.callee().number == c.remote)
}

// upConsult returns the answered consultation of c whose target is ident,
// not yet transferred.
func (c *call) upConsult(ident string) *xcall {
	for _, x := range c.consults {
		if x.up && !x.transferred && x.target == ident {
			return x
		}
	}
	return nil
}

func (t *translator) transferred(ev Event, e *emitter) {
	x, c := t.resolve(ev)
	var named *xcall // the consultation the event names, if known
	if ev.Consultation != "" {
		named = t.xcalls[ev.Consultation]
		if named != nil && t.calls[named.call] == nil {
			named = nil
		}
		if x == nil && named != nil {
			x, c = named, t.calls[named.call]
		}
		if named != nil && (!named.consult || named.call != c.id) {
			named = nil
		}
	}
	if x == nil {
		// A transfer of a call whose customer is on a live answered call.
		for _, cc := range t.calls {
			if !cc.ended && cc.answered && cc.remote != "" &&
				(cc.remote == ev.Call.caller().number || cc.remote == ev.Call.callee().number) {
				c = cc
			}
		}
		if c == nil {
			e.drop = reasonUnknownCall
			return
		}
		x = &xcall{call: c.id}
		t.xcalls[string(ev.Call.CallID)] = x
	}
	if c.ended {
		e.drop = reasonAfterEnd
		return
	}
	c.seen = e.at
	t.markPending(c)
	target := ev.Call.local().ident()
	if x.consult && (target == x.by || target == "") {
		target = x.target
	}
	var consult *xcall
	for _, o := range c.consults {
		if !o.transferred && (o.target == target || (target == o.by && o.up)) {
			consult = o
		}
	}
	if named != nil && !named.transferred {
		consult = named
	}
	if consult != nil {
		target = consult.target
	}
	if target == "" || (t.active[target] == c.id && consult == nil) {
		// The event names only the agent who had the call.
		e.drop = reasonNoTarget
		return
	}
	for ident, id := range t.active {
		if id == c.id && ident != target {
			delete(t.active, ident)
		}
	}
	t.active[target] = c.id
	l := c.legOf(target)
	if consult != nil {
		consult.transferred = true
		if consult.up {
			// Attended: the consulted agent is already talking, now to the
			// customer. Their leg is answered on the customer's call.
			e.leg(c, l, events.Answered, "")
			return
		}
	}
	// Blind (or blonde): the call is handed to target, who may still ring.
	e.leg(c, l, events.Transferred, "")
}

func (t *translator) hungUp(ev Event, e *emitter) {
	x, c := t.resolve(ev)
	local := ev.Call.local().ident()
	if x == nil {
		if local == "" {
			e.drop = reasonUnknownCall
			return
		}
		// A call that began before we listened: report its leg's end under
		// the leg id it would have had, and let the tracker decide.
		c = t.newCustomerCall(ev, e.at)
		c.adopted = true
		x = t.xcalls[c.id]
	}
	if c.ended {
		e.drop = reasonAfterEnd
		return
	}
	c.seen = e.at
	cause := ""
	switch ev.Type {
	case MissedCallEvent:
		cause = CauseMissed
	case ChannelHungUpEvent:
		cause = CauseChannel
	}
	var l *leg
	switch {
	case x.consult:
		switch {
		case withCustomer(c, ev):
			// The customer's conversation with the consulted agent, carried
			// on under the consultation's id, ended.
			l = c.legs[x.target]
			if x.up && !x.transferred {
				// The transfer was not reported (or not readable): the
				// consulted agent had the customer.
				l = t.handOver(c, x, e)
			}
		case x.transferred:
			// A→B of an attended transfer (Xelion sends it twice): the
			// consulted agent stays with the customer.
			e.drop = reasonConsult
			return
		case x.unsure && x.up:
			// A→B after a transfer event that could not be read: perhaps
			// the end of an attended transfer's consultation. The target's
			// leg stays until an event shows where the customer is.
			e.drop = reasonConsult
			return
		default:
			l = c.legs[x.target]
			if ev.Type != ChannelHungUpEvent {
				cause = CauseConsultEnded
			}
		}
	case local != "":
		l = c.legs[local]
		if o := c.upConsult(local); o != nil && ev.Type != ChannelHungUpEvent && withCustomer(c, ev) {
			// The consulted party hangs up on the customer: they had been
			// handed the call without a transfer event saying so.
			l = t.handOver(c, o, e)
		}
	case ev.Type == ChannelHungUpEvent:
		// Only the customer's side is filled in: not a leg we report.
		e.drop = reasonNoParty
		return
	}
	if l == nil && local != "" && !x.consult {
		// A leg we never saw start (we were not listening).
		l = c.legOf(local)
	}
	if l != nil && l.state != events.Ended {
		e.leg(c, l, events.Ended, cause)
		if t.active[l.ident] == c.id {
			delete(t.active, l.ident)
		}
	}
	if ev.Type == ChannelHungUpEvent {
		return
	}
	if l == nil && local == "" && !x.consult {
		// The whole call hung up without naming a party: every leg ends.
		for _, o := range c.legs {
			if o.state != events.Ended {
				e.leg(c, o, events.Ended, cause)
			}
		}
	}
	if !c.live() && !c.adopted {
		e.end(c, cause)
	}
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
	for id, c := range t.calls {
		idle := now.Sub(c.seen)
		if (c.ended && idle >= endedMemory) || idle >= idleMemory {
			delete(t.calls, id)
			delete(t.pending, id)
		}
	}
	for id, x := range t.xcalls {
		if t.calls[x.call] == nil {
			delete(t.xcalls, id)
		}
	}
	for ident, id := range t.active {
		if t.calls[id] == nil {
			delete(t.active, ident)
		}
	}
}
