package siptest

import (
	"bytes"
	"encoding/xml"
	"slices"
	"strconv"
	"time"
)

// Leg is one dialog on one extension of the fake PBX: an inbound call
// ringing at or answered by an agent, or an agent's outbound call. Its
// methods change the dialog and notify every subscriber of the extension.
type Leg struct {
	p *PBX
	// ID is the dialog id in documents; CallID the SIP Call-ID of the call.
	ID, CallID string
	// Ext is the extension the dialog is on.
	Ext string
	// Remote is the other party's number, RemoteName its display name.
	Remote, RemoteName string
	// DID is the company number an inbound caller dialled ("" for none).
	DID string
	// Outbound is true for a call the agent placed.
	Outbound bool

	seq        int
	state      string
	event      string
	code       int
	localTag   string
	remoteTag  string
	replaces   string
	referredBy string
	// notified holds, per subscription told about the leg's latest change,
	// the version of that NOTIFY.
	notified map[*subscription]uint64
}

// TransferOptions shape the new dialog of a blind transfer.
type TransferOptions struct {
	// NewCallID gives the transferred call a new Call-ID (some PBXs do).
	NewCallID bool
	// Replaces announces the old Call-ID in a <replaces> element.
	Replaces bool
	// RingFirst starts the new dialog (and waits until its NOTIFYs were
	// answered) before the agent's dialog ends, as when the transferor's
	// phone hangs up only once the transfer target rings.
	RingFirst bool
}

// Inbound makes an outside caller (from, dialling did) ring extension ext.
func (p *PBX) Inbound(ext, from, did string) *Leg {
	return p.newLeg(&Leg{Ext: ext, Remote: from, DID: did, CallID: token(10) + "@pbx.test"}, "early")
}

// InboundAnswered is Inbound for a dialog the PBX first shows confirmed:
// a phone that answers at once (auto-answer), or a B2BUA bridging the
// caller to ext on a new dialog with nothing linking it to the first.
func (p *PBX) InboundAnswered(ext, from, did string) *Leg {
	return p.newLeg(&Leg{Ext: ext, Remote: from, DID: did, CallID: token(10) + "@pbx.test"}, "confirmed")
}

// InboundNamed is Inbound with the caller's display name, which documents
// then carry in the identity's display attribute.
func (p *PBX) InboundNamed(ext, from, name, did string) *Leg {
	return p.newLeg(&Leg{Ext: ext, Remote: from, RemoteName: name, DID: did, CallID: token(10) + "@pbx.test"}, "early")
}

// Outbound makes extension ext call the outside number to (ringing at the far end).
func (p *PBX) Outbound(ext, to string) *Leg {
	return p.newLeg(&Leg{Ext: ext, Remote: to, Outbound: true, CallID: token(10) + "@pbx.test"}, "early")
}

func (p *PBX) newLeg(l *Leg, state string) *Leg {
	p.mu.Lock()
	defer p.mu.Unlock()
	l.p = p
	l.ID = token(6)
	if l.localTag == "" {
		l.localTag, l.remoteTag = token(4), token(4)
	}
	l.seq = int(p.legSeq())
	l.state = state
	p.calls[l.ID] = l
	p.changed(l)
	return l
}

func (p *PBX) legSeq() int64 {
	p.seq++
	return p.seq
}

// Answer confirms the dialog.
func (l *Leg) Answer() { l.set("confirmed", "", 0) }

// Hangup terminates the dialog; event is the RFC 4235 event attribute
// ("remote-bye" when the customer hung up, "local-bye" for the agent).
func (l *Leg) Hangup(event string) { l.set("terminated", event, 0) }

// Cancel ends a ringing dialog that was never answered (a missed call).
func (l *Leg) Cancel() { l.set("terminated", "cancelled", 0) }

// Reject ends a ringing dialog because the phone refused it (busy, do not
// disturb): event "rejected", code 486. A hunt group then rings the next
// phone on a dialog of its own.
func (l *Leg) Reject() { l.set("terminated", "rejected", 486) }

// Delivered reports whether every subscriber told about the leg's latest
// change has answered that NOTIFY (or the PBX gave up on it), so that a
// test can order what one extension's subscriber sees against another's.
func (l *Leg) Delivered() bool {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	for s, v := range l.notified {
		if s.done1 <= v {
			return false
		}
	}
	return true
}

// Group is one outside call ringing several phones at once, as a B2BUA PBX
// (Asterisk, FreeSWITCH, 3CX, most hosted PBXs) shows a ring group: each
// phone has a dialog of its own with a Call-ID of its own, each with the
// caller's number and the DID, and nothing in the documents links them.
type Group struct {
	// Legs are the phones' dialogs in the order they started ringing.
	Legs []*Leg
}

// RingGroup rings the phones exts for the outside caller from, who dialled
// did. A PBX rings them within milliseconds, in no order a subscriber can
// rely on; here each phone starts ringing once the subscribers answered the
// NOTIFY of the one before (waiting at most 5 s), so that the first leg
// seen is Legs[0].
func (p *PBX) RingGroup(from, did string, exts ...string) *Group {
	g := &Group{}
	for i, ext := range exts {
		if i > 0 {
			g.Legs[i-1].waitDelivered(5 * time.Second)
		}
		g.Legs = append(g.Legs, p.Inbound(ext, from, did))
	}
	return g
}

// Answer connects the caller to the phone on ext and ends the legs still
// ringing with event "cancelled", in that order, as a ring group does when
// a phone picks up. It returns the answered leg, nil when ext is not in the
// group.
func (g *Group) Answer(ext string) *Leg {
	var won *Leg
	for _, l := range g.Legs {
		if l.Ext == ext {
			won = l
		}
	}
	if won == nil {
		return nil
	}
	won.Answer()
	for _, l := range g.Legs {
		if l != won && l.ringing() {
			l.Cancel()
		}
	}
	return won
}

// Cancel ends every leg still ringing with event "cancelled": the caller
// gave up before anyone answered.
func (g *Group) Cancel() {
	for _, l := range g.Legs {
		if l.ringing() {
			l.Cancel()
		}
	}
}

func (l *Leg) ringing() bool {
	l.p.mu.Lock()
	defer l.p.mu.Unlock()
	_, live := l.p.calls[l.ID]
	return live && l.state == "early"
}

// waitDelivered polls Delivered until it holds, d passes or the PBX closes.
func (l *Leg) waitDelivered(d time.Duration) {
	deadline := time.Now().Add(d)
	for !l.Delivered() && time.Now().Before(deadline) && l.p.ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
}

// BlindTransfer ends this leg and rings extension to with the same caller,
// as PBXs show a blind transfer: the agent's dialog ends and a new dialog
// starts on the next extension.
func (l *Leg) BlindTransfer(to string, o TransferOptions) *Leg {
	next := &Leg{Ext: to, Remote: l.Remote, RemoteName: l.RemoteName, DID: l.DID, Outbound: l.Outbound, CallID: l.CallID,
		referredBy: "sip:" + l.Ext + "@" + l.p.opts.Domain}
	if o.NewCallID {
		next.CallID = token(10) + "@pbx.test"
		if o.Replaces {
			next.replaces = l.CallID
		}
	}
	if o.RingFirst {
		next = l.p.newLeg(next, "early")
		next.waitDelivered(5 * time.Second)
		l.Hangup("local-bye")
		return next
	}
	l.Hangup("local-bye")
	return l.p.newLeg(next, "early")
}

// AttendedTransfer hands the caller on to extension to after the agent
// consulted to, as PBXs show an attended transfer: a new dialog on to, with
// a Call-ID of its own, that starts answered and names the call it takes
// over in <replaces> (and the agent in <referred-by>); then this leg ends
// with event "replaced". The consultation call between the two agents is
// not shown (Internal plays one).
func (l *Leg) AttendedTransfer(to string) *Leg {
	next := &Leg{Ext: to, Remote: l.Remote, RemoteName: l.RemoteName, DID: l.DID, Outbound: l.Outbound,
		CallID: token(10) + "@pbx.test", replaces: l.CallID, referredBy: "sip:" + l.Ext + "@" + l.p.opts.Domain}
	next = l.p.newLeg(next, "confirmed")
	next.waitDelivered(5 * time.Second)
	l.Hangup("replaced")
	return next
}

// Internal is a call between two extensions of the PBX: a dialog on each
// (the caller's as initiator, the callee's as recipient) with one Call-ID
// and mirrored tags, as a proxy PBX such as Kamailio shows it. Every change
// reaches the two extensions' subscribers in a fixed order: the first
// extension's NOTIFY is answered before the second's is sent.
type Internal struct {
	// Caller and Callee are the dialogs on the calling and the called extension.
	Caller, Callee *Leg
	calleeFirst    bool
}

// Internal makes extension from call extension to (ringing). With
// calleeFirst the callee's subscribers hear of each change before the
// caller's, otherwise after.
func (p *PBX) Internal(from, to string, calleeFirst bool) *Internal {
	callID := token(10) + "@pbx.test"
	callerTag, calleeTag := token(4), token(4)
	c := &Internal{calleeFirst: calleeFirst,
		Caller: &Leg{Ext: from, Remote: to, Outbound: true, CallID: callID, localTag: callerTag, remoteTag: calleeTag},
		Callee: &Leg{Ext: to, Remote: from, CallID: callID, localTag: calleeTag, remoteTag: callerTag}}
	first, second := c.order()
	p.newLeg(first, "early")
	first.waitDelivered(5 * time.Second)
	p.newLeg(second, "early")
	second.waitDelivered(5 * time.Second)
	return c
}

func (c *Internal) order() (first, second *Leg) {
	if c.calleeFirst {
		return c.Callee, c.Caller
	}
	return c.Caller, c.Callee
}

// Answer confirms both dialogs: the callee picked up.
func (c *Internal) Answer() { c.each(func(l *Leg) { l.Answer() }) }

// Hangup terminates both dialogs; event is seen from the caller's side
// ("local-bye": the caller hung up; the callee's dialog gets "remote-bye").
func (c *Internal) Hangup(event string) {
	mirror := map[string]string{"local-bye": "remote-bye", "remote-bye": "local-bye"}
	c.each(func(l *Leg) {
		if l == c.Callee && mirror[event] != "" {
			l.Hangup(mirror[event])
			return
		}
		l.Hangup(event)
	})
}

func (c *Internal) each(f func(*Leg)) {
	first, second := c.order()
	f(first)
	first.waitDelivered(5 * time.Second)
	f(second)
	second.waitDelivered(5 * time.Second)
}

func (l *Leg) set(state, event string, code int) {
	p := l.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, live := p.calls[l.ID]; !live {
		return
	}
	l.state, l.event, l.code = state, event, code
	p.changed(l)
	if state == "terminated" {
		delete(p.calls, l.ID)
	}
}

// changed notifies the subscribers of l's extension; p.mu is held.
func (p *PBX) changed(l *Leg) {
	l.notified = map[*subscription]uint64{}
	for _, s := range p.subs {
		if s.ext != l.Ext {
			continue
		}
		v := s.nextVersion()
		state := "full"
		if p.opts.Partial {
			state = "partial"
		}
		if p.push(s, notifyJob{state: "active", body: p.document(s.ext, v, state, l), ver: v}) {
			l.notified[s] = v
		}
	}
}

// document renders the state of ext; p.mu is held. A partial document
// carries only the changed leg.
func (p *PBX) document(ext string, version uint64, state string, changed *Leg) []byte {
	var legs []*Leg
	if state == "partial" && changed != nil {
		legs = []*Leg{changed}
	} else {
		for _, l := range p.calls {
			if l.Ext == ext {
				legs = append(legs, l)
			}
		}
		slices.SortFunc(legs, func(a, b *Leg) int { return a.seq - b.seq })
	}
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0"?>` + "\n")
	b.WriteString(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="` + strconv.FormatUint(version, 10) +
		`" state="` + state + `" entity="` + esc("sip:"+ext+"@"+p.opts.Domain) + `">`)
	if p.opts.Style == Asterisk {
		p.asteriskDialog(&b, ext, legs)
	} else {
		for _, l := range legs {
			p.kamailioDialog(&b, l)
		}
	}
	b.WriteString("</dialog-info>\n")
	return b.Bytes()
}

func (p *PBX) kamailioDialog(b *bytes.Buffer, l *Leg) {
	dom := p.opts.Domain
	dir := "recipient"
	if l.Outbound {
		dir = "initiator"
	}
	b.WriteString(`<dialog id="` + esc(l.ID) + `" call-id="` + esc(l.CallID) + `" local-tag="` + esc(l.localTag) +
		`" remote-tag="` + esc(l.remoteTag) + `" direction="` + dir + `">`)
	b.WriteString(`<state`)
	if l.event != "" {
		b.WriteString(` event="` + esc(l.event) + `"`)
	}
	if l.code != 0 {
		b.WriteString(` code="` + strconv.Itoa(l.code) + `"`)
	}
	b.WriteString(`>` + l.state + `</state>`)
	if l.replaces != "" {
		b.WriteString(`<replaces call-id="` + esc(l.replaces) + `" local-tag="x" remote-tag="y"/>`)
	}
	if l.referredBy != "" {
		b.WriteString(`<referred-by>` + esc(l.referredBy) + `</referred-by>`)
	}
	remote := "sip:" + l.Remote + "@" + dom
	b.WriteString(`<remote><identity`)
	if l.RemoteName != "" {
		b.WriteString(` display="` + esc(l.RemoteName) + `"`)
	}
	b.WriteString(`>` + esc(remote) + `</identity><target uri="` + esc(remote) + `"/></remote>`)
	local := "sip:" + l.Ext + "@" + dom
	if l.DID != "" && !l.Outbound {
		local = "sip:" + l.DID + "@" + dom
	}
	b.WriteString(`<local><identity>` + esc(local) + `</identity><target uri="` + esc("sip:"+l.Ext+"@"+dom) + `"/></local>`)
	b.WriteString(`</dialog>`)
}

// asteriskDialog renders extension state as Asterisk PJSIP does: answered
// wins over ringing; the caller is shown only while ringing.
func (p *PBX) asteriskDialog(b *bytes.Buffer, ext string, legs []*Leg) {
	state := "terminated"
	var ringing *Leg
	for _, l := range legs {
		switch l.state {
		case "confirmed":
			state = "confirmed"
		case "early":
			if l.Outbound { // Asterisk reports a ringing outbound call as in use
				state = "confirmed"
				continue
			}
			if state != "confirmed" {
				state, ringing = "early", l
			}
		}
	}
	dom := p.opts.Domain
	if state != "early" {
		b.WriteString(`<dialog id="` + esc(ext) + `"><state>` + state + `</state></dialog>`)
		return
	}
	remote := "sip:" + ringing.Remote + "@" + dom
	b.WriteString(`<dialog id="` + esc(ext) + `" direction="recipient"><remote><identity`)
	if ringing.RemoteName != "" {
		b.WriteString(` display="` + esc(ringing.RemoteName) + `"`)
	}
	b.WriteString(`>` + esc(remote) + `</identity><target uri="` + esc(remote) + `"/></remote>`)
	b.WriteString(`<local><identity>` + esc(remote) + `</identity><target uri="` + esc("sip:"+ext+"@"+dom) + `"/></local>`)
	b.WriteString(`<state>early</state></dialog>`)
}

func esc(s string) string {
	var b bytes.Buffer
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
