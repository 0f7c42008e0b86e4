// Package chatwoot talks to Chatwoot's account API (research:
// helpdesk-apis §2) and keeps a call log there: each reported call becomes
// private notes on the caller's open conversation in one inbox (Sink).
//
// The Client is shared with routing's Chatwoot resolver (package route):
// contact search with an exact match over Chatwoot's substring search, the
// contact's conversations, and the writes the call log needs. Its failures
// are the helpdesk error, *robin.Error, classified by the one table
// (robin.ClassifyStatus), so 429 (rack-attack) and 422 (validation) go
// through the dispatcher's failure policy like ROBIN's answers; a 429
// without Retry-After asks to wait until rack-attack's minute ends. An
// error's text is the request's name, the status and what Chatwoot said
// (its "error", "message" or "errors", else the start of the body), never
// a URL or the token.
package chatwoot

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/robin"
)

// maxBody bounds an answer read from Chatwoot.
const maxBody = 4 << 20

// maxErrorBody bounds what an error keeps of Chatwoot's answer.
const maxErrorBody = 512

// PageSize is how many contacts one page of contact search holds
// (RESULTS_PER_PAGE upstream).
const PageSize = 15

// Options configure a Client.
type Options struct {
	// URL is Chatwoot's base URL (CHATWOOT_URL).
	URL string
	// AccountID is the account's number (CHATWOOT_ACCOUNT_ID).
	AccountID string
	// Token is a user's access token (CHATWOOT_API_TOKEN); an agent bot's
	// token may not search contacts.
	Token string
	// HTTPClient sends the requests; nil means a client that follows no
	// redirects (the token would travel to another host).
	HTTPClient *http.Client
	// Timeout bounds one request; 0 leaves it to the caller's context.
	Timeout time.Duration
	// Count, when set, is told the outcome of every request: its endpoint
	// (as the Client's methods name it) and status "2xx", "4xx", "5xx" or
	// "error".
	Count func(endpoint, status string)
	// Now is the clock for rack-attack's windows (default time.Now).
	Now func() time.Time
}

// Client sends requests to one Chatwoot account. It is safe for
// concurrent use.
type Client struct {
	o    Options
	base string // …/api/v1/accounts/{id}
}

// Check reports what is wrong with CHATWOOT_URL and CHATWOOT_ACCOUNT_ID.
func Check(base, accountID string) error {
	var errs []error
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("CHATWOOT_URL: want an absolute http(s) URL"))
	}
	if _, err := strconv.ParseUint(accountID, 10, 63); err != nil {
		errs = append(errs, fmt.Errorf("CHATWOOT_ACCOUNT_ID %q: want the account's number", accountID))
	}
	return errors.Join(errs...)
}

// New checks o and returns the client.
func New(o Options) (*Client, error) {
	if err := Check(o.URL, o.AccountID); err != nil {
		return nil, err
	}
	if o.Token == "" {
		return nil, errors.New("CHATWOOT_API_TOKEN is required with CHATWOOT_URL (or CHATWOOT_API_TOKEN_FILE)")
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if o.Count == nil {
		o.Count = func(string, string) {}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Client{o: o, base: strings.TrimRight(o.URL, "/") + "/api/v1/accounts/" + o.AccountID}, nil
}

// StatusClass is the metric label of a request's outcome: "2xx", "4xx",
// "5xx" or "error".
func StatusClass(err error) string {
	var re *robin.Error
	switch {
	case err == nil:
		return "2xx"
	case errors.As(err, &re) && re.Status > 0:
		return strconv.Itoa(re.Status/100) + "xx"
	}
	return "error"
}

// do sends one request (in, when not nil, as its JSON body) and decodes a
// 2xx answer into out (when not nil).
func (c *Client) do(ctx context.Context, method, endpoint, path string, in, out any) error {
	err := c.send(ctx, method, "chatwoot "+endpoint, path, in, out)
	c.o.Count(endpoint, StatusClass(err))
	return err
}

func (c *Client) send(ctx context.Context, method, op, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return &robin.Error{Op: op, Cause: err}
		}
		body = bytes.NewReader(b)
	}
	reqCtx, cancel := ctx, context.CancelFunc(func() {})
	if c.o.Timeout > 0 {
		reqCtx, cancel = context.WithTimeout(ctx, c.o.Timeout)
	}
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, method, c.base+path, body)
	if err != nil {
		return &robin.Error{Op: op, Cause: errors.New("cannot build the request")}
	}
	// The documented header is api_access_token; nginx drops headers with
	// underscores by default (chatwoot/chatwoot#1057), and Rails reads this
	// spelling as the same header.
	req.Header.Set("Api-Access-Token", c.o.Token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// failed is a request without a (whole) answer: the caller gave up,
	// Chatwoot took too long (a failure of Chatwoot, unlike the caller's
	// own deadline), or the connection failed.
	failed := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return &robin.Error{Op: op, Cause: ctx.Err()}
		case reqCtx.Err() != nil:
			return &robin.Error{Op: op, Cause: fmt.Errorf("%w (%s)", robin.ErrTimeout, c.o.Timeout)}
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL
		}
		return &robin.Error{Op: op, Cause: err}
	}
	resp, err := c.o.HTTPClient.Do(req)
	if err != nil {
		return failed(err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return failed(fmt.Errorf("read answer: %w", err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &robin.Error{Op: op, Status: resp.StatusCode, Body: message(b)}
		if resp.StatusCode == http.StatusTooManyRequests {
			e.RetryAfterDelay = c.retryAfter(resp.Header.Get("Retry-After"))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return &robin.Error{Op: op, Status: resp.StatusCode, Body: "answer is not the expected JSON: " + err.Error()}
	}
	return nil
}

// retryAfter reads a 429's Retry-After (seconds, at most an hour); without
// one it is the rest of the current minute: rack-attack counts in fixed
// windows aligned to the minute and by default sends no Retry-After
// (research: helpdesk-apis §2.3).
func (c *Client) retryAfter(v string) time.Duration {
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs > 0 {
		return time.Duration(min(secs, 3600)) * time.Second
	}
	now := c.o.Now()
	return now.Truncate(time.Minute).Add(time.Minute).Sub(now)
}

// message is what Chatwoot said: "error", then "message", then "errors"
// (research: helpdesk-apis §2.4), else the start of the body.
func message(b []byte) string {
	s := string(b)
	var m map[string]any
	if json.Unmarshal(b, &m) == nil {
	keys:
		for _, k := range []string{"error", "message", "errors"} {
			switch v := m[k].(type) {
			case string:
				if v != "" {
					s = v
					break keys
				}
			case []any:
				if len(v) > 0 {
					parts := make([]string, len(v))
					for i, p := range v {
						parts[i] = fmt.Sprint(p)
					}
					s = strings.Join(parts, "; ")
					break keys
				}
			}
		}
	}
	s = strings.TrimSpace(s)
	if len(s) > maxErrorBody {
		s = strings.ToValidUTF8(s[:maxErrorBody], "")
	}
	return s
}

// Contact is the part of a Chatwoot contact the bridge reads.
type Contact struct {
	ID             int64          `json:"id"`
	Name           string         `json:"name"`
	PhoneNumber    string         `json:"phone_number"`
	ContactInboxes []ContactInbox `json:"contact_inboxes"`
}

// ContactInbox links a contact to an inbox; SourceID names the contact in
// it and opens conversations there.
type ContactInbox struct {
	SourceID string `json:"source_id"`
	Inbox    struct {
		ID int64 `json:"id"`
	} `json:"inbox"`
}

// SourceID returns the contact's source id in inbox, "" when it has none.
func (c Contact) SourceID(inbox int64) string {
	for _, ci := range c.ContactInboxes {
		if ci.Inbox.ID == inbox {
			return ci.SourceID
		}
	}
	return ""
}

// Agent is a Chatwoot user as GET /agents and meta.assignee render it.
type Agent struct {
	ID                 int64  `json:"id"`
	Name               string `json:"name"`
	Email              string `json:"email"`
	AvailabilityStatus string `json:"availability_status"`
}

// Conversation is the part of a conversation the bridge reads. Its ID is
// the display id, as in the dashboard's URLs; Meta.Assignee is nil when
// nobody is assigned (Chatwoot leaves the key out).
type Conversation struct {
	ID             int64  `json:"id"`
	InboxID        int64  `json:"inbox_id"`
	Status         string `json:"status"`
	LastActivityAt int64  `json:"last_activity_at"`
	Meta           struct {
		Assignee *Agent `json:"assignee"`
	} `json:"meta"`
}

// Numbers normalises phone numbers; *phone.Normalizer satisfies it.
type Numbers interface {
	Normalize(raw string) phone.Number
}

// Matching returns the contacts whose number is number: contact search
// matches substrings (q=612345678 finds +316123456789 too), so each
// contact's phone_number is compared whole, normalised with numbers when
// given.
func Matching(contacts []Contact, number string, numbers Numbers) []Contact {
	var out []Contact
	for _, ct := range contacts {
		same := ct.PhoneNumber == number
		if !same && numbers != nil && ct.PhoneNumber != "" {
			n := numbers.Normalize(ct.PhoneNumber)
			same = n.Kind == phone.External && n.E164 == number
		}
		if same {
			out = append(out, ct)
		}
	}
	return out
}

// SearchContacts returns one page (from 1) of contact search for q. q is
// sent escaped: Rails reads a bare '+' as a space and would find nothing
// (chatwoot/chatwoot#3495).
func (c *Client) SearchContacts(ctx context.Context, q string, page int) ([]Contact, error) {
	var res struct {
		Payload []Contact `json:"payload"`
	}
	path := "/contacts/search?q=" + url.QueryEscape(q) + "&page=" + strconv.Itoa(max(page, 1))
	err := c.do(ctx, http.MethodGet, "contacts/search", path, nil, &res)
	return res.Payload, err
}

// ContactConversations returns the contact's conversations in the inboxes
// the token's user sees (newest first; newer Chatwoot versions return at
// most 20).
func (c *Client) ContactConversations(ctx context.Context, contactID int64) ([]Conversation, error) {
	var res struct {
		Payload []Conversation `json:"payload"`
	}
	err := c.do(ctx, http.MethodGet, "contact conversations", "/contacts/"+strconv.FormatInt(contactID, 10)+"/conversations", nil, &res)
	return res.Payload, err
}

// CreateContact creates a contact with this name and E.164 number in
// inbox. Chatwoot answers 422 for a number that is not E.164 or is taken
// already.
func (c *Client) CreateContact(ctx context.Context, inbox int64, name, number string) (Contact, error) {
	var res struct {
		Payload struct {
			Contact      Contact      `json:"contact"`
			ContactInbox ContactInbox `json:"contact_inbox"`
		} `json:"payload"`
	}
	in := map[string]any{"inbox_id": inbox, "name": name, "phone_number": number}
	if err := c.do(ctx, http.MethodPost, "contacts", "/contacts", in, &res); err != nil {
		return Contact{}, err
	}
	ct := res.Payload.Contact
	if ci := res.Payload.ContactInbox; ci.SourceID != "" && ct.SourceID(inbox) == "" {
		ci.Inbox.ID = inbox
		ct.ContactInboxes = append(ct.ContactInboxes, ci)
	}
	if ct.ID == 0 {
		return Contact{}, &robin.Error{Op: "chatwoot contacts", Status: http.StatusOK, Body: "answer names no contact"}
	}
	return ct, nil
}

// CreateConversation opens a conversation for the contact in inbox: by the
// contact's source id in that inbox when known, else by contact and inbox
// (Chatwoot then links the contact to the inbox).
func (c *Client) CreateConversation(ctx context.Context, inbox, contactID int64, sourceID string) (Conversation, error) {
	in := map[string]any{"inbox_id": inbox, "contact_id": contactID, "status": "open"}
	if sourceID != "" {
		in["source_id"] = sourceID
	}
	var cv Conversation
	if err := c.do(ctx, http.MethodPost, "conversations", "/conversations", in, &cv); err != nil {
		return Conversation{}, err
	}
	if cv.ID == 0 {
		return Conversation{}, &robin.Error{Op: "chatwoot conversations", Status: http.StatusOK, Body: "answer names no conversation"}
	}
	return cv, nil
}

// PostNote adds a private note (seen by agents only, never sent to the
// contact) to the conversation.
func (c *Client) PostNote(ctx context.Context, conversation int64, content string) error {
	in := map[string]any{"content": content, "message_type": "outgoing", "private": true, "content_type": "text"}
	return c.do(ctx, http.MethodPost, "messages", "/conversations/"+strconv.FormatInt(conversation, 10)+"/messages", in, nil)
}

// Agents lists the account's agents.
func (c *Client) Agents(ctx context.Context) ([]Agent, error) {
	var out []Agent // a bare array, not wrapped in payload
	err := c.do(ctx, http.MethodGet, "agents", "/agents", nil, &out)
	return out, err
}

// Assign makes agent the conversation's assignee.
func (c *Client) Assign(ctx context.Context, conversation, agent int64) error {
	return c.do(ctx, http.MethodPost, "assignments", "/conversations/"+strconv.FormatInt(conversation, 10)+"/assignments",
		map[string]any{"assignee_id": agent}, nil)
}
