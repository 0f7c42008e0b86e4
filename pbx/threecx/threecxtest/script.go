package threecxtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
)

// Script is a whole call (or several) as an ordered list of changes the fake
// PBX plays, in the JSON form of the files in testdata/threecx/calls.
type Script struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// DNs are the monitored DNs and their types, as GET /callcontrol lists them.
	DNs   []DN   `json:"dns"`
	Steps []Step `json:"steps"`
}

// DN is one monitored DN.
type DN struct {
	DN   string `json:"dn"`
	Type string `json:"type"`
}

// Step is one change. Op is one of:
//
//   - "upsert": merge Participant (which names "dn" and "id") into the
//     participant's state and announce it;
//   - "remove": remove participant ID on DN and announce it;
//   - "duplicate": send the last message again;
//   - "release": send the messages held back so far;
//   - "raw": send Raw as a WebSocket message, as is;
//   - "down", "up": stop and resume serving (down drops the sockets);
//   - "drop": cut the sockets;
//   - "expire_tokens": invalidate every token issued so far.
//
// Delivery ("", "send", "lose", "hold") applies to upsert and remove.
type Step struct {
	Op          string         `json:"op"`
	Participant map[string]any `json:"participant,omitempty"`
	DN          string         `json:"dn,omitempty"`
	ID          any            `json:"id,omitempty"`
	Delivery    string         `json:"delivery,omitempty"`
	Raw         string         `json:"raw,omitempty"`
	Note        string         `json:"note,omitempty"`
}

// ParseScript decodes a script and checks every step.
func ParseScript(data []byte) (*Script, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var sc Script
	if err := dec.Decode(&sc); err != nil {
		return nil, fmt.Errorf("script: %w", err)
	}
	for i, st := range sc.Steps {
		if err := st.check(); err != nil {
			return nil, fmt.Errorf("script %q step %d: %w", sc.Name, i, err)
		}
	}
	return &sc, nil
}

// LoadScript reads and decodes a script file.
func LoadScript(file string) (*Script, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("script: %w", err)
	}
	return ParseScript(data)
}

func (st Step) check() error {
	if _, err := delivery(st.Delivery); err != nil {
		return err
	}
	switch st.Op {
	case "upsert":
		if str(st.Participant["dn"]) == "" || str(st.Participant["id"]) == "" {
			return fmt.Errorf("upsert needs participant dn and id")
		}
	case "remove":
		if st.DN == "" || str(st.ID) == "" {
			return fmt.Errorf("remove needs dn and id")
		}
	case "duplicate", "release", "raw", "down", "up", "drop", "expire_tokens":
	default:
		return fmt.Errorf("unknown op %q", st.Op)
	}
	return nil
}

func delivery(s string) (Delivery, error) {
	switch s {
	case "", "send":
		return Send, nil
	case "lose":
		return Lose, nil
	case "hold":
		return Hold, nil
	}
	return Send, fmt.Errorf("unknown delivery %q", s)
}

// Load adds the script's DNs to the server.
func (s *Server) Load(sc *Script) {
	for _, d := range sc.DNs {
		s.SetDN(d.DN, d.Type)
	}
}

// Apply performs one step.
func (s *Server) Apply(st Step) error {
	if err := st.check(); err != nil {
		return err
	}
	d, _ := delivery(st.Delivery)
	switch st.Op {
	case "upsert":
		return s.Upsert(st.Participant, d)
	case "remove":
		s.Remove(st.DN, str(st.ID), d)
	case "duplicate":
		s.Duplicate()
	case "release":
		s.Release()
	case "raw":
		s.SendRaw([]byte(st.Raw))
	case "down":
		s.SetDown(true)
	case "up":
		s.SetDown(false)
	case "drop":
		s.DropConnections()
	case "expire_tokens":
		s.ExpireTokens()
	}
	return nil
}

// Play loads the script and performs its steps in order, calling settle (if
// not nil) after each, e.g. to wait until the client has caught up.
func (s *Server) Play(sc *Script, settle func(i int, st Step)) error {
	s.Load(sc)
	for i, st := range sc.Steps {
		if err := s.Apply(st); err != nil {
			return fmt.Errorf("step %d: %w", i, err)
		}
		if settle != nil {
			settle(i, st)
		}
	}
	return nil
}
