package route

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/route/routetest"
)

// BenchmarkRouteCached: a look-up answered from the cache.
func BenchmarkRouteCached(b *testing.B) {
	w := newWorld(b, loopback(b))
	r := w.router(b, Config{CacheTTL: time.Hour}, ViaHistory)
	w.history.Record([]events.Envelope{answered("c1", caller, "301", time.Now())})
	ctx := context.Background()
	if a := r.Lookup(ctx, caller); a.Extension != "301" {
		b.Fatalf("%+v", a)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if a := r.Lookup(ctx, caller); a.Result != ResultCached {
				b.Fatalf("%+v", a)
			}
		}
	})
}

// BenchmarkRouteHistory: a look-up of a caller the cache does not hold,
// answered by the history from the journal's bucket (embedded NATS,
// fsync on write as the bridge runs it): the router's flight plus one KV
// read.
func BenchmarkRouteHistory(b *testing.B) {
	ctx := context.Background()
	j, err := events.OpenJournal(ctx, events.JournalOptions{DataDir: b.TempDir(), SignalRetention: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	kv, err := j.ExpiringKeyValue(ctx, HistoryBucket, "bench", 1, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	w := newWorld(b, loopback(b))
	w.history = NewHistory(HistoryOptions{Store: KVStore(kv), Agents: w.agents})
	const callers = 1000
	var batch []events.Envelope
	for i := range callers {
		batch = append(batch, answered(fmt.Sprint("c", i), fmt.Sprintf("+3161200%04d", i), "301", time.Now()))
	}
	w.history.Record(batch)
	if !w.history.flush(ctx) {
		b.Fatal("flush failed")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if i%callers == 0 {
			// A new router: every caller misses the cache again.
			b.StopTimer()
			r, err := New(Options{Resolvers: []Resolver{w.history}, Numbers: w.numbers})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(r.Close)
			b.StartTimer()
			benchRouter = r
		}
		if a := benchRouter.Lookup(ctx, fmt.Sprintf("+3161200%04d", i%callers)); a.Extension != "301" || a.Result != ResultHit {
			b.Fatalf("%+v", a)
		}
	}
}

var benchRouter *Router

// BenchmarkRouteRobin: the ROBIN resolver against the fakes on loopback
// (the shop's customer endpoint, then ROBIN's conversations).
func BenchmarkRouteRobin(b *testing.B) {
	w := newWorld(b, loopback(b))
	w.robin.Add(openRobin("g1", petra, "2024-03-04T10:00:00"))
	res := w.robinResolver(b, time.Second)
	benchResolver(b, w, res, func() int { return w.shop.Requests("") + w.robin.Requests("") })
}

// BenchmarkRouteChatwoot: the Chatwoot resolver against the fake on
// loopback (contact search, then the contact's conversations).
func BenchmarkRouteChatwoot(b *testing.B) {
	w := newWorld(b, loopback(b))
	w.chatwoot.SearchPerMinute = 1 << 30
	w.chatwoot.AddContact(routetest.ChatwootContact{ID: 11, Name: "Nick", PhoneNumber: caller})
	w.chatwoot.AddConversation(routetest.ChatwootConversation{DisplayID: 4, ContactID: 11, Status: "open",
		Assignee: agent(1, olga, "online"), LastActivityAt: time.Now()})
	res := w.chatwootResolver(b, time.Second, "1000000000/1m")
	benchResolver(b, w, res, func() int { return w.chatwoot.Requests("") })
}

func benchResolver(b *testing.B, w *world, res Resolver, requests func() int) {
	ctx := context.Background()
	if _, err := res.Resolve(ctx, caller); err != nil {
		b.Fatal(err)
	}
	before := requests()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if m, err := res.Resolve(ctx, caller); err != nil || m.Extension == "" {
			b.Fatalf("%+v %v", m, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(requests()-before)/float64(b.N), "requests/op")
}
