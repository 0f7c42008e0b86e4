package route

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/voipbridge/voipbridge/chatwoot"
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
	// HTTPClient sends the requests; nil means one that follows no
	// redirects.
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
	cl      *chatwoot.Client
	search  Gate
	convers Gate

	mu        sync.Mutex
	holdUntil time.Time // no search before then (after a 429)
}

// NewChatwoot checks o and returns the resolver.
func NewChatwoot(ctx context.Context, o ChatwootOptions) (*Chatwoot, error) {
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
	cl, err := chatwoot.New(chatwoot.Options{URL: o.URL, AccountID: o.AccountID, Token: o.Token, HTTPClient: o.HTTPClient, Count: o.Count})
	if err != nil {
		return nil, err
	}
	return &Chatwoot{
		o:       o,
		cl:      cl,
		search:  Gate{Quota: q, Priority: robin.PriorityPresence, Wait: o.Wait, Breaker: o.Breaker},
		convers: Gate{Breaker: o.Breaker},
	}, nil
}

// CheckChatwoot reports what is wrong with CHATWOOT_URL and
// CHATWOOT_ACCOUNT_ID.
func CheckChatwoot(base, accountID string) error { return chatwoot.Check(base, accountID) }

// Name returns "chatwoot".
func (c *Chatwoot) Name() string { return ViaChatwoot }

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
	var convs []chatwoot.Conversation
	for _, id := range contacts {
		err := c.convers.Do(ctx, func(ctx context.Context) error {
			list, err := c.cl.ContactConversations(ctx, id)
			convs = append(convs, list...)
			return err
		})
		if err != nil {
			return Match{}, err
		}
	}
	slices.SortStableFunc(convs, func(a, b chatwoot.Conversation) int { return cmp.Compare(b.LastActivityAt, a.LastActivityAt) })
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
	var found []chatwoot.Contact
	err := c.search.Do(ctx, func(ctx context.Context) error {
		var err error
		found, err = c.cl.SearchContacts(ctx, caller, 1)
		return err
	})
	var ce *robin.Error
	if errors.As(err, &ce) && ce.Status == http.StatusTooManyRequests {
		// rack-attack counts in fixed windows aligned to the minute and
		// sends no Retry-After unless configured to; the client's delay
		// says until when.
		until := time.Now().Add(ce.RetryAfter())
		c.mu.Lock()
		c.holdUntil = until
		c.mu.Unlock()
		return nil, fmt.Errorf("%w until %s: %w", ErrThrottled, until.UTC().Format(time.RFC3339), err)
	}
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, ct := range chatwoot.Matching(found, caller, c.o.Numbers) {
		if len(ids) < maxContacts {
			ids = append(ids, ct.ID)
		}
	}
	return ids, nil
}
