package presence

import (
	"net/url"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/voipbridge/voipbridge/phone"
)

// FuzzParseQuery: the allocation-free query reader agrees with
// url.ParseQuery on every query it accepts, and accepts every query
// url.ParseQuery accepts that has at most maxQueryParams parameters.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{
		"channel=Chat", "channel=Chat&referrer=%2B31858770023", "Channel=chat&channel=SMS", "channel=a+b&format=json",
		"referrer=x;y", "channel=%zz", "=&&channel=", "channel=Chat&channel=SMS&Channel=Email", "a=%41&channel=%43hat",
		strings.Repeat("x=1&", 40),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := parseQuery(raw)
		vals, uerr := url.ParseQuery(raw)
		if err == nil {
			if uerr != nil {
				t.Fatalf("parseQuery(%q) accepted what url.ParseQuery rejects: %v", raw, uerr)
			}
			ch := vals.Get("channel")
			if _, ok := vals["channel"]; !ok {
				ch = vals.Get("Channel")
			}
			if p.channel != ch || p.referrer != vals.Get("referrer") || p.format != vals.Get("format") {
				t.Fatalf("parseQuery(%q) = %+v; url.ParseQuery = %v", raw, p, vals)
			}
			return
		}
		if uerr == nil && strings.Count(raw, "&") < maxQueryParams {
			t.Fatalf("parseQuery(%q) rejected what url.ParseQuery accepts: %v", raw, err)
		}
	})
}

// FuzzKey: any channel and referrer either are refused or give a key whose
// channel is a canonical name and whose referrer is clean; normalising a key
// again gives the same key (so a look-up and a warm key of the same thing
// share one cache entry).
func FuzzKey(f *testing.F) {
	for _, s := range [][2]string{
		{"chat", ""}, {"WhatsApp", "085 877 0023"}, {"facebook_messenger", "+31858770023"}, {"SMS", "shop.example.com"},
		{"Chat", "0031 6 1234 5678"}, {"Chat", "+1"}, {"Chat", "1234"}, {"email", "(085) 877-0023"}, {"Chat", "\xff"},
		{"Chat", "+31+31"}, {"Web Chat", "0612345678@shop.example"},
	} {
		f.Add(s[0], s[1])
	}
	numbers, err := phone.New(phone.Options{Region: "NL"})
	if err != nil {
		f.Fatal(err)
	}
	c, err := New(Options{Asker: askerFunc(nil), Numbers: numbers, Config: Config{ExtraChannels: []string{"RCS"}}})
	if err != nil {
		f.Fatal(err)
	}
	names := c.Channels()
	f.Fuzz(func(t *testing.T, channel, referrer string) {
		k, err := c.key(channel, referrer)
		if err != nil {
			return
		}
		if !slices.Contains(names, k.Channel) {
			t.Fatalf("key(%q, %q) channel %q is not a canonical name", channel, referrer, k.Channel)
		}
		if !utf8.ValidString(k.Referrer) || len(k.Referrer) > maxReferrerLen || strings.TrimSpace(k.Referrer) != k.Referrer {
			t.Fatalf("key(%q, %q) referrer %q is not clean", channel, referrer, k.Referrer)
		}
		again, err := c.key(k.Channel, k.Referrer)
		if err != nil || again != k {
			t.Fatalf("key(%q, %q) = %v, but key of that = %v, %v", channel, referrer, k, again, err)
		}
	})
}

// FuzzParseWarm: PRESENCE_WARM never panics, and what it accepts it
// accepts again when written back in its own syntax.
func FuzzParseWarm(f *testing.F) {
	for _, s := range []string{"Chat,WhatsApp|+31858770023;Email|shop.example.com;Chat", "", ";;", "a|b|c", "Chat,,x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		keys, err := ParseWarm(s)
		if err != nil {
			return
		}
		var groups []string
		for _, k := range keys {
			groups = append(groups, k.String())
		}
		again, err := ParseWarm(strings.Join(groups, ";"))
		if err != nil || !slices.Equal(again, keys) {
			t.Fatalf("ParseWarm(%q) = %v; written back and parsed: %v, %v", s, keys, again, err)
		}
	})
}

// FuzzWantsJSON: any Accept header is read without panicking, JSON is
// chosen only when the header names application/json or application/*, and
// a header that prefers JSON still does with text/plain;q=0 appended.
func FuzzWantsJSON(f *testing.F) {
	for _, s := range []string{"application/json", "text/plain;q=0.5, application/json", "*/*;q=", ";;,,;q=2", "application/*;q=0.3"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, accept string) {
		if !wantsJSON(accept) {
			return
		}
		low := strings.ToLower(accept)
		if !strings.Contains(low, "application/json") && !strings.Contains(low, "application/*") {
			t.Fatalf("wantsJSON(%q) chose JSON without application/json or application/*", accept)
		}
		if !wantsJSON(accept + ", text/plain;q=0") {
			t.Fatalf("wantsJSON(%q) but not with text/plain;q=0 appended", accept)
		}
	})
}
