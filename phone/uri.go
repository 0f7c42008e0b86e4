package phone

import (
	"net/url"
	"strings"
)

// UserPart returns the user part of a SIP, SIPS or tel URI, of a name-addr
// such as `"Name" <sip:+31612345678@pbx>;tag=x`, or of a bare user@host
// identity, with URI parameters, headers and any password removed and %XX
// escapes decoded. A string that is none of these is returned trimmed of
// surrounding white space; a quoted string is returned without its quotes.
// It never fails: malformed input gives a best-effort answer.
func UserPart(raw string) string {
	user, _ := splitAddr(raw)
	return strings.TrimSpace(user)
}

// splitAddr returns the user part (as UserPart documents it) and the host of
// raw; the host is empty when raw names none.
func splitAddr(raw string) (user, host string) {
	s := strings.TrimSpace(nameAddr(strings.TrimSpace(raw)))

	scheme, rest, ok := strings.Cut(s, ":")
	if ok {
		switch {
		case strings.EqualFold(scheme, "sip"), strings.EqualFold(scheme, "sips"):
			return userHost(rest)
		case strings.EqualFold(scheme, "tel"):
			// RFC 3966: tel:+31-6-1234-5678;ext=201;phone-context=…
			return unescape(cutAny(rest, ";?")), ""
		}
	}
	if strings.IndexByte(s, '@') >= 0 {
		// A SIP identity with the scheme left out, as Placetel and sipgate
		// report their SIP ids (7777abcdefg@fpbx.de).
		return userHost(s)
	}
	// A bare number may carry tel URI parameters with the scheme left out
	// (0201234567;ext=201).
	return cutAny(s, ";"), ""
}

// userHost splits the part of a SIP URI after "sip:" into user and host.
// RFC 3261 §19.1.1: userinfo "@" hostport uri-parameters headers, where the
// user may carry telephone-subscriber parameters of its own (;isub, ;ext).
func userHost(rest string) (user, host string) {
	rest, _, _ = strings.Cut(rest, "?")
	u, h, ok := strings.Cut(rest, "@")
	if !ok {
		// No userinfo: sip:0612345678;user=phone as some PBXs send it, or a
		// host-only URI, which then reads as junk.
		return unescape(cutAny(rest, ";")), ""
	}
	u, _, _ = strings.Cut(u, ":") // user:password
	return unescape(cutAny(u, ";")), cutAny(h, ";:")
}

// nameAddr returns the addr-spec between < and > when s is a name-addr
// (RFC 3261 §25.1: [display-name] "<" addr-spec ">"), and s without
// surrounding quotes otherwise. The display name may itself be a
// quoted string containing < or >.
func nameAddr(s string) string {
	rest := s
	if strings.HasPrefix(s, `"`) {
		// An unclosed quote is searched for < as a whole.
		if end := closingQuote(s); end >= 0 {
			if strings.TrimSpace(s[end+1:]) == "" {
				return s[1:end]
			}
			rest = s[end+1:]
		}
	}
	lt := strings.IndexByte(rest, '<')
	if lt < 0 {
		return strings.Trim(s, `"`)
	}
	addr := rest[lt+1:]
	if gt := strings.IndexByte(addr, '>'); gt >= 0 {
		addr = addr[:gt]
	}
	return addr
}

// closingQuote returns the index of the quote that ends the quoted string at
// the start of s, honouring backslash escapes, or -1 if it is not closed.
func closingQuote(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i
		}
	}
	return -1
}

// cutAny returns s up to the first byte that is in chars.
func cutAny(s, chars string) string {
	if i := strings.IndexAny(s, chars); i >= 0 {
		return s[:i]
	}
	return s
}

// unescape decodes %XX escapes (sip:%2B31612345678@pbx); a malformed escape
// leaves the text as it was.
func unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	if u, err := url.PathUnescape(s); err == nil {
		return u
	}
	return s
}
