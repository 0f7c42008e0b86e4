package robintest

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

// EndpointMessages is the Channel API's message endpoint (POST /messages/).
const EndpointMessages = "messages"

// Message is a Channel API message the fake accepted.
type Message struct {
	At                               time.Time
	ChannelAccountExternalIdentifier string
	ConversationExternalIdentifier   string
	MessageExternalIdentifier        string
	RelationExternalIdentifier       string
	RelationName                     string
	Subject                          string
	Content                          string
	SentDateTime                     string
	// Duplicate: a message with this MessageExternalIdentifier was
	// accepted before.
	Duplicate bool
}

// Messages returns the Channel API messages accepted so far, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// serveMessages is ROBIN's Channel API as documented ("Channel API",
// Messages): HTTP Basic key:secret, a JSON body whose required fields must
// be there, 201 Created, 400 for a bad body, 401 for a wrong key. It counts
// against the same limits as every other endpoint.
func (s *Server) serveMessages(w http.ResponseWriter, r *http.Request, req Request) {
	user, pass, ok := r.BasicAuth()
	if !ok || user != s.key || (s.secret != "" && pass != s.secret) {
		s.answer(w, req, http.StatusUnauthorized, "", "")
		return
	}
	dropAck, ok := s.gate(w, r, &req, http.MethodPost, EndpointMessages)
	if !ok {
		return
	}
	var m struct {
		Message
		Attachments *[]struct {
			FileName      string
			Base64Content string
		}
	}
	bad := func(msg string) {
		b, _ := json.Marshal(map[string]string{"message": msg})
		s.finish(w, req, dropAck, http.StatusBadRequest, "application/json; charset=utf-8", string(b))
	}
	if err := json.Unmarshal(req.Body, &m); err != nil {
		bad("unreadable body: " + err.Error())
		return
	}
	for name, v := range map[string]string{
		"ChannelAccountExternalIdentifier": m.ChannelAccountExternalIdentifier,
		"ConversationExternalIdentifier":   m.ConversationExternalIdentifier,
		"MessageExternalIdentifier":        m.MessageExternalIdentifier,
		"RelationExternalIdentifier":       m.RelationExternalIdentifier,
		"RelationName":                     m.RelationName,
		"Content":                          m.Content,
	} {
		if strings.TrimSpace(v) == "" {
			bad(name + " is required")
			return
		}
	}
	if m.Attachments == nil {
		bad("Attachments is required")
		return
	}
	msg := m.Message
	msg.At = time.Now()
	s.mu.Lock()
	for _, prev := range s.messages {
		if prev.MessageExternalIdentifier == msg.MessageExternalIdentifier {
			msg.Duplicate = true
		}
	}
	s.messages = append(s.messages, msg)
	s.mu.Unlock()
	s.finish(w, req, dropAck, http.StatusCreated, "", "")
}
