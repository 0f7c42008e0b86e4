package routetest

import (
	"cmp"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ChatwootAgent is a user of the account, as meta.assignee and GET /agents
// render it.
type ChatwootAgent struct {
	ID                 int    `json:"id"`
	Name               string `json:"name"`
	AvailableName      string `json:"available_name"`
	Email              string `json:"email"`
	AvailabilityStatus string `json:"availability_status"` // online, busy, offline
	Role               string `json:"role"`
	Thumbnail          string `json:"thumbnail"`
	Confirmed          bool   `json:"confirmed"`
	AutoOffline        bool   `json:"auto_offline"`
}

// ChatwootContact is a contact as contact search renders it.
type ChatwootContact struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	Email       string `json:"email"`
	PhoneNumber string `json:"phone_number"`
	Identifier  string `json:"identifier"`
}

// ChatwootInbox is an inbox of the account; ChannelType is
// "Channel::Api", "Channel::TwilioSms", "Channel::Email", ….
type ChatwootInbox struct {
	ID          int    `json:"id"`
	Name        string `json:"name"`
	ChannelType string `json:"channel_type"`
}

// ChatwootConversation is a conversation of a contact. DisplayID is the
// per-account id the API's "id" field and URLs use; Assignee nil renders no
// meta.assignee key at all, as Chatwoot does for an unassigned conversation.
type ChatwootConversation struct {
	DisplayID      int
	ContactID      int
	InboxID        int
	Status         string // open, resolved, pending, snoozed
	Assignee       *ChatwootAgent
	LastActivityAt time.Time
}

// ChatwootMessage is a message posted to a conversation.
type ChatwootMessage struct {
	ID           int
	Conversation int // its display id
	Content      string
	MessageType  int // 0 incoming, 1 outgoing, 2 activity, 3 template
	Private      bool
	ContentType  string
	CreatedAt    time.Time
}

// contactInbox links a contact to an inbox under a source id.
type contactInbox struct {
	contact, inbox int
	sourceID       string
}

// Chatwoot is a fake of the Chatwoot account API (research: helpdesk-apis
// §2 and §4.2), the paths routing and the call log use:
//
//   - GET contacts/search?q=: q decoded as Rails does ('+' is a space) and
//     stripped, then a case-insensitive substring match on name, email and
//     phone_number (a case-sensitive one on identifier; an all-digit q also
//     matches the id); ordered by name, 15 a page;
//     {"meta":{"count","current_page"},"payload":[…]}. Blank q: 422.
//   - POST contacts: a phone_number that is not E.164 is 422 {"message":
//     "Phone number should be in e164 format"}, a number or e-mail address
//     taken is 422 too; with inbox_id the contact is linked to the inbox
//     under a new source id. {"payload":{"contact","contact_inbox"}}.
//   - GET contacts/{id}/conversations: {"payload":[…]} newest display id
//     first, at most 20.
//   - POST conversations: by contact_id and inbox_id (linking them when
//     needed) or by source_id; unknown: 404. The conversation object.
//   - POST conversations/{display id}/messages: an incoming message in an
//     inbox that is not an API inbox is 422, as is a voice_call content
//     type. The message object (message_type an integer).
//   - POST conversations/{display id}/assignments {assignee_id}: the agent.
//   - GET agents: a bare array of the agents.
//
// Every request needs the token in Api-Access-Token or api_access_token
// (none: 401 {"errors":[…]}; another: 401 {"error":"Invalid Access
// Token"}); an unknown account is 404. Conversations render meta.assignee
// only when assigned. rack-attack counts before authentication in fixed
// windows (SetThrottle; default a minute): every request per client
// address (3000), contact searches per account (SearchPerMinute, 100);
// over either: 429 text/plain "Retry later\n", without Retry-After unless
// asked for.
type Chatwoot struct {
	Faults
	AccountID       int
	Token           string
	SearchPerMinute int

	mu         sync.Mutex
	contacts   []ChatwootContact
	links      []contactInbox
	convs      []ChatwootConversation
	inboxes    []ChatwootInbox
	agents     []ChatwootAgent
	messages   []ChatwootMessage
	perIP      int
	period     time.Duration
	retryAfter bool
	window     int64
	searches   int
	requests   map[string]int
}

// NewChatwoot returns a fake Chatwoot account.
func NewChatwoot(accountID int, token string) *Chatwoot {
	return &Chatwoot{AccountID: accountID, Token: token, SearchPerMinute: 100, perIP: 3000, period: time.Minute}
}

// SetThrottle sets rack-attack's limit on all requests per client address
// per period (default 3000 a minute) and whether a throttled answer says
// Retry-After (the rest of the window, as rack-attack's
// throttled_response_retry_after_header does). The contact-search limit is
// SearchPerMinute per period.
func (c *Chatwoot) SetThrottle(perIP int, period time.Duration, retryAfter bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.perIP, c.period, c.retryAfter = perIP, period, retryAfter
	c.window, c.searches, c.requests = 0, 0, nil
}

// AddContact adds a contact.
func (c *Chatwoot) AddContact(ct ChatwootContact) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.contacts = append(c.contacts, ct)
}

// AddConversation adds a conversation.
func (c *Chatwoot) AddConversation(cv ChatwootConversation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.convs = append(c.convs, cv)
}

// AddInbox adds an inbox.
func (c *Chatwoot) AddInbox(in ChatwootInbox) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inboxes = append(c.inboxes, in)
}

// AddAgent adds a user to the account.
func (c *Chatwoot) AddAgent(a ChatwootAgent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.agents = append(c.agents, a)
}

// Contacts returns the account's contacts.
func (c *Chatwoot) Contacts() []ChatwootContact {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.contacts)
}

// Conversations returns the account's conversations.
func (c *Chatwoot) Conversations() []ChatwootConversation {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.convs)
}

// Messages returns the messages posted, in order.
func (c *Chatwoot) Messages() []ChatwootMessage {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.messages)
}

// SetConversationStatus sets a conversation's status (an agent resolving
// it, say).
func (c *Chatwoot) SetConversationStatus(display int, status string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cv := c.conv(display); cv != nil {
		cv.Status = status
	}
}

func cwError(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func cwJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

const cwNotFound = `{"error":"Resource could not be found"}`

// decode reads the JSON body into v, answering 400 when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		cwError(w, http.StatusBadRequest, `{"error":"bad JSON"}`)
		return false
	}
	return true
}

// ServeHTTP serves the account API.
func (c *Chatwoot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/accounts/")
	if !ok {
		http.NotFound(w, r)
		return
	}
	acct, rest, _ := strings.Cut(rest, "/")
	endpoint := cwEndpoint(r.Method, rest)
	if !c.arrive(w, r, endpoint) || !c.throttle(w, r, endpoint) {
		return
	}
	tok := r.Header.Get("Api-Access-Token")
	if tok == "" {
		tok = r.Header.Get("Api_access_token")
	}
	switch {
	case tok == "":
		cwError(w, http.StatusUnauthorized, `{"errors":["You need to sign in or sign up before continuing."]}`)
		return
	case tok != c.Token:
		cwError(w, http.StatusUnauthorized, `{"error":"Invalid Access Token"}`)
		return
	case acct != strconv.Itoa(c.AccountID):
		cwError(w, http.StatusNotFound, cwNotFound)
		return
	}
	parts := strings.Split(rest, "/")
	id := 0
	if len(parts) > 1 {
		id, _ = strconv.Atoi(parts[1])
	}
	switch endpoint {
	case "contacts/search":
		c.search(w, r)
	case "contact conversations":
		c.conversations(w, id)
	case "contacts":
		c.createContact(w, r)
	case "conversations":
		c.createConversation(w, r)
	case "messages":
		c.postMessage(w, r, id)
	case "assignments":
		c.assign(w, r, id)
	case "agents":
		c.listAgents(w)
	default:
		cwError(w, http.StatusNotFound, cwNotFound)
	}
}

// cwEndpoint names the request for Requests.
func cwEndpoint(method, rest string) string {
	parts := strings.Split(rest, "/")
	switch {
	case method == http.MethodGet && rest == "contacts/search":
		return "contacts/search"
	case method == http.MethodGet && len(parts) == 3 && parts[0] == "contacts" && parts[2] == "conversations":
		return "contact conversations"
	case method == http.MethodPost && rest == "contacts":
		return "contacts"
	case method == http.MethodPost && rest == "conversations":
		return "conversations"
	case method == http.MethodPost && len(parts) == 3 && parts[0] == "conversations" && parts[2] == "messages":
		return "messages"
	case method == http.MethodPost && len(parts) == 3 && parts[0] == "conversations" && parts[2] == "assignments":
		return "assignments"
	case method == http.MethodGet && rest == "agents":
		return "agents"
	}
	return method + " " + rest
}

// throttle plays rack-attack: fixed windows keyed by unix time / period,
// counted before authentication.
func (c *Chatwoot) throttle(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	c.mu.Lock()
	now := time.Now()
	if win := now.UnixNano() / int64(c.period); win != c.window {
		c.window, c.searches, c.requests = win, 0, nil
	}
	if c.requests == nil {
		c.requests = map[string]int{}
	}
	ip, _, _ := net.SplitHostPort(r.RemoteAddr)
	c.requests[ip]++
	over := c.requests[ip] > c.perIP
	if endpoint == "contacts/search" {
		c.searches++
		over = over || c.searches > c.SearchPerMinute
	}
	rest := time.Duration((c.window+1)*int64(c.period) - now.UnixNano())
	retryAfter := c.retryAfter
	c.mu.Unlock()
	if !over {
		return true
	}
	if retryAfter {
		w.Header().Set("Retry-After", strconv.Itoa(int((rest+time.Second-1)/time.Second)))
	}
	w.Header().Set("Content-Type", "text/plain")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte("Retry later\n"))
	return false
}

func (c *Chatwoot) search(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// Rails decodes '+' as a space; Chatwoot strips the term.
	raw := r.URL.RawQuery
	var q string
	for kv := range strings.SplitSeq(raw, "&") {
		if k, v, _ := strings.Cut(kv, "="); k == "q" {
			q, _ = url.QueryUnescape(v)
		}
	}
	q = strings.TrimSpace(q)
	lq := strings.ToLower(q)
	if q == "" {
		cwError(w, http.StatusUnprocessableEntity, `{"error":"Specify search string with parameter q"}`)
		return
	}
	var found []ChatwootContact
	for _, ct := range c.contacts {
		if strings.Contains(strings.ToLower(ct.Name), lq) || strings.Contains(strings.ToLower(ct.Email), lq) ||
			strings.Contains(strings.ToLower(ct.PhoneNumber), lq) || strings.Contains(ct.Identifier, q) || strconv.Itoa(ct.ID) == q {
			found = append(found, ct)
		}
	}
	slices.SortStableFunc(found, func(a, b ChatwootContact) int { return cmp.Compare(strings.ToLower(a.Name), strings.ToLower(b.Name)) })
	page, _ := strconv.Atoi(r.URL.Query().Get("page"))
	page = max(page, 1)
	from := min((page-1)*15, len(found))
	found = found[from:min(from+15, len(found))]
	payload := make([]map[string]any, len(found))
	for i, ct := range found {
		payload[i] = c.contactJSON(ct)
	}
	cwJSON(w, map[string]any{
		"meta":    map[string]any{"count": len(payload), "current_page": page},
		"payload": payload,
	})
}

// contactJSON renders a contact with its inboxes; c.mu is held.
func (c *Chatwoot) contactJSON(ct ChatwootContact) map[string]any {
	inboxes := []any{}
	for _, l := range c.links {
		if l.contact == ct.ID {
			inboxes = append(inboxes, map[string]any{"source_id": l.sourceID, "inbox": c.inbox(l.inbox)})
		}
	}
	return map[string]any{"id": ct.ID, "name": ct.Name, "email": ct.Email, "phone_number": ct.PhoneNumber,
		"identifier": ct.Identifier, "thumbnail": "", "availability_status": "offline", "blocked": false,
		"additional_attributes": map[string]any{}, "custom_attributes": map[string]any{}, "contact_inboxes": inboxes}
}

// inbox returns the inbox (an API inbox if it was never added); c.mu is held.
func (c *Chatwoot) inbox(id int) ChatwootInbox {
	for _, in := range c.inboxes {
		if in.ID == id {
			return in
		}
	}
	return ChatwootInbox{ID: id, Name: "Inbox " + strconv.Itoa(id), ChannelType: "Channel::Api"}
}

func (c *Chatwoot) contact(id int) *ChatwootContact {
	for i := range c.contacts {
		if c.contacts[i].ID == id {
			return &c.contacts[i]
		}
	}
	return nil
}

func (c *Chatwoot) conv(display int) *ChatwootConversation {
	for i := range c.convs {
		if c.convs[i].DisplayID == display {
			return &c.convs[i]
		}
	}
	return nil
}

// convJSON renders a conversation; c.mu is held.
func (c *Chatwoot) convJSON(cv ChatwootConversation) map[string]any {
	sender := map[string]any{}
	if ct := c.contact(cv.ContactID); ct != nil {
		sender = map[string]any{"id": ct.ID, "name": ct.Name, "phone_number": ct.PhoneNumber}
	}
	meta := map[string]any{"sender": sender, "channel": c.inbox(cv.InboxID).ChannelType, "hmac_verified": false}
	if cv.Assignee != nil {
		meta["assignee"] = cv.Assignee
	}
	return map[string]any{
		"id": cv.DisplayID, "account_id": c.AccountID, "inbox_id": cv.InboxID, "status": cv.Status,
		"priority": nil, "meta": meta, "messages": []any{}, "labels": []any{},
		"created_at": cv.LastActivityAt.Unix(), "timestamp": cv.LastActivityAt.Unix(),
		"last_activity_at": cv.LastActivityAt.Unix(), "unread_count": 0, "can_reply": true,
	}
}

func (c *Chatwoot) conversations(w http.ResponseWriter, cid int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.contact(cid) == nil {
		cwError(w, http.StatusNotFound, cwNotFound)
		return
	}
	var convs []ChatwootConversation
	for _, cv := range c.convs {
		if cv.ContactID == cid {
			convs = append(convs, cv)
		}
	}
	slices.SortStableFunc(convs, func(a, b ChatwootConversation) int { return cmp.Compare(b.DisplayID, a.DisplayID) })
	convs = convs[:min(len(convs), 20)]
	payload := make([]map[string]any, len(convs))
	for i, cv := range convs {
		payload[i] = c.convJSON(cv)
	}
	cwJSON(w, map[string]any{"payload": payload})
}

var e164 = regexp.MustCompile(`^\+[1-9]\d{1,14}$`)

func (c *Chatwoot) createContact(w http.ResponseWriter, r *http.Request) {
	var in struct {
		InboxID     int    `json:"inbox_id"`
		Name        string `json:"name"`
		Email       string `json:"email"`
		PhoneNumber string `json:"phone_number"`
		Identifier  string `json:"identifier"`
	}
	if !decode(w, r, &in) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if in.PhoneNumber != "" && !e164.MatchString(in.PhoneNumber) {
		cwError(w, http.StatusUnprocessableEntity, `{"message":"Phone number should be in e164 format","attributes":["phone_number"]}`)
		return
	}
	for _, ct := range c.contacts {
		switch {
		case in.PhoneNumber != "" && ct.PhoneNumber == in.PhoneNumber:
			cwError(w, http.StatusUnprocessableEntity, `{"message":"Phone number has already been taken","attributes":["phone_number"]}`)
			return
		case in.Email != "" && strings.EqualFold(ct.Email, in.Email):
			cwError(w, http.StatusUnprocessableEntity, `{"message":"Email has already been taken","attributes":["email"]}`)
			return
		}
	}
	ct := ChatwootContact{ID: 1, Name: in.Name, Email: in.Email, PhoneNumber: in.PhoneNumber, Identifier: in.Identifier}
	for _, o := range c.contacts {
		ct.ID = max(ct.ID, o.ID+1)
	}
	c.contacts = append(c.contacts, ct)
	payload := map[string]any{"contact": c.contactJSON(ct)}
	if in.InboxID != 0 {
		l := c.link(ct.ID, in.InboxID)
		payload["contact"] = c.contactJSON(ct)
		payload["contact_inbox"] = map[string]any{"source_id": l.sourceID, "inbox": c.inbox(in.InboxID)}
	}
	cwJSON(w, map[string]any{"payload": payload})
}

// link returns the contact's link to the inbox, making one with a new
// source id if there is none; c.mu is held.
func (c *Chatwoot) link(contact, inbox int) contactInbox {
	for _, l := range c.links {
		if l.contact == contact && l.inbox == inbox {
			return l
		}
	}
	l := contactInbox{contact: contact, inbox: inbox, sourceID: uuid()}
	c.links = append(c.links, l)
	return l
}

func uuid() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func (c *Chatwoot) createConversation(w http.ResponseWriter, r *http.Request) {
	var in struct {
		SourceID   string `json:"source_id"`
		InboxID    int    `json:"inbox_id"`
		ContactID  int    `json:"contact_id"`
		Status     string `json:"status"`
		AssigneeID int    `json:"assignee_id"`
	}
	if !decode(w, r, &in) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var l *contactInbox
	switch {
	case in.ContactID != 0 && in.InboxID != 0 && c.contact(in.ContactID) != nil:
		li := c.link(in.ContactID, in.InboxID)
		l = &li
	case in.SourceID != "":
		for i := range c.links {
			if c.links[i].sourceID == in.SourceID && (in.InboxID == 0 || c.links[i].inbox == in.InboxID) {
				l = &c.links[i]
			}
		}
	}
	if l == nil {
		cwError(w, http.StatusNotFound, cwNotFound)
		return
	}
	cv := ChatwootConversation{DisplayID: 1, ContactID: l.contact, InboxID: l.inbox, Status: cmp.Or(in.Status, "open"), LastActivityAt: time.Now()}
	for _, o := range c.convs {
		cv.DisplayID = max(cv.DisplayID, o.DisplayID+1)
	}
	for _, a := range c.agents {
		if a.ID == in.AssigneeID {
			cv.Assignee = &a
		}
	}
	c.convs = append(c.convs, cv)
	cwJSON(w, c.convJSON(cv))
}

func (c *Chatwoot) postMessage(w http.ResponseWriter, r *http.Request, display int) {
	var in struct {
		Content     string `json:"content"`
		MessageType string `json:"message_type"`
		Private     bool   `json:"private"`
		ContentType string `json:"content_type"`
	}
	if !decode(w, r, &in) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cv := c.conv(display)
	if cv == nil {
		cwError(w, http.StatusNotFound, cwNotFound)
		return
	}
	in.MessageType = cmp.Or(in.MessageType, "outgoing")
	in.ContentType = cmp.Or(in.ContentType, "text")
	typ := map[string]int{"incoming": 0, "outgoing": 1, "activity": 2, "template": 3}[in.MessageType]
	switch {
	case in.MessageType == "incoming" && c.inbox(cv.InboxID).ChannelType != "Channel::Api":
		cwError(w, http.StatusUnprocessableEntity, `{"error":"Incoming messages are only allowed in Api inboxes"}`)
		return
	case in.ContentType == "voice_call":
		cwError(w, http.StatusUnprocessableEntity, `{"error":"Voice call messages are only allowed in voice-enabled inboxes"}`)
		return
	case in.MessageType == "incoming" && cv.Status == "resolved":
		cv.Status = "open"
	}
	m := ChatwootMessage{ID: len(c.messages) + 1, Conversation: display, Content: in.Content, MessageType: typ,
		Private: in.Private, ContentType: in.ContentType, CreatedAt: time.Now()}
	c.messages = append(c.messages, m)
	cv.LastActivityAt = m.CreatedAt
	cwJSON(w, map[string]any{"id": m.ID, "content": m.Content, "content_type": m.ContentType, "content_attributes": map[string]any{},
		"message_type": m.MessageType, "private": m.Private, "created_at": m.CreatedAt.Unix(), "conversation_id": display,
		"sender": map[string]any{"id": 1, "type": "user"}})
}

func (c *Chatwoot) assign(w http.ResponseWriter, r *http.Request, display int) {
	var in struct {
		AssigneeID int `json:"assignee_id"`
	}
	if !decode(w, r, &in) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cv := c.conv(display)
	if cv == nil {
		cwError(w, http.StatusNotFound, cwNotFound)
		return
	}
	for _, a := range c.agents {
		if a.ID == in.AssigneeID {
			cv.Assignee = &a
			cwJSON(w, a)
			return
		}
	}
	cwError(w, http.StatusNotFound, cwNotFound)
}

func (c *Chatwoot) listAgents(w http.ResponseWriter) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cwJSON(w, append([]ChatwootAgent{}, c.agents...))
}
