package dialoginfo

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testdata = "../../testdata/sip"

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseRealBodies decodes bodies as Asterisk, FreeSWITCH, Kamailio and
// OpenSIPS send them and checks every field the monitor relies on.
func TestParseRealBodies(t *testing.T) {
	tests := []struct {
		file string
		want *Document
	}{
		{"asterisk-pjsip-idle.xml", &Document{Version: 0, HasVersion: true, State: Full, Entity: "sip:103@192.168.1.10:5060",
			Dialogs: []Dialog{{ID: "103", State: StateTerminated}}}},
		{"asterisk-pjsip-early.xml", &Document{Version: 8, HasVersion: true, State: Full, Entity: "sip:103@192.168.1.10:5060",
			Dialogs: []Dialog{{ID: "103", Direction: Recipient, State: StateEarly,
				Remote: Participant{Identity: Identity{Display: "Jan de Vries", URI: "sip:0612345678@192.168.1.10"}, Target: "sip:0612345678@192.168.1.10"},
				Local:  Participant{Identity: Identity{Display: "Reception", URI: "sip:0612345678@192.168.1.10"}, Target: "sip:103@192.168.1.10:5060"},
			}}}},
		{"asterisk-pjsip-confirmed.xml", &Document{Version: 9, HasVersion: true, State: Full, Entity: "sip:103@192.168.1.10:5060",
			Dialogs: []Dialog{{ID: "103", State: StateConfirmed}}}},
		{"asterisk-pjsip-onhold.xml", &Document{Version: 10, HasVersion: true, State: Full, Entity: "sip:103@192.168.1.10:5060",
			Dialogs: []Dialog{{ID: "103", State: StateConfirmed, Local: Participant{Target: "sip:103@192.168.1.10:5060"}}}}},
		{"asterisk-pjsip-anonymous.xml", &Document{Version: 3, HasVersion: true, State: Full, Entity: "sip:103@pbx.example.nl",
			Dialogs: []Dialog{{ID: "103", Direction: Recipient, State: StateEarly,
				Remote: Participant{Identity: Identity{Display: "anonymous", URI: "sip:anonymous@anonymous.invalid"}, Target: "sip:anonymous@anonymous.invalid"},
				Local:  Participant{Identity: Identity{URI: "sip:invalid@pbx.example.nl"}, Target: "sip:103@pbx.example.nl"},
			}}}},
		{"asterisk-chan-sip.xml", &Document{Version: 27, HasVersion: true, State: Full, Entity: "sip:7040@10.20.0.2",
			Dialogs: []Dialog{{ID: "7040", CallID: "pickup-631012da36c8a1e84bd6a2e4@10.20.0.2", LocalTag: "as7f1c0d2e", RemoteTag: "3417294110",
				Direction: Recipient, State: StateEarly,
				Remote: Participant{Identity: Identity{Display: "Pieter Bakker", URI: "sip:0201234567@10.20.0.2"}, Target: "sip:0201234567@10.20.0.2"},
				Local:  Participant{Identity: Identity{URI: "sip:7040@10.20.0.2"}, Target: "sip:7040@10.20.0.2"},
			}}}},
		{"freeswitch-early.xml", &Document{Version: 4, HasVersion: true, State: Full, Entity: "sip:1001@pbx.example.nl",
			Dialogs: []Dialog{{ID: "7f4de4ba-1a4c-4b5e-9d0f-3c2a1b0e9d8c", Direction: Recipient, State: StateEarly,
				Local:  Participant{Identity: Identity{Display: "1001", URI: "sip:1001@pbx.example.nl"}, Target: "sip:1001@pbx.example.nl"},
				Remote: Participant{Identity: Identity{Display: "Klant BV", URI: "sip:0031612345678@pbx.example.nl"}, Target: "sip:**1001@pbx.example.nl"},
			}}}},
		{"freeswitch-confirmed-initiator.xml", &Document{Version: 12, HasVersion: true, State: Full, Entity: "sip:11@pbx.example.net",
			Dialogs: []Dialog{{ID: "0b5e2c1a-77d3-4f0e-a1b2-ff486aabfe49", Direction: Initiator, State: StateConfirmed,
				Local:  Participant{Identity: Identity{Display: "11", URI: "sip:11@pbx.example.net"}, Target: "sip:11@pbx.example.net"},
				Remote: Participant{Identity: Identity{Display: "0310000", URI: "sip:0310000@pbx.example.net"}, Target: "sip:**11@pbx.example.net"},
			}}}},
		{"freeswitch-terminated.xml", &Document{Version: 5, HasVersion: true, State: Full, Entity: "sip:1001@pbx.example.nl",
			Dialogs: []Dialog{{ID: "7f4de4ba-1a4c-4b5e-9d0f-3c2a1b0e9d8c", Direction: Recipient, State: StateTerminated}}}},
		{"freeswitch-privacy.xml", &Document{Version: 2, HasVersion: true, State: Full, Entity: "sip:1002@pbx.example.nl",
			Dialogs: []Dialog{{ID: "c3d1f0aa-2b7e-4f61-8e5a-6d4c3b2a1f00", Direction: Recipient, State: StateEarly,
				Local:  Participant{Identity: Identity{Display: "1002", URI: "sip:1002@pbx.example.nl"}, Target: "sip:1002@pbx.example.nl"},
				Remote: Participant{Identity: Identity{Display: "Anonymous", URI: "sip:anonymous@anonymous.invalid"}, Target: "sip:**1002@pbx.example.nl"},
			}}}},
		{"freeswitch-empty.xml", &Document{Version: 0, HasVersion: true, State: Full, Entity: "sip:12@pbx.example.net", Dialogs: []Dialog{}}},
		{"kamailio-early.xml", &Document{Version: 1, HasVersion: true, State: Full, Entity: "sip:1001@voip.example.nl",
			Dialogs: []Dialog{{ID: "2f9c71d0-8a4b-4a2e-b07c-1d3e5f7a9b11", CallID: "5e2c8f1a-3b4d-11ef-9c2b-0242ac120002@10.0.0.7",
				LocalTag: "as51b7e3c2", RemoteTag: "8812400", Direction: Recipient, State: StateEarly,
				Remote: Participant{Identity: Identity{URI: "sip:+31201234567@voip.example.nl"}, Target: "sip:+31201234567@10.0.0.7:5060"},
				Local:  Participant{Identity: Identity{URI: "sip:1001@voip.example.nl"}, Target: "sip:1001@192.168.20.31:5062;transport=udp"},
			}}}},
		{"kamailio-multi.xml", &Document{Version: 7, HasVersion: true, State: Full, Entity: "sip:1001@voip.example.nl",
			Dialogs: []Dialog{
				{ID: "2f9c71d0-8a4b-4a2e-b07c-1d3e5f7a9b11", CallID: "5e2c8f1a-3b4d-11ef-9c2b-0242ac120002@10.0.0.7",
					LocalTag: "as51b7e3c2", RemoteTag: "8812400", Direction: Recipient, State: StateConfirmed,
					Remote: Participant{Identity: Identity{URI: "sip:+31201234567@voip.example.nl"}, Target: "sip:+31201234567@10.0.0.7:5060"},
					Local:  Participant{Identity: Identity{URI: "sip:+31851234567@voip.example.nl"}, Target: "sip:1001@192.168.20.31:5062;transport=udp"}},
				{ID: "a07d3e55-0c1f-4d2b-9e8a-77f0c6b5d4e3", CallID: "91ab22c0-3b4e-11ef-9c2b-0242ac120002@10.0.0.7",
					LocalTag: "as0c9d8e7f", Direction: Recipient, State: StateEarly,
					Remote: Participant{Identity: Identity{URI: "sip:0612345678@voip.example.nl"}, Target: "sip:0612345678@10.0.0.7:5060"},
					Local:  Participant{Identity: Identity{URI: "sip:1001@voip.example.nl"}, Target: "sip:1001@voip.example.nl"}},
			}}},
		{"kamailio-outbound-terminated.xml", &Document{Version: 3, HasVersion: true, State: Full, Entity: "sip:1002@voip.example.nl",
			Dialogs: []Dialog{{ID: "d41d8cd9-8f00-4b20-9e98-0998ecf8427e", CallID: "0c2e4a6b-3b50-11ef-9c2b-0242ac120002",
				LocalTag: "1928301774", RemoteTag: "as3f2e1d0c", Direction: Initiator, State: StateTerminated, Event: "remote-bye", Code: 200,
				Remote: Participant{Identity: Identity{URI: "sip:0401234567@voip.example.nl"}, Target: "sip:0401234567@voip.example.nl"},
				Local:  Participant{Identity: Identity{URI: "sip:1002@voip.example.nl"}, Target: "sip:1002@192.168.20.32:5060"},
			}}}},
		{"rfc4235-partial-transfer.xml", &Document{Version: 4, HasVersion: true, State: Partial, Entity: "sip:1002@pbx.example.com",
			Dialogs: []Dialog{{ID: "zxcvbnm3", CallID: "c3e1b2a0@pbx.example.com", LocalTag: "7a6b5c4d", RemoteTag: "aabbccdd",
				Direction: Recipient, State: StateConfirmed, Event: "replaced",
				Replaces:   &DialogRef{CallID: "hg287s98s89@pbx.example.com", LocalTag: "1928301774", RemoteTag: "456887766"},
				ReferredBy: &Identity{Display: "Agent 1001", URI: "sip:1001@pbx.example.com"},
				Local:      Participant{Identity: Identity{Display: "Agent 1002", URI: "sip:1002@pbx.example.com"}, Target: "sip:1002@192.0.2.12"},
				Remote:     Participant{Identity: Identity{Display: "Customer", URI: "sip:+31612345678@pbx.example.com"}, Target: "sip:+31612345678@198.51.100.7"},
			}}}},
		{"opensips-empty.xml", &Document{Version: 1, HasVersion: true, State: Full, Entity: "sip:1000@sip.example.org", Dialogs: []Dialog{}}},
		{"no-namespace-uppercase.xml", &Document{Version: 2, HasVersion: true, State: Full, Entity: "sip:201@10.1.1.1",
			Dialogs: []Dialog{{ID: "1", CallID: "3c26700a3b1f@10.1.1.1", Direction: Initiator, State: StateProceeding,
				Remote: Participant{Identity: Identity{URI: "sip:0301112222@10.1.1.1"}}}}}},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		seen[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			got, err := Parse(read(t, tt.file))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", d)
			}
		})
	}
	// Every body in testdata is covered, so a new fixture cannot sit untested.
	files, _ := filepath.Glob(filepath.Join(testdata, "*.xml"))
	for _, f := range files {
		if b := filepath.Base(f); !seen[b] && !strings.HasPrefix(b, "sipp-") {
			t.Errorf("testdata %s has no expectation in TestParseRealBodies", b)
		}
	}
}

func TestParseEdgeCases(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *Document
	}{
		{"missing version and state", `<dialog-info entity="sip:1@x"><dialog id="a"><state>early</state></dialog></dialog-info>`,
			&Document{State: Full, Entity: "sip:1@x", Dialogs: []Dialog{{ID: "a", State: StateEarly}}}},
		{"prefixed namespace", `<di:dialog-info xmlns:di="urn:ietf:params:xml:ns:dialog-info" version=" 5 " state="Partial" entity="sip:1@x"><di:dialog id="a"><di:state>TERMINATED</di:state></di:dialog></di:dialog-info>`,
			&Document{Version: 5, HasVersion: true, State: Partial, Entity: "sip:1@x", Dialogs: []Dialog{{ID: "a", State: StateTerminated}}}},
		{"id derived from call-id and tags", `<dialog-info version="1"><dialog call-id="c1" local-tag="l" remote-tag="r"><state>early</state></dialog></dialog-info>`,
			&Document{Version: 1, HasVersion: true, State: Full, Dialogs: []Dialog{{ID: "c1;l;r", CallID: "c1", LocalTag: "l", RemoteTag: "r", State: StateEarly}}}},
		{"unknown direction and bad code are dropped", `<dialog-info version="1"><dialog id="a" direction="sideways"><state code="abc" event="Rejected">terminated</state></dialog></dialog-info>`,
			&Document{Version: 1, HasVersion: true, State: Full, Dialogs: []Dialog{{ID: "a", State: StateTerminated, Event: "rejected"}}}},
		{"extension elements are ignored", `<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" xmlns:sa="urn:ietf:params:xml:ns:sa-dialog-info" version="1"><dialog id="a"><sa:exclusive>false</sa:exclusive><state>confirmed</state><route-set><hop>sip:p@x</hop></route-set></dialog></dialog-info>`,
			&Document{Version: 1, HasVersion: true, State: Full, Dialogs: []Dialog{{ID: "a", State: StateConfirmed}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse([]byte(tt.body))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("Parse mismatch (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, body string
		is         error
	}{
		{"empty", ``, nil},
		{"not xml", `hello`, nil},
		{"truncated", `<dialog-info version="1"><dialog id="a"><state>early</state>`, nil},
		{"other root", `<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:1@x"/>`, ErrNotDialogInfo},
		{"negative version", `<dialog-info version="-1"/>`, nil},
		{"overflowing version", `<dialog-info version="184467440737095516160"/>`, nil},
		{"bad state", `<dialog-info version="1" state="some"/>`, nil},
		{"dialog without state", `<dialog-info version="1"><dialog id="a"/></dialog-info>`, nil},
		{"dialog without any id", `<dialog-info version="1"><dialog><state>early</state></dialog></dialog-info>`, nil},
		{"external entity", `<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]><dialog-info version="1" entity="&x;"/>`, nil},
		{"unknown charset", `<?xml version="1.0" encoding="EBCDIC"?><dialog-info version="1"/>`, nil},
		{"too many dialogs", "<dialog-info>" + strings.Repeat(`<dialog id="a"><state>early</state></dialog>`, MaxDialogs+1) + "</dialog-info>", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := Parse([]byte(tt.body))
			if err == nil {
				t.Fatalf("Parse accepted it: %+v", doc)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v is not %v", err, tt.is)
			}
		})
	}
}

// FuzzParse checks that no body makes Parse panic and that every accepted
// document keeps the guarantees the monitor builds on.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(testdata, "*.xml"))
	for _, file := range files {
		f.Add(read(f, filepath.Base(file)))
	}
	f.Add([]byte(`<dialog-info version="1"><dialog call-id="c"><state>early</state></dialog></dialog-info>`))
	f.Fuzz(func(t *testing.T, body []byte) {
		doc, err := Parse(body)
		if err != nil {
			return
		}
		if doc.State != Full && doc.State != Partial {
			t.Fatalf("state %q", doc.State)
		}
		if len(doc.Dialogs) > MaxDialogs {
			t.Fatalf("%d dialogs", len(doc.Dialogs))
		}
		for _, d := range doc.Dialogs {
			if d.ID == "" || d.State == "" {
				t.Fatalf("dialog without id or state: %+v", d)
			}
			if d.State != strings.ToLower(strings.TrimSpace(d.State)) {
				t.Fatalf("state not normalised: %q", d.State)
			}
			if d.Direction != "" && d.Direction != Initiator && d.Direction != Recipient {
				t.Fatalf("direction %q", d.Direction)
			}
		}
	})
}
