package threecxtest

import (
	"path/filepath"
	"testing"
)

// TestScriptsParse: every call script in testdata parses and names its DNs.
func TestScriptsParse(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "..", "testdata", "threecx", "calls", "*.json"))
	if err != nil || len(files) < 5 {
		t.Fatalf("found %d scripts (%v)", len(files), err)
	}
	for _, f := range files {
		sc, err := LoadScript(f)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if sc.Name == "" || len(sc.DNs) == 0 || len(sc.Steps) == 0 {
			t.Errorf("%s: name, DNs or steps missing", f)
		}
	}
}

func TestParseScriptRejects(t *testing.T) {
	for _, in := range []string{
		`{"name":"x","steps":[{"op":"explode"}]}`,
		`{"name":"x","steps":[{"op":"upsert","participant":{"id":1}}]}`,
		`{"name":"x","steps":[{"op":"remove","dn":"150"}]}`,
		`{"name":"x","steps":[{"op":"remove","dn":"150","id":1,"delivery":"maybe"}]}`,
		`{"name":"x","stepz":[]}`,
	} {
		if _, err := ParseScript([]byte(in)); err == nil {
			t.Errorf("%s: accepted", in)
		}
	}
}
