package routetest

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// RobinConversation is a conversation as ROBIN's retrieval endpoint
// documents it. Customer is not part of the answer: it is the e-mail address
// the fake matches emailAddress against (the customer's messages' sender).
type RobinConversation struct {
	GUID          string      `json:"guid"`
	Subject       string      `json:"subject"`
	Channel       string      `json:"channel"`
	State         string      `json:"state"` // Open, Archived, Snoozed, Hidden
	Owner         *RobinOwner `json:"owner"`
	WebStore      string      `json:"webStore"`
	StartDateTime string      `json:"startDateTime"` // 2021-07-08T15:39:04
	Messages      []any       `json:"messages"`
	Customer      string      `json:"-"`
}

// RobinOwner is a conversation's owner.
type RobinOwner struct {
	Type         string `json:"type"`
	Name         string `json:"name"`
	EmailAddress string `json:"emailAddress"`
}

// Robin is a fake of ROBIN's POST /conversations: HTTP Basic key:secret
// (else 401), a JSON body with emailAddress (else 400), the customer's
// conversations newest first, 20 a page, as {"conversations":[…]}. Other
// paths go to Next (for example a robintest.Server taking events), so that
// one listener counts every request to ROBIN.
type Robin struct {
	Faults
	Key, Secret string
	Next        http.Handler
	mu          sync.Mutex
	convs       []RobinConversation
}

// NewRobin returns a fake ROBIN for key and secret.
func NewRobin(key, secret string, convs ...RobinConversation) *Robin {
	return &Robin{Key: key, Secret: secret, convs: convs}
}

// Add adds a conversation.
func (f *Robin) Add(c RobinConversation) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.convs = append(f.convs, c)
}

// ServeHTTP serves POST /conversations and hands anything else to Next.
func (f *Robin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/conversations" {
		if f.Next != nil {
			f.note("other")
			f.Next.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
		return
	}
	if !f.arrive(w, r, "conversations") {
		return
	}
	if u, p, ok := r.BasicAuth(); !ok || u != f.Key || p != f.Secret || r.Method != http.MethodPost {
		http.Error(w, "Invalid authorisation data", http.StatusUnauthorized)
		return
	}
	var q struct {
		EmailAddress string `json:"emailAddress"`
		Skip         int    `json:"skip"`
	}
	if err := json.NewDecoder(r.Body).Decode(&q); err != nil || q.Skip < 0 || q.EmailAddress == "" {
		http.Error(w, "Bad Request", http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	var out []RobinConversation
	for _, c := range f.convs {
		if strings.EqualFold(c.Customer, q.EmailAddress) {
			if c.Messages == nil {
				c.Messages = []any{}
			}
			out = append(out, c)
		}
	}
	f.mu.Unlock()
	slices.SortStableFunc(out, func(a, b RobinConversation) int { return cmp.Compare(b.StartDateTime, a.StartDateTime) })
	out = out[min(q.Skip, len(out)):]
	out = out[:min(20, len(out))]
	if out == nil {
		out = []RobinConversation{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"conversations": out})
}
