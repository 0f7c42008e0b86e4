package routetest

import (
	"cmp"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ChatwootAgent is a user of the account, as meta.assignee renders it.
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

// Chatwoot is a fake of the Chatwoot account API paths routing uses:
//
//   - GET /api/v1/accounts/{id}/contacts/search?q=: q decoded as Rails does
//     ('+' is a space) and stripped, then a case-insensitive substring match
//     on name, email and phone_number; ordered by name, 15 a page;
//     {"meta":{"count","current_page"},"payload":[…]}. Blank q: 422.
//   - GET /api/v1/accounts/{id}/contacts/{contact}/conversations:
//     {"payload":[…]} newest display id first.
//
// Every request needs the token in Api-Access-Token or api_access_token
// (else 401 {"error":"Invalid Access Token"}); an unknown account is 404.
// Contact searches are throttled per account in fixed minutes
// (SearchPerMinute, default 100, as rack-attack): 429 text/plain
// "Retry later\n" without Retry-After.
type Chatwoot struct {
	Faults
	AccountID       int
	Token           string
	SearchPerMinute int

	mu       sync.Mutex
	contacts []ChatwootContact
	convs    []ChatwootConversation
	window   int64
	searches int
}

// NewChatwoot returns a fake Chatwoot account.
func NewChatwoot(accountID int, token string) *Chatwoot {
	return &Chatwoot{AccountID: accountID, Token: token, SearchPerMinute: 100}
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

func cwError(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// ServeHTTP serves the account API.
func (c *Chatwoot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, "/api/v1/accounts/")
	if !ok || r.Method != http.MethodGet {
		http.NotFound(w, r)
		return
	}
	acct, rest, _ := strings.Cut(rest, "/")
	endpoint := "contact conversations"
	if rest == "contacts/search" {
		endpoint = "contacts/search"
	}
	if !c.arrive(w, r, endpoint) {
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
		cwError(w, http.StatusNotFound, `{"error":"Resource could not be found"}`)
		return
	}
	if endpoint == "contacts/search" {
		c.search(w, r)
		return
	}
	id, ok := strings.CutPrefix(rest, "contacts/")
	id, ok2 := strings.CutSuffix(id, "/conversations")
	if !ok || !ok2 {
		cwError(w, http.StatusNotFound, `{"error":"Resource could not be found"}`)
		return
	}
	c.conversations(w, id)
}

func (c *Chatwoot) search(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if win := time.Now().Unix() / 60; win != c.window {
		c.window, c.searches = win, 0
	}
	c.searches++
	if c.searches > c.SearchPerMinute {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte("Retry later\n"))
		return
	}
	// Rails decodes '+' as a space; Chatwoot strips the term.
	raw := r.URL.RawQuery
	var q string
	for kv := range strings.SplitSeq(raw, "&") {
		if k, v, _ := strings.Cut(kv, "="); k == "q" {
			q, _ = url.QueryUnescape(v)
		}
	}
	q = strings.ToLower(strings.TrimSpace(q))
	if q == "" {
		cwError(w, http.StatusUnprocessableEntity, `{"error":"Specify search string with parameter q"}`)
		return
	}
	var found []ChatwootContact
	for _, ct := range c.contacts {
		if strings.Contains(strings.ToLower(ct.Name), q) || strings.Contains(strings.ToLower(ct.Email), q) ||
			strings.Contains(strings.ToLower(ct.PhoneNumber), q) {
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
		payload[i] = map[string]any{"id": ct.ID, "name": ct.Name, "email": ct.Email, "phone_number": ct.PhoneNumber,
			"identifier": ct.Identifier, "thumbnail": "", "availability_status": "offline", "blocked": false,
			"additional_attributes": map[string]any{}, "custom_attributes": map[string]any{}}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"meta":    map[string]any{"count": len(payload), "current_page": page},
		"payload": payload,
	})
}

func (c *Chatwoot) conversations(w http.ResponseWriter, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cid, _ := strconv.Atoi(id)
	var ct *ChatwootContact
	for i := range c.contacts {
		if c.contacts[i].ID == cid {
			ct = &c.contacts[i]
		}
	}
	if ct == nil {
		cwError(w, http.StatusNotFound, `{"error":"Resource could not be found"}`)
		return
	}
	var convs []ChatwootConversation
	for _, cv := range c.convs {
		if cv.ContactID == cid {
			convs = append(convs, cv)
		}
	}
	slices.SortStableFunc(convs, func(a, b ChatwootConversation) int { return cmp.Compare(b.DisplayID, a.DisplayID) })
	payload := make([]map[string]any, len(convs))
	for i, cv := range convs {
		meta := map[string]any{
			"sender":        map[string]any{"id": ct.ID, "name": ct.Name, "phone_number": ct.PhoneNumber},
			"channel":       "Channel::Api",
			"hmac_verified": false,
		}
		if cv.Assignee != nil {
			meta["assignee"] = cv.Assignee
		}
		payload[i] = map[string]any{
			"id": cv.DisplayID, "account_id": c.AccountID, "inbox_id": cv.InboxID, "status": cv.Status,
			"priority": nil, "meta": meta, "messages": []any{}, "labels": []any{},
			"created_at": cv.LastActivityAt.Unix(), "timestamp": cv.LastActivityAt.Unix(),
			"last_activity_at": cv.LastActivityAt.Unix(), "unread_count": 0, "can_reply": true,
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"payload": payload})
}
