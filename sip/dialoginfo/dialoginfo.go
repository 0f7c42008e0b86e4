// Package dialoginfo parses RFC 4235 dialog event documents
// (application/dialog-info+xml), the bodies a PBX sends in NOTIFY requests of
// the SIP "dialog" event package.
//
// The parser is lenient where real PBXs differ from the RFC (no namespace,
// missing version, state values in any letter case, dialogs without call-id)
// and strict where a document could not be used safely (malformed XML, a
// non-numeric version, a dialog that cannot be identified).
package dialoginfo

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ContentType is the MIME type of a dialog-info document (RFC 4235 §4).
const ContentType = "application/dialog-info+xml"

// MaxDialogs bounds the number of dialog elements one document may carry; a
// PBX never reports that many calls for one extension, so more is garbage.
const MaxDialogs = 1024

// DocState says whether a document replaces everything known (full) or only
// updates the dialogs it names (partial).
type DocState string

// The two document states of RFC 4235 §4.1.
const (
	Full    DocState = "full"
	Partial DocState = "partial"
)

// Direction is the role of the watched entity in a dialog.
type Direction string

// Dialog directions of RFC 4235 §4.1.1: the entity sent the INVITE
// (initiator) or received it (recipient).
const (
	Initiator Direction = "initiator"
	Recipient Direction = "recipient"
)

// The dialog states of RFC 4235 §3.7.1, lower-cased. Parse normalises the
// letter case of the state element, so these are the only spellings callers
// see for the standard states.
const (
	StateTrying     = "trying"
	StateProceeding = "proceeding"
	StateEarly      = "early"
	StateConfirmed  = "confirmed"
	StateTerminated = "terminated"
)

// Document is one parsed dialog-info document.
type Document struct {
	// Version orders documents within one subscription; it is meaningful only
	// when HasVersion is true.
	Version uint64
	// HasVersion is false when the document carried no version attribute
	// (RFC 4235 requires one; some PBXs omit it).
	HasVersion bool
	// State is Full or Partial; a document without a state attribute is Full.
	State DocState
	// Entity is the URI of the watched resource, as sent.
	Entity string
	// Dialogs are the dialog elements in document order. Every dialog has a
	// non-empty ID.
	Dialogs []Dialog
}

// Dialog is one dialog element.
type Dialog struct {
	// ID identifies the dialog within the entity. When the element had no id
	// attribute it is derived from call-id and tags.
	ID string
	// CallID, LocalTag and RemoteTag are the SIP dialog identifiers; PBXs that
	// report extension state rather than calls (Asterisk PJSIP) leave them empty.
	CallID    string
	LocalTag  string
	RemoteTag string
	// Direction is Initiator, Recipient or empty when not sent.
	Direction Direction
	// State is the lower-cased, trimmed text of the state element (one of the
	// State* constants for a conforming PBX; other values are passed through).
	State string
	// Event is the lower-cased event attribute of the state element
	// ("cancelled", "rejected", "replaced", "local-bye", "remote-bye", "error",
	// "timeout"); empty when absent.
	Event string
	// Code is the code attribute of the state element (a SIP response code), or 0.
	Code int
	// Replaces names the dialog this one replaces (attended transfer, pickup),
	// or is nil.
	Replaces *DialogRef
	// ReferredBy is the party that referred this dialog (transfer), or nil.
	ReferredBy *Identity
	// Local and Remote describe the two participants as the entity sees them.
	Local  Participant
	Remote Participant
}

// DialogRef identifies another dialog by its SIP identifiers.
type DialogRef struct {
	CallID    string
	LocalTag  string
	RemoteTag string
}

// Identity is a URI with an optional display name.
type Identity struct {
	Display string
	URI     string
}

// Participant is the local or remote side of a dialog.
type Participant struct {
	// Identity is the identity element (the party's URI, as sent).
	Identity Identity
	// Target is the uri attribute of the target element (the party's contact).
	Target string
}

// ErrNotDialogInfo is returned (wrapped) when the body is well-formed XML
// whose root element is not dialog-info.
var ErrNotDialogInfo = errors.New("not a dialog-info document")

// Parse decodes one dialog-info document. It never panics on any input; an
// error means nothing in the body can be relied on.
func Parse(body []byte) (*Document, error) {
	var raw xmlDoc
	dec := xml.NewDecoder(bytes.NewReader(body))
	// Strict stays on: unknown entities are errors, so nothing is expanded
	// from outside the body.
	dec.CharsetReader = charsetReader
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("dialog-info: empty document")
		}
		return nil, fmt.Errorf("dialog-info: %w", err)
	}
	if raw.XMLName.Local != "dialog-info" {
		return nil, fmt.Errorf("dialog-info: root element %q: %w", raw.XMLName.Local, ErrNotDialogInfo)
	}
	doc := &Document{Entity: strings.TrimSpace(raw.Entity), State: Full}
	if v := strings.TrimSpace(raw.Version); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("dialog-info: version %q is not a non-negative integer", clip(v))
		}
		doc.Version, doc.HasVersion = n, true
	}
	switch st := strings.ToLower(strings.TrimSpace(raw.State)); st {
	case "", string(Full):
	case string(Partial):
		doc.State = Partial
	default:
		return nil, fmt.Errorf("dialog-info: state %q is neither full nor partial", clip(st))
	}
	if len(raw.Dialogs) > MaxDialogs {
		return nil, fmt.Errorf("dialog-info: %d dialogs, more than %d", len(raw.Dialogs), MaxDialogs)
	}
	doc.Dialogs = make([]Dialog, 0, len(raw.Dialogs))
	for i, rd := range raw.Dialogs {
		d, err := rd.dialog()
		if err != nil {
			return nil, fmt.Errorf("dialog-info: dialog %d: %w", i, err)
		}
		doc.Dialogs = append(doc.Dialogs, d)
	}
	return doc, nil
}

func (rd *xmlDialog) dialog() (Dialog, error) {
	d := Dialog{
		ID:        strings.TrimSpace(rd.ID),
		CallID:    strings.TrimSpace(rd.CallID),
		LocalTag:  strings.TrimSpace(rd.LocalTag),
		RemoteTag: strings.TrimSpace(rd.RemoteTag),
		State:     strings.ToLower(strings.TrimSpace(rd.State.Value)),
		Event:     strings.ToLower(strings.TrimSpace(rd.State.Event)),
		Local:     rd.Local.participant(),
		Remote:    rd.Remote.participant(),
	}
	if d.ID == "" {
		// RFC 4235 requires id; without it the SIP dialog identifiers are the
		// next best stable key.
		if d.CallID == "" {
			return Dialog{}, errors.New("no id and no call-id")
		}
		d.ID = d.CallID
		if d.LocalTag != "" || d.RemoteTag != "" {
			d.ID += ";" + d.LocalTag + ";" + d.RemoteTag
		}
	}
	// An unknown direction or code is dropped rather than failing the
	// document: neither decides whether the dialog exists.
	if dir := Direction(strings.ToLower(strings.TrimSpace(rd.Direction))); dir == Initiator || dir == Recipient {
		d.Direction = dir
	}
	if n, err := strconv.Atoi(strings.TrimSpace(rd.State.Code)); err == nil && n >= 100 && n <= 699 {
		d.Code = n
	}
	if d.State == "" {
		return Dialog{}, errors.New("no state")
	}
	if rd.Replaces != nil {
		d.Replaces = &DialogRef{
			CallID:    strings.TrimSpace(rd.Replaces.CallID),
			LocalTag:  strings.TrimSpace(rd.Replaces.LocalTag),
			RemoteTag: strings.TrimSpace(rd.Replaces.RemoteTag),
		}
	}
	if rd.ReferredBy != nil {
		d.ReferredBy = &Identity{
			Display: strings.TrimSpace(rd.ReferredBy.Display),
			URI:     strings.TrimSpace(rd.ReferredBy.URI),
		}
	}
	return d, nil
}

func (p *xmlParticipant) participant() Participant {
	if p == nil {
		return Participant{}
	}
	out := Participant{}
	if p.Identity != nil {
		out.Identity = Identity{
			Display: strings.TrimSpace(p.Identity.Display),
			URI:     strings.TrimSpace(p.Identity.URI),
		}
	}
	if p.Target != nil {
		out.Target = strings.TrimSpace(p.Target.URI)
	}
	return out
}

// clip shortens attacker-controlled text before it goes into an error string.
func clip(s string) string {
	const max = 64
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}

// charsetReader accepts the encodings PBXs declare. Go decodes UTF-8 natively;
// US-ASCII and ISO-8859-1 bodies of real PBXs are ASCII in practice, and a
// byte outside ASCII becomes U+FFFD rather than failing the whole document.
func charsetReader(charset string, input io.Reader) (io.Reader, error) {
	switch strings.ToLower(charset) {
	case "utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1":
		return input, nil
	}
	return nil, fmt.Errorf("unsupported charset %q", clip(charset))
}

// The XML shapes. Element and attribute names carry no namespace so that
// documents with the RFC namespace, a prefix, or (seen in the field) no
// namespace at all decode alike.
type xmlDoc struct {
	XMLName xml.Name
	Version string      `xml:"version,attr"`
	State   string      `xml:"state,attr"`
	Entity  string      `xml:"entity,attr"`
	Dialogs []xmlDialog `xml:"dialog"`
}

type xmlDialog struct {
	ID         string          `xml:"id,attr"`
	CallID     string          `xml:"call-id,attr"`
	LocalTag   string          `xml:"local-tag,attr"`
	RemoteTag  string          `xml:"remote-tag,attr"`
	Direction  string          `xml:"direction,attr"`
	State      xmlState        `xml:"state"`
	Replaces   *xmlReplaces    `xml:"replaces"`
	ReferredBy *xmlIdentity    `xml:"referred-by"`
	Local      *xmlParticipant `xml:"local"`
	Remote     *xmlParticipant `xml:"remote"`
}

type xmlState struct {
	Value string `xml:",chardata"`
	Event string `xml:"event,attr"`
	Code  string `xml:"code,attr"`
}

type xmlReplaces struct {
	CallID    string `xml:"call-id,attr"`
	LocalTag  string `xml:"local-tag,attr"`
	RemoteTag string `xml:"remote-tag,attr"`
}

type xmlIdentity struct {
	Display string `xml:"display,attr"`
	URI     string `xml:",chardata"`
}

type xmlParticipant struct {
	Identity *xmlIdentity `xml:"identity"`
	Target   *xmlTarget   `xml:"target"`
}

type xmlTarget struct {
	URI string `xml:"uri,attr"`
}
