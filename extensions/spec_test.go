package extensions

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// errStrings returns the messages of errs, so tables can compare them.
func errStrings(errs []error) []string {
	var out []string
	for _, err := range errs {
		out = append(out, err.Error())
	}
	return out
}

// agentsOf strips the places from entries.
func agentsOf(entries []entry) []Agent {
	var out []Agent
	for _, e := range entries {
		out = append(out, e.Agent)
	}
	return out
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		want    []Agent
		wantErr []string
	}{
		{name: "unset", spec: ""},
		{name: "blank", spec: " \t "},
		{
			name: "bare and renamed",
			spec: "201,202,1001:203",
			want: []Agent{{PBXID: "201", Extension: "201"}, {PBXID: "202", Extension: "202"}, {PBXID: "1001", Extension: "203"}},
		},
		{
			name: "white space around entries and colon, trailing comma",
			spec: " 201 ,\t1001 : 203 ,",
			want: []Agent{{PBXID: "201", Extension: "201"}, {PBXID: "1001", Extension: "203"}},
		},
		{
			name: "trailing comma and blanks",
			spec: "201, ",
			want: []Agent{{PBXID: "201", Extension: "201"}},
		},
		{
			name: "explicit self map and two ids to one agent",
			spec: "201:201,1001:203,1002:203",
			want: []Agent{{PBXID: "201", Extension: "201"}, {PBXID: "1001", Extension: "203"}, {PBXID: "1002", Extension: "203"}},
		},
		{
			name: "non-numeric ids keep their case",
			spec: "Anna.Desk,agent-7:Anna",
			want: []Agent{{PBXID: "Anna.Desk", Extension: "Anna.Desk"}, {PBXID: "agent-7", Extension: "Anna"}},
		},
		{
			name:    "empty entry in the middle",
			spec:    "201,,202",
			want:    []Agent{{PBXID: "201", Extension: "201"}, {PBXID: "202", Extension: "202"}},
			wantErr: []string{`EXTENSIONS entry 2 "": empty entry`},
		},
		{
			name:    "leading comma",
			spec:    ",201",
			want:    []Agent{{PBXID: "201", Extension: "201"}},
			wantErr: []string{`EXTENSIONS entry 1 "": empty entry`},
		},
		{
			name:    "two trailing commas",
			spec:    "201,,",
			want:    []Agent{{PBXID: "201", Extension: "201"}},
			wantErr: []string{`EXTENSIONS entry 2 "": empty entry`},
		},
		{
			name:    "empty ROBIN extension",
			spec:    "201,202,1001:",
			want:    []Agent{{PBXID: "201", Extension: "201"}, {PBXID: "202", Extension: "202"}},
			wantErr: []string{`EXTENSIONS entry 3 "1001:": ROBIN extension is empty`},
		},
		{
			name:    "empty PBX id",
			spec:    ":203",
			wantErr: []string{`EXTENSIONS entry 1 ":203": PBX id is empty`},
		},
		{
			name:    "lone colon",
			spec:    " : ",
			wantErr: []string{`EXTENSIONS entry 1 ":": PBX id is empty`},
		},
		{
			name:    "two colons",
			spec:    "1:2:3",
			wantErr: []string{`EXTENSIONS entry 1 "1:2:3": more than one ":"`},
		},
		{
			name:    "duplicate PBX id",
			spec:    "201,202,201",
			want:    []Agent{{PBXID: "201", Extension: "201"}, {PBXID: "202", Extension: "202"}},
			wantErr: []string{`EXTENSIONS entry 3 "201": PBX id "201" already in entry 1`},
		},
		{
			name:    "duplicate PBX id renamed",
			spec:    "1001:203,1001:204",
			want:    []Agent{{PBXID: "1001", Extension: "203"}},
			wantErr: []string{`EXTENSIONS entry 2 "1001:204": PBX id "1001" already in entry 1`},
		},
		{
			name:    "white space inside an id",
			spec:    "20 1,1001:2\t03",
			wantErr: []string{`EXTENSIONS entry 1 "20 1": PBX id "20 1" contains white space or a control character`, `EXTENSIONS entry 2 "1001:2\t03": ROBIN extension "2\t03" contains white space or a control character`},
		},
		{
			name:    "invalid UTF-8",
			spec:    "2\xff1",
			wantErr: []string{`EXTENSIONS entry 1 "2\xff1": PBX id "2\xff1" is not valid UTF-8`},
		},
		{
			name: "every bad entry at once",
			spec: "201,:203,1001:,201,,1:2:3,",
			want: []Agent{{PBXID: "201", Extension: "201"}},
			wantErr: []string{
				`EXTENSIONS entry 2 ":203": PBX id is empty`,
				`EXTENSIONS entry 3 "1001:": ROBIN extension is empty`,
				`EXTENSIONS entry 4 "201": PBX id "201" already in entry 1`,
				`EXTENSIONS entry 5 "": empty entry`,
				`EXTENSIONS entry 6 "1:2:3": more than one ":"`,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, errs := parseSpec(tt.spec)
			if diff := cmp.Diff(tt.want, agentsOf(entries)); diff != "" {
				t.Errorf("parseSpec(%q) agents (-want +got):\n%s", tt.spec, diff)
			}
			if diff := cmp.Diff(tt.wantErr, errStrings(errs)); diff != "" {
				t.Errorf("parseSpec(%q) errors (-want +got):\n%s", tt.spec, diff)
			}
		})
	}
}

// TestParseSpecPlaces checks that each entry remembers its place, which merge
// conflicts quote.
func TestParseSpecPlaces(t *testing.T) {
	entries, errs := parseSpec("201, 1001:203")
	if len(errs) > 0 {
		t.Fatalf("parseSpec: %v", errs)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.place)
	}
	want := []string{`EXTENSIONS entry 1 "201"`, `EXTENSIONS entry 2 "1001:203"`}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("places (-want +got):\n%s", diff)
	}
}
