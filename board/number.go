package board

import (
	"regexp"
	"strings"

	"github.com/nyaruka/phonenumbers"
)

// maskPrefix stands for the digits BOARD_MASK_NUMBERS hides.
const maskPrefix = "•••• "

// numbers formats the numbers the board shows and, with masking on, hides
// all but their last four digits. Formatting goes through phonenumbers,
// which is slow next to everything else the board does, so answers are
// cached; the cache is dropped whole when it grows past maxCached.
type numbers struct {
	region string // PHONE_REGION: its numbers are shown in national format
	mask   bool
	cache  map[string]string
}

const maxCached = 4096

func newNumbers(region string, mask bool) *numbers {
	return &numbers{region: strings.ToUpper(region), mask: mask, cache: map[string]string{}}
}

// show returns a customer's number n as the board shows it: formatted for
// reading (national format for numbers of the phone region, international
// otherwise), or masked. Text that is no E.164 number (an extension,
// "anonymous", a raw string the tracker could not read) is shown as it is,
// masked the same way. Not safe for concurrent use: the board calls it
// under its lock.
func (f *numbers) show(n string) string {
	if f.mask {
		return f.cached("m", n, maskDigits)
	}
	return f.cached("f", n, f.format)
}

// company returns a company number (a DID) formatted for reading; those
// are not personal data and are never masked.
func (f *numbers) company(n string) string { return f.cached("f", n, f.format) }

func (f *numbers) cached(kind, n string, render func(string) string) string {
	if n == "" {
		return ""
	}
	k := kind + n
	if s, ok := f.cache[k]; ok {
		return s
	}
	s := render(n)
	if len(f.cache) >= maxCached {
		clear(f.cache)
	}
	f.cache[k] = s
	return s
}

func (f *numbers) format(n string) string {
	if !strings.HasPrefix(n, "+") {
		return n
	}
	num, err := phonenumbers.Parse(n, "")
	if err != nil || !phonenumbers.IsValidNumber(num) {
		return n
	}
	if phonenumbers.GetRegionCodeForNumber(num) == f.region {
		return phonenumbers.Format(num, phonenumbers.NATIONAL)
	}
	return phonenumbers.Format(num, phonenumbers.INTERNATIONAL)
}

// e164 returns n for the board's E.164 column: "" when masking (the number
// must not reach the browser) or when n is no E.164 number.
func (f *numbers) e164(n string) string {
	if f.mask || !strings.HasPrefix(n, "+") {
		return ""
	}
	return n
}

// maskDigits keeps the last four digits of n. Numbers of four digits or
// fewer (extensions) and text without digits ("anonymous") stay as they are.
func maskDigits(n string) string {
	digits := 0
	for i := 0; i < len(n); i++ {
		if n[i] >= '0' && n[i] <= '9' {
			digits++
		}
	}
	if digits <= 4 {
		return n
	}
	last := make([]byte, 0, 4)
	for i := len(n) - 1; i >= 0 && len(last) < 4; i-- {
		if n[i] >= '0' && n[i] <= '9' {
			last = append(last, n[i])
		}
	}
	return maskPrefix + string([]byte{last[3], last[2], last[1], last[0]})
}

// digitRun finds what may be a phone number inside free text: a digit, then
// digits and the separators people and PBXs write, then a digit.
var digitRun = regexp.MustCompile(`\+?\d[\d \-.()/]{5,}\d`)

// scrub masks every run of seven digits or more in free text (a helpdesk's
// answer, an error), which may quote a caller's number, when masking is on.
func (f *numbers) scrub(text string) string {
	if !f.mask || text == "" {
		return text
	}
	return digitRun.ReplaceAllStringFunc(text, func(run string) string {
		d := 0
		for i := 0; i < len(run); i++ {
			if run[i] >= '0' && run[i] <= '9' {
				d++
			}
		}
		if d < 7 {
			return run
		}
		return maskDigits(run)
	})
}

// scrubNumber masks occurrences of the digits of number (E.164) in an
// identifier such as a PBX call id, which some PBXs build from the
// caller's number, when masking is on.
func (f *numbers) scrubNumber(text, number string) string {
	if !f.mask || text == "" {
		return text
	}
	digits := strings.TrimPrefix(number, "+")
	if len(digits) < 7 || strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }) >= 0 {
		return text
	}
	tail := digits[len(digits)-7:]
	if !strings.Contains(text, tail) {
		return text
	}
	// The call id may hold the number in E.164 digits or in national form
	// (a trunk prefix 0 and the national significant number).
	forms := []string{digits}
	if num, err := phonenumbers.Parse(number, ""); err == nil {
		if nsn := phonenumbers.GetNationalSignificantNumber(num); len(nsn) >= 7 {
			forms = append(forms, nsn)
		}
	}
	for _, d := range forms {
		text = strings.ReplaceAll(text, d, maskDigits(d))
	}
	// Whatever other form it was written in, its last seven digits go.
	text = strings.ReplaceAll(text, tail, "•••"+tail[3:])
	return text
}
