package presence

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults of Config, as the environment variables document them.
const (
	DefaultTTL         = 15 * time.Second
	DefaultNegativeTTL = time.Minute
	DefaultStaleMax    = 10 * time.Minute
	DefaultTimeout     = 2 * time.Second
)

// Bounds of Config's durations and of the warm list.
const (
	minTTL      = time.Second
	maxTTL      = 24 * time.Hour
	maxStaleMax = 7 * 24 * time.Hour
	minTimeout  = 10 * time.Millisecond
	maxTimeout  = time.Minute
	maxWarmKeys = 64
)

// Fallback is what a look-up answers when ROBIN gave no usable answer and no
// earlier answer is recent enough to serve stale (PRESENCE_FALLBACK).
type Fallback int

// The fallback policies.
const (
	// FallbackError answers 503 with a message saying why presence is
	// unknown. It is the default: a call flow should not offer a chat that
	// nobody answers, nor hide one that somebody would.
	FallbackError Fallback = iota
	// FallbackOnline answers Online, marked as a fallback.
	FallbackOnline
	// FallbackOffline answers Offline, marked as a fallback.
	FallbackOffline
)

// ParseFallback reads "error", "Online" or "Offline", in any case.
func ParseFallback(s string) (Fallback, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "error", "":
		return FallbackError, nil
	case "online":
		return FallbackOnline, nil
	case "offline":
		return FallbackOffline, nil
	}
	return FallbackError, fmt.Errorf("PRESENCE_FALLBACK %q: want Online, Offline or error", s)
}

// String returns "error", "Online" or "Offline".
func (f Fallback) String() string {
	switch f {
	case FallbackOnline:
		return "Online"
	case FallbackOffline:
		return "Offline"
	}
	return "error"
}

// Key is what the cache keeps one answer for: a channel in its canonical
// spelling and a referrer ("" for the subscription as a whole), a phone
// number in E.164.
type Key struct {
	Channel  string
	Referrer string
}

// String returns "Channel" or "Channel|referrer", the PRESENCE_WARM syntax.
func (k Key) String() string {
	if k.Referrer == "" {
		return k.Channel
	}
	return k.Channel + "|" + k.Referrer
}

// ParseWarm reads PRESENCE_WARM: groups separated by ';', each a
// comma-separated list of channels optionally followed by '|' and one
// referrer, for example "Chat,WhatsApp|+31858770023;Email|shop.example.com;Chat"
// (Chat and WhatsApp for +31858770023, Email for shop.example.com, Chat for
// the subscription as a whole). White space around names is ignored, empty
// groups are skipped, and a referrer cannot contain ';' or '|'. The keys come
// back as written, in order, without duplicates; New checks the channels and
// normalises the referrers the way look-ups do.
func ParseWarm(s string) ([]Key, error) {
	var keys []Key
	seen := map[Key]bool{}
	for group := range strings.SplitSeq(s, ";") {
		group = strings.TrimSpace(group)
		if group == "" {
			continue
		}
		chans, ref, _ := strings.Cut(group, "|")
		ref = strings.TrimSpace(ref)
		if strings.Contains(ref, "|") {
			return nil, fmt.Errorf("PRESENCE_WARM group %q: more than one '|'; separate groups with ';'", group)
		}
		for ch := range strings.SplitSeq(chans, ",") {
			ch = strings.TrimSpace(ch)
			if ch == "" {
				return nil, fmt.Errorf("PRESENCE_WARM group %q: empty channel name", group)
			}
			k := Key{Channel: ch, Referrer: ref}
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	if len(keys) > maxWarmKeys {
		return nil, fmt.Errorf("PRESENCE_WARM names %d keys; at most %d are supported", len(keys), maxWarmKeys)
	}
	return keys, nil
}

// Config is the cache's policy. Zero TTL, NegativeTTL and Timeout take the
// defaults; a zero StaleMax means stale answers are never served.
type Config struct {
	// TTL is how long an answer is served without asking ROBIN again, and
	// how long a key is not asked again after a failed request
	// (PRESENCE_TTL, default 15s, 1s to 24h).
	TTL time.Duration
	// NegativeTTL is how long ROBIN's "not found" (400 or 404) for a key is
	// kept (PRESENCE_NEGATIVE_TTL, default 1m, 1s to 24h).
	NegativeTTL time.Duration
	// StaleMax is how long after ROBIN gave an answer it may still be served,
	// marked stale, while ROBIN cannot be asked (PRESENCE_STALE_MAX, default
	// 10m; 0 disables stale answers; otherwise at least TTL and at most 7
	// days).
	StaleMax time.Duration
	// Timeout is the longest a look-up waits for quota and ROBIN together
	// (PRESENCE_TIMEOUT, default 2s, 10ms to 1m).
	Timeout time.Duration
	// Fallback is the answer when nothing usable is known
	// (PRESENCE_FALLBACK, default error).
	Fallback Fallback
	// ExtraChannels are channels ROBIN knows beyond the documented ones
	// (PRESENCE_EXTRA_CHANNELS).
	ExtraChannels []string
	// Warm are the keys kept fresh in the background (PRESENCE_WARM, see
	// ParseWarm).
	Warm []Key
}

func (c Config) withDefaults() Config {
	if c.TTL == 0 {
		c.TTL = DefaultTTL
	}
	if c.NegativeTTL == 0 {
		c.NegativeTTL = DefaultNegativeTTL
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	return c
}

// Validate reports every problem with c (after defaults), each naming its
// environment variable; nil means New accepts it. It checks the warm keys'
// channels against the documented and extra channels.
func (c Config) Validate() error {
	_, err := c.validate()
	return err
}

func (c Config) validate() (*Channels, error) {
	c = c.withDefaults()
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.TTL < minTTL || c.TTL > maxTTL {
		bad("PRESENCE_TTL %s: want %s to %s", c.TTL, minTTL, maxTTL)
	}
	if c.NegativeTTL < minTTL || c.NegativeTTL > maxTTL {
		bad("PRESENCE_NEGATIVE_TTL %s: want %s to %s", c.NegativeTTL, minTTL, maxTTL)
	}
	if c.StaleMax != 0 && (c.StaleMax < c.TTL || c.StaleMax > maxStaleMax) {
		bad("PRESENCE_STALE_MAX %s: want 0 (never serve stale answers) or from PRESENCE_TTL (%s) to %s", c.StaleMax, c.TTL, maxStaleMax)
	}
	if c.Timeout < minTimeout || c.Timeout > maxTimeout {
		bad("PRESENCE_TIMEOUT %s: want %s to %s", c.Timeout, minTimeout, maxTimeout)
	}
	switch c.Fallback {
	case FallbackError, FallbackOnline, FallbackOffline:
	default:
		bad("PRESENCE_FALLBACK %d: want Online, Offline or error", int(c.Fallback))
	}
	chans, err := NewChannels(c.ExtraChannels)
	if err != nil {
		errs = append(errs, err)
	}
	if len(c.Warm) > maxWarmKeys {
		bad("PRESENCE_WARM names %d keys; at most %d are supported", len(c.Warm), maxWarmKeys)
	}
	if chans != nil {
		for _, k := range c.Warm {
			if _, ok := chans.Canonical(k.Channel); !ok {
				bad("PRESENCE_WARM: unknown channel %q; want one of %s", k.Channel, strings.Join(chans.Names(), ", "))
			}
			if err := checkReferrer(k.Referrer); err != nil {
				bad("PRESENCE_WARM: %v", err)
			}
		}
	}
	return chans, errors.Join(errs...)
}
