package extensions

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// joined returns the messages joined in err, one per problem.
func joined(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return []string{err.Error()}
	}
	return errStrings(j.Unwrap())
}

// writeFile writes content to a file in a fresh directory and returns its path.
func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mustLoad loads a directory or fails the test.
func mustLoad(t *testing.T, spec, file string) *Directory {
	t.Helper()
	d, err := Load(spec, file)
	if err != nil {
		t.Fatalf("Load(%q, %q): %v", spec, file, err)
	}
	return d
}

func TestLoadSample(t *testing.T) {
	d := mustLoad(t, "", "testdata/extensions.csv")
	if d.Open() {
		t.Fatal("Open() = true with a file")
	}
	want := []Agent{
		{PBXID: "1001", Extension: "203", Name: "Jansen, Carla", Email: "carla@example.com"},
		{PBXID: "150", Extension: "201", Name: "Anna de Vries", Email: "anna@example.com", Source: "threecx"},
		{PBXID: "201", Extension: "201", Name: "Anna de Vries", Email: "anna@example.com"},
		{PBXID: "202", Extension: "202", Name: "Bram Jansen", Email: "bram@example.com"},
	}
	if diff := cmp.Diff(want, d.Agents("threecx")); diff != "" {
		t.Errorf("Agents(threecx) (-want +got):\n%s", diff)
	}
	if got, want := d.Len(), 5; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	a, ok := d.Lookup("generic", "7777abcdefg@fpbx.de")
	if wantA := (Agent{PBXID: "7777abcdefg@fpbx.de", Extension: "204", Name: `Dirk "DJ" Smit`, Email: "dirk@example.com", Source: "generic"}); !ok || a != wantA {
		t.Errorf("Lookup(generic, 7777abcdefg@fpbx.de) = %+v, %v; want %+v, true", a, ok, wantA)
	}
}

func TestCompileMerge(t *testing.T) {
	const file = "pbx_id,robin_extension,name,email,source\n" +
		"201,,Anna de Vries,anna@example.com,\n" + // repeats a spec entry: adds name and e-mail
		"1001,203,Carla,carla@example.com,\n" + // repeats a renamed spec entry
		"201,301,Anna (softphone),anna@example.com,sip\n" + // scoped: no conflict with the spec
		"300,,Dirk,,\n" // only in the file
	tab, err := compile("201,202,1001:203", "extensions.csv", []byte(file), nil)
	if err != nil {
		t.Fatal(err)
	}
	d := &Directory{}
	d.t.Store(tab)
	want := []Agent{
		{PBXID: "1001", Extension: "203", Name: "Carla", Email: "carla@example.com"},
		{PBXID: "201", Extension: "301", Name: "Anna (softphone)", Email: "anna@example.com", Source: "sip"},
		{PBXID: "202", Extension: "202"},
		{PBXID: "300", Extension: "300", Name: "Dirk"},
	}
	if diff := cmp.Diff(want, d.Agents("sip")); diff != "" {
		t.Errorf("Agents(sip) (-want +got):\n%s", diff)
	}
	if a, _ := d.Lookup("threecx", "201"); a.Name != "Anna de Vries" || a.Extension != "201" {
		t.Errorf("Lookup(threecx, 201) = %+v, want the merged unscoped entry", a)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		spec string
		file string
		want []string
	}{
		{
			name: "same PBX id, different ROBIN extensions",
			spec: "201,1001:203",
			file: "pbx_id,robin_extension,name,email\n201,,Anna,\n1001,204,Carla,\n",
			want: []string{`extensions.csv line 3: pbx_id "1001" maps to ROBIN extension "204", but EXTENSIONS entry 2 "1001:203" maps it to "203"`},
		},
		{
			name: "empty robin_extension means the PBX id, which conflicts with a rename",
			spec: "1001:203",
			file: "pbx_id,robin_extension,name,email\n1001,,Carla,\n",
			want: []string{`extensions.csv line 2: pbx_id "1001" maps to ROBIN extension "1001", but EXTENSIONS entry 1 "1001:203" maps it to "203"`},
		},
		{
			name: "spec errors, file errors and conflicts together",
			spec: "201,:5,1001:203",
			file: "pbx_id,robin_extension,name,email\n201,,Anna,anna\n1001,204,,\n",
			want: []string{
				`EXTENSIONS entry 2 ":5": PBX id is empty`,
				`extensions.csv line 2: email "anna" has no @`,
				`extensions.csv line 3: pbx_id "1001" maps to ROBIN extension "204", but EXTENSIONS entry 3 "1001:203" maps it to "203"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tab, err := compile(tt.spec, "extensions.csv", []byte(tt.file), nil)
			if tab != nil {
				t.Errorf("compile returned a table with errors")
			}
			if diff := cmp.Diff(tt.want, joined(t, err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCompileCapsErrors(t *testing.T) {
	var b strings.Builder
	b.WriteString("pbx_id,robin_extension,name,email\n")
	for range maxErrors + 7 {
		b.WriteString("1,,,bad\n")
	}
	_, err := compile("", "extensions.csv", []byte(b.String()), nil)
	got := joined(t, err)
	if len(got) != maxErrors+1 {
		t.Fatalf("got %d problems, want %d shown and a summary", len(got), maxErrors)
	}
	if got[0] != `extensions.csv line 2: email "bad" has no @` {
		t.Errorf("first problem = %q", got[0])
	}
	if last := got[len(got)-1]; last != "7 more problems not shown" {
		t.Errorf("last line = %q, want the count of problems not shown", last)
	}
}

func TestLoadFileErrors(t *testing.T) {
	t.Run("missing file, spec errors still reported", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "nope.csv")
		d, err := Load("201,", missing)
		if d != nil {
			t.Error("Load returned a directory with an error")
		}
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Load error = %v, want one wrapping fs.ErrNotExist", err)
		}
		d, err = Load(":1", missing)
		if got := joined(t, err); d != nil || len(got) != 2 || got[0] != `EXTENSIONS entry 1 ":1": PBX id is empty` ||
			!strings.HasPrefix(got[1], "read extensions file: ") {
			t.Errorf("Load(:1, missing) = %v, %q; want the spec error and the read error", d, got)
		}
	})
	t.Run("errors name the file as given", func(t *testing.T) {
		path := writeFile(t, "agents.csv", "pbx_id,robin_extension,name,email\n201,,,x\n")
		_, err := Load("", path)
		if diff := cmp.Diff([]string{path + ` line 2: email "x" has no @`}, joined(t, err)); diff != "" {
			t.Errorf("errors (-want +got):\n%s", diff)
		}
	})
}

func TestOpenDirectory(t *testing.T) {
	for _, spec := range []string{"", "  \t"} {
		d := mustLoad(t, spec, "")
		if !d.Open() {
			t.Errorf("Load(%q, \"\").Open() = false, want true", spec)
		}
		for _, id := range []string{"201", " 201\t", "Anna.Desk", "sip:201@pbx"} {
			want := Agent{PBXID: strings.TrimSpace(id), Extension: strings.TrimSpace(id)}
			if a, ok := d.Lookup("sip", id); !ok || a != want {
				t.Errorf("open Lookup(sip, %q) = %+v, %v; want %+v, true", id, a, ok, want)
			}
		}
		for _, id := range []string{"", "  "} {
			if a, ok := d.Lookup("sip", id); ok {
				t.Errorf("open Lookup(sip, %q) = %+v, true; want no agent for an empty id", id, a)
			}
		}
		if n, agents := d.Len(), d.Agents("sip"); n != 0 || agents != nil {
			t.Errorf("open Len() = %d, Agents() = %v; want 0, nil", n, agents)
		}
	}

	var zero Directory
	if !zero.Open() {
		t.Error("zero Directory is not open")
	}
	if a, ok := zero.Lookup("", "7"); !ok || a.Extension != "7" {
		t.Errorf("zero Directory Lookup(7) = %+v, %v", a, ok)
	}
}

func TestEmptyFileIsClosed(t *testing.T) {
	d := mustLoad(t, "", writeFile(t, "e.csv", "pbx_id,robin_extension,name,email\n"))
	if d.Open() {
		t.Error("a directory from a header-only file is open; want closed and empty")
	}
	if a, ok := d.Lookup("sip", "201"); ok {
		t.Errorf("Lookup(sip, 201) = %+v, true in an empty directory", a)
	}
}

func TestLookupPrecedence(t *testing.T) {
	path := writeFile(t, "x.csv", "pbx_id,robin_extension,name,email,source\n"+
		"201,301,Anna soft,,sip\n"+
		"150,201,Anna 3CX,,threecx\n"+
		"Anna,401,,,\n")
	d := mustLoad(t, "201,202", path)

	unscoped201 := Agent{PBXID: "201", Extension: "201"}
	sip201 := Agent{PBXID: "201", Extension: "301", Name: "Anna soft", Source: "sip"}
	tests := []struct {
		source, id string
		want       Agent
		ok         bool
	}{
		{"sip", "201", sip201, true},
		{" SIP ", " 201 ", sip201, true},
		{"threecx", "201", unscoped201, true},
		{"", "201", unscoped201, true},
		{"xelion", "202", Agent{PBXID: "202", Extension: "202"}, true},
		{"threecx", "150", Agent{PBXID: "150", Extension: "201", Name: "Anna 3CX", Source: "threecx"}, true},
		{"sip", "150", Agent{}, false},
		{"", "150", Agent{}, false},
		{"sip", "Anna", Agent{PBXID: "Anna", Extension: "401"}, true},
		{"sip", "anna", Agent{}, false}, // PBX ids are case-sensitive
		{"sip", "999", Agent{}, false},
		{"sip", "", Agent{}, false},
	}
	for _, tt := range tests {
		a, ok := d.Lookup(tt.source, tt.id)
		if ok != tt.ok || a != tt.want {
			t.Errorf("Lookup(%q, %q) = %+v, %v; want %+v, %v", tt.source, tt.id, a, ok, tt.want, tt.ok)
		}
	}

	wantSIP := []Agent{sip201, {PBXID: "202", Extension: "202"}, {PBXID: "Anna", Extension: "401"}}
	if diff := cmp.Diff(wantSIP, d.Agents(" Sip")); diff != "" {
		t.Errorf("Agents(sip) (-want +got):\n%s", diff)
	}
	wantAny := []Agent{unscoped201, {PBXID: "202", Extension: "202"}, {PBXID: "Anna", Extension: "401"}}
	if diff := cmp.Diff(wantAny, d.Agents("")); diff != "" {
		t.Errorf("Agents(\"\") (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantAny, d.Agents("xelion")); diff != "" {
		t.Errorf("Agents(xelion) (-want +got):\n%s", diff)
	}
	got := d.Agents("sip")
	got[0].Extension = "changed"
	if again := d.Agents("sip"); again[0].Extension != "301" {
		t.Error("changing the slice Agents returned changed the directory")
	}
	if n := d.Len(); n != 5 {
		t.Errorf("Len() = %d, want 5", n)
	}
}

func TestReload(t *testing.T) {
	d := mustLoad(t, "201", "")

	err := d.Reload("201,1001:", "")
	if err == nil {
		t.Fatal("Reload with a bad entry succeeded")
	}
	const wantMsg = "extensions not reloaded, previous table kept: " + `EXTENSIONS entry 2 "1001:": ROBIN extension is empty`
	if err.Error() != wantMsg {
		t.Errorf("Reload error = %q, want %q", err, wantMsg)
	}
	if a, ok := d.Lookup("sip", "201"); !ok || a.Extension != "201" {
		t.Errorf("after a failed Reload, Lookup(201) = %+v, %v; want the old entry", a, ok)
	}
	if _, ok := d.Lookup("sip", "1001"); ok {
		t.Error("after a failed Reload, 1001 is an agent")
	}

	if err := d.Reload("1001:203", ""); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Lookup("sip", "201"); ok {
		t.Error("after Reload, the dropped 201 is still an agent")
	}
	if a, ok := d.Lookup("sip", "1001"); !ok || a.Extension != "203" {
		t.Errorf("after Reload, Lookup(1001) = %+v, %v; want 203", a, ok)
	}

	if err := d.Reload("", ""); err != nil || !d.Open() {
		t.Errorf("Reload to nothing: err %v, Open %v; want an open directory", err, d.Open())
	}
	if err := d.Reload("", filepath.Join(t.TempDir(), "gone.csv")); err == nil || !d.Open() {
		t.Errorf("Reload from a missing file: err %v, Open %v; want an error and the open table kept", err, d.Open())
	}
	if err := d.Reload("202", ""); err != nil || d.Open() || d.Len() != 1 {
		t.Errorf("Reload to 202: err %v, Open %v, Len %d; want a closed table of one", err, d.Open(), d.Len())
	}
}

// TestReloadConcurrent swaps tables while readers look up and list agents.
// Each generation maps every PBX id to an extension carrying the generation's
// letter, so a reader that saw a half-built or mixed table would notice. Run
// it with -race.
func TestReloadConcurrent(t *testing.T) {
	specs := map[byte]string{
		'a': "201:a201,202:a202,203:a203",
		'b': "201:b201,202:b202,203:b203,204:b204",
	}
	d := mustLoad(t, specs['a'], "")

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	report := func(msg string) {
		select {
		case errs <- msg:
		default:
		}
	}
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, id := range []string{"201", "202", "203"} {
					a, ok := d.Lookup("sip", id)
					if !ok || len(a.Extension) != 4 || a.Extension[1:] != id || (a.Extension[0] != 'a' && a.Extension[0] != 'b') {
						report("Lookup(" + id + ") = " + a.Extension)
					}
				}
				list := d.Agents("sip")
				if len(list) == 0 {
					report("Agents returned nothing")
					continue
				}
				gen := list[0].Extension[0]
				if want := strings.Count(specs[gen], ",") + 1; len(list) != want {
					report("Agents returned a table of the wrong size")
				}
				for _, a := range list {
					if a.Extension[0] != gen {
						report("Agents mixed two generations")
					}
				}
			}
		})
	}
	for i := range 200 {
		if err := d.Reload("201:x,:bad", ""); err == nil {
			t.Error("a bad Reload succeeded")
		}
		gen := byte('a' + i%2)
		if err := d.Reload(specs[gen], ""); err != nil {
			t.Error(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if a, _ := d.Lookup("", "204"); a.Extension != "b204" {
		t.Errorf("after the last Reload, Lookup(204) = %+v; want b204", a)
	}
}

func TestLookupDoesNotAllocate(t *testing.T) {
	closed := mustLoad(t, "201,202,1001:203", writeFile(t, "x.csv", "pbx_id,robin_extension,name,email,source\n150,201,Anna,anna@example.com,threecx\n"))
	open := mustLoad(t, "", "")
	for _, tt := range []struct {
		name       string
		d          *Directory
		source, id string
	}{
		{"scoped hit", closed, "threecx", "150"},
		{"unscoped fallback", closed, "threecx", " 1001 "},
		{"miss", closed, "sip", "999"},
		{"open", open, "sip", " 201 "},
	} {
		allocs := testing.AllocsPerRun(100, func() { _, _ = tt.d.Lookup(tt.source, tt.id) })
		if allocs != 0 {
			t.Errorf("%s: Lookup allocates %v times per call, want 0", tt.name, allocs)
		}
	}
}

// BenchmarkLookup measures the hot path: go test -run '^$' -bench Lookup -benchmem ./extensions
func BenchmarkLookup(b *testing.B) {
	var spec, csv strings.Builder
	csv.WriteString("pbx_id,robin_extension,name,email,source\n")
	for i := range 500 {
		id := 1000 + i
		if i > 0 {
			spec.WriteByte(',')
		}
		spec.WriteString(strconv.Itoa(id))
		csv.WriteString(strconv.Itoa(id) + ",9" + strconv.Itoa(id) + ",Agent,agent@example.com,threecx\n")
	}
	dir := b.TempDir()
	path := filepath.Join(dir, "x.csv")
	if err := os.WriteFile(path, []byte(csv.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	closed, err := Load(spec.String(), path)
	if err != nil {
		b.Fatal(err)
	}
	open, err := Load("", "")
	if err != nil {
		b.Fatal(err)
	}
	for _, bb := range []struct {
		name       string
		d          *Directory
		source, id string
	}{
		{"scoped", closed, "threecx", "1234"},
		{"fallback", closed, "sip", "1234"},
		{"miss", closed, "sip", "999"},
		{"open", open, "sip", "1234"},
	} {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = bb.d.Lookup(bb.source, bb.id)
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, _ = closed.Lookup("threecx", "1234")
			}
		})
	})
}
