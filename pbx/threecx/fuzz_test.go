package threecx

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// FuzzDecodeMessage feeds arbitrary WebSocket messages to the decoder: it must
// never panic, must explain every refusal with a reason, and whatever it
// accepts must be safe to act on.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(fixture(f, "ws_upsert.json"))
	f.Add(fixture(f, "ws_remove.json"))
	for _, s := range []string{
		`{"sequence":2,"event":{"event_type":"Upset","entity":"/callcontrol/ROUTER/participants/1"}}`,
		`{"event":{"event_type":4,"attached_data":{"RequestID":"1","Path":"/x","StatusCode":200,"Response":"{}"}}}`,
		`{"sequence":-1,"event":{"event_type":1,"entity":"/callcontrol/../participants/1"}}`,
		`{"sequence":99999999999999999999,"event":{"event_type":0,"entity":"x"}}`,
		`{"Sequence":3,"Event":{"EventType":0,"Entity":"/callcontrol/150/participants/8106","AttachedData":null}}`,
		`{"event":{"EventType":0,"eventType":1,"entity":"/x"}}`,
		`{"event":null}`, `null`, `[]`, `{`, ``,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := DecodeMessage(data)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Reason == "" {
				t.Fatalf("error without reason: %v", err)
			}
			return
		}
		if (m.Type == EventUpsert || m.Type == EventRemove) && m.Entity == "" {
			t.Fatalf("accepted %v without entity", m.Type)
		}
		if dn, id, ok := ParseEntity(m.Entity); ok {
			// Whatever the client will fetch is exactly a participant path.
			if p := ParticipantPath(dn, id); p != m.Entity || strings.Contains(p, "..") {
				t.Fatalf("entity %q parsed to %q", m.Entity, p)
			}
		}
	})
}

// FuzzParticipant feeds arbitrary participant objects through the decoder and
// the book: no panic, and every signal they make is valid, but for an
// identifier 3CX sent unusable (see pbxTextFault): the source drops those.
func FuzzParticipant(f *testing.F) {
	f.Add(fixture(f, "participant_ringing_inbound.json"), "150")
	f.Add(fixture(f, "participant_dialing_outbound.json"), "150")
	f.Add([]byte(`{"id":"1","callid":"2","dn":"800","status":"Connected","party_dn_type":"Wextension"}`), "800")
	f.Add([]byte(`{"id":1,"callid":2,"status":"Connected","party_caller_name":"+31 6 1234"}`), "")
	f.Add([]byte(`{"id":1,"callid":"2\u001b[31m","status":"Ringing"}`), "150")
	f.Fuzz(func(t *testing.T, data []byte, dn string) {
		p, err := DecodeParticipant(data, dn)
		if err != nil {
			return
		}
		if p.ID == "" || p.CallID == "" || p.DN == "" {
			t.Fatalf("accepted %+v", p)
		}
		b := newBook([]string{"800"})
		now := time.Unix(1700000000, 0)
		path := ParticipantPath(p.DN, p.ID)
		for _, step := range []func() (pending, bool){
			func() (pending, bool) { return b.observe(path, p, now) },
			func() (pending, bool) { return b.observe(path, p, now) },
			func() (pending, bool) { return b.end(path, CauseRemoved, now) },
		} {
			pd, ok := step()
			if !ok {
				continue
			}
			if err := pd.sig.Validate(); err != nil && !events.TextFault(pd.sig, err) {
				t.Fatalf("invalid signal %+v: %v", pd.sig, err)
			}
			b.commit(pd, now)
		}
		if _, ok := b.observe(path, p, now); ok {
			t.Fatal("a participant seen again after its end made a signal")
		}
	})
}

// FuzzSnapshot feeds arbitrary GET /callcontrol answers through the decoder
// and the diff.
func FuzzSnapshot(f *testing.F) {
	f.Add(fixture(f, "callcontrol_snapshot.json"))
	f.Add([]byte(`[{"dn":"150","type":"Wextension","participants":[{"id":1,"callid":1},{"id":1,"callid":1},{"id":"x"}]}]`))
	f.Add([]byte(`[{"dn":"../x","participants":[{"id":1,"callid":1}]}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		dns, _, err := DecodeSnapshot(data)
		if err != nil {
			return
		}
		b := newBook(nil)
		now := time.Unix(1700000000, 0)
		for range 2 {
			for _, st := range b.diff(dns, now) {
				var pd pending
				var ok bool
				if st.p != nil {
					pd, ok = b.observe(st.path, *st.p, now)
				} else {
					pd, ok = b.end(st.path, CauseGone, now)
				}
				if !ok {
					continue
				}
				if err := pd.sig.Validate(); err != nil && !events.TextFault(pd.sig, err) {
					t.Fatalf("invalid signal %+v: %v", pd.sig, err)
				}
				b.commit(pd, now)
			}
			dns = nil // the second round: everything ended
		}
		if len(b.legs) != 0 {
			t.Fatalf("%d legs left after an empty snapshot", len(b.legs))
		}
	})
}
