package presence

import (
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/voipbridge/voipbridge/phone"
)

// Numbers normalises phone numbers; *phone.Normalizer satisfies it.
type Numbers interface {
	Normalize(raw string) phone.Number
}

// maxReferrerLen bounds a referrer: ROBIN's referrers are URLs, e-mail
// addresses, phone numbers and bot variables, none of them long.
const maxReferrerLen = 512

// maxMemo bounds the memo of normalised phone-number referrers; when it is
// full it starts again empty.
const maxMemo = 4096

// checkReferrer accepts valid UTF-8 of at most maxReferrerLen bytes without
// control characters.
func checkReferrer(s string) error {
	if len(s) > maxReferrerLen {
		return fmt.Errorf("referrer is longer than %d bytes", maxReferrerLen)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("referrer is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("referrer contains the control character %q", r)
		}
	}
	return nil
}

// referrers turns a look-up's referrer into the one sent to ROBIN: trimmed,
// and a phone number in E.164, so that "085 877 0023", "0858770023" and
// "+31858770023" share one cache entry and one request. Normalising is
// costly next to a cache hit, so results are memoised.
type referrers struct {
	numbers Numbers

	mu   sync.RWMutex
	memo map[string]string
}

func newReferrers(n Numbers) *referrers {
	return &referrers{numbers: n, memo: map[string]string{}}
}

// normalize returns the referrer to ask ROBIN for, or an error naming what
// is wrong with it.
func (r *referrers) normalize(raw string) (string, error) {
	s := strings.TrimSpace(raw)
	if err := checkReferrer(s); err != nil {
		return "", err
	}
	if r.numbers == nil || !numberLike(s) {
		// A web shop's domain, an e-mail address or a bot variable goes to
		// ROBIN as it is.
		return s, nil
	}
	r.mu.RLock()
	n, ok := r.memo[s]
	r.mu.RUnlock()
	if ok {
		return n, nil
	}
	n = s
	if num := r.numbers.Normalize(s); num.Kind == phone.External {
		n = num.E164
	}
	r.mu.Lock()
	if len(r.memo) >= maxMemo {
		clear(r.memo)
	}
	r.memo[s] = n
	r.mu.Unlock()
	return n, nil
}

// numberLike reports whether s is written like a phone number: digits with
// at most the separators people write and a leading +. Anything else (a
// domain, an e-mail address, a SIP URI) is not normalised, so that a
// referrer such as "0612345678@shop.example" keeps its meaning.
func numberLike(s string) bool {
	digits := 0
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= '0' && c <= '9':
			digits++
		case c == '+' && i == 0:
		case c == ' ', c == '-', c == '.', c == '(', c == ')', c == '/':
		default:
			return false
		}
	}
	return digits > 0
}
