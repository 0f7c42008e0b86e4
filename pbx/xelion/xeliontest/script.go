package xeliontest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
)

// Script is a whole call as the server sends it, from testdata/xelion/calls.
type Script struct {
	Description string `json:"description"`
	Steps       []Step `json:"steps"`
	// Want is the signals the source should journal, without their times
	// and dedup keys, as raw JSON for the caller to decode.
	Want json.RawMessage `json:"want"`
	// WantEvents is what the helpdesk should get when the parties named as
	// agents in the script are mapped to agents.
	WantEvents []WantEvent `json:"want_events"`
}

// Step is one thing the server does.
type Step struct {
	// Notification is a WebSocket message to send.
	Notification json.RawMessage `json:"notification,omitempty"`
	// Drop closes the WebSocket (gracefully: the client reads everything
	// sent before); the client has to reconnect for the next step.
	Drop bool `json:"drop,omitempty"`
	// Expire ends every session: the client has to log in again.
	Expire bool `json:"expire,omitempty"`
}

// WantEvent is one expected helpdesk event: its type and the Xelion
// identifier of the agent it names.
type WantEvent struct {
	Type  string `json:"type"`
	Agent string `json:"agent"`
}

// LoadScript reads a script file.
func LoadScript(path string) (Script, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Script{}, err
	}
	var sc Script
	if err := json.Unmarshal(b, &sc); err != nil {
		return Script{}, fmt.Errorf("%s: %w", path, err)
	}
	return sc, nil
}

// Play performs the steps in order. Each notification waits for a client
// subscribed to its type, so a step after a drop or an expiry waits for the
// client to reconnect.
func (s *Server) Play(ctx context.Context, steps []Step) error {
	for i, st := range steps {
		switch {
		case st.Drop:
			s.Drop(true)
		case st.Expire:
			s.ExpireSessions()
		case len(st.Notification) > 0:
			if err := s.Send(ctx, st.Notification); err != nil {
				return fmt.Errorf("step %d: %w", i, err)
			}
		}
	}
	return nil
}
