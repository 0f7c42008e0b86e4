package xelion

import (
	"encoding/json"
	"errors"
	"github.com/voipbridge/voipbridge/pbx"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/events/eventstest"
	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
)

var t0 = time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC)

// clock is a settable clock for the translator.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func loadScripts(t *testing.T) map[string]xeliontest.Script {
	t.Helper()
	files, err := filepath.Glob("../../testdata/xelion/calls/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no call scripts: %v", err)
	}
	out := map[string]xeliontest.Script{}
	for _, f := range files {
		sc, err := xeliontest.LoadScript(f)
		if err != nil {
			t.Fatal(err)
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = sc
	}
	return out
}

func wantSignals(t *testing.T, sc xeliontest.Script) []events.Signal {
	t.Helper()
	var want []events.Signal
	if err := json.Unmarshal(sc.Want, &want); err != nil {
		t.Fatal(err)
	}
	return want
}

// ignoreTimeKey compares signals without their times and dedup keys, which
// are checked on their own.
var ignoreTimeKey = cmpopts.IgnoreFields(events.Signal{}, "Time", "DedupKey")

func checkSignals(t *testing.T, sigs []events.Signal) {
	t.Helper()
	seen := map[string]bool{}
	for _, s := range sigs {
		if err := s.Validate(); err != nil {
			t.Errorf("invalid signal %+v: %v", s, err)
		}
		if seen[s.DedupKey] {
			t.Errorf("dedup key %q used twice", s.DedupKey)
		}
		seen[s.DedupKey] = true
	}
}

// translate feeds a script's notifications to a translator (drops and
// expiries change nothing for it) and returns the signals.
func translate(t *testing.T, tr *translator, steps []xeliontest.Step) ([]events.Signal, []string) {
	t.Helper()
	var out []events.Signal
	var drops []string
	for i, st := range steps {
		if len(st.Notification) == 0 {
			continue
		}
		ev, err := Decode(st.Notification)
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		o := tr.apply(ev)
		out = append(out, o.signals...)
		if o.drop != "" {
			drops = append(drops, o.drop)
		}
	}
	return out, drops
}

// TestScriptsTranslate plays every call script through the translator.
func TestScriptsTranslate(t *testing.T) {
	for name, sc := range loadScripts(t) {
		t.Run(name, func(t *testing.T) {
			c := &clock{t0}
			got, _ := translate(t, newTranslator(c.Now), sc.Steps)
			if diff := cmp.Diff(wantSignals(t, sc), got, ignoreTimeKey); diff != "" {
				t.Errorf("%s\nsignals (-want +got):\n%s", sc.Description, diff)
			}
			checkSignals(t, got)
			for _, s := range got {
				if !s.Time.Equal(t0) {
					t.Errorf("signal time %v, want the source's clock %v", s.Time, t0)
				}
			}
			// What the tracker makes of them, every party its own agent,
			// without CALL_TIMEOUT: the signals alone end the call.
			pol := eventstest.Policies()
			pol.CallTimeout = 0
			var evs []xeliontest.WantEvent
			for _, e := range eventstest.ReplayWith(t, pol, "", got) {
				evs = append(evs, xeliontest.WantEvent{Type: string(e.Type), Agent: e.PhoneExtension})
			}
			if diff := cmp.Diff(sc.WantEvents, evs); diff != "" {
				t.Errorf("%s\nhelpdesk events (-want +got):\n%s", sc.Description, diff)
			}
		})
	}
}

// TestAttendedTransferDrops: the consultation is translated as the call it
// is (the tracker decides it is a consultation); only Xelion's repeat of
// its hang-up is dropped, as a duplicate.
func TestAttendedTransferDrops(t *testing.T) {
	sc := loadScripts(t)["attended-transfer"]
	c := &clock{t0}
	_, drops := translate(t, newTranslator(c.Now), sc.Steps)
	want := []string{reasonDuplicate}
	if diff := cmp.Diff(want, drops); diff != "" {
		t.Errorf("drops (-want +got):\n%s", diff)
	}
}

// notification builds a call event message.
func notification(typ, callID string, caller, callee *party, initiation string) []byte {
	o := map[string]any{"callId": callID, "initiation": initiation, "date": "2024-03-05 11:10:00"}
	if caller != nil {
		o["callerPhoneNumber"] = caller.number
		if caller.ref != nil {
			o["callerAddressable"] = caller.ref
		}
	}
	if callee != nil {
		o["calleePhoneNumber"] = callee.number
		if callee.ref != nil {
			o["calleeAddressable"] = callee.ref
		}
	}
	return xeliontest.Notification(typ, o)
}

var (
	cust  = &party{number: "+31612345678"}
	anna  = &party{number: "+31152511401", ref: &Ref{OID: "1650938"}}
	bert  = &party{number: "+31152511402", ref: &Ref{OID: "1650940"}}
	carla = &party{number: "+31152511403", ref: &Ref{OID: "1650942"}}
)

type step struct {
	typ, callID    string
	caller, callee *party
	initiation     string
}

func run(t *testing.T, steps []step) []events.Signal {
	t.Helper()
	c := &clock{t0}
	tr := newTranslator(c.Now)
	var out []events.Signal
	for i, s := range steps {
		init := s.initiation
		if init == "" {
			init = "incoming"
		}
		ev, err := Decode(notification(s.typ, s.callID, s.caller, s.callee, init))
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		c.now = c.now.Add(time.Second)
		out = append(out, tr.apply(ev).signals...)
	}
	checkSignals(t, out)
	return out
}

// brief is a signal reduced to what the variants below check.
type brief struct {
	CallID, LegID string
	State         events.State
	Cause         string
}

func briefs(sigs []events.Signal) []brief {
	out := make([]brief, 0, len(sigs))
	for _, s := range sigs {
		out = append(out, brief{s.CallID, s.LegID, s.State, s.Cause})
	}
	return out
}

// TestTransferVariants covers what Xelion leaves open about transfers: the
// final hang-up under the consultation's call id or a new one, a cancelled
// consultation, the customer hanging up during a consultation, and a call
// handed back to the agent who had it. The source translates each Xelion
// call id on its own; what the helpdesk gets is the tracker's, and the
// call ends with the last message, not before.
func TestTransferVariants(t *testing.T) {
	const x, x2, x3 = "100.1", "100.2", "100.3"
	const a, b, c = "1650938", "1650940", "1650942"
	answered := []step{
		{NewCallEvent, x, cust, anna, ""},
		{CallConnectedEvent, x, cust, anna, ""},
	}
	consult := []step{
		{NewCallEvent, x2, anna, bert, "outgoing"},
		{CallConnectedEvent, x2, anna, bert, "outgoing"},
	}
	script := func(parts ...[]step) []step {
		var out []step
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	toBert := []agentEvent{{"Answered", a}, {"Transfer", b}, {"Disconnected", b}}
	tests := []struct {
		name  string
		steps []step
		want  []agentEvent
	}{
		{
			name: "final hang-up under the consultation's id",
			steps: script(answered, consult, []step{
				{CallTransferredEvent, x, cust, bert, ""},
				{CallHungUpEvent, x, cust, anna, ""},
				{CallHungUpEvent, x2, anna, bert, "outgoing"},
				{CallHungUpEvent, x2, cust, bert, ""},
			}),
			want: toBert,
		},
		{
			name: "final hang-up under a new id",
			steps: script(answered, consult, []step{
				{CallTransferredEvent, x, cust, bert, ""},
				{CallHungUpEvent, x, cust, anna, ""},
				{CallHungUpEvent, x2, anna, bert, "outgoing"},
				{CallHungUpEvent, x3, cust, bert, ""},
			}),
			want: toBert,
		},
		{
			name: "transfer event names the consultation",
			steps: script(answered, consult, []step{
				{CallTransferredEvent, x2, anna, bert, "outgoing"},
				{CallHungUpEvent, x, cust, anna, ""},
				{CallHungUpEvent, x, cust, bert, ""},
			}),
			want: toBert,
		},
		{
			name: "no transfer event: Bert seen with the customer under the consultation's id",
			steps: script(answered, consult, []step{
				{CallHungUpEvent, x, cust, anna, ""},
				{CallConnectedEvent, x2, cust, bert, ""},
				{CallHungUpEvent, x2, cust, bert, ""},
			}),
			want: toBert,
		},
		{
			name: "consultation cancelled, Anna goes back to the customer",
			steps: script(answered, consult, []step{
				{CallHungUpEvent, x2, anna, bert, "outgoing"},
				{CallHungUpEvent, x, cust, anna, ""},
			}),
			want: []agentEvent{{"Answered", a}, {"Disconnected", a}},
		},
		{
			name: "customer hangs up during the consultation",
			steps: script(answered, consult, []step{
				{CallHungUpEvent, x, cust, anna, ""},
				{CallHungUpEvent, x2, anna, bert, "outgoing"},
			}),
			want: []agentEvent{{"Answered", a}, {"Disconnected", a}},
		},
		{
			name: "handed back: Anna gets a new leg",
			steps: script(answered, []step{
				{CallTransferredEvent, x, cust, bert, ""},
				{ChannelHungUpEvent, x, nil, anna, ""},
				{CallConnectedEvent, x, cust, bert, ""},
				{CallTransferredEvent, x, cust, anna, ""},
				{ChannelHungUpEvent, x, nil, bert, ""},
				{CallConnectedEvent, x, cust, anna, ""},
				{CallHungUpEvent, x, cust, anna, ""},
			}),
			want: []agentEvent{{"Answered", a}, {"Transfer", b}, {"Transfer", a}, {"Disconnected", a}},
		},
		{
			name: "a call of an agent on hold to a colleague is a consultation, transferred to Carla",
			steps: script(answered, []step{
				{NewCallEvent, x2, anna, carla, "outgoing"},
				{CallConnectedEvent, x2, anna, carla, "outgoing"},
				{CallTransferredEvent, x, cust, carla, ""},
				{CallHungUpEvent, x, cust, anna, ""},
				{CallHungUpEvent, x, cust, carla, ""},
			}),
			want: []agentEvent{{"Answered", a}, {"Transfer", c}, {"Disconnected", c}},
		},
	}
	noTimeout := eventstest.Policies()
	noTimeout.CallTimeout = 0
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sigs := run(t, tt.steps)
			if diff := cmp.Diff(tt.want, agentEvents(eventstest.ReplayWith(t, noTimeout, "", sigs))); diff != "" {
				t.Errorf("helpdesk events (-want +got):\n%s\nsignals: %+v", diff, briefs(sigs))
			}
			for _, e := range eventstest.ReplayWith(t, noTimeout, "", sigs[:len(sigs)-1]) {
				if e.Type == events.EventDisconnected {
					t.Errorf("Disconnected before the last message: %+v", briefs(sigs))
				}
			}
		})
	}
}

// TestUnknownCalls: events of calls that began before the source listened.
func TestUnknownCalls(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
		want  []brief
	}{
		{
			name:  "hang-up of a call never seen ends the leg it would have had, not the call",
			steps: []step{{CallHungUpEvent, "9.1", cust, anna, ""}},
			want:  []brief{{"9.1", "9.1/1650938/1", events.Ended, ""}},
		},
		{
			name:  "answer of a call never seen starts it",
			steps: []step{{CallConnectedEvent, "9.2", cust, anna, ""}, {CallHungUpEvent, "9.2", cust, anna, ""}},
			want: []brief{
				{"9.2", "9.2/1650938/1", events.Answered, ""},
				{"9.2", "9.2/1650938/1", events.Ended, ""},
			},
		},
		{
			name:  "transfer of a call never seen is dropped",
			steps: []step{{CallTransferredEvent, "9.3", cust, bert, ""}},
			want:  []brief{},
		},
		{
			name:  "channel hang-up naming only the customer is not a leg",
			steps: []step{{NewCallEvent, "9.4", cust, anna, ""}, {ChannelHungUpEvent, "9.4", cust, nil, ""}},
			want:  []brief{{"9.4", "9.4/1650938/1", events.Ringing, ""}},
		},
		{
			name: "a second call of the same customer, with no transfer under way, is a call of its own",
			steps: []step{
				{NewCallEvent, "9.6", cust, anna, ""}, {CallConnectedEvent, "9.6", cust, anna, ""},
				{NewCallEvent, "9.7", cust, bert, ""}, {CallHungUpEvent, "9.7", cust, bert, ""},
			},
			want: []brief{
				{"9.6", "9.6/1650938/1", events.Ringing, ""},
				{"9.6", "9.6/1650938/1", events.Answered, ""},
				{"9.7", "9.7/1650940/1", events.Ringing, ""},
				{"9.7", "9.7/1650940/1", events.Ended, ""},
			},
		},
		{
			name:  "a party's events after its hang-up are dropped; another party's are the tracker's to judge",
			steps: []step{{NewCallEvent, "9.5", cust, anna, ""}, {CallHungUpEvent, "9.5", cust, anna, ""}, {CallConnectedEvent, "9.5", cust, anna, ""}, {NewCallEvent, "9.5", cust, bert, ""}},
			want: []brief{
				{"9.5", "9.5/1650938/1", events.Ringing, ""},
				{"9.5", "9.5/1650938/1", events.Ended, ""},
				{"9.5", "9.5/1650940/1", events.Ringing, ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, briefs(run(t, tt.steps))); diff != "" {
				t.Errorf("signals (-want +got):\n%s", diff)
			}
		})
	}
}

// TestIdentifiers: the OID identifies a party when there is one, else its
// number; the company number is known only with an OID.
func TestIdentifiers(t *testing.T) {
	noOID := &party{number: "201"}
	got := run(t, []step{{NewCallEvent, "7.1", cust, noOID, ""}})
	if len(got) != 1 || got[0].Extension != "201" || got[0].Dialled != "" || got[0].Remote != "+31612345678" {
		t.Errorf("signal = %+v, want extension 201, no dialled number", got)
	}
	got = run(t, []step{{NewCallEvent, "7.2", anna, cust, "Outgoing"}})
	if len(got) != 1 || got[0].Direction != events.Outbound || got[0].Extension != "1650938" || got[0].Dialled != "+31152511401" {
		t.Errorf("signal = %+v, want outbound from 1650938 on +31152511401", got)
	}
}

// TestForgets: ended calls and repeat memory are dropped after a while.
func TestForgets(t *testing.T) {
	c := &clock{t0}
	tr := newTranslator(c.Now)
	for _, n := range [][]byte{
		notification(NewCallEvent, "5.1", cust, anna, "incoming"),
		notification(CallHungUpEvent, "5.1", cust, anna, "incoming"),
		notification(NewCallEvent, "5.2", cust, bert, "incoming"),
	} {
		ev, _ := Decode(n)
		tr.apply(ev)
	}
	c.now = c.now.Add(2 * time.Hour)
	ev, _ := Decode(notification(NewCallEvent, "5.3", cust, carla, "incoming"))
	tr.apply(ev)
	if _, ok := tr.xcalls["5.1"]; ok {
		t.Error("an ended call is remembered after two hours")
	}
	if _, ok := tr.xcalls["5.2"]; !ok {
		t.Error("a live call was forgotten after two hours")
	}
	if len(tr.hangs) != 0 {
		t.Errorf("repeat memory holds %d keys", len(tr.hangs))
	}
	c.now = c.now.Add(25 * time.Hour)
	ev, _ = Decode(notification(NewCallEvent, "5.4", cust, carla, "incoming"))
	tr.apply(ev)
	if _, ok := tr.xcalls["5.2"]; ok {
		t.Error("a call without news for a day is remembered")
	}
}

func TestDecode(t *testing.T) {
	fixture, err := os.ReadFile("../../testdata/xelion/call-connected-event.json")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		in     string
		reason string // "" for success
	}{
		{"fixture", string(fixture), ""},
		{"numeric call id", `{"notificationType":"callHungUpEvent","notification":{"callId":1709632800.101}}`, ""},
		{"not JSON", `hello`, reasonJSON},
		{"no type", `{"notification":{"callId":"1"}}`, reasonNoType},
		{"other type", `{"messageType":"notification","notificationType":"wallboardEvent","notification":{}}`, reasonUnknownType},
		{"no call id", `{"notificationType":"newCallEvent","notification":{"callerPhoneNumber":"+31612345678"}}`, reasonNoCallID},
		{"blank call id", `{"notificationType":"newCallEvent","notification":{"callId":"  "}}`, reasonNoCallID},
		{"no object", `{"notificationType":"newCallEvent"}`, reasonNoCallID},
		{"bad object", `{"notificationType":"newCallEvent","notification":[1]}`, reasonJSON},
		{"bad field type", `{"notificationType":"newCallEvent","notification":{"callId":"1","calleeAddressable":{"oid":{}}}}`, reasonJSON},
		{"test echo", `{"messageType":"test","text":"hi"}`, reasonNotification},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ev, err := Decode([]byte(tt.in))
			if tt.reason == "" {
				if err != nil || ev.Call.CallID == "" {
					t.Fatalf("Decode = %+v, %v", ev, err)
				}
				return
			}
			de, ok := errors.AsType[*DecodeError](err)
			if !ok || de.Reason != tt.reason {
				t.Fatalf("Decode error = %v, want reason %s", err, tt.reason)
			}
		})
	}
	ev, _ := Decode(fixture)
	if ev.Type != CallConnectedEvent || ev.Call.callee().ident() != "1650938" || ev.Call.remote().number != "+31612345678" {
		t.Errorf("fixture decoded as %+v", ev)
	}
}

func TestParseValidUntil(t *testing.T) {
	ams, err := time.LoadLocation("Europe/Amsterdam")
	if err != nil {
		t.Skip("no zone database:", err)
	}
	b, err := os.ReadFile("../../testdata/xelion/login-response.json")
	if err != nil {
		t.Fatal(err)
	}
	var lr LoginResponse
	if err := json.Unmarshal(b, &lr); err != nil {
		t.Fatal(err)
	}
	got, ok := ParseValidUntil(lr.ValidUntil, ams)
	if want := time.Date(2017, 3, 9, 10, 8, 51, 0, time.UTC); !ok || !got.Equal(want) {
		t.Errorf("ParseValidUntil(%q) = %v, %v; want %v", lr.ValidUntil, got, ok, want)
	}
	if got, ok := ParseValidUntil("2017-03-09T11:08:51+02:00", ams); !ok || got.UTC().Hour() != 9 {
		t.Errorf("zoned time = %v, %v", got, ok)
	}
	for _, bad := range []string{"", "tomorrow", "1489054131"} {
		if _, ok := ParseValidUntil(bad, ams); ok {
			t.Errorf("ParseValidUntil(%q) succeeded", bad)
		}
	}
}

func TestConfig(t *testing.T) {
	ok := Config{URL: "https://xelion.example.nl", Username: "admin", Password: "s3cr3t-pw"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ url, want string }{
		{"https://x.example.nl", "https://x.example.nl/api/v1/master/"},
		{"https://x.example.nl/", "https://x.example.nl/api/v1/master/"},
		{"https://x.example.nl/api/v1", "https://x.example.nl/api/v1/master/"},
		{"https://x.example.nl/api/v1/acme/", "https://x.example.nl/api/v1/acme/"},
		{"http://127.0.0.1:8080/xelion", "http://127.0.0.1:8080/xelion/api/v1/master/"},
	} {
		c := ok
		c.URL = tt.url
		u, err := c.apiBase()
		if err != nil || u.String() != tt.want {
			t.Errorf("apiBase(%q) = %v, %v; want %s", tt.url, u, err, tt.want)
		}
	}
	for _, bad := range []Config{
		{},
		{URL: "ftp://x", Username: "a", Password: "s3cr3t-pw"},
		{URL: "https://u:p@x", Username: "a", Password: "s3cr3t-pw"},
		{URL: "https://x", Password: "s3cr3t-pw"},
		{URL: "https://x", Username: "a"},
		{URL: "https://x", Username: "a", Password: "s3cr3t-pw", Tenant: "a/b"},
	} {
		err := bad.Validate()
		if err == nil {
			t.Errorf("Validate(%+v) succeeded", bad)
		} else if bad.Password != "" && strings.Contains(err.Error(), bad.Password) {
			t.Errorf("error %q shows the password", err)
		}
	}
	if err := (Config{URL: "ftp://x"}).Validate(); err == nil || !strings.Contains(err.Error(), "XELION_URL") ||
		!strings.Contains(err.Error(), "XELION_USERNAME") || !strings.Contains(err.Error(), "XELION_PASSWORD") {
		t.Errorf("Validate reports %v, want every problem", err)
	}
	if v := ok.LogValue().String(); strings.Contains(v, "s3cr3t") {
		t.Errorf("LogValue %q shows the password", v)
	}
}

// BenchmarkTranslate measures the translator per message, playing the
// attended transfer (nine messages, the busiest script) as a new call every
// second, so that it holds the calls of the last hour as it would in use.
func BenchmarkTranslate(b *testing.B) {
	sc, err := xeliontest.LoadScript("../../testdata/xelion/calls/attended-transfer.json")
	if err != nil {
		b.Fatal(err)
	}
	var evs []Event
	for _, st := range sc.Steps {
		if ev, err := Decode(st.Notification); err == nil {
			evs = append(evs, ev)
		}
	}
	now := t0
	tr := newTranslator(func() time.Time { return now })
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		call := strconv.Itoa(i / len(evs))
		now = t0.Add(time.Duration(i/len(evs)) * time.Second) // a new call every second
		ev := evs[i%len(evs)]
		ev.Call.CallID += pbx.FlexString("." + call)
		tr.apply(ev)
	}
}

// BenchmarkDecode measures decoding one notification.
func BenchmarkDecode(b *testing.B) {
	msg, err := os.ReadFile("../../testdata/xelion/call-connected-event.json")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Decode(msg); err != nil {
			b.Fatal(err)
		}
	}
}
