package presence

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// DocumentedChannels are the channel names ROBIN's presence endpoint
// documents, in their canonical spelling (the spelling sent to ROBIN).
var DocumentedChannels = []string{
	"Email", "Chat", "WhatsApp", "SMS", "WebChat", "Facebook Messenger",
	"Instagram", "Apple Business Chat", "Twitter",
}

// maxChannelLen bounds a channel name, documented or extra.
const maxChannelLen = 64

// Channels is the set of channel names a look-up may ask for: the documented
// ones and the configured extras. Names match regardless of case, spaces,
// hyphens and underscores ("whatsapp", "facebook_messenger",
// "Apple-Business-Chat"), which IVR URLs cannot always spell otherwise. It is
// immutable and safe for concurrent use.
type Channels struct {
	exact map[string]string // canonical spelling → itself
	fold  map[string]string // folded spelling → canonical
	names []string
}

// NewChannels returns the documented channels plus extra
// (PRESENCE_EXTRA_CHANNELS). An extra name must be 1 to 64 printable
// characters without ',', ';' or '|', and must not fold to the same name as
// another channel; blank entries are ignored. Errors name the entry.
func NewChannels(extra []string) (*Channels, error) {
	c := &Channels{exact: map[string]string{}, fold: map[string]string{}}
	add := func(name string) error {
		f := foldChannel(name)
		if f == "" {
			return fmt.Errorf("PRESENCE_EXTRA_CHANNELS: %q has no letters or digits", name)
		}
		if prev, dup := c.fold[f]; dup {
			return fmt.Errorf("PRESENCE_EXTRA_CHANNELS: %q is the same channel as %q", name, prev)
		}
		c.fold[f] = name
		c.exact[name] = name
		c.names = append(c.names, name)
		return nil
	}
	for _, n := range DocumentedChannels {
		if err := add(n); err != nil {
			return nil, err
		}
	}
	for _, raw := range extra {
		n := strings.TrimSpace(raw)
		if n == "" {
			continue
		}
		if err := checkChannelName(n); err != nil {
			return nil, err
		}
		if err := add(n); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func checkChannelName(n string) error {
	if len(n) > maxChannelLen {
		return fmt.Errorf("PRESENCE_EXTRA_CHANNELS: %q is longer than %d bytes", n, maxChannelLen)
	}
	if !utf8.ValidString(n) {
		return fmt.Errorf("PRESENCE_EXTRA_CHANNELS: %q is not valid UTF-8", n)
	}
	for _, r := range n {
		if !unicode.IsPrint(r) || strings.ContainsRune(",;|", r) {
			return fmt.Errorf("PRESENCE_EXTRA_CHANNELS: %q contains %q; want printable characters other than , ; |", n, r)
		}
	}
	return nil
}

// foldChannel is the spelling channel names are matched by: lower case,
// without spaces, hyphens and underscores.
func foldChannel(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		switch {
		case r == ' ', r == '-', r == '_', r == '\t':
		default:
			b.WriteRune(unicode.ToLower(r))
		}
	}
	return b.String()
}

// Canonical returns the canonical spelling of name and true, or "" and false
// when name is not one of the channels.
func (c *Channels) Canonical(name string) (string, bool) {
	if n, ok := c.exact[name]; ok {
		return n, true
	}
	if len(name) > 2*maxChannelLen {
		return "", false
	}
	n, ok := c.fold[foldChannel(name)]
	return n, ok
}

// Names returns the channels in their canonical spelling: the documented
// ones first, then the extras in the order configured.
func (c *Channels) Names() []string { return append([]string(nil), c.names...) }
