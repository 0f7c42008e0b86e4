// Package phone turns the caller and callee numbers a PBX reports into E.164,
// on top of github.com/nyaruka/phonenumbers.
//
// Sources keep numbers raw; the tracker calls [Normalizer.Normalize] once per
// number and gets a [Number] with a [Kind]. The rules are applied in this order,
// and the first one that decides wins:
//
//  1. URI user part. SIP, SIPS and tel URIs, name-addrs ("Name" <sip:…>) and
//     bare user@host identities are reduced to their user part: URI parameters
//     (;user=phone, ;ext=…), headers (?x=y), passwords and the host are dropped
//     and %XX escapes decoded ([UserPart]).
//  2. Anonymous words. An empty user part, one of anonymous, unknown,
//     restricted, private, withheld or unavailable (any case), or the host
//     anonymous.invalid (RFC 3323 §4.1.1.3) is [Anonymous]: no number at all,
//     never "+anonymous".
//  3. Cleaning. Visual separators (space, tab, - . / ( ) [ ]) are removed. What
//     is left must be ASCII digits with at most one leading +; anything else
//     (letters, *, #, a + in the middle) is [Invalid] and keeps the trimmed text.
//     Letters are never read as a vanity number: a PBX's caller id is not one.
//  4. Internal short numbers. A number without + of at most
//     Options.InternalMaxDigits digits is an agent's extension: [Internal].
//     Emergency numbers of the region (112, 911 in NL) are checked first: they
//     are neither agents nor customers, so they are [Invalid] with their digits.
//  5. Outside-line prefix. When Options.OutsideLinePrefix is set and a number
//     without + starts with it, the prefix is stripped only if the rest (read by
//     rules 6 and 7) is a valid number; otherwise the number is read whole.
//  6. Parse with the region. The number is parsed with Options.Region, which
//     understands the national trunk prefix (0612345678) and the region's
//     international prefix (0031…, 0049…). It is [External] only if
//     phonenumbers says the result is a valid number.
//  7. Country code without plus. A number without + whose national reading is
//     invalid is read once more as if it had one (31612345678 → +31612345678).
//     A number whose national reading is valid is never reread.
//
// Everything else is [Invalid], with the cleaned digits (and a leading + if
// there was one) so that the caller can log it; it is not dropped.
package phone
