package sip

import (
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/sip/dialoginfo"
)

// SourceName is the Source of every signal the monitor produces.
const SourceName = "sip"

// leg is what the monitor remembers about one dialog on a watched extension
// between NOTIFYs: enough to fill in the fields later documents leave out
// (Asterisk sends the caller only while ringing, FreeSWITCH drops the
// parties from terminated dialogs) and to see what changed.
type leg struct {
	callID    string
	synthetic bool // callID made up because the PBX sent none
	linked    string
	// referredBy is the extension in the dialog's <referred-by> (the agent
	// who transferred the caller here), for the tracker to join the call
	// that agent is on.
	referredBy string
	direction  events.Direction
	remote     string
	dialled    string
	state      events.State
}

// legs maps dialog id → leg for one extension. It is replaced, never
// mutated, so a failed journal write leaves the previous one intact.
type legs map[string]leg

// applyDoc folds one dialog-info document into the extension's legs and
// returns the new legs and the signals for every change, in document order.
// seq orders documents of one subscription (the document version, or the
// NOTIFY CSeq when the PBX sends no version); together with subID it makes
// the call ids invented for PBXs that send none unique and stable under
// retransmission.
func applyDoc(prev legs, ext, subID string, doc *dialoginfo.Document, seq uint64, now time.Time) (legs, []events.Signal) {
	next := make(legs, len(prev)+len(doc.Dialogs))
	for id, l := range prev {
		next[id] = l
	}
	var out []events.Signal
	emit := func(l leg, dialogID string, st events.State, cause string) {
		out = append(out, l.signal(ext, dialogID, st, cause, now))
	}
	seen := make(map[string]bool, len(doc.Dialogs))
	for _, d := range doc.Dialogs {
		id := clean(d.ID)
		seen[id] = true
		st, ok := mapState(d.State)
		if !ok {
			continue // a state this package does not know says nothing about the call
		}
		old, known := next[id]
		if known && newEpisode(old, d, st) {
			// The same dialog id now describes another call: the old one is over
			// even though its end was never reported (or was dropped as stale).
			emit(old, id, events.Ended, "")
			delete(next, id)
			known = false
		}
		if !known {
			l := leg{callID: clean(d.CallID)}
			if l.callID == "" {
				l.callID, l.synthetic = syntheticCallID(ext, subID, id, seq), true
			}
			l.merge(d, ext)
			if st == events.Ended {
				// An end of a dialog never seen: report it only when the PBX
				// names the call, so that it can close a call known from
				// elsewhere. Asterisk's idle state ("terminated" for the
				// extension) must not produce a signal per NOTIFY.
				if !l.synthetic {
					emit(l, id, events.Ended, clean(d.Event))
				}
				continue
			}
			l.state = st
			next[id] = l
			emit(l, id, st, "")
			continue
		}
		l := old
		l.merge(d, ext)
		if rank(st) <= rank(old.state) {
			next[id] = l // no progress: same state again, or an old one
			continue
		}
		l.state = st
		if st == events.Ended {
			delete(next, id)
			emit(l, id, st, clean(d.Event))
			continue
		}
		next[id] = l
		emit(l, id, st, "")
	}
	if doc.State == dialoginfo.Full {
		// RFC 4235 §4.1: a full document lists every dialog; one we knew that
		// is missing has ended (while our subscription was down, say).
		var gone []string
		for id := range next {
			if !seen[id] {
				gone = append(gone, id)
			}
		}
		slices.Sort(gone)
		for _, id := range gone {
			emit(next[id], id, events.Ended, "")
			delete(next, id)
		}
	}
	return next, out
}

// newEpisode reports whether dialog d, reported under the id of leg old,
// is a different call.
func newEpisode(old leg, d dialoginfo.Dialog, st events.State) bool {
	cid := clean(d.CallID)
	switch {
	case !old.synthetic:
		return cid != "" && cid != old.callID
	case cid != "":
		return false // the PBX started naming the call; keep the id we gave it
	case rank(st) < rank(old.state):
		// Extension-state PBXs (Asterisk PJSIP) reuse the extension as dialog
		// id: ringing after answered is the next call.
		return true
	case st == events.Ringing && old.state == events.Ringing:
		r := remoteOf(d.Remote)
		return r != "" && old.remote != "" && r != old.remote
	}
	return false
}

// merge takes what d says about the parties; fields d leaves out keep their
// earlier value.
func (l *leg) merge(d dialoginfo.Dialog, ext string) {
	switch d.Direction {
	case dialoginfo.Recipient:
		l.direction = events.Inbound
	case dialoginfo.Initiator:
		l.direction = events.Outbound
	}
	if r := remoteOf(d.Remote); r != "" {
		l.remote = r
	}
	if d.Replaces != nil {
		if c := clean(d.Replaces.CallID); c != "" && c != l.callID {
			l.linked = c
		}
	}
	if d.ReferredBy != nil {
		if u := userPart(clean(d.ReferredBy.URI)); u != "" && u != ext && events.CheckText(u, events.MaxExtensionBytes) == "" {
			l.referredBy = u
		}
	}
	if l.direction == events.Inbound {
		if n := companyNumber(d, ext); n != "" {
			l.dialled = n
		}
	}
}

func (l leg) signal(ext, dialogID string, st events.State, cause string, now time.Time) events.Signal {
	return events.Signal{
		Source:       SourceName,
		CallID:       l.callID,
		LegID:        legID(ext, dialogID),
		LinkedCallID: l.linked,
		ReferredBy:   l.referredBy,
		Extension:    ext,
		Remote:       l.remote,
		Dialled:      l.dialled,
		Direction:    l.direction,
		State:        st,
		Cause:        cause,
		Time:         now,
		DedupKey:     dedupKey(ext, l.callID, dialogID, st),
	}
}

// legID names a dialog of an extension in signals: dialog ids are unique
// only within the watched entity (RFC 4235 §4.1.1).
func legID(ext, dialogID string) string {
	return fit(dialogID, events.MaxIDBytes-len("@")-len(ext)) + "@" + ext
}

// fit returns id when it has at most room bytes, else a digest of it (33
// bytes): as stable and, in practice, as unique, and short enough for the
// journal to accept the identifier it goes into.
func fit(id string, room int) string {
	if len(id) <= room {
		return id
	}
	h := sha256.Sum256([]byte(id))
	return "h" + hex.EncodeToString(h[:16])
}

// snapshot is the Snapshot signal for a subscription's first full document:
// the leg ids of every dialog the document holds that is not terminated. The
// tracker ends the extension's other legs. That is how a call that ended
// while no subscription was up (the bridge was stopped, or the PBX dropped
// the subscription) gets its end: the PBX forgets an ended dialog, and a
// restarted monitor has no memory of it to diff the document against.
// Dialogs in a state this package does not know are open: the PBX still has
// them. The dedup key is unique per subscription and document (seq as in
// applyDoc), so a retransmitted NOTIFY is one signal.
func snapshot(ext, subID string, doc *dialoginfo.Document, seq uint64, now time.Time) events.Signal {
	open := []string{}
	seen := make(map[string]bool, len(doc.Dialogs))
	for _, d := range doc.Dialogs {
		if st, ok := mapState(d.State); ok && st == events.Ended {
			continue
		}
		if id := legID(ext, clean(d.ID)); !seen[id] {
			seen[id] = true
			open = append(open, id)
		}
	}
	return events.Signal{
		Source:    SourceName,
		Extension: ext,
		State:     events.Snapshot,
		Open:      open,
		Time:      now,
		DedupKey:  hashKey(string(events.Snapshot), ext, subID, strconv.FormatUint(seq, 10)),
	}
}

// mapState maps RFC 4235 dialog states onto signal states. "ringing" is not
// an RFC 4235 state but some phones' servers send it.
func mapState(s string) (events.State, bool) {
	switch s {
	case dialoginfo.StateTrying, dialoginfo.StateProceeding, dialoginfo.StateEarly, "ringing":
		return events.Ringing, true
	case dialoginfo.StateConfirmed:
		return events.Answered, true
	case dialoginfo.StateTerminated:
		return events.Ended, true
	}
	return "", false
}

// rank orders the states a leg moves through; a signal never moves a leg back.
func rank(s events.State) int {
	switch s {
	case events.Ringing:
		return 1
	case events.Answered:
		return 2
	case events.Ended:
		return 3
	}
	return 0
}

// dedupKey is stable for (extension, call, dialog, state): a NOTIFY that is
// retransmitted, retried after a 500 or repeated after a re-subscription
// yields the same key, and the journal and tracker drop the copy.
func dedupKey(ext, callID, dialogID string, st events.State) string {
	return hashKey(ext, callID, dialogID, string(st))
}

// hashKey is a short, stable digest of parts for a dedup key.
func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return SourceName + "-" + hex.EncodeToString(h.Sum(nil)[:16])
}

// syntheticCallID names a call for PBXs that report extension state without
// a call-id (Asterisk PJSIP): one id per episode of the dialog, unique
// across subscriptions and restarts because subID is the random Call-ID of
// the subscription that first saw it.
func syntheticCallID(ext, subID, dialogID string, seq uint64) string {
	short := subID
	if len(short) > 12 {
		short = short[:12]
	}
	id := ext
	if dialogID != ext {
		id += "." + fit(dialogID, events.MaxIDBytes-len(ext)-syntheticOverhead)
	}
	return "sip-" + id + "-" + short + "-" + strconv.FormatUint(seq, 10)
}

// syntheticOverhead is what a synthetic call id holds besides the extension
// and the dialog id: "sip-", ".", "-", up to 12 bytes of the subscription,
// "-" and up to 20 digits.
const syntheticOverhead = len("sip-.--") + 12 + 20

// remoteOf renders the other party as a raw address: `"Name" <uri>` when the
// PBX gave a display name, else the URI. A target is used only when there is
// no identity, and never FreeSWITCH's "**<ext>" pickup target.
func remoteOf(p dialoginfo.Participant) string {
	uri := clean(p.Identity.URI)
	if uri == "" {
		if t := clean(p.Target); t != "" && !strings.HasPrefix(userPart(t), "*") {
			uri = t
		}
		return uri
	}
	display := strings.NewReplacer(`"`, "", `\`, "").Replace(clean(p.Identity.Display))
	if display != "" {
		return `"` + display + `" <` + uri + `>`
	}
	return uri
}

// companyNumber returns the local identity or target of a dialog when it
// holds a phone number (the DID the caller dialled, as Kamailio and
// chan_sip-era Asterisk report it) rather than the extension itself or the
// caller's own number (Asterisk PJSIP puts the caller there).
func companyNumber(d dialoginfo.Dialog, ext string) string {
	remote := digits(userPart(clean(d.Remote.Identity.URI)))
	for _, cand := range []string{clean(d.Local.Identity.URI), clean(d.Local.Target)} {
		n := digits(userPart(cand))
		if len(strings.TrimPrefix(n, "+")) < minNumberDigits || n == ext || n == remote {
			continue
		}
		return cand
	}
	return ""
}

// minNumberDigits separates phone numbers from extensions: no extension plan
// seen in the field uses seven digits or more, every public number does.
const minNumberDigits = 7

// userPart returns the user of a sip:, sips: or tel: URI ("" when there is none).
func userPart(uri string) string {
	s := uri
	if i := strings.IndexByte(s, '<'); i >= 0 {
		s = s[i+1:]
		if j := strings.IndexByte(s, '>'); j >= 0 {
			s = s[:j]
		}
	}
	lower := strings.ToLower(s)
	switch {
	case strings.HasPrefix(lower, "sip:"):
		s = s[4:]
	case strings.HasPrefix(lower, "sips:"):
		s = s[5:]
	case strings.HasPrefix(lower, "tel:"):
		s = s[4:]
		if i := strings.IndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
		return s
	default:
		return ""
	}
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return ""
	}
	s = s[:at]
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	return s
}

// digits strips visual separators and returns s only if what is left is a
// number (an optional leading + and digits), else "".
func digits(s string) string {
	var b strings.Builder
	for i, r := range s {
		switch {
		case r >= '0' && r <= '9':
			b.WriteRune(r)
		case r == '+' && i == 0:
			b.WriteRune(r)
		case r == '-' || r == '.' || r == ' ' || r == '(' || r == ')':
		default:
			return ""
		}
	}
	return b.String()
}

// maxField bounds every string taken from a PBX document into a signal.
const maxField = 256

// clean removes what events.CheckText refuses in an identifier (bytes
// that are not UTF-8, control and other non-printable characters,
// bidirectional controls: nothing from the PBX may inject a line into a
// header, log or JSON consumer downstream, or read other than it is), trims
// s and bounds its length. A signal refused by the journal would be lost.
func clean(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, unfit) >= 0 {
		s = strings.Map(func(r rune) rune {
			if r == utf8.RuneError || unfit(r) {
				return -1
			}
			return r
		}, s)
	}
	s = strings.TrimSpace(s)
	if len(s) > maxField {
		cut := maxField
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
	}
	return s
}

// unfit reports a character events.CheckText refuses in an identifier.
func unfit(r rune) bool {
	return (r != ' ' && !unicode.IsPrint(r)) || unicode.Is(unicode.Bidi_Control, r)
}
