package route

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/robin"
)

// DefaultChatwootSearchLimit is the default of CHATWOOT_SEARCH_LIMIT:
// Chatwoot's rack-attack allows 100 contact searches a minute per account
// by default, shared with the people using the dashboard, so the bridge
// takes 60.
const DefaultChatwootSearchLimit = "60/1m"

// maxContacts bounds the contacts whose conversations one look-up reads.
const maxContacts = 3

// ErrThrottled means Chatwoot answered 429 to a contact search; searches
// wait until its throttle's window ends.
var ErrThrottled = errors.New("contact search throttled (429)")

// ChatwootOptions configure a Chatwoot resolver.
type ChatwootOptions struct {
	// URL is Chatwoot's base URL (CHATWOOT_URL).
	URL string
	// AccountID is the account (CHATWOOT_ACCOUNT_ID).
	AccountID string
	// Token is a user's access token (CHATWOOT_API_TOKEN): an agent bot's
	// token may not search contacts.
	Token string
	// HTTPClient sends the requests; nil means a default client.
	HTTPClient *http.Client
	// SearchLimit bounds contact searches (CHATWOOT_SEARCH_LIMIT); nil
	// means DefaultChatwootSearchLimit.
	SearchLimit []robin.Window
	// SkipOffline skips an assignee whose availability_status is offline
	// (ROUTE_SKIP_OFFLINE).
	SkipOffline bool
	// Wait is the longest a search waits for the limiter (the router's
	// timeout).
	Wait time.Duration
	// Breaker stops requests while Chatwoot fails; nil means none.
	Breaker Breaker
	// Numbers normalises the contacts' phone numbers (required).
	Numbers Numbers
	// Agents maps the assignee's e-mail address to an extension.
	Agents Agents
	// Count, when set, is told the outcome of every request: endpoint
	// "contacts/search" or "contact conversations", status "2xx", "4xx",
	// "5xx" or "error".
	Count func(endpoint, status string)
}

// Chatwoot finds the assignee of the caller's open Chatwoot conversation:
// contact search by number, the matching contact's conversations, the
// assignee's e-mail address, the directory (research: helpdesk-apis §3.1).
type Chatwoot struct {
	o       ChatwootOptions
	base    string // …/api/v1/accounts/{id}
	hc      *http.Client
	search  Gate
	convers Gate

	mu        sync.Mutex
	holdUntil time.Time // no search before then (after a 429)
}

// NewChatwoot checks o and returns the resolver.
func NewChatwoot(ctx context.Context, o ChatwootOptions) (*Chatwoot, error) {
	if err := CheckChatwoot(o.URL, o.AccountID); err != nil {
		return nil, err
	}
	if o.Token == "" {
		return nil, errors.New("CHATWOOT_API_TOKEN is required with CHATWOOT_URL (or CHATWOOT_API_TOKEN_FILE)")
	}
	if o.Numbers == nil {
		return nil, errors.New("chatwoot: no Numbers")
	}
	limits := o.SearchLimit
	if len(limits) == 0 {
		var err error
		if limits, err = robin.ParseWindows(DefaultChatwootSearchLimit); err != nil {
			return nil, err
		}
	}
	// The helpdesk quota limiter, in memory, serves as the search limiter.
	q, err := robin.NewQuota(ctx, robin.QuotaOptions{Windows: limits})
	if err != nil {
		return nil, fmt.Errorf("CHATWOOT_SEARCH_LIMIT: %w", err)
	}
	hc := o.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	if o.Count == nil {
		o.Count = func(string, string) {}
	}
	return &Chatwoot{
		o:       o,
		base:    strings.TrimRight(o.URL, "/") + "/api/v1/accounts/" + o.AccountID,
		hc:      hc,
		search:  Gate{Quota: q, Priority: robin.PriorityPresence, Wait: o.Wait, Breaker: o.Breaker},
		convers: Gate{Breaker: o.Breaker},
	}, nil
}

// CheckChatwoot reports what is wrong with CHATWOOT_URL and
// CHATWOOT_ACCOUNT_ID.
func CheckChatwoot(base, accountID string) error {
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

// Name returns "chatwoot".
func (c *Chatwoot) Name() string { return ViaChatwoot }

// cwContact is the part of a contact the resolver reads.
type cwContact struct {
	ID          int64  `json:"id"`
	PhoneNumber string `json:"phone_number"`
}

// cwConversation is the part of a conversation the resolver reads. The
// assignee is absent, not null, when nobody is assigned.
type cwConversation struct {
	ID             int64  `json:"id"` // the display id, as in the dashboard's URLs
	Status         string `json:"status"`
	LastActivityAt int64  `json:"last_activity_at"`
	Meta           struct {
		Assignee *struct {
			Email              string `json:"email"`
			AvailabilityStatus string `json:"availability_status"`
		} `json:"assignee"`
	} `json:"meta"`
}

// Resolve searches the contact by the caller's number, keeps the contacts
// whose number is the caller's (the search matches substrings), and picks
// the most recently active open conversation with an assignee who is in the
// directory (and not offline, with SkipOffline).
func (c *Chatwoot) Resolve(ctx context.Context, caller string) (Match, error) {
	contacts, err := c.contacts(ctx, caller)
	if err != nil {
		return Match{}, err
	}
	if len(contacts) == 0 {
		return Match{}, none("chatwoot: no contact with this number")
	}
	var convs []cwConversation
	for _, id := range contacts {
		var page struct {
			Payload []cwConversation `json:"payload"`
		}
		err := c.get(ctx, c.convers, "contact conversations", "/contacts/"+strconv.FormatInt(id, 10)+"/conversations", &page)
		if err != nil {
			return Match{}, err
		}
		convs = append(convs, page.Payload...)
	}
	slices.SortStableFunc(convs, func(a, b cwConversation) int { return cmp.Compare(b.LastActivityAt, a.LastActivityAt) })
	why := "chatwoot: no open conversation"
	for _, cv := range convs {
		if cv.Status != "open" {
			continue
		}
		as := cv.Meta.Assignee
		switch {
		case as == nil:
			why = "chatwoot: the open conversation has no assignee"
			continue
		case c.o.SkipOffline && strings.EqualFold(as.AvailabilityStatus, "offline"):
			why = "chatwoot: the assignee is offline"
			continue
		}
		ag, ok := c.o.Agents.ByEmail(as.Email)
		if !ok {
			why = "chatwoot: the assignee is not in the directory"
			continue
		}
		var since time.Time
		if cv.LastActivityAt > 0 {
			since = time.Unix(cv.LastActivityAt, 0)
		}
		return match(ag, strconv.FormatInt(cv.ID, 10), since), nil
	}
	return Match{}, none(why)
}

// contacts returns the ids of the contacts whose number is caller's, at
// most maxContacts.
func (c *Chatwoot) contacts(ctx context.Context, caller string) ([]int64, error) {
	c.mu.Lock()
	hold := c.holdUntil
	c.mu.Unlock()
	if time.Now().Before(hold) {
		return nil, fmt.Errorf("%w until %s", ErrThrottled, hold.UTC().Format(time.RFC3339))
	}
	var page struct {
		Payload []cwContact `json:"payload"`
	}
	// url.QueryEscape writes '+' as %2B: Rails reads a bare '+' as a space
	// and the search would find nothing (chatwoot/chatwoot#3495).
	err := c.get(ctx, c.search, "contacts/search", "/contacts/search?q="+url.QueryEscape(caller)+"&page=1", &page)
	var he *HTTPError
	if errors.As(err, &he) && he.Status == http.StatusTooManyRequests {
		// rack-attack counts in fixed windows aligned to the minute and
		// sends no Retry-After unless configured to.
		until := time.Now().Add(he.RetryAfterDelay)
		if he.RetryAfterDelay == 0 {
			until = time.Now().Truncate(time.Minute).Add(time.Minute)
		}
		c.mu.Lock()
		c.holdUntil = until
		c.mu.Unlock()
		return nil, fmt.Errorf("%w until %s: %w", ErrThrottled, until.UTC().Format(time.RFC3339), err)
	}
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, ct := range page.Payload {
		n := c.o.Numbers.Normalize(ct.PhoneNumber)
		if n.Kind == phone.External && n.E164 == caller && len(ids) < maxContacts {
			ids = append(ids, ct.ID)
		}
	}
	return ids, nil
}

// get asks Chatwoot through gate and decodes the answer into v.
func (c *Chatwoot) get(ctx context.Context, gate Gate, endpoint, path string, v any) error {
	return gate.Do(ctx, func(ctx context.Context) error {
		op := "chatwoot " + endpoint
		req, err := newRequest(ctx, c.base+path, op)
		if err != nil {
			return err
		}
		// The documented header is api_access_token; nginx drops headers
		// with underscores by default (chatwoot/chatwoot#1057), and Rails
		// reads this spelling as the same header.
		req.Header.Set("Api-Access-Token", c.o.Token)
		err = getJSON(c.hc, req, op, v)
		c.o.Count(endpoint, statusOf(err))
		return err
	})
}
