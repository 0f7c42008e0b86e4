package phone

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nyaruka/phonenumbers"
)

// Kind classifies a number.
type Kind int

// The kinds of number. External numbers belong to customers and go to the
// helpdesk; Internal numbers are agents' extensions; Anonymous callers sent no
// number; Invalid numbers are none of these and are kept only to be logged.
const (
	External Kind = iota
	Internal
	Anonymous
	Invalid
)

// String returns the lower-case name of k ("external", "internal",
// "anonymous", "invalid"), or Kind(n) for a value outside the list.
func (k Kind) String() string {
	switch k {
	case External:
		return "external"
	case Internal:
		return "internal"
	case Anonymous:
		return "anonymous"
	case Invalid:
		return "invalid"
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Number is a normalised number.
type Number struct {
	// Raw is the input exactly as received.
	Raw string
	// E164 is the number in E.164 (+31612345678) for External; the digits
	// for Internal; the cleaned digits (with a leading + if the input had
	// one) or, for text that is no number, the trimmed text for Invalid,
	// never empty and at most 64 characters; "" for Anonymous.
	E164 string
	// Kind says which of the above applies.
	Kind Kind
}

// Defaults for Options.
const (
	DefaultRegion            = "NL"
	DefaultInternalMaxDigits = 6
)

// Limits on Options and on what Normalize returns.
const (
	// maxPrefixDigits bounds OutsideLinePrefix: access codes are one or two
	// digits, a longer one is a configuration mistake.
	maxPrefixDigits = 4
	// maxInternalDigits bounds InternalMaxDigits: E.164 numbers have at most
	// 15 digits, an extension plan longer than that would swallow them all.
	maxInternalDigits = 15
	// maxParseDigits is the longest digit string handed to phonenumbers:
	// 15 digits of E.164, an international prefix and an outside-line prefix.
	maxParseDigits = 24
	// maxInvalidLen bounds Number.E164 for Invalid (in characters), so that
	// junk from the PBX cannot blow up a log line.
	maxInvalidLen = 64
)

// Options configure a Normalizer. The zero value is usable: region NL, no
// outside-line prefix, extensions of up to 6 digits.
type Options struct {
	// Region is the ISO 3166 alpha-2 code (PHONE_REGION) national numbers
	// are read in; case does not matter. Default "NL".
	Region string
	// OutsideLinePrefix (OUTSIDE_LINE_PREFIX) is the access code the PBX
	// puts in front of external numbers, such as "0" or "9". It is stripped
	// only where the rest is a valid number. Empty means none.
	OutsideLinePrefix string
	// InternalMaxDigits: numbers of at most this many digits, without +, are
	// internal extensions. 0 means the default, 6; the maximum is 15.
	InternalMaxDigits int
}

// Normalizer classifies and normalises numbers for one configuration. It is
// immutable and safe for concurrent use.
type Normalizer struct {
	region      string
	prefix      string
	internalMax int
}

// New returns a Normalizer for o. It fails for a region phonenumbers does not
// know, an outside-line prefix that is not 1 to 4 ASCII digits, and an
// InternalMaxDigits outside 0..15.
func New(o Options) (*Normalizer, error) {
	region := strings.ToUpper(strings.TrimSpace(o.Region))
	if region == "" {
		region = DefaultRegion
	}
	if !phonenumbers.GetSupportedRegions()[region] {
		return nil, fmt.Errorf("phone region %q: not an ISO 3166 alpha-2 region known to phonenumbers", o.Region)
	}

	prefix := strings.TrimSpace(o.OutsideLinePrefix)
	if prefix != "" && (len(prefix) > maxPrefixDigits || !allDigits(prefix)) {
		return nil, fmt.Errorf("outside line prefix %q: want 1 to %d digits", o.OutsideLinePrefix, maxPrefixDigits)
	}

	internalMax := o.InternalMaxDigits
	switch {
	case internalMax == 0:
		internalMax = DefaultInternalMaxDigits
	case internalMax < 0 || internalMax > maxInternalDigits:
		return nil, fmt.Errorf("internal max digits %d: want 1 to %d, or 0 for the default %d",
			o.InternalMaxDigits, maxInternalDigits, DefaultInternalMaxDigits)
	}

	return &Normalizer{region: region, prefix: prefix, internalMax: internalMax}, nil
}

// Region returns the region national numbers are read in, upper case.
func (n *Normalizer) Region() string { return n.region }

// Normalize classifies raw and normalises it by the rules in the package
// documentation. It never fails and never panics: what cannot be read is
// returned as Invalid for the caller to log.
func (n *Normalizer) Normalize(raw string) (num Number) {
	defer func() {
		// phonenumbers is third-party code fed with caller-controlled
		// text; a panic in it must cost one number, not the daemon.
		if recover() != nil {
			num = Number{Raw: raw, E164: cleanText(raw), Kind: Invalid}
		}
	}()
	return n.normalize(raw)
}

// normalize is Normalize without the recover, so that the fuzz target sees
// every panic.
func (n *Normalizer) normalize(raw string) Number {
	user, host := splitAddr(raw)
	if isAnonymous(user) || strings.EqualFold(host, "anonymous.invalid") {
		return Number{Raw: raw, Kind: Anonymous}
	}

	digits, plus, ok := cleanDigits(user)
	if !ok {
		return Number{Raw: raw, E164: cleanText(user), Kind: Invalid}
	}
	invalid := Number{Raw: raw, E164: truncate(digits, plus), Kind: Invalid}

	if !plus && len(digits) <= n.internalMax {
		if phonenumbers.IsEmergencyNumber(digits, n.region) {
			return invalid
		}
		return Number{Raw: raw, E164: digits, Kind: Internal}
	}

	if !plus && n.prefix != "" && len(digits) > len(n.prefix) && strings.HasPrefix(digits, n.prefix) {
		if e164, ok := n.read(digits[len(n.prefix):], false); ok {
			return Number{Raw: raw, E164: e164, Kind: External}
		}
	}
	if e164, ok := n.read(digits, plus); ok {
		return Number{Raw: raw, E164: e164, Kind: External}
	}
	return invalid
}

// read returns the E.164 form of digits if they make a valid number: with
// plus as an international number, without it first in the national reading
// of the region and then, if that is invalid, as if a + had been sent.
func (n *Normalizer) read(digits string, plus bool) (string, bool) {
	if len(digits) > maxParseDigits {
		return "", false
	}
	if !plus {
		if e164, ok := n.parse(digits); ok {
			return e164, true
		}
	}
	return n.parse("+" + digits)
}

// parse returns the E.164 form of s if phonenumbers finds it a valid number.
func (n *Normalizer) parse(s string) (string, bool) {
	var pn phonenumbers.PhoneNumber
	if err := phonenumbers.ParseToNumber(s, n.region, &pn); err != nil {
		return "", false
	}
	if !phonenumbers.IsValidNumber(&pn) {
		return "", false
	}
	return phonenumbers.Format(&pn, phonenumbers.E164), true
}

// isAnonymous reports whether the user part says that the caller withheld or
// has no number. The words are those the sources send (research note
// pbx-sources §7: sipgate, Placetel, AMI, FreeSWITCH and Asterisk
// dialog-info) and the usual privacy words of carriers.
func isAnonymous(user string) bool {
	user = strings.TrimSpace(user)
	if user == "" {
		return true
	}
	for _, w := range [...]string{"anonymous", "unknown", "restricted", "private", "withheld", "unavailable"} {
		if strings.EqualFold(user, w) {
			return true
		}
	}
	return false
}

// cleanDigits removes visual separators from s and returns its digits and
// whether it began with +. ok is false when s holds anything else, a + after
// the first digit or a second +, or no digit at all.
func cleanDigits(s string) (digits string, plus, ok bool) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
			b.WriteByte(c)
		case c == '+':
			if plus || b.Len() > 0 {
				return "", false, false
			}
			plus = true
		case isSeparator(c):
		default:
			return "", false, false
		}
	}
	if b.Len() == 0 {
		return "", false, false
	}
	return b.String(), plus, true
}

// isSeparator reports whether c is a visual separator people and PBXs put
// between groups of digits.
func isSeparator(c byte) bool {
	switch c {
	case ' ', '\t', '-', '.', '/', '(', ')', '[', ']':
		return true
	}
	return false
}

// allDigits reports whether s is non-empty and all ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// truncate returns digits, with a leading + if plus, cut to maxInvalidLen.
func truncate(digits string, plus bool) string {
	if plus {
		digits = "+" + digits
	}
	if len(digits) > maxInvalidLen {
		digits = digits[:maxInvalidLen]
	}
	return digits
}

// cleanText returns s trimmed, as valid UTF-8, with control characters
// replaced (white space by a space, the rest by U+FFFD) and cut to
// maxInvalidLen characters. For a non-empty, non-blank s it is never empty.
func cleanText(s string) string {
	s = strings.TrimSpace(s)
	var b strings.Builder
	b.Grow(min(len(s), maxInvalidLen*utf8.UTFMax))
	n := 0
	for _, r := range s { // an invalid byte arrives as utf8.RuneError
		if n == maxInvalidLen {
			break
		}
		switch {
		case unicode.IsSpace(r):
			r = ' '
		case unicode.IsControl(r):
			r = utf8.RuneError
		}
		b.WriteRune(r)
		n++
	}
	return strings.TrimSpace(b.String())
}
