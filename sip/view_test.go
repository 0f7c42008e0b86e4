package sip

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/sip/dialoginfo"
)

var t0 = time.Date(2026, 5, 4, 9, 30, 0, 0, time.UTC)

func mustParse(t testing.TB, body string) *dialoginfo.Document {
	t.Helper()
	d, err := dialoginfo.Parse([]byte(body))
	if err != nil {
		t.Fatalf("parse %q: %v", body, err)
	}
	return d
}

func fixture(t testing.TB, name string) *dialoginfo.Document {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "testdata", "sip", name))
	if err != nil {
		t.Fatal(err)
	}
	return mustParse(t, string(b))
}

// fold applies documents in order and returns every signal.
func fold(t testing.TB, ext string, docs ...*dialoginfo.Document) ([]events.Signal, legs) {
	t.Helper()
	l := legs{}
	var all []events.Signal
	for i, d := range docs {
		var out []events.Signal
		l, out = applyDoc(l, ext, "subscriptionCallID0001", d, uint64(i), t0)
		for _, s := range out {
			if err := s.Validate(); err != nil {
				t.Fatalf("invalid signal %+v: %v", s, err)
			}
		}
		all = append(all, out...)
	}
	return all, l
}

var ignoreKey = cmpopts.IgnoreFields(events.Signal{}, "DedupKey", "Time")

func TestAsteriskExtensionStateBecomesCalls(t *testing.T) {
	idle := fixture(t, "asterisk-pjsip-idle.xml")
	early := fixture(t, "asterisk-pjsip-early.xml")
	confirmed := fixture(t, "asterisk-pjsip-confirmed.xml")
	onhold := fixture(t, "asterisk-pjsip-onhold.xml")
	got, left := fold(t, "103", idle, early, confirmed, onhold, idle, idle, early, idle)
	first := "sip-103-subscription-1"
	second := "sip-103-subscription-6"
	caller := `"Jan de Vries" <sip:0612345678@192.168.1.10>`
	base := events.Signal{Source: "sip", LegID: "103@103", Extension: "103", Remote: caller, Direction: events.Inbound}
	with := func(callID string, st events.State) events.Signal {
		s := base
		s.CallID, s.State = callID, st
		return s
	}
	want := []events.Signal{
		with(first, events.Ringing),
		with(first, events.Answered), // the caller is remembered from the ringing document
		with(first, events.Ended),
		with(second, events.Ringing), // the next call gets its own id
		with(second, events.Ended),   // missed
	}
	if d := cmp.Diff(want, got, ignoreKey); d != "" {
		t.Errorf("signals (-want +got):\n%s", d)
	}
	if len(left) != 0 {
		t.Errorf("legs left: %v", left)
	}
}

func TestAsteriskNextCallWhileEndWasLost(t *testing.T) {
	// Answered, then the terminated NOTIFY is lost (or arrives late and is
	// stale): a ringing state under the same dialog id is the next call.
	got, _ := fold(t, "103",
		fixture(t, "asterisk-pjsip-early.xml"),
		fixture(t, "asterisk-pjsip-confirmed.xml"),
		mustParse(t, `<dialog-info version="12" state="full"><dialog id="103" direction="recipient"><state>early</state><remote><identity>sip:0208887777@pbx</identity></remote></dialog></dialog-info>`),
	)
	var states []string
	for _, s := range got {
		states = append(states, s.CallID[len(s.CallID)-1:]+":"+string(s.State))
	}
	want := []string{"0:ringing", "0:answered", "0:ended", "2:ringing"}
	if d := cmp.Diff(want, states); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestKamailioCallsWithDIDAndDirection(t *testing.T) {
	got, left := fold(t, "1001", fixture(t, "kamailio-early.xml"), fixture(t, "kamailio-multi.xml"))
	a := events.Signal{Source: "sip", CallID: "5e2c8f1a-3b4d-11ef-9c2b-0242ac120002@10.0.0.7",
		LegID: "2f9c71d0-8a4b-4a2e-b07c-1d3e5f7a9b11@1001", Extension: "1001",
		Remote: "sip:+31201234567@voip.example.nl", Direction: events.Inbound}
	aRing, aAns := a, a
	aRing.State = events.Ringing
	aAns.State, aAns.Dialled = events.Answered, "sip:+31851234567@voip.example.nl"
	b := events.Signal{Source: "sip", CallID: "91ab22c0-3b4e-11ef-9c2b-0242ac120002@10.0.0.7",
		LegID: "a07d3e55-0c1f-4d2b-9e8a-77f0c6b5d4e3@1001", Extension: "1001",
		Remote: "sip:0612345678@voip.example.nl", Direction: events.Inbound, State: events.Ringing}
	if d := cmp.Diff([]events.Signal{aRing, aAns, b}, got, ignoreKey); d != "" {
		t.Errorf("signals (-want +got):\n%s", d)
	}
	if len(left) != 2 {
		t.Errorf("%d legs left, want 2", len(left))
	}
}

func TestFreeSWITCHPartiesSurviveTermination(t *testing.T) {
	got, _ := fold(t, "1001", fixture(t, "freeswitch-early.xml"), fixture(t, "freeswitch-terminated.xml"))
	want := []events.Signal{
		{Source: "sip", CallID: "sip-1001.7f4de4ba-1a4c-4b5e-9d0f-3c2a1b0e9d8c-subscription-0", LegID: "7f4de4ba-1a4c-4b5e-9d0f-3c2a1b0e9d8c@1001",
			Extension: "1001", Remote: `"Klant BV" <sip:0031612345678@pbx.example.nl>`, Direction: events.Inbound, State: events.Ringing},
		{Source: "sip", CallID: "sip-1001.7f4de4ba-1a4c-4b5e-9d0f-3c2a1b0e9d8c-subscription-0", LegID: "7f4de4ba-1a4c-4b5e-9d0f-3c2a1b0e9d8c@1001",
			Extension: "1001", Remote: `"Klant BV" <sip:0031612345678@pbx.example.nl>`, Direction: events.Inbound, State: events.Ended},
	}
	if d := cmp.Diff(want, got, ignoreKey); d != "" {
		t.Errorf("signals (-want +got):\n%s", d)
	}
}

func TestFullDocumentEndsMissingDialogs(t *testing.T) {
	got, left := fold(t, "1001", fixture(t, "kamailio-multi.xml"), fixture(t, "opensips-empty.xml"))
	var ended []string
	for _, s := range got {
		if s.State == events.Ended {
			ended = append(ended, s.LegID)
		}
	}
	want := []string{"2f9c71d0-8a4b-4a2e-b07c-1d3e5f7a9b11@1001", "a07d3e55-0c1f-4d2b-9e8a-77f0c6b5d4e3@1001"}
	if d := cmp.Diff(want, ended); d != "" {
		t.Errorf("ended (-want +got):\n%s", d)
	}
	if len(left) != 0 {
		t.Errorf("legs left: %v", left)
	}
}

func TestPartialDocumentsMerge(t *testing.T) {
	ring := func(id, v string) *dialoginfo.Document {
		return mustParse(t, `<dialog-info version="`+v+`" state="partial"><dialog id="`+id+`" call-id="c-`+id+`" direction="recipient"><state>early</state><remote><identity>sip:06123456`+v+`@x</identity></remote></dialog></dialog-info>`)
	}
	got, left := fold(t, "201", ring("a", "10"), ring("b", "11"),
		mustParse(t, `<dialog-info version="12" state="partial"><dialog id="a" call-id="c-a"><state event="rejected" code="486">terminated</state></dialog></dialog-info>`))
	var states []string
	for _, s := range got {
		states = append(states, s.CallID+":"+string(s.State)+":"+s.Cause)
	}
	want := []string{"c-a:ringing:", "c-b:ringing:", "c-a:ended:rejected"}
	if d := cmp.Diff(want, states); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, ok := left["b"]; !ok || len(left) != 1 {
		t.Errorf("legs left %v, want only b", left)
	}
}

func TestTransferAndOddities(t *testing.T) {
	tests := []struct {
		name string
		docs []string
		want []events.Signal
	}{
		{
			name: "replaces links the new call id",
			docs: []string{`<dialog-info version="1"><dialog id="n1" call-id="new-1" direction="recipient"><state>early</state><replaces call-id="old-1" local-tag="a" remote-tag="b"/><referred-by>sip:201@pbx</referred-by><remote><identity>sip:0612345678@pbx</identity></remote></dialog></dialog-info>`},
			want: []events.Signal{{Source: "sip", CallID: "new-1", LinkedCallID: "old-1", ReferredBy: "201", LegID: "n1@202", Extension: "202",
				Remote: "sip:0612345678@pbx", Direction: events.Inbound, State: events.Ringing}},
		},
		{
			name: "referred-by without replaces names the transferring agent",
			docs: []string{`<dialog-info version="1"><dialog id="n2" call-id="new-2" direction="recipient"><state>early</state><referred-by display="Agent">&lt;sip:201@pbx;transport=tcp&gt;</referred-by><remote><identity>sip:0612345678@pbx</identity></remote></dialog></dialog-info>`},
			want: []events.Signal{{Source: "sip", CallID: "new-2", ReferredBy: "201", LegID: "n2@202", Extension: "202",
				Remote: "sip:0612345678@pbx", Direction: events.Inbound, State: events.Ringing}},
		},
		{
			name: "rfc example partial confirmed with replaces",
			docs: []string{mustRead(t, "rfc4235-partial-transfer.xml")},
			want: []events.Signal{{Source: "sip", CallID: "c3e1b2a0@pbx.example.com", LinkedCallID: "hg287s98s89@pbx.example.com", ReferredBy: "1001",
				LegID: "zxcvbnm3@202", Extension: "202", Remote: `"Customer" <sip:+31612345678@pbx.example.com>`,
				Direction: events.Inbound, State: events.Answered}},
		},
		{
			name: "a new call id under an old dialog id is a new call",
			docs: []string{
				`<dialog-info version="1"><dialog id="202" call-id="first" direction="recipient"><state>confirmed</state></dialog></dialog-info>`,
				`<dialog-info version="2"><dialog id="202" call-id="second" direction="recipient"><state>early</state></dialog></dialog-info>`,
			},
			want: []events.Signal{
				{Source: "sip", CallID: "first", LegID: "202@202", Extension: "202", Direction: events.Inbound, State: events.Answered},
				{Source: "sip", CallID: "first", LegID: "202@202", Extension: "202", Direction: events.Inbound, State: events.Ended},
				{Source: "sip", CallID: "second", LegID: "202@202", Extension: "202", Direction: events.Inbound, State: events.Ringing},
			},
		},
		{
			name: "a call that goes back to early is not reported back",
			docs: []string{
				`<dialog-info version="1"><dialog id="d" call-id="c" direction="initiator"><state>Confirmed</state></dialog></dialog-info>`,
				`<dialog-info version="2"><dialog id="d" call-id="c" direction="initiator"><state>EARLY</state></dialog></dialog-info>`,
				`<dialog-info version="3"><dialog id="d" call-id="c" direction="initiator"><state>trying</state></dialog></dialog-info>`,
			},
			want: []events.Signal{{Source: "sip", CallID: "c", LegID: "d@202", Extension: "202", Direction: events.Outbound, State: events.Answered}},
		},
		{
			name: "an end of an unknown named call is reported, of an unnamed one not",
			docs: []string{`<dialog-info version="1"><dialog id="x" call-id="gone" direction="recipient"><state event="cancelled">terminated</state><remote><identity>sip:0612345678@pbx</identity></remote></dialog><dialog id="202"><state>terminated</state></dialog></dialog-info>`},
			want: []events.Signal{{Source: "sip", CallID: "gone", LegID: "x@202", Extension: "202", Remote: "sip:0612345678@pbx",
				Direction: events.Inbound, State: events.Ended, Cause: "cancelled"}},
		},
		{
			name: "unknown states are ignored but keep the dialog alive",
			docs: []string{
				`<dialog-info version="1"><dialog id="d" call-id="c"><state>early</state></dialog></dialog-info>`,
				`<dialog-info version="2"><dialog id="d" call-id="c"><state>held</state></dialog></dialog-info>`,
			},
			want: []events.Signal{{Source: "sip", CallID: "c", LegID: "d@202", Extension: "202", State: events.Ringing}},
		},
		{
			name: "control characters never reach a signal",
			docs: []string{"<dialog-info version=\"1\"><dialog id=\"d&#10;x\" call-id=\"c&#13;&#10;Injected: yes\"><state>early</state><remote><identity display=\"Eve&#10;\">sip:06&#0009;1@x</identity></remote></dialog></dialog-info>"},
			want: []events.Signal{{Source: "sip", CallID: "cInjected: yes", LegID: "dx@202", Extension: "202", Remote: `"Eve" <sip:061@x>`, State: events.Ringing}},
		},
		{
			name: "FreeSWITCH pickup target is not the caller",
			docs: []string{`<dialog-info version="1"><dialog id="d" call-id="c" direction="recipient"><state>early</state><remote><target uri="sip:**202@pbx"/></remote></dialog></dialog-info>`},
			want: []events.Signal{{Source: "sip", CallID: "c", LegID: "d@202", Extension: "202", Direction: events.Inbound, State: events.Ringing}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var docs []*dialoginfo.Document
			for _, d := range tt.docs {
				docs = append(docs, mustParse(t, d))
			}
			got, _ := fold(t, "202", docs...)
			if d := cmp.Diff(tt.want, got, ignoreKey); d != "" {
				t.Errorf("signals (-want +got):\n%s", d)
			}
		})
	}
}

func mustRead(t testing.TB, name string) string {
	b, err := os.ReadFile(filepath.Join("..", "testdata", "sip", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDedupKeyIsStableAndDistinct(t *testing.T) {
	doc := fixture(t, "kamailio-early.xml")
	_, a := applyDoc(legs{}, "1001", "subA", doc, 1, t0)
	_, b := applyDoc(legs{}, "1001", "subB", doc, 7, t0.Add(time.Hour))
	if a[0].DedupKey != b[0].DedupKey {
		t.Error("the same dialog state gave different keys across NOTIFYs")
	}
	_, other := applyDoc(legs{}, "1002", "subA", doc, 1, t0)
	if other[0].DedupKey == a[0].DedupKey {
		t.Error("two extensions share a key")
	}
	all, _ := fold(t, "1001", fixture(t, "kamailio-early.xml"), fixture(t, "kamailio-multi.xml"))
	seen := map[string]bool{}
	for _, s := range all {
		if seen[s.DedupKey] {
			t.Errorf("duplicate key for %+v", s)
		}
		seen[s.DedupKey] = true
	}
}

func TestSnapshotListsTheDialogsThatAreNotTerminated(t *testing.T) {
	tests := []struct {
		name string
		ext  string
		doc  *dialoginfo.Document
		want []string
	}{
		{"kamailio answered and ringing", "1001", fixture(t, "kamailio-multi.xml"),
			[]string{"2f9c71d0-8a4b-4a2e-b07c-1d3e5f7a9b11@1001", "a07d3e55-0c1f-4d2b-9e8a-77f0c6b5d4e3@1001"}},
		{"asterisk idle", "103", fixture(t, "asterisk-pjsip-idle.xml"), []string{}},
		{"asterisk in a call", "103", fixture(t, "asterisk-pjsip-confirmed.xml"), []string{"103@103"}},
		{"empty", "1001", fixture(t, "opensips-empty.xml"), []string{}},
		{"terminated, unknown and repeated dialogs", "201", mustParse(t, `<dialog-info version="4" state="full">`+
			`<dialog id="gone" call-id="g"><state event="cancelled">terminated</state></dialog>`+
			`<dialog id="held" call-id="h"><state>held</state></dialog>`+
			`<dialog id="r" call-id="r"><state>early</state></dialog>`+
			`<dialog id="r" call-id="r"><state>confirmed</state></dialog></dialog-info>`),
			[]string{"held@201", "r@201"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := snapshot(tt.ext, "subscriptionCallID0001", tt.doc, 4, t0)
			if err := got.Validate(); err != nil {
				t.Fatalf("invalid snapshot %+v: %v", got, err)
			}
			if got.Source != "sip" || got.State != events.Snapshot || got.Extension != tt.ext || got.CallID != "" || !got.Time.Equal(t0) {
				t.Errorf("snapshot %+v", got)
			}
			if d := cmp.Diff(tt.want, got.Open); d != "" {
				t.Errorf("open legs (-want +got):\n%s", d)
			}
			// Every open leg carries the id the dialog's own signals carry,
			// else the tracker would end the leg it should keep.
			_, signals := applyDoc(legs{}, tt.ext, "subscriptionCallID0001", tt.doc, 4, t0)
			for _, s := range signals {
				if s.State != events.Ended && !slices.Contains(got.Open, s.LegID) {
					t.Errorf("leg %s of a %s signal is not open in the snapshot", s.LegID, s.State)
				}
			}
		})
	}
}

func TestSnapshotKeyIsOnePerSubscriptionAndDocument(t *testing.T) {
	doc := fixture(t, "kamailio-multi.xml")
	key := func(ext, sub string, seq uint64) string { return snapshot(ext, sub, doc, seq, t0).DedupKey }
	a := key("1001", "subA", 7)
	if again := snapshot("1001", "subA", doc, 7, t0.Add(time.Second)).DedupKey; again != a {
		t.Error("a retransmitted document gave another key")
	}
	others := map[string]string{
		"another subscription": key("1001", "subB", 7),
		"another document":     key("1001", "subA", 8),
		"another extension":    key("1002", "subA", 7),
	}
	_, signals := applyDoc(legs{}, "1001", "subA", doc, 7, t0)
	for _, s := range signals {
		others["signal "+s.LegID] = s.DedupKey
	}
	for what, k := range others {
		if k == a {
			t.Errorf("%s shares the snapshot's key", what)
		}
	}
}

// TestIdentifiersTheJournalWouldRefuse: a dialog id too long to sit beside
// the extension in a leg id, a call-id with invisible or bidirectional
// characters, a dialog without call-id whose id would make the invented one
// too long: the signals are still ones the journal accepts (fold checks),
// with identifiers that stay the same from one document to the next.
func TestIdentifiersTheJournalWouldRefuse(t *testing.T) {
	long := strings.Repeat("d", 300)
	doc := func(state string) *dialoginfo.Document {
		return mustParse(t, `<dialog-info version="1" state="full">`+
			`<dialog id="`+long+`" call-id="c&#8206;1&#8238;x&#xFEFF;"><state>`+state+`</state></dialog>`+
			`<dialog id="x`+long+`"><state>`+state+`</state></dialog></dialog-info>`)
	}
	got, _ := fold(t, "201", doc("early"), doc("confirmed"))
	if len(got) != 4 {
		t.Fatalf("%d signals, want 4: %+v", len(got), got)
	}
	if got[0].CallID != "c1x" {
		t.Errorf("call id %q, want the printable characters c1x", got[0].CallID)
	}
	for i, s := range got[:2] {
		if s.LegID != got[i+2].LegID || s.CallID != got[i+2].CallID {
			t.Errorf("dialog %d named %s/%s, then %s/%s", i, s.CallID, s.LegID, got[i+2].CallID, got[i+2].LegID)
		}
	}
	if got[0].LegID == got[1].LegID {
		t.Error("two long dialog ids share a leg id")
	}
	snap := snapshot("201", "subscriptionCallID0001", doc("confirmed"), 2, t0)
	if err := snap.Validate(); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{got[0].LegID, got[1].LegID}, snap.Open); d != "" {
		t.Errorf("snapshot open legs (-signals +snapshot):\n%s", d)
	}
}

func TestCompanyNumber(t *testing.T) {
	tests := []struct {
		local, target, remote, want string
	}{
		{"sip:+31851234567@pbx", "", "sip:0612345678@pbx", "sip:+31851234567@pbx"},
		{"sip:201@pbx", "sip:201@10.0.0.1", "sip:0612345678@pbx", ""},
		{"sip:0612345678@pbx", "sip:201@pbx", "sip:0612345678@pbx", ""}, // Asterisk shows the caller locally
		{"sip:020-123 45 67@pbx", "", "sip:0612345678@pbx", "sip:020-123 45 67@pbx"},
		{"", "tel:+31201234567", "sip:0612345678@pbx", "tel:+31201234567"},
		{"sip:reception@pbx", "", "", ""},
		{"sip:1234567@pbx", "", "", "sip:1234567@pbx"},
		{"sip:123456@pbx", "", "", ""},
	}
	for _, tt := range tests {
		d := dialoginfo.Dialog{Direction: dialoginfo.Recipient,
			Local:  dialoginfo.Participant{Identity: dialoginfo.Identity{URI: tt.local}, Target: tt.target},
			Remote: dialoginfo.Participant{Identity: dialoginfo.Identity{URI: tt.remote}}}
		if got := companyNumber(d, "201"); got != tt.want {
			t.Errorf("companyNumber(local=%q target=%q) = %q, want %q", tt.local, tt.target, got, tt.want)
		}
	}
}

// FuzzApplyDoc feeds arbitrary bodies through parsing and folding: nothing
// may panic and every signal must be one the journal accepts.
func FuzzApplyDoc(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "sip", "*.xml"))
	for _, file := range files {
		if strings.Contains(file, "sipp") {
			continue
		}
		b, _ := os.ReadFile(file)
		f.Add(b, b)
	}
	odd := []byte(`<dialog-info version="1"><dialog id="` + strings.Repeat("i", 260) + `" call-id="a&#8207;b"><state>early</state></dialog></dialog-info>`)
	f.Add(odd, odd)
	f.Fuzz(func(t *testing.T, first, second []byte) {
		l := legs{}
		for i, body := range [][]byte{first, second} {
			doc, err := dialoginfo.Parse(body)
			if err != nil {
				continue
			}
			var out []events.Signal
			l, out = applyDoc(l, "201", "fuzzsubscription", doc, uint64(i), t0)
			out = append(out, snapshot("201", "fuzzsubscription", doc, uint64(i), t0))
			for _, s := range out {
				if err := s.Validate(); err != nil {
					t.Fatalf("invalid signal %+v: %v", s, err)
				}
				if strings.ContainsAny(s.CallID+s.LegID+s.Remote+s.Dialled+s.LinkedCallID+s.Cause, "\r\n") {
					t.Fatalf("line break in signal %+v", s)
				}
			}
			for id, lg := range l {
				if lg.state == events.Ended || lg.callID == "" || id == "" {
					t.Fatalf("bad leg %q %+v", id, lg)
				}
			}
		}
	})
}
