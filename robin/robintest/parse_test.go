package robintest_test

import (
	"encoding/json"
	"testing"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// FuzzParseEvent: the register-event check never panics, and whatever it
// accepts is a valid event that survives a round trip through the client's
// encoding.
func FuzzParseEvent(f *testing.F) {
	for _, s := range []string{
		validBody,
		`{"Id":"c1","EventType":"Transfer","PhoneNumber":"anonymous","PhoneExtension":"202","Direction":"Outbound"}`,
		`{"Id":"c1","Id":"","EventType":"Answered"}`,
		`{"Id":"\u0063","EventType":"Answered","PhoneNumber":"1","PhoneExtension":"1","Direction":"Inbound","PhoneReferrer":null}`,
		`[]`, `null`, `{}`, `{"Id":1}`, `{"Id":"x"} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		ev, err := robintest.ParseEvent(body)
		if err != nil {
			if ev != (events.Event{}) {
				t.Fatalf("ParseEvent(%q) returned %+v with error %v", body, ev, err)
			}
			return
		}
		switch {
		case ev.ID == "", ev.PhoneNumber == "", ev.PhoneExtension == "":
			t.Fatalf("ParseEvent(%q) accepted an empty required field: %+v", body, ev)
		case ev.Type != events.EventAnswered && ev.Type != events.EventTransfer && ev.Type != events.EventDisconnected:
			t.Fatalf("ParseEvent(%q) accepted type %q", body, ev.Type)
		case ev.Direction != "Inbound" && ev.Direction != "Outbound":
			t.Fatalf("ParseEvent(%q) accepted direction %q", body, ev.Direction)
		}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		again, err := robintest.ParseEvent(b)
		if err != nil || again != ev {
			t.Fatalf("round trip of %+v: %+v, %v", ev, again, err)
		}
	})
}
