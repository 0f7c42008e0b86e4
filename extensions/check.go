package extensions

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// checkID accepts an identifier (a PBX id or a ROBIN extension) that is
// valid UTF-8 without white space or control characters: identifiers are
// compared byte for byte, so an invisible character would never match.
func checkID(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s %q is not valid UTF-8", what, s)
	}
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("%s %q contains white space or a control character", what, s)
	}
	return nil
}

// checkName accepts a display name: valid UTF-8 without control characters.
func checkName(s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("name %q is not valid UTF-8", s)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("name %q contains a control character", s)
	}
	return nil
}

// checkEmail accepts "" or something shaped like an e-mail address: one "@"
// with text on both sides and no white space. Deliverability is not our
// business; catching a name typed into the email column is.
func checkEmail(s string) error {
	if s == "" {
		return nil
	}
	local, domain, ok := strings.Cut(s, "@")
	if !ok {
		return fmt.Errorf("email %q has no @", s)
	}
	if local == "" || domain == "" || strings.Contains(domain, "@") || !utf8.ValidString(s) ||
		strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return fmt.Errorf("email %q is not an e-mail address", s)
	}
	return nil
}

// maxSourceLen bounds a source name; real ones are a word.
const maxSourceLen = 64

// checkSource accepts "" (any source) or a lower-case source name made of
// letters, digits, "-" and "_", as used in webhook paths.
func checkSource(s string) error {
	if s == "" {
		return nil
	}
	ok := len(s) <= maxSourceLen && strings.IndexFunc(s, func(r rune) bool {
		return !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '-' || r == '_')
	}) < 0
	if !ok {
		return fmt.Errorf(`source %q is not a source name (letters, digits, "-" and "_")`, s)
	}
	return nil
}
