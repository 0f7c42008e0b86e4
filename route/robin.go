package route

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/robin"
)

// Conversations retrieves a customer's conversations from ROBIN;
// *robin.Client satisfies it.
type Conversations interface {
	Conversations(ctx context.Context, email string) ([]robin.Conversation, error)
}

// Robin finds the owner of the caller's open ROBIN conversation: the shop's
// customer endpoint gives the caller's e-mail address, ROBIN's
// conversations for that address give the owner, and the directory gives
// the owner's extension. ROBIN does not search conversations by phone
// number (research: helpdesk-apis §3.2), hence the detour through the shop.
type Robin struct {
	// Customers asks the shop for the caller's e-mail address.
	Customers *Customers
	// Conversations asks ROBIN.
	Conversations Conversations
	// Gate admits each request to ROBIN: the quota shared with call events
	// (presence priority) and the breaker.
	Gate Gate
	// Agents maps the owner's e-mail address to an extension.
	Agents Agents
	// Count, when set, is told the outcome of every request to ROBIN.
	Count func(err error)
}

// Name returns "robin".
func (r *Robin) Name() string { return ViaRobin }

// Resolve asks the shop and then ROBIN: the most recent conversation whose
// state is open and whose owner is a User in the directory decides.
func (r *Robin) Resolve(ctx context.Context, caller string) (Match, error) {
	email, err := r.Customers.Email(ctx, caller)
	if err != nil {
		return Match{}, err
	}
	var convs []robin.Conversation
	err = r.Gate.Do(ctx, func(ctx context.Context) error {
		var err error
		convs, err = r.Conversations.Conversations(ctx, email)
		if r.Count != nil {
			r.Count(err)
		}
		return err
	})
	if err != nil {
		return Match{}, err
	}
	// ROBIN's order is not documented: newest start first. The layout
	// ("2021-07-08T15:39:04", no zone) sorts as text.
	slices.SortStableFunc(convs, func(a, b robin.Conversation) int { return cmp.Compare(b.StartDateTime, a.StartDateTime) })
	open, owned := 0, 0
	for _, c := range convs {
		if !strings.EqualFold(strings.TrimSpace(c.State), "open") {
			continue
		}
		open++
		if c.Owner == nil || !strings.EqualFold(c.Owner.Type, "User") {
			continue
		}
		owned++
		if ag, ok := r.Agents.ByEmail(c.Owner.EmailAddress); ok {
			since, _ := time.Parse("2006-01-02T15:04:05", c.StartDateTime)
			return match(ag, c.GUID, since), nil
		}
	}
	switch {
	case open == 0:
		return Match{}, none("robin: no open conversation")
	case owned == 0:
		return Match{}, none("robin: no open conversation has an owner")
	}
	return Match{}, none("robin: the owners of the open conversations are not in the directory")
}
