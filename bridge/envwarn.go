package bridge

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/caarlos0/env/v11"
)

// tagged lists the variables named by the env tags of Config and the
// structs in it.
func tagged() []string {
	var out []string
	params, _ := env.GetFieldParamsWithOptions(&Config{}, env.Options{Environment: map[string]string{}})
	for _, p := range params {
		out = append(out, p.Key)
	}
	return out
}

// variables lists every environment variable the program reads, sorted:
// the tagged ones, ANONYMOUS_NUMBER, NAME_FILE of every secret, NO_COLOR,
// and the proxy variables Go's HTTP client reads.
func variables() []string {
	out := tagged()
	for _, s := range secretNames() {
		out = append(out, s+"_FILE")
	}
	out = append(out, "ANONYMOUS_NUMBER", "NO_COLOR", "HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy")
	slices.Sort(out)
	return slices.Compact(out)
}

// ourPrefixes are the first words of the bridge's variables (ROBIN_, SIP_,
// THREECX_, …), taken from the env tags: a variable that starts with one is
// meant for the bridge.
func ourPrefixes() map[string]bool {
	out := map[string]bool{}
	for _, v := range tagged() {
		if p, _, ok := strings.Cut(v, "_"); ok {
			out[p+"_"] = true
		}
	}
	return out
}

// serviceLink matches the variables Kubernetes (and Docker links) set for
// every service: a service named "nats" or "robin" gives NATS_PORT or
// ROBIN_SERVICE_HOST, which are nobody's mistake.
var serviceLink = regexp.MustCompile(`_(SERVICE_HOST|SERVICE_PORT(_[A-Z0-9_]+)?|PORT(_[0-9]+_(TCP|UDP|SCTP)(_(ADDR|PORT|PROTO))?)?)$`)

// envWarnings names the variables of m that look like the bridge's (they
// start with one of its prefixes, or are one typing slip away from one of
// its names) but that it does not read, each with the closest name it
// reads. Sorted by variable.
func envWarnings(m map[string]string) []string {
	vars := variables()
	known := make(map[string]bool, len(vars))
	for _, v := range vars {
		known[v] = true
	}
	prefixes := ourPrefixes()
	var names []string
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	var out []string
	for _, name := range names {
		if known[name] || serviceLink.MatchString(name) {
			continue
		}
		upper := strings.ToUpper(name)
		p, _, _ := strings.Cut(upper, "_")
		best, d := closest(upper, vars)
		ours := prefixes[p+"_"] || (d <= 1 && len(name) >= 6)
		switch {
		case !ours:
		case known[upper]:
			out = append(out, fmt.Sprintf("%s is set, but names are case-sensitive: voipbridge reads %s", name, upper))
		case strings.HasSuffix(upper, "_FILE") && known[strings.TrimSuffix(upper, "_FILE")]:
			out = append(out, fmt.Sprintf("%s is set, but only secrets can be given as NAME_FILE: set %s itself", name, strings.TrimSuffix(upper, "_FILE")))
		case d <= max(2, utf8.RuneCountInString(name)/3):
			out = append(out, fmt.Sprintf("%s is set, but voipbridge does not read it; did you mean %s?", name, best))
		default:
			out = append(out, fmt.Sprintf("%s is set, but voipbridge does not read it (the closest name it reads is %s)", name, best))
		}
	}
	return out
}

// closest returns the name of vars nearest to name (Damerau-Levenshtein,
// adjacent transpositions counted as one edit), and its distance; the
// first in order among equals. A NAME_FILE is offered only for a name that
// ends in _FILE.
func closest(name string, vars []string) (string, int) {
	best, bestD := "", -1
	for _, v := range vars {
		if strings.HasSuffix(v, "_FILE") != strings.HasSuffix(name, "_FILE") {
			continue
		}
		if d := editDistance(name, v); bestD < 0 || d < bestD {
			best, bestD = v, d
		}
	}
	return best, bestD
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours (APIKEY for
// APIEKY) each count one.
func editDistance(a, b string) int {
	s, t := []rune(a), []rune(b)
	// Three rows: the one two back (for swaps), the previous and this one.
	prev2, prev, cur := make([]int, len(t)+1), make([]int, len(t)+1), make([]int, len(t)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(s); i++ {
		cur[0] = i
		for j := 1; j <= len(t); j++ {
			cost := 1
			if s[i-1] == t[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && s[i-1] == t[j-2] && s[i-2] == t[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(t)]
}

// parseErrors turns what env reports about values it cannot read, which
// names Go fields (`parse error on field "RobinTimeout" of type
// "time.Duration"`), into one error per variable that names the variable:
// `ROBIN_TIMEOUT: "ten" is not a duration; …`. It returns those variables
// with the errors; errors it cannot attribute are passed on as they are.
func parseErrors(m map[string]string, err error) (bad []string, errs []error) {
	secret := map[string]bool{}
	for _, s := range secretNames() {
		secret[s] = true
	}
	for _, name := range variables() {
		v, ok := m[name]
		if !ok {
			continue
		}
		// Alone, the variable's own error is the only one there can be.
		_, e := env.ParseAsWithOptions[Config](env.Options{Environment: map[string]string{name: v}})
		var pe env.ParseError
		if errors.As(e, &pe) {
			bad = append(bad, name)
			errs = append(errs, parseProblem(name, v, pe.Type, secret[name]))
		}
	}
	if len(bad) == 0 {
		var agg env.AggregateError
		if errors.As(err, &agg) {
			return nil, agg.Errors
		}
		return nil, []error{err}
	}
	return bad, errs
}

// parseProblem says what is wrong with value for a field of type t.
func parseProblem(name, value string, t reflect.Type, secret bool) error {
	shown := strconv.Quote(value)
	if secret {
		shown = "the value"
	} else if len(value) > 40 {
		shown = strconv.Quote(strings.ToValidUTF8(value[:40], "") + "…")
	}
	if t.Kind() == reflect.Slice {
		t = t.Elem()
	}
	want := "not a usable value"
	switch {
	case t == reflect.TypeFor[time.Duration]():
		want = "not a duration; want a number with a unit, such as 500ms, 10s, 5m or 1h30m"
	case t == reflect.TypeFor[slog.Level]():
		want = "not a log level; want debug, info, warn or error"
	case t.Kind() == reflect.Bool:
		want = "want true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		want = "not a whole number (or too large)"
	case t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64:
		want = "not a whole number of 0 or more (or too large)"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		want = "not a number; want digits with a decimal point, such as 0.5"
	}
	if strings.HasPrefix(want, "want") {
		return fmt.Errorf("%s: %s: %s", name, shown, want)
	}
	return fmt.Errorf("%s: %s is %s", name, shown, want)
}

// withoutMentions flattens the joined problems of err and leaves out those
// that name one of vars: their values could not be read and the default
// stood in, so a complaint about them would be a second, false one.
func withoutMentions(err error, vars []string) []error {
	var out []error
	for _, e := range flatten(err) {
		if !slices.ContainsFunc(vars, func(v string) bool { return mentions(e.Error(), v) }) {
			out = append(out, e)
		}
	}
	return out
}

// flatten lists the problems in err: the parts of errors.Join, all the way
// down, and any other error whole.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []error{err}
	}
	parts := j.Unwrap()
	var msgs []string
	for _, p := range parts {
		msgs = append(msgs, p.Error())
	}
	if strings.Join(msgs, "\n") != err.Error() {
		return []error{err} // wraps several errors in a message of its own
	}
	var out []error
	for _, p := range parts {
		out = append(out, flatten(p)...)
	}
	return out
}

// mentions reports whether s names the variable v as a whole word
// (ROBIN_API_KEY is not named by ROBIN_API_KEY_FILE).
func mentions(s, v string) bool {
	word := func(r byte) bool { return r == '_' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' }
	for i := 0; ; {
		k := strings.Index(s[i:], v)
		if k < 0 {
			return false
		}
		at, end := i+k, i+k+len(v)
		if (at == 0 || !word(s[at-1])) && (end == len(s) || !word(s[end])) {
			return true
		}
		i = at + 1
	}
}

// logEnvWarnings logs the variables that look like the bridge's but are
// not read by it, once at start.
func logEnvWarnings(log *slog.Logger, warnings []string) {
	for _, w := range warnings {
		log.Warn("environment variable not read", "problem", w)
	}
}
