package route

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/route/routetest"
)

// The test world: a caller known to the shop, ROBIN and Chatwoot, and the
// agents of the directory.
const (
	caller       = "+31612345678"
	callerLocal  = "06 1234 5678"
	customerMail = "nick@customer.example"
	petra        = "petra@shop.example" // extension 201
	sam          = "sam@shop.example"   // extension 202
	olga         = "olga@shop.example"  // extension 203
	stranger     = "temp@agency.example"
	robinKey     = "route-key"
	robinSecret  = "route-secret"
	cwAccount    = 7
	cwToken      = "cw-token"
)

const directoryCSV = `pbx_id,robin_extension,name,email
201,301,Petra,petra@shop.example
202,302,Sam,sam@shop.example
203,303,Olga,olga@shop.example
`

func testDirectory(t testing.TB) *extensions.Directory {
	t.Helper()
	f := filepath.Join(t.TempDir(), "agents.csv")
	if err := os.WriteFile(f, []byte(directoryCSV), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := extensions.Load("", f)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func testNumbers(t testing.TB) *phone.Normalizer {
	t.Helper()
	n, err := phone.New(phone.Options{Region: "NL"})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// world holds the fakes and the resolvers built on them.
type world struct {
	shop     *routetest.Shop
	robin    *routetest.Robin
	chatwoot *routetest.Chatwoot
	agents   Agents
	numbers  *phone.Normalizer
	history  *History
	quota    Quota
	breaker  *robin.Breaker
	// client returns the HTTP client for a fake's handler and its base URL:
	// loopback by default, in process inside synctest bubbles.
	client func(h http.Handler) (*http.Client, string)
}

// loopback serves each fake on its own loopback port.
func loopback(t testing.TB) func(h http.Handler) (*http.Client, string) {
	return func(h http.Handler) (*http.Client, string) {
		return &http.Client{}, routetest.Start(t, h)
	}
}

// inProcess serves the fakes without sockets (for synctest bubbles).
func inProcess(h http.Handler) (*http.Client, string) {
	return routetest.Client(h), "http://fake.invalid"
}

func newWorld(t testing.TB, client func(h http.Handler) (*http.Client, string)) *world {
	t.Helper()
	w := &world{
		shop:     routetest.NewShop(routetest.Customer{Email: customerMail, Name: "Nick", Phone: caller}),
		robin:    routetest.NewRobin(robinKey, robinSecret),
		chatwoot: routetest.NewChatwoot(cwAccount, cwToken),
		agents:   Agents{Dir: testDirectory(t)},
		numbers:  testNumbers(t),
		breaker:  robin.NewBreaker(robin.BreakerOptions{}),
		client:   client,
	}
	w.history = NewHistory(HistoryOptions{Agents: w.agents})
	return w
}

// robinResolver builds the ROBIN resolver on the fakes.
func (w *world) robinResolver(t testing.TB, timeout time.Duration) *Robin {
	t.Helper()
	shopClient, shopURL := w.client(w.shop)
	cust, err := NewCustomers(routetest.Template(shopURL), shopClient, nil)
	if err != nil {
		t.Fatal(err)
	}
	rc, ru := w.client(w.robin)
	cl, err := robin.NewClient(robin.Config{APIURL: ru, APIKey: robinKey, APISecret: robinSecret, HTTPClient: rc, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return &Robin{Customers: cust, Conversations: cl, Agents: w.agents,
		Gate: Gate{Quota: w.quota, Priority: robin.PriorityPresence, Wait: timeout, Breaker: w.breaker}}
}

// chatwootResolver builds the Chatwoot resolver on the fake.
func (w *world) chatwootResolver(t testing.TB, timeout time.Duration, limit string) *Chatwoot {
	t.Helper()
	hc, u := w.client(w.chatwoot)
	o := ChatwootOptions{URL: u, AccountID: "7", Token: cwToken, HTTPClient: hc, SkipOffline: true,
		Wait: timeout, Numbers: w.numbers, Agents: w.agents, Breaker: robin.NewBreaker(robin.BreakerOptions{})}
	if limit != "" {
		ws, err := robin.ParseWindows(limit)
		if err != nil {
			t.Fatal(err)
		}
		o.SearchLimit = ws
	}
	c, err := NewChatwoot(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// router builds a router over the resolvers named, in order.
func (w *world) router(t testing.TB, cfg Config, order ...string) *Router {
	t.Helper()
	var res []Resolver
	for _, n := range order {
		switch n {
		case ViaHistory:
			res = append(res, w.history)
		case ViaRobin:
			res = append(res, w.robinResolver(t, cfg.withDefaults().Timeout))
		case ViaChatwoot:
			res = append(res, w.chatwootResolver(t, cfg.withDefaults().Timeout, ""))
		}
	}
	r, err := New(Options{Config: cfg, Resolvers: res, Numbers: w.numbers})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// answered is a committed Answered event of caller taken by a ROBIN extension.
func answered(id, number, robinExt string, at time.Time) events.Envelope {
	return events.Envelope{Source: "generic", Created: at, Event: events.Event{
		ID: id, Type: events.EventAnswered, PhoneNumber: number, PhoneExtension: robinExt, Direction: "Inbound"}}
}

// openRobin is an open ROBIN conversation of the customer owned by owner.
func openRobin(guid, owner, start string) routetest.RobinConversation {
	return routetest.RobinConversation{GUID: guid, State: "Open", Channel: "Email", StartDateTime: start,
		Owner: &routetest.RobinOwner{Type: "User", Name: owner, EmailAddress: owner}, Customer: customerMail}
}

// agent is a Chatwoot agent with this address and availability.
func agent(id int, email, status string) *routetest.ChatwootAgent {
	return &routetest.ChatwootAgent{ID: id, Name: email, Email: email, AvailabilityStatus: status, Role: "agent"}
}
