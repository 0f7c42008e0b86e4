package robintest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/events"
)

const registerPrefix = "/voip/registerevent/"

// serveRegister checks, in this order: the key in the path (401), Basic auth
// when required (401), the method (405), the fault, the limiter (429), the body
// (400), the extension (406); then it records the event and answers 201.
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request, req Request) {
	key, err := url.PathUnescape(strings.TrimPrefix(r.URL.EscapedPath(), registerPrefix))
	if err != nil || key != s.key {
		s.answer(w, req, http.StatusUnauthorized, "", "")
		return
	}
	if s.requireBasic {
		user, pass, ok := r.BasicAuth()
		if !ok || user != s.key || pass != s.secret {
			s.answer(w, req, http.StatusUnauthorized, "", "")
			return
		}
	}
	dropAck, ok := s.gate(w, r, &req, http.MethodPost, EndpointRegisterEvent)
	if !ok {
		return
	}
	ev, err := ParseEvent(req.Body)
	if err != nil {
		msg, _ := json.Marshal(map[string]string{"message": err.Error()})
		s.finish(w, req, dropAck, http.StatusBadRequest, "application/json; charset=utf-8", string(msg))
		return
	}
	if s.extensions != nil && !s.extensions[ev.PhoneExtension] {
		s.finish(w, req, dropAck, http.StatusNotAcceptable, "", "")
		return
	}
	rec := s.accept(ev, req.Header)
	s.log("event %s call %s ext %s duplicate=%t out_of_order=%t", ev.Type, ev.ID, ev.PhoneExtension, rec.Duplicate, rec.OutOfOrder)
	s.mu.Lock()
	onEvent := s.onEvent
	s.mu.Unlock()
	if onEvent != nil {
		onEvent(rec)
	}
	s.finish(w, req, dropAck, http.StatusCreated, "", "")
}

// accept records an accepted event with its flags and wakes WaitEvents.
func (s *Server) accept(ev events.Event, h http.Header) Received {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := eventKey{id: ev.ID, typ: string(ev.Type)}
	if ev.Type == events.EventTransfer {
		k.ext = ev.PhoneExtension
	}
	rec := Received{Event: ev, At: time.Now(), Header: h, Duplicate: s.seen[k]}
	s.seen[k] = true
	c := s.calls[ev.ID]
	if c == nil {
		c = &callState{}
		s.calls[ev.ID] = c
	}
	switch {
	case c.disconnected:
		// Anything after the end is out of order, except a repeat of the
		// Disconnected itself (a redelivery after a lost ack).
		rec.OutOfOrder = !(ev.Type == events.EventDisconnected && rec.Duplicate)
	case ev.Type == events.EventTransfer && !c.answered:
		rec.OutOfOrder = true
	}
	switch ev.Type {
	case events.EventAnswered:
		c.answered = true
	case events.EventDisconnected:
		c.disconnected = true
	}
	s.events = append(s.events, rec)
	close(s.changed)
	s.changed = make(chan struct{})
	return rec
}

// registerFields are the body's fields, with exactly these names.
var registerFields = []string{"Id", "EventType", "PhoneNumber", "PhoneExtension", "Direction", "PhoneReferrer"}

// ParseEvent checks a register-event body the way the fake does: a JSON object
// with exactly-named string fields, Id, PhoneNumber and PhoneExtension
// non-empty, EventType one of Answered, Transfer, Disconnected, Direction
// Inbound or Outbound, PhoneReferrer optional, and no other field. The error
// names the first offending field ("<field> is invalid").
func ParseEvent(body []byte) (events.Event, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&raw); err != nil || raw == nil {
		return events.Event{}, errors.New("body is not a JSON object")
	}
	if _, err := dec.Token(); err != io.EOF {
		return events.Event{}, errors.New("body has data after the JSON object")
	}
	for name := range raw {
		known := false
		for _, f := range registerFields {
			if name == f {
				known = true
			}
		}
		if !known {
			return events.Event{}, fmt.Errorf("%s is not a known field", name)
		}
	}
	str := func(name string, required bool) (string, error) {
		v, ok := raw[name]
		if !ok {
			if required {
				return "", fmt.Errorf("%s is invalid", name)
			}
			return "", nil
		}
		var s string
		if len(v) == 0 || v[0] != '"' || json.Unmarshal(v, &s) != nil || (required && s == "") {
			return "", fmt.Errorf("%s is invalid", name)
		}
		return s, nil
	}
	var ev events.Event
	var err error
	if ev.ID, err = str("Id", true); err != nil {
		return events.Event{}, err
	}
	typ, err := str("EventType", true)
	if err != nil {
		return events.Event{}, err
	}
	switch events.EventType(typ) {
	case events.EventAnswered, events.EventTransfer, events.EventDisconnected:
		ev.Type = events.EventType(typ)
	default:
		return events.Event{}, errors.New("EventType is invalid")
	}
	if ev.PhoneNumber, err = str("PhoneNumber", true); err != nil {
		return events.Event{}, err
	}
	if ev.PhoneExtension, err = str("PhoneExtension", true); err != nil {
		return events.Event{}, err
	}
	if ev.Direction, err = str("Direction", true); err != nil {
		return events.Event{}, err
	}
	if ev.Direction != "Inbound" && ev.Direction != "Outbound" {
		return events.Event{}, errors.New("Direction is invalid")
	}
	if ev.PhoneReferrer, err = str("PhoneReferrer", false); err != nil {
		return events.Event{}, err
	}
	return ev, nil
}

// gate runs the checks every endpoint shares after authentication, in
// order: the method, a fault, the rolling-window limits. It answers and
// returns ok false when one of them ends the request; dropAck says that the
// answer must be lost after processing.
func (s *Server) gate(w http.ResponseWriter, r *http.Request, req *Request, method, endpoint string) (dropAck, ok bool) {
	if r.Method != method {
		w.Header().Set("Allow", method)
		s.answer(w, *req, http.StatusMethodNotAllowed, "", "")
		return false, false
	}
	f, faulted := s.takeFault(endpoint)
	if faulted && !f.DropAck {
		s.applyFault(w, r, *req, f)
		return false, false
	}
	dropAck = faulted && f.DropAck
	if retryAfter, admitted := s.admit(); !admitted {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		req.Violation = true
		s.finish(w, *req, dropAck, http.StatusTooManyRequests, "text/plain; charset=utf-8", "Too Many Requests")
		return dropAck, false
	}
	return dropAck, true
}
