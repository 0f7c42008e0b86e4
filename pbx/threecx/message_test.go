package threecx

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
)

func fixture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "testdata", "threecx", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestCapturedParticipants decodes the participants captured on a real 3CX
// V20 and checks the signal each one makes.
func TestCapturedParticipants(t *testing.T) {
	tests := []struct {
		file string
		want events.Signal
	}{{
		file: "participant_ringing_inbound.json",
		want: events.Signal{
			Source: "threecx", CallID: "1264", LegID: "8106", Extension: "150",
			Remote: "0123456789", Direction: events.Inbound, State: events.Ringing,
			DedupKey: "threecx:1264:8106:ringing",
			// party_did is empty in the capture; the trunk's DN is the line.
			Line: "10007",
		},
	}, {
		file: "participant_dialing_outbound.json",
		want: events.Signal{
			Source: "threecx", CallID: "1265", LegID: "8107", Extension: "150",
			Remote: "0123456789", Direction: events.Outbound, State: events.Ringing,
			DedupKey: "threecx:1265:8107:ringing",
			Line:     "10007",
		},
	}}
	now := time.Date(2024, 12, 1, 10, 0, 0, 0, time.UTC)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			p, err := DecodeParticipant(fixture(t, tt.file), "150")
			if err != nil {
				t.Fatal(err)
			}
			b := newBook(nil)
			b.learnDN("150", TypeExtension)
			pd, ok := b.observe(ParticipantPath(p.DN, p.ID), p, now)
			if !ok {
				t.Fatal("no signal")
			}
			tt.want.Time = now
			if diff := cmp.Diff(tt.want, pd.sig); diff != "" {
				t.Errorf("signal (-want +got):\n%s", diff)
			}
			if err := pd.sig.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestCapturedMessages(t *testing.T) {
	for file, want := range map[string]Message{
		"ws_upsert.json": {Sequence: 15, HasSequence: true, Type: EventUpsert, Entity: "/callcontrol/150/participants/8106"},
		"ws_remove.json": {Sequence: 16, HasSequence: true, Type: EventRemove, Entity: "/callcontrol/150/participants/8106"},
	} {
		got, err := DecodeMessage(fixture(t, file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if got != want {
			t.Errorf("%s: got %+v, want %+v", file, got, want)
		}
	}
}

func TestSnapshotFixture(t *testing.T) {
	dns, dropped, err := DecodeSnapshot(fixture(t, "callcontrol_snapshot.json"))
	if err != nil || dropped != 0 {
		t.Fatalf("err %v, dropped %d", err, dropped)
	}
	var got []string
	for _, d := range dns {
		got = append(got, d.DN+"/"+d.Type)
		for _, p := range d.Participants {
			got = append(got, string(p.ID)+"@"+string(p.CallID)+"/"+p.Status)
		}
	}
	want := []string{"150/Wextension", "8106@1264/Ringing", "800/Wqueue", "ROUTER/Wroutepoint"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("snapshot (-want +got):\n%s", diff)
	}
}

func TestDecodeMessage(t *testing.T) {
	tests := []struct {
		in     string
		want   Message
		reason string
	}{
		{in: `{"sequence":1,"event":{"event_type":0,"entity":"/callcontrol/1/participants/2"}}`, want: Message{Sequence: 1, HasSequence: true, Type: EventUpsert, Entity: "/callcontrol/1/participants/2"}},
		{in: `{"event":{"event_type":"Remove","entity":"/callcontrol/1/participants/2"}}`, want: Message{Type: EventRemove, Entity: "/callcontrol/1/participants/2"}},
		{in: `{"sequence":3,"event":{"event_type":2,"entity":"/callcontrol/1/participants/2","attached_data":{"dtmf_input":"12"}}}`, want: Message{Sequence: 3, HasSequence: true, Type: EventDTMF, Entity: "/callcontrol/1/participants/2"}},
		{in: `{"event":{"event_type":4,"attached_data":{"RequestID":"x","StatusCode":200}}}`, want: Message{Type: EventResponse}},
		{in: `not json`, reason: reasonJSON},
		{in: `{"sequence":1,"event":{"event_type":0,"entity":"/x"}} trailing`, reason: reasonJSON},
		{in: `{"sequence":1.5,"event":{"event_type":0,"entity":"/x"}}`, reason: reasonJSON},
		{in: `{"sequence":1}`, reason: reasonNoEvent},
		{in: `{"event":{"entity":"/x"}}`, reason: reasonNoEvent},
		{in: `{"event":{"event_type":1}}`, reason: reasonNoEntity},
		{in: `{"event":{"event_type":7,"entity":"/x"}}`, reason: reasonUnknownType},
		{in: `{"event":{"event_type":"Bogus","entity":"/x"}}`, reason: reasonJSON},
		{in: `[]`, reason: reasonJSON},
		{in: `null`, reason: reasonNoEvent},
		// 3CX's documentation spells the members in PascalCase, its samples
		// in snake_case; other spellings of the same names are accepted too.
		{in: `{"Sequence":5,"Event":{"EventType":0,"Entity":"/callcontrol/150/participants/8106","AttachedData":null}}`, want: Message{Sequence: 5, HasSequence: true, Type: EventUpsert, Entity: "/callcontrol/150/participants/8106"}},
		{in: `{"sequence":6,"event":{"EventType":"Remove","entity":"/callcontrol/150/participants/8106"}}`, want: Message{Sequence: 6, HasSequence: true, Type: EventRemove, Entity: "/callcontrol/150/participants/8106"}},
		{in: `{"SEQUENCE":7,"EVENT":{"eventType":1,"ENTITY":"/callcontrol/150/participants/8106"}}`, want: Message{Sequence: 7, HasSequence: true, Type: EventRemove, Entity: "/callcontrol/150/participants/8106"}},
		{in: `{"Event":{"EventType":1}}`, reason: reasonNoEntity},
		{in: `{"Event":{"Entity":"/x"}}`, reason: reasonNoEvent},
		// The snake_case spelling wins over another one; two other
		// spellings of one member are refused rather than picked at random.
		{in: `{"event":{"event_type":0,"EventType":1,"entity":"/x"}}`, want: Message{Type: EventUpsert, Entity: "/x"}},
		{in: `{"event":{"EventType":0,"eventType":1,"entity":"/x"}}`, reason: reasonJSON},
		{in: `{"event":{"event_type":0,"entity":7}}`, reason: reasonJSON},
	}
	for _, tt := range tests {
		got, err := DecodeMessage([]byte(tt.in))
		if tt.reason != "" {
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason != tt.reason {
				t.Errorf("%s: error %v, want reason %s", tt.in, err, tt.reason)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: got %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}

func TestDecodeParticipantRejects(t *testing.T) {
	for _, in := range []string{
		`{}`,
		`{"id":1,"dn":"150"}`,
		`{"callid":1,"dn":"150"}`,
		`{"id":1.5,"callid":1,"dn":"150"}`,
		`{"id":1,"callid":1,"dn":"../../admin"}`,
		`{"id":"1/2","callid":1,"dn":"150"}`,
		`{"id":1,"callid":1,"dn":"151"}`, // not the entity's DN
		`"participant"`,
	} {
		if p, err := DecodeParticipant([]byte(in), "150"); err == nil {
			t.Errorf("%s: decoded %+v, want an error", in, p)
		}
	}
	p, err := DecodeParticipant([]byte(`{"id":"8106","callid":"1264"}`), "150")
	if err != nil || p.DN != "150" || p.ID != "8106" || p.CallID != "1264" {
		t.Errorf("string ids and a DN from the path: got %+v, %v", p, err)
	}
}

// TestDecodeParticipantSpellings: a participant in PascalCase or camelCase
// decodes to the same fields as the snake_case one 3CX was seen sending.
func TestDecodeParticipantSpellings(t *testing.T) {
	want, err := DecodeParticipant(fixture(t, "participant_ringing_inbound.json"), "150")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range []string{
		`{"Id":8106,"Status":"Ringing","Dn":"150","PartyCallerName":"+49123456789","PartyDn":"10007","PartyCallerId":"0123456789",` +
			`"PartyDid":"","DeviceId":"sip:150@127.0.0.1:5483;rinstance=c2a75fd2f1caea71","PartyDnType":"Wexternalline","DirectControl":false,` +
			`"OriginatedByDn":"ROUTER","OriginatedByType":"Wroutepoint","ReferredByDn":"","ReferredByType":"None",` +
			`"OnBehalfOfDn":"","OnBehalfOfType":"None","CallId":1264,"LegId":4}`,
		`{"id":8106,"status":"Ringing","dn":"150","partyCallerName":"+49123456789","partyDN":"10007","partyCallerID":"0123456789",` +
			`"partyDID":"","deviceID":"sip:150@127.0.0.1:5483;rinstance=c2a75fd2f1caea71","partyDNType":"Wexternalline","directControl":false,` +
			`"originatedByDN":"ROUTER","originatedByType":"Wroutepoint","referredByDN":"","referredByType":"None",` +
			`"onBehalfOfDN":"","onBehalfOfType":"None","callID":1264,"legID":4}`,
	} {
		got, err := DecodeParticipant([]byte(in), "150")
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("participant (-snake_case +other spelling):\n%s", diff)
		}
	}
}

func TestParseEntity(t *testing.T) {
	tests := []struct {
		in     string
		dn, id string
		ok     bool
	}{
		{"/callcontrol/150/participants/8106", "150", "8106", true},
		{"/callcontrol/ROUTER/participants/1", "ROUTER", "1", true},
		{"/callcontrol/150", "", "", false},
		{"/callcontrol/150/devices/sip:150@pbx", "", "", false},
		{"/callcontrol/150/participants/8106/extra", "", "", false},
		{"/callcontrol/../participants/1", "", "", false},
		{"/callcontrol/150/participants/..", "", "", false},
		{"/callcontrol/150%2F/participants/1", "", "", false},
		{"/callcontrol/150/participants/1?x=y", "", "", false},
		{"https://elsewhere.invalid/callcontrol/150/participants/1", "", "", false},
		{"//elsewhere.invalid/callcontrol/150/participants/1", "", "", false},
		{"/callcontrol//participants/1", "", "", false},
	}
	for _, tt := range tests {
		dn, id, ok := ParseEntity(tt.in)
		if ok != tt.ok || dn != tt.dn || string(id) != tt.id {
			t.Errorf("ParseEntity(%q) = %q, %q, %v; want %q, %q, %v", tt.in, dn, id, ok, tt.dn, tt.id, tt.ok)
		}
	}
}

func TestRemoteNumber(t *testing.T) {
	tests := []struct {
		id, name, want string
	}{
		{"0123456789", "+49123456789", "0123456789"},
		{"", "+49123456789", "+49123456789"},
		{"", "+49 (0)30 123-45", "+49 (0)30 123-45"},
		{"  0612345678 ", "", "0612345678"},
		{"", "Jansen BV", ""},
		{"", "12", ""},
		{"", "", ""},
		{"anonymous", "", "anonymous"},
	}
	for _, tt := range tests {
		if got := remoteNumber(Participant{PartyCallerID: tt.id, PartyCallerName: tt.name}); got != tt.want {
			t.Errorf("remoteNumber(id %q, name %q) = %q, want %q", tt.id, tt.name, got, tt.want)
		}
	}
}

func TestDirection(t *testing.T) {
	tests := []struct {
		name  string
		p     Participant
		agent bool
		want  events.Direction
	}{
		{"ringing", Participant{Status: StatusRinging}, true, events.Inbound},
		{"dialing", Participant{Status: StatusDialing}, true, events.Outbound},
		{"connected, routed", Participant{Status: StatusConnected, OriginatedByDN: "ROUTER"}, true, events.Inbound},
		{"connected, referred", Participant{Status: StatusConnected, ReferredByDN: "150"}, true, events.Inbound},
		{"connected, with DID", Participant{Status: StatusConnected, PartyDID: "0301234567"}, true, events.Inbound},
		{"connected, nothing", Participant{Status: StatusConnected}, true, events.Outbound},
		{"queue", Participant{Status: StatusConnected}, false, events.Inbound},
	}
	for _, tt := range tests {
		if got := newBook(nil).directionFor(tt.p, tt.agent); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.name, got, tt.want)
		}
	}
	// A later leg takes its call's direction, whatever its own fields say.
	b := newBook(nil)
	b.calls["1"] = &callInfo{dir: events.Outbound, legs: 1}
	if got := b.directionFor(Participant{CallID: "1", Status: StatusRinging}, true); got != events.Outbound {
		t.Errorf("second leg of an outbound call: %s", got)
	}
}

func TestCheckSequence(t *testing.T) {
	tests := []struct {
		name string
		seqs []int64
		want []string // per message: "", "gap" or "reset"
	}{
		{"in order", []int64{7, 8, 9}, []string{"", "", ""}},
		{"gap", []int64{1, 2, 4, 5}, []string{"", "", "gap", ""}},
		{"repeat and late", []int64{1, 2, 2, 3, 1}, []string{"", "", "", "", ""}},
		{"late after gap", []int64{1, 3, 2, 4}, []string{"", "gap", "", ""}},
		{"counter restarted", []int64{500, 501, 1, 2}, []string{"", "", "reset", ""}},
	}
	for _, tt := range tests {
		s := &Source{}
		var got []string
		for _, n := range tt.seqs {
			gap, reset := s.checkSequence(Message{Sequence: n, HasSequence: true})
			got = append(got, map[[2]bool]string{{false, false}: "", {true, false}: "gap", {false, true}: "reset"}[[2]bool{gap, reset}])
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
	s := &Source{}
	for range 3 {
		if gap, reset := s.checkSequence(Message{}); gap || reset {
			t.Error("a message without sequence reported a gap")
		}
	}
}

// TestBackoff: the source's defaults make the first reconnect immediate and
// cap the wait at 15s.
func TestBackoff(t *testing.T) {
	s, err := New(Options{Config: Config{URL: "https://pbx.example.com", ClientID: "900", ClientSecret: "k"}, Journal: nopJournal{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		n       int
		down    time.Duration
		ceiling time.Duration
	}{
		{1, 0, 0},
		{1, time.Hour, 0},
		{2, 0, 250 * time.Millisecond},
		{3, 6 * time.Second, 750 * time.Millisecond},
		{50, time.Hour, 15 * time.Second},
	} {
		for range 200 {
			d := s.backoff(tc.n, tc.down)
			if d < tc.ceiling/2 || d > tc.ceiling {
				t.Fatalf("backoff(%d, %s) = %s, want between %s and %s", tc.n, tc.down, d, tc.ceiling/2, tc.ceiling)
			}
		}
	}
}

type nopJournal struct{}

func (nopJournal) PublishSignal(context.Context, events.Signal) error { return nil }

func TestConfig(t *testing.T) {
	good := Config{URL: "https://pbx.example.com", ClientID: "900", ClientSecret: "hunter2-api-key", QueueDNs: []string{"800"}}
	if err := good.Validate(); err != nil {
		t.Errorf("valid config: %v", err)
	}
	bad := Config{URL: "ftp://user:hunter2-api-key@pbx?x=1", QueueDNs: []string{"8/0"}}
	err := bad.Validate()
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, want := range []string{"http or https", "credentials", "THREECX_CLIENT_ID", "THREECX_CLIENT_SECRET", "THREECX_QUEUE_DNS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("error shows the secret: %v", err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewTextHandler(&buf, nil)).Info("config", "threecx", good)
	if strings.Contains(buf.String(), "hunter2") || !strings.Contains(buf.String(), "client_secret_set=true") {
		t.Errorf("logged config: %s", buf.String())
	}
}

func TestTokenLifetime(t *testing.T) {
	for in, want := range map[string]time.Duration{
		`3600`:   time.Hour,
		`"300"`:  5 * time.Minute,
		`0`:      defaultTokenLifetime,
		`-5`:     defaultTokenLifetime,
		``:       defaultTokenLifetime,
		`"soon"`: defaultTokenLifetime,
		`1e12`:   defaultTokenLifetime,
	} {
		if got := parseExpiresIn([]byte(in)); got != want {
			t.Errorf("expires_in %s: %s, want %s", in, got, want)
		}
	}
}
