package robintest

import (
	"net/http"
	"strings"
)

// presenceChannels are the channels ROBIN's presence endpoint knows
// (research: helpdesk-apis §4.1).
var presenceChannels = []string{
	"Email", "Chat", "WhatsApp", "SMS", "WebChat", "Facebook Messenger", "Instagram",
	"Apple Business Chat", "Twitter", "Google Business Messages", "RCS",
}

// servePresence checks, in this order: apikey present (400), apikey known
// (404), the method (405), the fault, the limiter (429), Channel present (400),
// Channel known (404, compared case-insensitively); then it answers 200
// "Online" or "Offline" for Presence["Channel|referrer"].
func (s *Server) servePresence(w http.ResponseWriter, r *http.Request, req Request) {
	q := req.Query
	key := q.Get("apikey")
	if key == "" {
		s.answer(w, req, http.StatusBadRequest, "", "")
		return
	}
	if key != s.key {
		s.answer(w, req, http.StatusNotFound, "", "")
		return
	}
	dropAck, ok := s.gate(w, r, &req, http.MethodGet, EndpointPresence)
	if !ok {
		return
	}
	channel := q.Get("Channel")
	if channel == "" {
		s.finish(w, req, dropAck, http.StatusBadRequest, "", "")
		return
	}
	known := false
	for _, c := range presenceChannels {
		if strings.EqualFold(c, channel) {
			known = true
		}
	}
	if !known {
		s.finish(w, req, dropAck, http.StatusNotFound, "", "")
		return
	}
	s.mu.Lock()
	online := s.presence[channel+"|"+q.Get("referrer")]
	s.mu.Unlock()
	body := "Offline"
	if online {
		body = "Online"
	}
	s.finish(w, req, dropAck, http.StatusOK, "text/plain; charset=utf-8", body)
}
