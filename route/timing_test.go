package route

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/robin/robintest"
	"github.com/voipbridge/voipbridge/route/routetest"
)

// TestRouteSlowHelpdesk: a helpdesk that does not answer costs the caller
// no more than ROUTE_TIMEOUT; the next resolver answers, or nobody does and
// the answer is 404; a late answer fills the cache for the next call.
func TestRouteSlowHelpdesk(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	setup := func(t *testing.T, robinDelay, chatwootDelay time.Duration) (*world, *Router) {
		w := newWorld(t, inProcess)
		w.robin.Add(openRobin("g1", petra, "2024-03-04T10:00:00"))
		w.chatwoot.AddContact(routetest.ChatwootContact{ID: 11, Name: "Nick", PhoneNumber: caller})
		w.chatwoot.AddConversation(routetest.ChatwootConversation{DisplayID: 4, ContactID: 11, Status: "open",
			Assignee: agent(1, olga, "online"), LastActivityAt: time.Now()})
		w.robin.SetDelay(robinDelay)
		w.chatwoot.SetDelay(chatwootDelay)
		return w, w.router(t, Config{Timeout: timeout}, ViaHistory, ViaRobin, ViaChatwoot)
	}
	t.Run("next resolver answers", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, r := setup(t, time.Hour, 0)
			start := time.Now()
			a := r.Lookup(context.Background(), caller)
			if took := time.Since(start); took > timeout {
				t.Errorf("answered after %s, want at most %s", took, timeout)
			}
			if a.Extension != "303" || a.Via != ViaChatwoot {
				t.Errorf("answer %+v, want Chatwoot's agent (203)", a)
			}
		})
	})
	t.Run("nobody answers in time", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			_, r := setup(t, time.Hour, time.Hour)
			start := time.Now()
			a := r.Lookup(context.Background(), caller)
			if took := time.Since(start); took > timeout {
				t.Errorf("answered after %s, want at most %s", took, timeout)
			}
			if a.Extension != "" || a.Result != ResultTimeout || !strings.Contains(a.Reason, "no answer within") {
				t.Errorf("answer %+v, want no agent for a timeout", a)
			}
		})
	})
	t.Run("late answer fills the cache", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w, r := setup(t, 3*time.Second, time.Hour)
			if a := r.Lookup(context.Background(), caller); a.Extension != "" {
				t.Fatalf("first look-up: %+v, want none in time", a)
			}
			time.Sleep(10 * time.Second) // the flight gives up on Chatwoot
			synctest.Wait()
			a := r.Lookup(context.Background(), caller)
			if a.Extension != "301" || a.Via != ViaRobin || a.Result != ResultCached {
				t.Errorf("next call: %+v, want ROBIN's late answer from the cache", a)
			}
			if n := w.robin.Requests("conversations"); n != 1 {
				t.Errorf("ROBIN asked %d times, want 1", n)
			}
		})
	})
}

// TestRouteCacheAndStale: answers, an agent or none, are cached for the
// TTL; while the helpdesk fails the last agent is served stale, up to
// StaleMax, and a failing helpdesk is asked at most once per TTL per caller.
func TestRouteCacheAndStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWorld(t, inProcess)
		w.robin.Add(openRobin("g1", petra, "2024-03-04T10:00:00"))
		r := w.router(t, Config{CacheTTL: time.Minute, StaleMax: 10 * time.Minute}, ViaRobin)
		ctx := context.Background()
		if a := r.Lookup(ctx, caller); a.Extension != "301" || a.Result != ResultHit {
			t.Fatalf("first: %+v", a)
		}
		time.Sleep(61 * time.Second)
		w.robin.SetStatus(503)
		a := r.Lookup(ctx, caller)
		if a.Extension != "301" || !a.Stale || a.Result != ResultStale || !strings.Contains(a.Reason, "503") {
			t.Fatalf("while ROBIN fails: %+v, want the last agent, stale", a)
		}
		for range 5 {
			r.Lookup(ctx, caller)
		}
		if n := w.robin.Requests("conversations"); n != 2 {
			t.Errorf("ROBIN asked %d times, want 2 (one answer, one failure, then held back)", n)
		}
		time.Sleep(10 * time.Minute)
		if a := r.Lookup(ctx, caller); a.Extension != "" || a.Result != ResultError {
			t.Errorf("after StaleMax: %+v, want no agent", a)
		}

		// Negative answers are cached too.
		other := "+31201234567"
		w.shop.Add(routetest.Customer{Email: "ann@customer.example", Phone: other})
		w.robin.SetStatus(0)
		for range 3 {
			if a := r.Lookup(ctx, other); a.Extension != "" {
				t.Fatalf("%s: %+v", other, a)
			}
		}
		// The flight stores its answer after handing it to the caller;
		// let it finish (1 failure in 10 loaded runs without this).
		synctest.Wait()
		if a := r.Lookup(ctx, other); a.Result != ResultCached {
			t.Errorf("repeated none: %+v, want cached", a)
		}
		before := w.robin.Requests("conversations")
		time.Sleep(61 * time.Second)
		r.Lookup(ctx, other)
		if n := w.robin.Requests("conversations") - before; n != 1 {
			t.Errorf("after the TTL: %d requests, want 1", n)
		}
	})
}

// TestRouteChatwootLimits: contact searches stay within the bridge's own
// limiter, and a 429 holds searches back until rack-attack's minute ends.
func TestRouteChatwootLimits(t *testing.T) {
	callers := []string{"+31612345601", "+31612345602", "+31612345603", "+31612345604", "+31612345605"}
	seed := func(w *world) {
		for i, c := range callers {
			w.chatwoot.AddContact(routetest.ChatwootContact{ID: 20 + i, Name: fmt.Sprint("c", i), PhoneNumber: c})
			w.chatwoot.AddConversation(routetest.ChatwootConversation{DisplayID: i + 1, ContactID: 20 + i, Status: "open",
				Assignee: agent(1, sam, "online"), LastActivityAt: time.Now()})
		}
	}
	t.Run("429", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			time.Sleep(10 * time.Second) // into the minute
			w := newWorld(t, inProcess)
			seed(w)
			w.chatwoot.SearchPerMinute = 2
			cw := w.chatwootResolver(t, time.Second, "50/1m")
			r, _ := New(Options{Resolvers: []Resolver{cw}, Numbers: w.numbers})
			defer r.Close()
			for i, c := range callers[:4] {
				a := r.Lookup(context.Background(), c)
				if got := a.Extension != ""; got != (i < 2) {
					t.Errorf("look-up %d: %+v", i, a)
				}
				if i == 2 && !strings.Contains(a.Reason, "throttled (429)") {
					t.Errorf("look-up after 429: reason %q", a.Reason)
				}
			}
			if n := w.chatwoot.Requests("contacts/search"); n != 3 {
				t.Errorf("%d searches, want 3: none while throttled", n)
			}
			time.Sleep(51 * time.Second) // the next minute
			if a := r.Lookup(context.Background(), callers[4]); a.Extension != "302" {
				t.Errorf("after the minute: %+v", a)
			}
		})
	})
	t.Run("own limiter", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			w := newWorld(t, inProcess)
			seed(w)
			cw := w.chatwootResolver(t, time.Second, "2/1m")
			r, _ := New(Options{Resolvers: []Resolver{cw}, Numbers: w.numbers})
			defer r.Close()
			for i, c := range callers[:3] {
				a := r.Lookup(context.Background(), c)
				if got := a.Extension != ""; got != (i < 2) {
					t.Errorf("look-up %d: %+v", i, a)
				}
			}
			if n := w.chatwoot.Requests("contacts/search"); n != 2 {
				t.Errorf("%d searches, want 2 (the limit)", n)
			}
		})
	})
}

// TestRouteRobinQuota: ROBIN look-ups share the quota with call events; at
// ROBIN, counted at the fake, no window ever holds more requests than the
// limit, and every event is delivered.
func TestRouteRobinQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		windows, _ := robin.ParseWindows("3/1s,12/1m")
		q, err := robin.NewQuota(context.Background(), robin.QuotaOptions{Windows: windows})
		if err != nil {
			t.Fatal(err)
		}
		w := newWorld(t, inProcess)
		w.quota = q
		events := robintest.New(robintest.Options{APIKey: robinKey})
		w.robin.Next = events
		const calls, lookups = 15, 10
		for i := range lookups {
			num := fmt.Sprintf("+3161234%04d", i)
			mail := fmt.Sprintf("c%d@customer.example", i)
			w.shop.Add(routetest.Customer{Email: mail, Phone: num})
			c := openRobin(fmt.Sprint("g", i), petra, "2024-03-04T10:00:00")
			c.Customer = mail
			w.robin.Add(c)
		}
		r := w.router(t, Config{}, ViaRobin)
		sender, err := robin.NewClient(robin.Config{APIURL: "http://fake.invalid", APIKey: robinKey, HTTPClient: routetest.Client(w.robin)})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { // the dispatcher's part: events at their priority
			for i := range calls {
				for {
					if err := q.Reserve(context.Background(), robin.PriorityAnswered); err != nil {
						t.Error(err)
						return
					}
					if sender.Send(context.Background(), eventN(i)) == nil {
						break
					}
				}
			}
		})
		var hits, mu = 0, sync.Mutex{}
		for i := range lookups {
			wg.Go(func() {
				time.Sleep(time.Duration(i) * 700 * time.Millisecond)
				if a := r.Lookup(context.Background(), fmt.Sprintf("+3161234%04d", i)); a.Extension != "" {
					mu.Lock()
					hits++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		if got := len(events.Events()); got != calls {
			t.Errorf("%d events delivered, want %d", got, calls)
		}
		times := w.robin.Times("")
		slices.SortFunc(times, func(a, b time.Time) int { return a.Compare(b) })
		for _, win := range windows {
			for i := range times {
				n := 0
				for j := i; j < len(times) && times[j].Sub(times[i]) < win.Per; j++ {
					n++
				}
				if n > win.Limit {
					t.Fatalf("%d requests at ROBIN within %s from %s; the limit is %d", n, win.Per, times[i].Format(time.StampMilli), win.Limit)
				}
			}
		}
		if hits == 0 || w.robin.Requests("conversations") == 0 {
			t.Errorf("no look-up reached ROBIN (%d hits)", hits)
		}
		t.Logf("%d requests at ROBIN: %d events, %d conversation look-ups (%d of %d callers routed)",
			len(times), calls, w.robin.Requests("conversations"), hits, lookups)
	})
}

func eventN(i int) events.Event {
	return events.Event{ID: fmt.Sprint("call-", i), Type: events.EventDisconnected, PhoneNumber: "+31201234567",
		PhoneExtension: "301", Direction: "Inbound"}
}
