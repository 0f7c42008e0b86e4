package extensions

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const wantHeaderMsg = "want pbx_id,robin_extension,name,email and optionally source"

func TestParseCSV(t *testing.T) {
	anna := Agent{PBXID: "201", Extension: "201", Name: "Anna de Vries", Email: "anna@example.com"}
	carla := Agent{PBXID: "1001", Extension: "203", Name: "Jansen, Carla", Email: "carla@example.com"}
	tests := []struct {
		name    string
		in      string
		want    []Agent
		wantErr []string
	}{
		{
			name: "plain",
			in:   "pbx_id,robin_extension,name,email\n201,,Anna de Vries,anna@example.com\n1001,203,\"Jansen, Carla\",carla@example.com\n",
			want: []Agent{anna, carla},
		},
		{
			name: "header in another order and letter case, spaces around names",
			in:   " Email , NAME,Robin_Extension ,PBX_ID\nanna@example.com,Anna de Vries,,201\n",
			want: []Agent{anna},
		},
		{
			name: "source column scopes rows and is lower-cased",
			in:   "source,pbx_id,robin_extension,name,email\nthreecx,150,201,Anna de Vries,anna@example.com\n SIP ,201,,Anna de Vries,anna@example.com\n,201,,Anna de Vries,anna@example.com\n",
			want: []Agent{
				{PBXID: "150", Extension: "201", Name: "Anna de Vries", Email: "anna@example.com", Source: "threecx"},
				{PBXID: "201", Extension: "201", Name: "Anna de Vries", Email: "anna@example.com", Source: "sip"},
				anna,
			},
		},
		{
			name: "comments and blank lines, before and after the header",
			in:   "# agents\n\npbx_id,robin_extension,name,email\n# Anna\n\n   \n,,,\n201,,Anna de Vries,anna@example.com\n#1001,203,,\n",
			want: []Agent{anna},
		},
		{
			name: "quoted fields, escaped quotes and white space",
			in:   "pbx_id,robin_extension,name,email\n\"201\",\" 301 \",\"Dirk \"\"DJ\"\" Smit\",  dirk@example.com  \n",
			want: []Agent{{PBXID: "201", Extension: "301", Name: `Dirk "DJ" Smit`, Email: "dirk@example.com"}},
		},
		{
			name: "BOM at start and CRLF line ends",
			in:   "\ufeffpbx_id,robin_extension,name,email\r\n201,,Anna de Vries,anna@example.com\r\n1001,203,\"Jansen, Carla\",carla@example.com\r\n",
			want: []Agent{anna, carla},
		},
		{
			name: "saved by a spreadsheet in a Dutch locale: ';', BOM and CRLF",
			in:   "\ufeffpbx_id;robin_extension;name;email\r\n201;;Anna de Vries;anna@example.com\r\n1001;203;Jansen, Carla;carla@example.com\r\n",
			want: []Agent{anna, carla},
		},
		{
			name: "';' after a comment, with a quoted ';' in a name",
			in:   "# exported\n\npbx_id;robin_extension;name;email\n201;;\"Anna; de Vries\";anna@example.com\n",
			want: []Agent{{PBXID: "201", Extension: "201", Name: "Anna; de Vries", Email: "anna@example.com"}},
		},
		{
			name:    "',' header with a quoted ';' in a column name stays ','",
			in:      "pbx_id,robin_extension,name,email,\"a;b;c\"\n",
			wantErr: []string{`extensions.csv line 1: header: unknown column "a;b;c"; ` + wantHeaderMsg},
		},
		{
			name: "tab-separated",
			in:   "pbx_id\trobin_extension\tname\temail\n1001\t203\tJansen, Carla\tcarla@example.com\n",
			want: []Agent{carla},
		},
		{
			name: "no final newline, empty name and email",
			in:   "pbx_id,robin_extension,name,email\n201,,,",
			want: []Agent{{PBXID: "201", Extension: "201"}},
		},
		{
			name: "SIP ids with colon and at sign",
			in:   "pbx_id,robin_extension,name,email\nsip:201@pbx,201,,\n7777abcdefg@fpbx.de,204,,\n",
			want: []Agent{{PBXID: "sip:201@pbx", Extension: "201"}, {PBXID: "7777abcdefg@fpbx.de", Extension: "204"}},
		},
		{
			name: "same id unscoped and for two sources",
			in:   "pbx_id,robin_extension,name,email,source\n201,,,,\n201,301,,,sip\n201,401,,,threecx\n",
			want: []Agent{{PBXID: "201", Extension: "201"}, {PBXID: "201", Extension: "301", Source: "sip"}, {PBXID: "201", Extension: "401", Source: "threecx"}},
		},
		{
			name: "header only",
			in:   "pbx_id,robin_extension,name,email\n",
		},
		{
			name:    "empty file",
			in:      "",
			wantErr: []string{"extensions.csv: no header row; " + wantHeaderMsg},
		},
		{
			name:    "only a BOM and comments",
			in:      "\ufeff# nothing yet\n\n",
			wantErr: []string{"extensions.csv: no header row; " + wantHeaderMsg},
		},
		{
			name:    "no header",
			in:      "# agents\n201,,Anna de Vries,anna@example.com\n",
			wantErr: []string{"extensions.csv line 2: the first row is not a header; " + wantHeaderMsg},
		},
		{
			name:    "missing columns",
			in:      "pbx_id,name\n201,Anna\n",
			wantErr: []string{`extensions.csv line 1: header: no "robin_extension" column, no "email" column; ` + wantHeaderMsg},
		},
		{
			name:    "misspelt and repeated columns",
			in:      "pbx_id,robin_extension,name,mail,name\n",
			wantErr: []string{`extensions.csv line 1: header: unknown column "mail", column "name" appears twice, no "email" column; ` + wantHeaderMsg},
		},
		{
			name:    "trailing comma in the header",
			in:      "pbx_id,robin_extension,name,email,\n201,,,,\n",
			wantErr: []string{`extensions.csv line 1: header: column 5 has no name; ` + wantHeaderMsg},
		},
		{
			name:    "unreadable header",
			in:      "pbx_id,\"robin_extension,name,email\n",
			wantErr: []string{`extensions.csv line 1, column 36: extraneous or missing " in quoted-field`},
		},
		{
			name: "bad rows are all reported with their line numbers",
			in: strings.Join([]string{
				"# agents", // 1
				"pbx_id,robin_extension,name,email,source", // 2
				"201,,Anna de Vries,anna.example.com,",     // 3: no @
				"",                                         // 4
				"202,,Bram,@example.com,",                  // 5: empty local part
				",203,Nobody,,",                            // 6: empty pbx_id
				"204,,\"Two",                               // 7: multi-line name (CRLF read as LF)
				"Lines\",,",                                // 8
				"205,,Eve,eve@example.com,Three CX",        // 9: bad source
				"206,,Eve,eve@example.com",                 // 10: missing field
				"20 7,,,,",                                 // 11: space inside id
				"208,2 08,,,",                              // 12
				"201,,Anna,anna@example.com,",              // 13: fine (line 3 was rejected)
				"201,,Anna,anna@example.com,",              // 14: duplicate of 13
				"201,,Anna,anna@example.com,sip",           // 15: fine, scoped
				"209,,Fred,fred@a@b,",                      // 16
				"",
			}, "\r\n"),
			want: []Agent{
				{PBXID: "201", Extension: "201", Name: "Anna", Email: "anna@example.com"},
				{PBXID: "201", Extension: "201", Name: "Anna", Email: "anna@example.com", Source: "sip"},
			},
			wantErr: []string{
				`extensions.csv line 3: email "anna.example.com" has no @`,
				`extensions.csv line 5: email "@example.com" is not an e-mail address`,
				`extensions.csv line 6: pbx_id is empty`,
				`extensions.csv line 7: name "Two\nLines" contains a control character`,
				`extensions.csv line 9: source "three cx" is not a source name (letters, digits, "-" and "_")`,
				`extensions.csv line 10: 4 fields, the header has 5`,
				`extensions.csv line 11: pbx_id "20 7" contains white space or a control character`,
				`extensions.csv line 12: robin_extension "2 08" contains white space or a control character`,
				`extensions.csv line 14: pbx_id "201" already on line 13`,
				`extensions.csv line 16: email "fred@a@b" is not an e-mail address`,
			},
		},
		{
			name: "duplicate scoped id",
			in:   "pbx_id,robin_extension,name,email,source\n150,201,,,threecx\n150,202,,,ThreeCX\n",
			want: []Agent{{PBXID: "150", Extension: "201", Source: "threecx"}},
			wantErr: []string{
				`extensions.csv line 3: pbx_id "150" with source "threecx" already on line 2`,
			},
		},
		{
			name: "a quoting error does not stop the rows after it",
			in:   "pbx_id,robin_extension,name,email\n201,,Anna \"A\" de Vries,anna@example.com\n202,,Bram,bram\n203,,Carla,carla@example.com\n",
			want: []Agent{{PBXID: "203", Extension: "203", Name: "Carla", Email: "carla@example.com"}},
			wantErr: []string{
				`extensions.csv line 2, column 11: bare " in non-quoted-field`,
				`extensions.csv line 3: email "bram" has no @`,
			},
		},
		{
			name: "a single field row",
			in:   "pbx_id,robin_extension,name,email\n201\n",
			wantErr: []string{
				`extensions.csv line 2: 1 field, the header has 4`,
			},
		},
		{
			name:    "invalid UTF-8 in a name",
			in:      "pbx_id,robin_extension,name,email\n201,,Ann\xe9,\n",
			wantErr: []string{`extensions.csv line 2: name "Ann\xe9" is not valid UTF-8`},
		},
		{
			name:    "unterminated quote at the end",
			in:      "pbx_id,robin_extension,name,email\n201,,\"Anna,anna@example.com\n",
			wantErr: []string{`extensions.csv line 2, column 29: extraneous or missing " in quoted-field`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries, errs := parseCSV("extensions.csv", []byte(tt.in))
			if diff := cmp.Diff(tt.want, agentsOf(entries)); diff != "" {
				t.Errorf("agents (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantErr, errStrings(errs)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// TestParseCSVPlaces checks that rows remember their line, counted the way an
// editor counts it (comments, blank lines and multi-line fields included).
func TestParseCSVPlaces(t *testing.T) {
	in := "# c\npbx_id,robin_extension,name,email\n\n201,,\"A\nB\",\n202,,,\n"
	entries, errs := parseCSV("x.csv", []byte(in))
	if len(errs) != 1 {
		t.Fatalf("errors = %v, want one (the name with a line break)", errs)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.place)
	}
	if diff := cmp.Diff([]string{"x.csv line 6"}, got); diff != "" {
		t.Errorf("places (-want +got):\n%s", diff)
	}
}
