package route

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/extensions"
)

// Resolver names, as ROUTE_ORDER and the "via" of an answer spell them.
const (
	ViaHistory  = "history"
	ViaRobin    = "robin"
	ViaChatwoot = "chatwoot"
)

// Resolver finds the agent who should take a caller.
type Resolver interface {
	// Name is the resolver's name in ROUTE_ORDER and in metrics.
	Name() string
	// Resolve returns the agent for caller (E.164). It returns an error
	// matching ErrNoMatch when it knows of none, and any other error when it
	// could not find out (a helpdesk failed, the quota is spent, ctx ended).
	Resolve(ctx context.Context, caller string) (Match, error)
}

// Match is what a resolver found.
type Match struct {
	// Extension is the agent's phone extension, the directory's
	// robin_extension: ROBIN's "Phone extension" of the agent, which the
	// call flow dials.
	Extension string
	// PBXID is the directory's pbx_id of the agent (the identifier the PBX
	// reports, such as a SIP user or a Xelion user id).
	PBXID string
	// Agent is the agent's e-mail address, or name when the directory has no
	// address.
	Agent string
	// Conversation is the helpdesk's id of the conversation that decided,
	// or the call id for history.
	Conversation string
	// Since is when the agent last had the caller: the answered call, or the
	// conversation's last activity (start, for ROBIN). Zero when unknown.
	Since time.Time
}

// ErrNoMatch is a resolver's definite answer that it knows no agent for the
// caller; it is cached like an agent.
var ErrNoMatch = errors.New("no agent for this caller")

// noMatch is ErrNoMatch with a reason, such as "no open conversation".
type noMatch struct{ reason string }

func (e noMatch) Error() string        { return e.reason }
func (e noMatch) Is(target error) bool { return target == ErrNoMatch }

// none returns an error matching ErrNoMatch that says why.
func none(reason string) error { return noMatch{reason} }

// Directory is the agent directory; *extensions.Directory satisfies it.
type Directory interface {
	Agents(source string) []extensions.Agent
	Open() bool
}

// Agents finds the directory entry of an agent the helpdesks or the event
// history name (by e-mail address or ROBIN extension).
type Agents struct {
	// Dir is the directory (EXTENSIONS, EXTENSIONS_FILE).
	Dir Directory
	// Sources are the sources whose scoped entries are searched after the
	// unscoped ones.
	Sources []string
}

// ByEmail returns the agent with this e-mail address (case ignored); an
// unscoped entry wins over a scoped one, and the lowest pbx_id among equals.
func (a Agents) ByEmail(email string) (extensions.Agent, bool) {
	email = strings.TrimSpace(email)
	if email == "" || a.Dir == nil {
		return extensions.Agent{}, false
	}
	for _, src := range append([]string{""}, a.Sources...) {
		for _, ag := range a.Dir.Agents(src) {
			if strings.EqualFold(ag.Email, email) {
				return ag, true
			}
		}
	}
	return extensions.Agent{}, false
}

// ByExtension returns the agent of source whose ROBIN extension is ext. In
// an open directory every extension is its own agent.
func (a Agents) ByExtension(source, ext string) (extensions.Agent, bool) {
	if ext == "" {
		return extensions.Agent{}, false
	}
	if a.Dir == nil || a.Dir.Open() {
		return extensions.Agent{PBXID: ext, Extension: ext}, true
	}
	for _, ag := range a.Dir.Agents(source) {
		if ag.Extension == ext {
			return ag, true
		}
	}
	return extensions.Agent{}, false
}

// match builds the Match for a directory entry.
func match(ag extensions.Agent, conversation string, since time.Time) Match {
	who := ag.Email
	if who == "" {
		who = ag.Name
	}
	return Match{Extension: ag.Extension, PBXID: ag.PBXID, Agent: who, Conversation: conversation, Since: since}
}
