package xelion

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

// FuzzDecode: any WebSocket message either fails to decode or is folded
// into valid signals with distinct dedup keys, whatever calls came before.
// Valid but for an identifier Xelion sent unusable (see events.TextFault): the
// source drops those.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob("../../testdata/xelion/*.json")
	for _, file := range files {
		if b, err := os.ReadFile(file); err == nil {
			f.Add(b)
		}
	}
	var prelude [][]byte
	for _, call := range scriptNotifications() {
		for _, n := range call {
			f.Add(n)
			prelude = append(prelude, n)
		}
	}
	f.Add([]byte(`{"notificationType":"callHungUpEvent","notification":{"callId":7,"calleeAddressable":{"oid":null}}}`))
	f.Add([]byte(`{"notificationType":"callTransferredEvent","notification":{"callId":"x","initiation":"internal"}}`))
	f.Add([]byte(`{"notificationType":"newCallEvent","notification":{"callId":"c\u001b[31m1","calleePhoneNumber":"20\u202e1"}}`))
	f.Add([]byte(`{"notificationType":"callTransferredEvent","notification":{"transferredCall":{"callId":"1709633400.108","callerPhoneNumber":"+31612345678"},"consultationCall":{"callId":"1709633460.110","calleePhoneNumber":"+31152511402"}}}`))
	f.Add([]byte(`{"notificationType":"callTransferredEvent","notification":{"object":{"originalCallId":"1709633400.108","newCallId":1709633460.110}}}`))
	f.Add([]byte(`{"notificationType":"callTransferredEvent","notification":{"object":{}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ev, err := Decode(data)
		if err != nil {
			return
		}
		if ev.Call.CallID == "" {
			t.Fatal("decoded an event without callId")
		}
		now := time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC)
		tr := newTranslator(func() time.Time { return now })
		// Against a translator in the middle of calls of every shape, and
		// against a fresh one.
		for _, p := range prelude[:len(prelude)/2] {
			if pe, err := Decode(p); err == nil {
				tr.apply(pe)
			}
		}
		for _, tr := range []*translator{tr, newTranslator(func() time.Time { return now })} {
			for range 2 { // and once more, as Xelion repeats itself
				out := tr.apply(ev)
				seen := map[string]bool{}
				for _, s := range out.signals {
					if err := s.Validate(); err != nil && !events.TextFault(s, err) {
						t.Fatalf("invalid signal %+v: %v", s, err)
					}
					if seen[s.DedupKey] {
						t.Fatalf("dedup key %q twice", s.DedupKey)
					}
					seen[s.DedupKey] = true
				}
				if len(out.signals) == 0 && out.drop == "" {
					t.Fatal("no signal and no reason")
				}
			}
		}
	})
}

// FuzzDecodeActiveChannels: any answer to the active channels request
// either fails to decode or gives call ids that are not empty; ending the
// calls it no longer lists, in the middle of calls of every shape, gives
// valid signals with distinct dedup keys, and reading it twice changes
// nothing more.
func FuzzDecodeActiveChannels(f *testing.F) {
	f.Add([]byte(`{"data":[{"object":{"callId":"SIP/wes-000001d8","channelId":"SIP/wes-000001d8","state":"CONNECTED","role":"CALLER"}}],"meta":{}}`))
	f.Add([]byte(`{"data":[]}`))
	f.Add([]byte(`{"data":[{"object":{"callId":1709633400.108}},{"object":{"callId":"1709633460.110"}}]}`))
	f.Add([]byte(`{"data":[{"object":{"callId":null}}]}`))
	var prelude [][]byte
	for _, call := range scriptNotifications() {
		// Every call's beginning, so that calls are live.
		prelude = append(prelude, call[:len(call)/2]...)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		running, err := DecodeActiveChannels(data)
		if err != nil {
			return
		}
		for id := range running {
			if id == "" || strings.TrimSpace(id) != id {
				t.Fatalf("call id %q", id)
			}
		}
		now := time.Date(2024, 3, 5, 10, 0, 0, 0, time.UTC)
		tr := newTranslator(func() time.Time { return now })
		for _, p := range prelude {
			if ev, err := Decode(p); err == nil {
				tr.apply(ev)
			}
		}
		sigs, ended, ok := tr.gone(running)
		if !ok && len(sigs) != 0 {
			t.Fatal("signals from a list not used")
		}
		seen := map[string]bool{}
		for _, s := range sigs {
			if err := s.Validate(); err != nil && !events.TextFault(s, err) {
				t.Fatalf("invalid signal %+v: %v", s, err)
			}
			if s.State != events.Ended || s.Cause != CauseGone {
				t.Fatalf("signal %+v, want an end with cause gone", s)
			}
			if seen[s.DedupKey] {
				t.Fatalf("dedup key %q twice", s.DedupKey)
			}
			seen[s.DedupKey] = true
		}
		if ended > 0 && len(sigs) == 0 {
			t.Fatal("calls ended without signals")
		}
		if again, _, _ := tr.gone(running); len(again) != 0 {
			t.Fatalf("the same list again gave %d signals", len(again))
		}
	})
}

// scriptNotifications returns the notifications of every scripted call in
// testdata, one list per call.
func scriptNotifications() [][][]byte {
	files, _ := filepath.Glob("../../testdata/xelion/calls/*.json")
	var out [][][]byte
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		var sc struct {
			Steps []struct {
				Notification json.RawMessage `json:"notification"`
			} `json:"steps"`
		}
		if json.Unmarshal(b, &sc) != nil {
			continue
		}
		var call [][]byte
		for _, st := range sc.Steps {
			if len(st.Notification) > 0 {
				call = append(call, st.Notification)
			}
		}
		out = append(out, call)
	}
	return out
}
