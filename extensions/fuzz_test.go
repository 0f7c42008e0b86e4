package extensions

import (
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// checkAgent reports what is wrong with an agent a parser accepted.
func checkAgent(t *testing.T, a Agent) {
	t.Helper()
	for what, s := range map[string]string{"PBXID": a.PBXID, "Extension": a.Extension, "Name": a.Name, "Email": a.Email, "Source": a.Source} {
		if s != strings.TrimSpace(s) {
			t.Errorf("accepted %s %q is not trimmed", what, s)
		}
	}
	if a.PBXID == "" || a.Extension == "" {
		t.Errorf("accepted an agent with an empty id: %+v", a)
	}
	if err := checkID("id", a.PBXID); err != nil {
		t.Errorf("accepted PBXID: %v", err)
	}
	if err := checkID("id", a.Extension); err != nil {
		t.Errorf("accepted Extension: %v", err)
	}
	if err := checkName(a.Name); err != nil {
		t.Errorf("accepted Name: %v", err)
	}
	if err := checkEmail(a.Email); err != nil {
		t.Errorf("accepted Email: %v", err)
	}
	if err := checkSource(a.Source); err != nil {
		t.Errorf("accepted Source: %v", err)
	}
}

// checkDirectory builds a directory from entries that parsed cleanly and
// checks that each one can be looked up as itself.
func checkDirectory(t *testing.T, tab *table, err error, entries []entry) {
	t.Helper()
	if err != nil {
		t.Fatalf("compile failed on input the parser accepted: %v", err)
	}
	d := &Directory{}
	d.t.Store(tab)
	if d.Len() != len(entries) {
		t.Errorf("Len() = %d, want %d", d.Len(), len(entries))
	}
	for _, e := range entries {
		got, ok := d.Lookup(e.Source, " "+e.PBXID+"\t")
		if !ok || got != e.Agent {
			t.Errorf("Lookup(%q, %q) = %+v, %v; want %+v", e.Source, e.PBXID, got, ok, e.Agent)
		}
	}
}

func FuzzParseSpec(f *testing.F) {
	for _, s := range []string{
		"", "201,202,1001:203", " 201 , 1001 : 203 ,", "201,,202", ":203", "201:", "1:2:3",
		"201,202,201", "20 1", "2\xff1", "sip-user.1,abc:Anna", ",", "201,:203,1001:,201,,1:2:3,",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		entries, errs := parseSpec(spec)
		for _, err := range errs {
			if !strings.HasPrefix(err.Error(), "EXTENSIONS entry ") {
				t.Errorf("error without a place: %q", err)
			}
		}
		seen := map[string]bool{}
		var parts []string
		for _, e := range entries {
			checkAgent(t, e.Agent)
			if e.Source != "" || e.Name != "" || e.Email != "" {
				t.Errorf("spec entry has more than ids: %+v", e.Agent)
			}
			if strings.ContainsAny(e.PBXID+e.Extension, ",:") {
				t.Errorf("spec entry contains a separator: %+v", e.Agent)
			}
			if seen[e.PBXID] {
				t.Errorf("PBX id %q accepted twice", e.PBXID)
			}
			seen[e.PBXID] = true
			if e.PBXID == e.Extension {
				parts = append(parts, e.PBXID)
			} else {
				parts = append(parts, e.PBXID+":"+e.Extension)
			}
		}

		// What was accepted, written back as a spec, reads back the same.
		again, errs2 := parseSpec(strings.Join(parts, ","))
		if len(errs2) > 0 {
			t.Fatalf("re-parsing accepted entries failed: %v", errs2)
		}
		if diff := cmp.Diff(agentsOf(entries), agentsOf(again)); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}

		if len(errs) == 0 {
			tab, err := compile(spec, "", nil, nil)
			checkDirectory(t, tab, err, entries)
		}
	})
}

// quoteCSV writes one CSV row with every field quoted, so that no field can
// be mistaken for a comment or lose white space.
func quoteCSV(b *strings.Builder, fields ...string) {
	for i, f := range fields {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + strings.ReplaceAll(f, `"`, `""`) + `"`)
	}
	b.WriteString("\n")
}

func FuzzParseCSV(f *testing.F) {
	sample, err := os.ReadFile("testdata/extensions.csv")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(sample)
	for _, s := range []string{
		"",
		"pbx_id,robin_extension,name,email\n201,,Anna de Vries,anna@example.com\n",
		"\ufeffPBX_ID,Robin_Extension,Name,Email,Source\r\n150,201,\"Jansen, Carla\",carla@example.com,ThreeCX\r\n",
		"# c\n\npbx_id,robin_extension,name,email\n,,,\n201,,\"A\nB\",\n202,,Ann \"A\",\n203\n",
		"pbx_id,robin_extension,name,email\n201,,,x\n201,,,\n201,,,\n",
		"pbx_id,name\n",
		"pbx_id,robin_extension,name,email\n201,,\"Anna,anna@example.com\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, errs := parseCSV("f.csv", data)
		for _, err := range errs {
			if msg := err.Error(); !strings.HasPrefix(msg, "f.csv line ") && !strings.HasPrefix(msg, "f.csv: ") {
				t.Errorf("error without a place: %q", msg)
			}
		}
		seen := map[key]bool{}
		var b strings.Builder
		quoteCSV(&b, "pbx_id", "robin_extension", "name", "email", "source")
		for _, e := range entries {
			checkAgent(t, e.Agent)
			if !strings.HasPrefix(e.place, "f.csv line ") {
				t.Errorf("entry place %q", e.place)
			}
			k := key{e.Source, e.PBXID}
			if seen[k] {
				t.Errorf("(%q, %q) accepted twice", e.Source, e.PBXID)
			}
			seen[k] = true
			quoteCSV(&b, e.PBXID, e.Extension, e.Name, e.Email, e.Source)
		}

		// What was accepted, written back as CSV, reads back the same.
		again, errs2 := parseCSV("again.csv", []byte(b.String()))
		if len(errs2) > 0 {
			t.Fatalf("re-parsing accepted rows failed: %v\n%s", errs2, b.String())
		}
		if diff := cmp.Diff(agentsOf(entries), agentsOf(again)); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}

		if len(errs) == 0 {
			tab, err := compile("", "f.csv", data, nil)
			checkDirectory(t, tab, err, entries)
		}
	})
}
