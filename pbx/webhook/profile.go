package webhook

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
)

// Profile maps one tool's webhook (its field names, its event names, its
// encodings) onto the generic webhook's fields, so that a tool which cannot
// be told to send the generic payload can still report calls. A profile is
// declarative: one JSON file, built in or read from WEBHOOK_PROFILES_DIR.
type Profile struct {
	// Source is the name the signals carry and the last path segment of
	// the profile's URL, /v1/webhooks/{source}.
	Source string `json:"source"`
	// Description says what tool the profile is for, for people.
	Description string `json:"description,omitempty"`
	// Accept lists the encodings taken: "json" (a JSON object body),
	// "form" (an application/x-www-form-urlencoded body) and "query"
	// (GET with query parameters). Default: json.
	Accept []string `json:"accept,omitempty"`
	// Fields maps a generic field onto the tool's fields; the first of
	// them that is present and not empty gives the value.
	Fields map[string]FieldSpec `json:"fields"`
	// Events maps the tool's event names (matched regardless of case)
	// onto generic events. An event not in the map is answered 202 and
	// ignored.
	Events map[string]EventRule `json:"events"`
	// MakeCallID, for tools that send no call id, says how to make one.
	MakeCallID *MakeCallID `json:"make_call_id,omitempty"`
	// TimeLayouts are Go time layouts tried, in order, for the time
	// fields; RFC 3339 is always tried first. A time without a zone is UTC.
	TimeLayouts []string `json:"time_layouts,omitempty"`
	// BlankPlaceholders treats a value that is only a bracketed name
	// ("[CallEstablishedTimeUTC]") as empty: 3CX sends a variable it
	// could not fill that way.
	BlankPlaceholders bool `json:"blank_placeholders,omitempty"`
	// Replies are answers an event rule can name instead of the default
	// 202 {"status":"accepted"} (a contact lookup wants a contact list).
	Replies map[string]Reply `json:"replies,omitempty"`
}

// FieldSpec is the list of tool fields one generic field is read from, in
// order of preference. In JSON it is a field name, an object, or a list of
// either.
type FieldSpec []FieldRef

// FieldRef is one tool field. With BeforeLast, the value is cut at the
// last occurrence of that text (K2M's Id "230307114903_10-1" names a leg;
// "230307114903_10" is the call).
type FieldRef struct {
	Field      string `json:"field"`
	BeforeLast string `json:"before_last,omitempty"`
}

// UnmarshalJSON accepts "Name", {"field": "Name", ...} or a list of those.
func (f *FieldSpec) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	var list []json.RawMessage
	if len(b) > 0 && b[0] == '[' {
		if err := json.Unmarshal(b, &list); err != nil {
			return err
		}
	} else {
		list = []json.RawMessage{b}
	}
	out := make(FieldSpec, 0, len(list))
	for _, raw := range list {
		var r FieldRef
		var name string
		if err := json.Unmarshal(raw, &name); err == nil {
			r.Field = name
		} else if err := strictUnmarshal(raw, &r); err != nil {
			return fmt.Errorf("a field is a name or {\"field\": ..., \"before_last\": ...}: %w", err)
		}
		if strings.TrimSpace(r.Field) == "" {
			return errors.New("a field name is empty")
		}
		out = append(out, r)
	}
	*f = out
	return nil
}

// names is the spec's tool fields, as a 400 answer names them.
func (f FieldSpec) names() string {
	var n []string
	for _, r := range f {
		n = append(n, r.Field)
	}
	return strings.Join(n, " or ")
}

// EventRule says what one tool event means: the cases are tried in order
// and the first whose When matches applies. In JSON it is a generic event
// name, a case object, or a list of case objects.
type EventRule []EventCase

// EventCase is one meaning of a tool event.
type EventCase struct {
	// When lists tool fields and the values (any of, regardless of case)
	// they must have for the case to apply; "" matches an absent or empty
	// field. Empty: the case always applies.
	When map[string]Strings `json:"when,omitempty"`
	// Event is one generic event (ringing, answered, transferred, ended),
	// several journaled in that order (["answered", "ended"] for a report
	// made after the call), or "ignore".
	Event Strings `json:"event"`
	// Direction, when set, is the call's direction (inbound or outbound)
	// whatever the fields say.
	Direction string `json:"direction,omitempty"`
	// Cause, when set, is the signals' cause whatever the fields say.
	Cause string `json:"cause,omitempty"`
	// Fields override the profile's fields for this case (an outbound
	// event that names the company line in another field).
	Fields map[string]FieldSpec `json:"fields,omitempty"`
	// Reply names one of the profile's Replies to answer with.
	Reply string `json:"reply,omitempty"`
}

// UnmarshalJSON accepts "answered", {case} or [{case}, ...].
func (r *EventRule) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*r = EventRule{{Event: Strings{s}}}
		return nil
	case len(b) > 0 && b[0] == '{':
		var c EventCase
		if err := strictUnmarshal(b, &c); err != nil {
			return err
		}
		*r = EventRule{c}
		return nil
	}
	var cs []EventCase
	if err := strictUnmarshal(b, &cs); err != nil {
		return err
	}
	*r = cs
	return nil
}

// Strings is a list of strings that may be written as one string in JSON.
type Strings []string

// UnmarshalJSON accepts "x" or ["x", "y"].
func (s *Strings) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = Strings{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("must be a string or a list of strings")
	}
	*s = many
	return nil
}

// MakeCallID makes a call id for tools that send none, from generic fields
// (after mapping) and a time. A request whose time is within MatchWithin of
// a call id made before from the same values gets that call id: 3CX's
// contact lookup (at ring time, timed by its arrival) and its call report
// (with the call's start time) are then one call.
type MakeCallID struct {
	// From are generic field names ("remote") whose values name the call.
	From []string `json:"from"`
	// Time is the generic time field (start_time) with the call's start;
	// when the request has none, its arrival time is used.
	Time string `json:"time,omitempty"`
	// MatchWithin is a Go duration ("2m"); default 2 minutes.
	MatchWithin string `json:"match_within,omitempty"`

	window time.Duration
}

// Reply is a fixed answer to a request the profile's rule names.
type Reply struct {
	// Status defaults to 200.
	Status      int    `json:"status,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Body        string `json:"body"`
}

// Generic fields a profile can map. Besides the generic payload's fields:
// remote (the customer's number whatever the direction) and dialled (the
// company's number or line), and the times of a report made after the
// call (start_time, answered_time, ended_time).
var profileFields = []string{
	"call_id", "event", "direction", "from", "to", "remote", "dialled", "extension", "timestamp",
	"event_id", "leg_id", "linked_call_id", "cause", "start_time", "answered_time", "ended_time",
}

// Encodings a profile may accept.
const (
	EncodingJSON  = "json"
	EncodingForm  = "form"
	EncodingQuery = "query"
)

// ignoreEvent in a rule drops the request with a 202.
const ignoreEvent = "ignore"

var sourceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,39}$`)

// reservedSources are paths other handlers already serve.
var reservedSources = []string{Source, "voipgrid", "sip", "threecx", "xelion"}

// ParseProfile reads and checks one profile. Every error names what is
// wrong in the file's terms.
func ParseProfile(b []byte) (*Profile, error) {
	var p Profile
	if err := strictUnmarshal(b, &p); err != nil {
		return nil, err
	}
	if err := p.check(); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *Profile) check() error {
	if !sourceName.MatchString(p.Source) {
		return fmt.Errorf("source %q: must be 1-40 lower-case letters, digits, - or _", p.Source)
	}
	if slices.Contains(reservedSources, p.Source) {
		return fmt.Errorf("source %q: is a built-in source", p.Source)
	}
	if len(p.Accept) == 0 {
		p.Accept = []string{EncodingJSON}
	}
	for _, a := range p.Accept {
		if a != EncodingJSON && a != EncodingForm && a != EncodingQuery {
			return fmt.Errorf("accept: %q is not json, form or query", a)
		}
	}
	if err := checkFields("fields", p.Fields); err != nil {
		return err
	}
	if len(p.Fields["event"]) == 0 {
		return errors.New("fields: event is required (the tool's field with the event name)")
	}
	if len(p.Fields["call_id"]) == 0 && p.MakeCallID == nil {
		return errors.New("fields: call_id is required unless make_call_id says how to make one")
	}
	if len(p.Events) == 0 {
		return errors.New("events: is empty")
	}
	events := make(map[string]EventRule, len(p.Events))
	for name, rule := range p.Events {
		if len(rule) == 0 {
			return fmt.Errorf("events.%s: has no case", name)
		}
		for i, c := range rule {
			where := fmt.Sprintf("events.%s[%d]", name, i)
			if len(c.Event) == 0 {
				return fmt.Errorf("%s: event is required", where)
			}
			for _, e := range c.Event {
				switch e {
				case "ringing", "answered", "transferred", "ended":
				case ignoreEvent:
					if len(c.Event) > 1 {
						return fmt.Errorf("%s: ignore stands alone", where)
					}
				default:
					return fmt.Errorf("%s: event %q is not ringing, answered, transferred, ended or ignore", where, e)
				}
			}
			if c.Direction != "" && normDirection(c.Direction) == "" {
				return fmt.Errorf("%s: direction %q is not inbound or outbound", where, c.Direction)
			}
			if err := checkFields(where+".fields", c.Fields); err != nil {
				return err
			}
			if _, ok := p.Replies[c.Reply]; c.Reply != "" && !ok {
				return fmt.Errorf("%s: reply %q is not in replies", where, c.Reply)
			}
		}
		key := strings.ToLower(strings.TrimSpace(name))
		if _, dup := events[key]; dup {
			return fmt.Errorf("events: %q is there twice (names match regardless of case)", name)
		}
		events[key] = rule
	}
	p.Events = events
	if m := p.MakeCallID; m != nil {
		if len(m.From) == 0 {
			return errors.New("make_call_id.from: is empty")
		}
		for _, f := range append(slices.Clone(m.From), m.Time) {
			if f != "" && !slices.Contains(profileFields, f) {
				return fmt.Errorf("make_call_id: %q is not a generic field", f)
			}
		}
		m.window = 2 * time.Minute
		if m.MatchWithin != "" {
			d, err := time.ParseDuration(m.MatchWithin)
			if err != nil || d < 0 {
				return fmt.Errorf("make_call_id.match_within: %q is not a duration like 2m", m.MatchWithin)
			}
			m.window = d
		}
	}
	for name, r := range p.Replies {
		if r.Status != 0 && (r.Status < 200 || r.Status > 299) {
			return fmt.Errorf("replies.%s: status %d is not a success", name, r.Status)
		}
	}
	return nil
}

func checkFields(where string, fields map[string]FieldSpec) error {
	for k := range fields {
		if !slices.Contains(profileFields, k) {
			return fmt.Errorf("%s: %q is not a generic field (%s)", where, k, strings.Join(profileFields, ", "))
		}
	}
	return nil
}

func (p *Profile) accepts(enc string) bool { return slices.Contains(p.Accept, enc) }

//go:embed profiles/*.json
var builtin embed.FS

// BuiltinProfiles returns the profiles shipped with the bridge (K2M and
// Komplit 3CX add-ons, the 3CX CRM integration template), in source order.
func BuiltinProfiles() ([]*Profile, error) {
	return loadFS(builtin, "profiles")
}

// LoadProfiles returns the built-in profiles plus those of dir (every
// *.json file in it; "" reads none). A profile of dir replaces the built-in
// one of the same source; two files of dir with one source are an error.
func LoadProfiles(dir string) ([]*Profile, error) {
	ps, err := BuiltinProfiles()
	if err != nil {
		return nil, fmt.Errorf("built-in profiles: %w", err)
	}
	if dir == "" {
		return ps, nil
	}
	own, err := loadFS(os.DirFS(dir), ".")
	if err != nil {
		return nil, fmt.Errorf("WEBHOOK_PROFILES_DIR %s: %w", dir, err)
	}
	for _, o := range own {
		ps = slices.DeleteFunc(ps, func(p *Profile) bool { return p.Source == o.Source })
	}
	ps = append(ps, own...)
	sort.Slice(ps, func(i, j int) bool { return ps[i].Source < ps[j].Source })
	return ps, nil
}

func loadFS(fsys fs.FS, dir string) ([]*Profile, error) {
	names, err := fs.Glob(fsys, filepath.ToSlash(filepath.Join(dir, "*.json")))
	if err != nil {
		return nil, err
	}
	if _, err := fs.Stat(fsys, dir); err != nil {
		return nil, err
	}
	var out []*Profile
	seen := map[string]string{}
	for _, n := range names {
		b, err := fs.ReadFile(fsys, n)
		if err != nil {
			return nil, err
		}
		p, err := ParseProfile(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Base(n), err)
		}
		if prev, ok := seen[p.Source]; ok {
			return nil, fmt.Errorf("%s: source %q is also %s", filepath.Base(n), p.Source, prev)
		}
		seen[p.Source] = filepath.Base(n)
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Source < out[j].Source })
	return out, nil
}

// strictUnmarshal refuses unknown keys, so a misspelt profile key is an
// error at start-up rather than a field silently never read.
func strictUnmarshal(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New(jsonProblem(err))
	}
	if dec.More() {
		return errors.New("more than one JSON value")
	}
	return nil
}

func normDirection(d string) string {
	switch strings.ToLower(strings.TrimSpace(d)) {
	case "inbound", "in", "incoming":
		return "inbound"
	case "outbound", "out", "outgoing":
		return "outbound"
	}
	return ""
}
