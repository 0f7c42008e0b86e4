package xelion

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
)

// validating puts the journal's own check in front of a recorder, as
// events.Journal does, and counts the signals it refused.
type validating struct {
	*recorder
	mu      sync.Mutex
	refused int
}

func (v *validating) PublishSignal(ctx context.Context, s events.Signal) error {
	if err := s.Validate(); err != nil {
		v.mu.Lock()
		v.refused++
		v.mu.Unlock()
		return err
	}
	return v.recorder.PublishSignal(ctx, s)
}

func (v *validating) refusals() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.refused
}

// withCall returns the steps with callId (and, when oid is set, the
// callee's addressable) replaced in every notification.
func withCall(t *testing.T, steps []xeliontest.Step, callID, oid string) []xeliontest.Step {
	t.Helper()
	out := make([]xeliontest.Step, 0, len(steps))
	for _, st := range steps {
		var m map[string]any
		if err := json.Unmarshal(st.Notification, &m); err != nil {
			t.Fatal(err)
		}
		n := m["notification"].(map[string]any)
		n["callId"] = callID
		if oid != "" {
			n["calleeAddressable"].(map[string]any)["oid"] = oid
		}
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, xeliontest.Step{Notification: b})
	}
	return out
}

// TestSourceInvalidSignals: a call whose identifiers the journal refuses
// (a control or bidi character, a call id over the limit) costs its own
// signals and nothing else. Each is offered once, counted and logged by
// field without the value; the connection stays, and the next call goes
// through whole.
func TestSourceInvalidSignals(t *testing.T) {
	good := loadScripts(t)["answered"]
	tests := []struct {
		name, callID, oid, field, bad string
	}{
		{"escape in the call id", "1709632800.\x1b[31m102", "", "call_id", "\x1b[31m"},
		{"bidi in the agent", "1709632800.103", "1650\u202e938", "leg_id", "1650\u202e938"},
		{"call id too long", strings.Repeat("7", events.MaxIDBytes+1), "", "call_id", strings.Repeat("7", events.MaxIDBytes+1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			j := &validating{recorder: &recorder{}}
			h := start(t, xeliontest.Options{}, j.recorder, func(o *Options) { o.Journal = j })
			ctx := h.ctx(t)
			if err := h.fake.Play(ctx, withCall(t, good.Steps, tt.callID, tt.oid)); err != nil {
				t.Fatal(err)
			}
			if got := h.settle(t); len(got) != 0 {
				t.Errorf("journaled %v from an unusable call", got)
			}
			// Ringing, answered and the leg's end.
			const want = 3
			if n := j.refusals(); n != want {
				t.Errorf("the journal refused %d signals, want %d: each offered once, never retried", n, want)
			}
			if got := h.counter(t, "voipbridge_xelion_signals_dropped_total", "reason", reasonInvalid); got != want {
				t.Errorf("signals_dropped{reason=invalid} = %v, want %d", got, want)
			}

			if err := h.fake.Play(ctx, good.Steps); err != nil {
				t.Fatal(err)
			}
			// settle returns everything before its sentinel, the first
			// sentinel included.
			got := slices.DeleteFunc(h.settle(t), func(s events.Signal) bool { return strings.HasPrefix(s.CallID, "sentinel-") })
			if diff := cmp.Diff(wantSignals(t, good), got, ignoreTimeKey); diff != "" {
				t.Errorf("the call after it (-want +got):\n%s", diff)
			}
			if st := h.fake.Stats(); st.Connections != 1 {
				t.Errorf("connections = %d: an invalid signal must not cost the connection", st.Connections)
			}
			h.stop()
			logs := h.logs.String()
			if n := strings.Count(logs, "xelion signal dropped"); n != want {
				t.Errorf("%d drop lines, want %d:\n%s", n, want, logs)
			}
			if !strings.Contains(logs, `"field":"`+tt.field+`"`) {
				t.Errorf("no drop line names the field %s:\n%s", tt.field, logs)
			}
			escaped, _ := json.Marshal(tt.bad)
			if strings.Contains(logs, tt.bad) || strings.Contains(logs, string(escaped[1:len(escaped)-1])) {
				t.Errorf("the log shows the unusable value:\n%s", logs)
			}
		})
	}
}
