package xeliontest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// The fake's running calls, answered by GET communications/active_channels.
//
// A call runs from the first notification the fake sends for its callId
// until its hang-up (or HangUp). The fake keeps per call the conversations
// its notifications named (caller and callee): a new call, a connection or
// a transfer adds one, a call hang-up or a missed call removes the one it
// names (or, naming none of them, ends the call), and a channel hang-up
// removes the named party's conversations but never the call's last one
// ("the call is not hungup, only the channel"). A call without
// conversations no longer runs. So Xelion's documented attended transfer
// (C→A hung up, then A→B twice, then C→B) keeps the customer's call id
// running until the hang-up of C→B.
//
// The answer has the shape Xelion documents ({"data":[{"object":
// ActiveChannel}], "meta":{"links":[...]}}), one channel per party. The
// channels' callId is the notifications' callId (what the source assumes);
// channel ids and the state RINGING are the fake's own (Xelion's example
// shows only CONNECTED).

// ActiveChannel is one entry of the active channels answer, with the
// fields of Xelion's example.
type ActiveChannel struct {
	CallID      string `json:"callId"`
	ChannelID   string `json:"channelId"`
	State       string `json:"state"`
	Name        string `json:"name"`
	Role        string `json:"role"`
	Phone       string `json:"phone,omitempty"`
	TwinChannel bool   `json:"twinChannel"`
}

// runningCall is a call the fake considers running.
type runningCall struct {
	id        string
	seq       int
	convs     []conv
	names     map[string]string
	connected bool
}

// conv is one conversation of a call: its parties by number (or OID).
type conv struct{ caller, callee string }

func (c conv) has(p string) bool { return p != "" && (c.caller == p || c.callee == p) }

func (c conv) same(o conv) bool {
	return c == o || (c.caller == o.callee && c.callee == o.caller)
}

// RunningCalls returns the ids of the calls the fake considers running, in
// the order they began.
func (s *Server) RunningCalls() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	calls := s.runningLocked()
	out := make([]string, len(calls))
	for i, c := range calls {
		out[i] = c.id
	}
	return out
}

// HangUp ends a running call without a notification, as a hang-up while no
// client is connected: Xelion does not replay it. It reports whether the
// call was running.
func (s *Server) HangUp(callID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.calls[callID]
	delete(s.calls, callID)
	s.changedLocked()
	return ok
}

// RefuseActiveChannels makes the next n requests for the active channels
// fail with 503.
func (s *Server) RefuseActiveChannels(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.refuseList = n
}

func (s *Server) runningLocked() []*runningCall {
	calls := make([]*runningCall, 0, len(s.calls))
	for _, c := range s.calls {
		calls = append(calls, c)
	}
	slices.SortFunc(calls, func(a, b *runningCall) int { return a.seq - b.seq })
	return calls
}

// activeChannels answers GET communications/active_channels. The list is
// taken before the session counts as having read it, so a notification
// sent after (see send) is never also in the list.
func (s *Server) activeChannels(w http.ResponseWriter, r *http.Request) {
	sess := s.authorized(w, r)
	if sess == nil {
		return
	}
	s.mu.Lock()
	list := []map[string]any{}
	for _, c := range s.runningLocked() {
		for _, ch := range c.channels() {
			list = append(list, map[string]any{"object": ch})
		}
	}
	refuse := s.refuseList > 0
	if refuse {
		s.refuseList--
	}
	s.stats.ActiveChannelRequests++
	s.listing, sess.listed = true, true
	s.changedLocked()
	s.mu.Unlock()
	if refuse {
		xerr(w, http.StatusServiceUnavailable, 11000, "service unavailable")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"data": list,
		"meta": map[string]any{"links": []map[string]string{
			{"rel": "refresh", "href": s.URL + r.URL.Path, "method": http.MethodGet},
		}},
	})
}

// channels lists one channel per party of the call.
func (c *runningCall) channels() []ActiveChannel {
	state := "RINGING"
	if c.connected {
		state = "CONNECTED"
	}
	var parties []string
	callers := map[string]bool{}
	for _, v := range c.convs {
		callers[v.caller] = true
		for _, p := range []string{v.caller, v.callee} {
			if p != "" && !slices.Contains(parties, p) {
				parties = append(parties, p)
			}
		}
	}
	out := make([]ActiveChannel, 0, len(parties))
	for i, p := range parties {
		role := "CALLEE"
		if callers[p] {
			role = "CALLER"
		}
		name := c.names[p]
		if name == "" {
			name = p
		}
		out = append(out, ActiveChannel{
			CallID: c.id, ChannelID: fmt.Sprintf("%s/%d", c.id, i+1),
			State: state, Name: name, Role: role,
		})
	}
	return out
}

// noteLocked folds a notification the fake sent into its running calls;
// anything else is ignored. s.mu must be held.
func (s *Server) noteLocked(msg []byte) {
	var m struct {
		NotificationType string `json:"notificationType"`
		Notification     struct {
			CallID            json.RawMessage `json:"callId"`
			CallerPhoneNumber string          `json:"callerPhoneNumber"`
			CallerName        string          `json:"callerName"`
			CallerAddressable *struct {
				OID json.RawMessage `json:"oid"`
			} `json:"callerAddressable"`
			CalleePhoneNumber string `json:"calleePhoneNumber"`
			CalleeName        string `json:"calleeName"`
			CalleeAddressable *struct {
				OID json.RawMessage `json:"oid"`
			} `json:"calleeAddressable"`
		} `json:"notification"`
	}
	if json.Unmarshal(msg, &m) != nil {
		return
	}
	n := m.Notification
	id := text(n.CallID)
	if id == "" {
		return
	}
	party := func(number string, ref *struct {
		OID json.RawMessage `json:"oid"`
	}) string {
		if p := strings.TrimSpace(number); p != "" {
			return p
		}
		if ref != nil {
			return text(ref.OID)
		}
		return ""
	}
	v := conv{party(n.CallerPhoneNumber, n.CallerAddressable), party(n.CalleePhoneNumber, n.CalleeAddressable)}
	c := s.calls[id]
	switch m.NotificationType {
	case "newCallEvent", "callConnectedEvent", "callTransferredEvent":
		if v.caller == "" && v.callee == "" {
			return
		}
		if c == nil {
			s.callSeq++
			c = &runningCall{id: id, seq: s.callSeq, names: map[string]string{}}
			s.calls[id] = c
		}
		if !slices.ContainsFunc(c.convs, v.same) {
			c.convs = append(c.convs, v)
		}
		for p, name := range map[string]string{v.caller: n.CallerName, v.callee: n.CalleeName} {
			if p != "" && name != "" {
				c.names[p] = name
			}
		}
		c.connected = c.connected || m.NotificationType == "callConnectedEvent"
	case "callHungUpEvent", "missedCallEvent":
		if c == nil {
			return
		}
		if i := slices.IndexFunc(c.convs, v.same); i >= 0 {
			c.convs = slices.Delete(c.convs, i, i+1)
		} else {
			c.convs = nil
		}
		if len(c.convs) == 0 {
			delete(s.calls, id)
		}
	case "channelHungUpEvent":
		if c == nil {
			return
		}
		p := v.callee
		if p == "" {
			p = v.caller
		}
		if rest := slices.DeleteFunc(slices.Clone(c.convs), func(o conv) bool { return o.has(p) }); len(rest) > 0 {
			c.convs = rest
		}
	}
}

// text reads a JSON string or number as text, "" for anything else.
func text(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return strings.TrimSpace(s)
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}
