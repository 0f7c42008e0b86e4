package phone

import (
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/nyaruka/phonenumbers"
)

// normalizers builds one Normalizer per Options for a test and fails it when
// New does.
func normalizers(t testing.TB) func(Options) *Normalizer {
	cache := map[Options]*Normalizer{}
	return func(o Options) *Normalizer {
		if n, ok := cache[o]; ok {
			return n
		}
		n, err := New(o)
		if err != nil {
			t.Fatalf("New(%+v): %v", o, err)
		}
		cache[o] = n
		return n
	}
}

var (
	nl  = Options{}
	nl0 = Options{OutsideLinePrefix: "0"}
	nl9 = Options{OutsideLinePrefix: "9"}
	de  = Options{Region: "DE"}
	gb  = Options{Region: "gb"}
)

func TestNormalize(t *testing.T) {
	long := strings.Repeat("7", 200)
	tests := []struct {
		opts Options
		raw  string
		kind Kind
		e164 string
	}{
		// NL numbers in every spelling the sources use (pbx-sources §7).
		{nl, "+31 6 1234 5678", External, "+31612345678"},
		{nl, "+31612345678", External, "+31612345678"},
		{nl, "0612345678", External, "+31612345678"},
		{nl, "06-12345678", External, "+31612345678"},
		{nl, "0031612345678", External, "+31612345678"},
		{nl, "(020) 123 4567", External, "+31201234567"},
		{nl, "020-1234567", External, "+31201234567"},
		{nl, "020/123.45.67", External, "+31201234567"},
		{nl, "0031201234567", External, "+31201234567"},
		{nl, "  0612345678\t", External, "+31612345678"},
		{nl, "0800-1234", External, "+318001234"},            // toll free
		{nl, "0900-1234567", External, "+319001234567"},      // premium rate
		{nl, "612345678", External, "+31612345678"},          // national, trunk prefix left out
		{nl, "0201234567;ext=201", External, "+31201234567"}, // tel parameters without the scheme

		// No plus: a country code only when the national reading is invalid.
		{nl, "31612345678", External, "+31612345678"},
		{nl, "31201234567", External, "+31201234567"},
		{nl, "492111234567", External, "+492111234567"}, // sipgate, pbx-sources §7
		{nl, "381629759787", External, "+381629759787"}, // 3CX add-on, pbx-sources §7
		{nl, "201234567", External, "+31201234567"},     // national reading valid: not +20…

		// URIs and name-addrs.
		{nl, "sip:0612345678@pbx.example;user=phone", External, "+31612345678"},
		{nl, `"Name" <sip:+31612345678@pbx>`, External, "+31612345678"},
		{nl, `"Name" <sip:+31612345678@pbx>;tag=a6c85cf`, External, "+31612345678"},
		{nl, `Name <sip:+31612345678@pbx:5060;transport=tcp>`, External, "+31612345678"},
		{nl, `"A <b> \"c\"" <sip:0612345678@pbx>`, External, "+31612345678"},
		{nl, "<sip:+31612345678@pbx>", External, "+31612345678"},
		{nl, "tel:+31-6-1234-5678", External, "+31612345678"},
		{nl, "TEL:+31-20-1234567;ext=201", External, "+31201234567"},
		{nl, "sips:+31612345678@pbx.example", External, "+31612345678"},
		{nl, "SIP:0612345678@PBX", External, "+31612345678"},
		{nl, "sip:+31612345678@pbx?subject=hi&priority=urgent", External, "+31612345678"},
		{nl, "sip:0612345678;user=phone", External, "+31612345678"},
		{nl, "sip:+31201234567;ext=201@pbx;user=phone", External, "+31201234567"},
		{nl, "sip:0612345678:secret@pbx", External, "+31612345678"},
		{nl, "sip:%2B31612345678@pbx", External, "+31612345678"},
		{nl, "0612345678@pbx.example", External, "+31612345678"},
		{nl, `"+31612345678"`, External, "+31612345678"}, // 3CX party_caller_name

		// Outside-line prefix: stripped only where the rest is valid.
		{nl9, "90612345678", External, "+31612345678"},
		{nl9, "9 0031612345678", External, "+31612345678"},
		{nl9, "931612345678", External, "+31612345678"},
		{nl9, "905321234567", External, "+905321234567"}, // 05321234567 is not valid: Turkey, whole
		{nl9, "0612345678", External, "+31612345678"},    // no prefix sent
		{nl9, "+31612345678", External, "+31612345678"},  // never stripped after +
		{nl9, "9123456", Invalid, "9123456"},             // neither reading valid: kept whole
		{nl9, "912", Internal, "912"},                    // short: an extension, prefix or not
		{nl, "90612345678", Invalid, "90612345678"},      // same number, no prefix configured
		{nl0, "00612345678", External, "+31612345678"},
		{nl0, "0031612345678", External, "+31612345678"}, // 031612345678 invalid: not stripped
		{nl0, "00031612345678", External, "+31612345678"},
		{nl0, "0049301234567", External, "+49301234567"},
		{nl0, "0612345678", External, "+31612345678"},
		{nl0, "00493012345", External, "+31493012345"}, // both readings valid: the prefix wins
		{nl, "00493012345", External, "+493012345"},    // the same without a prefix

		// Anonymous.
		{nl, "", Anonymous, ""},
		{nl, "   ", Anonymous, ""},
		{nl, "anonymous", Anonymous, ""},
		{nl, "Anonymous", Anonymous, ""},
		{nl, "ANONYMOUS", Anonymous, ""},
		{nl, "unknown", Anonymous, ""},
		{nl, "<unknown>", Anonymous, ""},
		{nl, "restricted", Anonymous, ""},
		{nl, "private", Anonymous, ""},
		{nl, "Withheld", Anonymous, ""},
		{nl, "unavailable", Anonymous, ""},
		{nl, "sip:anonymous@anonymous.invalid", Anonymous, ""},
		{nl, `"Anonymous" <sip:anonymous@anonymous.invalid>;tag=1`, Anonymous, ""},
		{nl, "sip:unknown@pbx.example", Anonymous, ""},
		{nl, "sip:123@anonymous.invalid", Anonymous, ""},
		{nl, "sip:@pbx", Anonymous, ""},
		{nl, "<>", Anonymous, ""},
		{nl, "tel:", Anonymous, ""},
		{nl, `""`, Anonymous, ""},

		// Internal extensions.
		{nl, "201", Internal, "201"},
		{nl, "1001", Internal, "1001"},
		{nl, "10007", Internal, "10007"}, // 3CX trunk DN
		{nl, "123456", Internal, "123456"},
		{nl, "sip:201@pbx", Internal, "201"},
		{nl, `"Reception" <sip:201@10.0.0.1:5060>;tag=x`, Internal, "201"},
		{nl, "tel:201;phone-context=pbx.example", Internal, "201"},
		{nl, "2-01", Internal, "201"},
		{nl, "999", Internal, "999"}, // an emergency number in GB, not in NL
		{Options{InternalMaxDigits: 3}, "1001", Invalid, "1001"},
		{Options{InternalMaxDigits: 3}, "101", Internal, "101"},
		{Options{InternalMaxDigits: 7}, "1234567", Internal, "1234567"},

		// Emergency numbers: neither agent nor customer.
		{nl, "112", Invalid, "112"},
		{nl, "911", Invalid, "911"},
		{nl, "sip:112@pbx", Invalid, "112"},
		{gb, "999", Invalid, "999"},
		{de, "110", Invalid, "110"},

		// Other countries, with 00 and +.
		{nl, "+49 30 12345678", External, "+493012345678"},
		{nl, "0049 30 12345678", External, "+493012345678"},
		{nl, "004930123456", External, "+4930123456"},
		{nl, "+49 151 23456789", External, "+4915123456789"},
		{nl, "+32 2 234 56 78", External, "+3222345678"},
		{nl, "0032 2 234 56 78", External, "+3222345678"},
		{nl, "0032 470 12 34 56", External, "+32470123456"},
		{nl, "+44 20 7946 0958", External, "+442079460958"},
		{nl, "0044 7400 123456", External, "+447400123456"},
		{nl, "+44 121 234 5678", External, "+441212345678"},

		// Other regions.
		{de, "030 12345678", External, "+493012345678"},
		{de, "0151 23456789", External, "+4915123456789"},
		{de, "0031612345678", External, "+31612345678"},
		{de, "+31612345678", External, "+31612345678"},
		{gb, "020 7946 0958", External, "+442079460958"},
		{gb, "07400 123456", External, "+447400123456"},

		// Invalid numbers keep their cleaned digits.
		{nl, "112233445566778899", Invalid, "112233445566778899"},
		{nl, "+31112", Invalid, "+31112"},
		{nl, "+201", Invalid, "+201"},
		{nl, "+49123456789", Invalid, "+49123456789"},
		{nl, "1234567", Invalid, "1234567"},
		{nl, "+31 6 1234", Invalid, "+3161234"},
		{nl, "0031", Internal, "0031"}, // short, so an extension by rule 4
		{nl, long, Invalid, long[:64]},
		{nl, "+" + long, Invalid, "+" + long[:63]},

		// Text that is no number: trimmed, kept, never read as a vanity number.
		{nl, "bob", Invalid, "bob"},
		{nl, "  Alice Smith ", Invalid, "Alice Smith"},
		{nl, "sip:bob@pbx.example", Invalid, "bob"},
		{nl, "7777abcdefg@fpbx.de", Invalid, "7777abcdefg"}, // Placetel SIP id
		{nl, "0800-FLOWERS", Invalid, "0800-FLOWERS"},
		{nl, "+31 20 123 4567 ext. 201", Invalid, "+31 20 123 4567 ext. 201"},
		{nl, "*31#0612345678", Invalid, "*31#0612345678"},
		{nl, "06+12345678", Invalid, "06+12345678"},
		{nl, "++31612345678", Invalid, "++31612345678"},
		{nl, "+", Invalid, "+"},
		{nl, "---", Invalid, "---"},
		{nl, "sip:pbx.example.com", Invalid, "pbx.example.com"},
		{nl, "sip:%00@pbx", Invalid, "\uFFFD"},
		{nl, "a\x00b\nc", Invalid, "a\uFFFDb c"},
		{nl, "\xff\xfe", Invalid, "\uFFFD\uFFFD"},
		{nl, "٠٦١٢٣٤٥٦٧٨", Invalid, "٠٦١٢٣٤٥٦٧٨"}, // Arabic-Indic digits: PBXs send ASCII
		{nl, strings.Repeat("é", 100), Invalid, strings.Repeat("é", 64)},
	}

	get := normalizers(t)
	for _, tt := range tests {
		got := get(tt.opts).Normalize(tt.raw)
		want := Number{Raw: tt.raw, E164: tt.e164, Kind: tt.kind}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Options%+v Normalize(%q) (-want +got):\n%s", tt.opts, tt.raw, diff)
		}
	}
}

func TestUserPart(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"sip:0612345678@pbx.example;user=phone", "0612345678"},
		{`"Name" <sip:+31612345678@pbx>`, "+31612345678"},
		{`"Name" <sip:+31612345678@pbx>;tag=1`, "+31612345678"},
		{`"Na<me>" <sips:201@pbx>`, "201"},
		{`"unterminated <sip:201@pbx>`, "201"},
		{`"+31612345678`, "+31612345678"},
		{"<sip:201@pbx", "201"},
		{"tel:+31-6-1234-5678", "+31-6-1234-5678"},
		{"tel:+31-6-1234-5678;ext=201", "+31-6-1234-5678"},
		{"sip:alice:secret@pbx", "alice"},
		{"sip:+31612345678@pbx?x=y", "+31612345678"},
		{"sip:%2B31612345678@pbx", "+31612345678"},
		{"sip:%zz@pbx", "%zz"},
		{"sip:anonymous@anonymous.invalid", "anonymous"},
		{"7777abcdefg@fpbx.de", "7777abcdefg"},
		{"<unknown>", "unknown"},
		{"  +31 6 1234 5678  ", "+31 6 1234 5678"},
		{"0612345678", "0612345678"},
		{"mailto:bob", "mailto:bob"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := UserPart(tt.raw); got != tt.want {
			t.Errorf("UserPart(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		opts    Options
		ok      bool
		region  string
		prefix  string
		maxDigs int
	}{
		{Options{}, true, "NL", "", 6},
		{Options{Region: "nl"}, true, "NL", "", 6},
		{Options{Region: " be "}, true, "BE", "", 6},
		{Options{Region: "DE", OutsideLinePrefix: "9", InternalMaxDigits: 4}, true, "DE", "9", 4},
		{Options{OutsideLinePrefix: "00"}, true, "NL", "00", 6},
		{Options{InternalMaxDigits: 15}, true, "NL", "", 15},
		{Options{Region: "XX"}, false, "", "", 0},
		{Options{Region: "ZZ"}, false, "", "", 0},
		{Options{Region: "001"}, false, "", "", 0},
		{Options{Region: "NLD"}, false, "", "", 0},
		{Options{Region: "Netherlands"}, false, "", "", 0},
		{Options{OutsideLinePrefix: "+"}, false, "", "", 0},
		{Options{OutsideLinePrefix: "9a"}, false, "", "", 0},
		{Options{OutsideLinePrefix: "*9"}, false, "", "", 0},
		{Options{OutsideLinePrefix: "٩"}, false, "", "", 0},
		{Options{OutsideLinePrefix: "12345"}, false, "", "", 0},
		{Options{InternalMaxDigits: -1}, false, "", "", 0},
		{Options{InternalMaxDigits: 16}, false, "", "", 0},
	}
	for _, tt := range tests {
		n, err := New(tt.opts)
		if !tt.ok {
			if err == nil {
				t.Errorf("New(%+v) = %+v, want an error", tt.opts, *n)
			}
			continue
		}
		if err != nil {
			t.Errorf("New(%+v): %v", tt.opts, err)
			continue
		}
		if n.Region() != tt.region || n.prefix != tt.prefix || n.internalMax != tt.maxDigs {
			t.Errorf("New(%+v) = {%s %q %d}, want {%s %q %d}", tt.opts,
				n.Region(), n.prefix, n.internalMax, tt.region, tt.prefix, tt.maxDigs)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{
		External: "external", Internal: "internal", Anonymous: "anonymous", Invalid: "invalid", Kind(9): "Kind(9)",
	} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

// TestNormalizeConcurrent runs Normalize from many goroutines; with -race it
// checks that a Normalizer can be shared by the tracker's workers.
func TestNormalizeConcurrent(t *testing.T) {
	n := normalizers(t)(nl9)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for _, raw := range benchInputs {
				n.Normalize(raw)
			}
		})
	}
	wg.Wait()
}

// checkInvariants fails t if num breaks a promise of Number for n.
func checkInvariants(t *testing.T, n *Normalizer, raw string, num Number) {
	t.Helper()
	if num.Raw != raw {
		t.Fatalf("Normalize(%q).Raw = %q", raw, num.Raw)
	}
	if !utf8.ValidString(num.E164) {
		t.Fatalf("Normalize(%q).E164 = %q: not UTF-8", raw, num.E164)
	}
	switch num.Kind {
	case External:
		if !strings.HasPrefix(num.E164, "+") {
			t.Fatalf("Normalize(%q) = %+v: external without +", raw, num)
		}
		pn, err := phonenumbers.Parse(num.E164, "ZZ")
		if err != nil || !phonenumbers.IsValidNumber(pn) {
			t.Fatalf("Normalize(%q) = %+v: E164 is not a valid number (%v)", raw, num, err)
		}
		if again := n.normalize(num.E164); again.Kind != External || again.E164 != num.E164 {
			t.Fatalf("Normalize(%q) = %+v, but Normalize(%q) = %+v", raw, num, num.E164, again)
		}
	case Internal:
		if !allDigits(num.E164) || len(num.E164) > n.internalMax {
			t.Fatalf("Normalize(%q) = %+v: internal is not a short digit string", raw, num)
		}
	case Anonymous:
		if num.E164 != "" {
			t.Fatalf("Normalize(%q) = %+v: anonymous with a number", raw, num)
		}
	case Invalid:
		if num.E164 == "" || utf8.RuneCountInString(num.E164) > maxInvalidLen {
			t.Fatalf("Normalize(%q) = %+v: invalid must keep 1 to %d characters", raw, num, maxInvalidLen)
		}
	default:
		t.Fatalf("Normalize(%q) = %+v: unknown kind", raw, num)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, raw := range benchInputs {
		f.Add(raw)
	}
	for _, raw := range []string{
		"", "+", "<", `"`, `"\`, "sip:", "sip:@", "tel:;", "%", "sip:%@x", "0031", "9", "00",
		"\xff", "a\x00b", "٠٦١٢٣٤٥٦٧٨", "0800-FLOWERS", strings.Repeat("9", 300),
	} {
		f.Add(raw)
	}
	get := normalizers(f)
	ns := []*Normalizer{get(nl), get(nl9), get(nl0), get(de), get(Options{Region: "US"})}
	f.Fuzz(func(t *testing.T, raw string) {
		for _, n := range ns {
			checkInvariants(t, n, raw, n.normalize(raw))
		}
	})
}

// benchInputs is a mix of what the sources send, weighted towards numbers.
var benchInputs = []string{
	"+31612345678",
	"0612345678",
	"0031612345678",
	"(020) 123 4567",
	"31612345678",
	"sip:0612345678@pbx.example;user=phone",
	`"Name" <sip:+31612345678@pbx>;tag=1`,
	"tel:+31-6-1234-5678",
	"90612345678",
	"+49 30 12345678",
	"anonymous",
	"sip:anonymous@anonymous.invalid",
	"",
	"201",
	"sip:201@pbx",
	"112",
	"7777abcdefg@fpbx.de",
	"1234567",
}

func BenchmarkNormalize(b *testing.B) {
	n := normalizers(b)(nl9)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		n.Normalize(benchInputs[i%len(benchInputs)])
		i++
	}
}
