package presence

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/voipbridge/voipbridge/robin"
)

// TestWarm: warm keys are refreshed in the background before they expire,
// so look-ups of them never wait for ROBIN, and the cost is one request per
// key every TTL minus the lead time.
func TestWarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig
		cfg.Warm = []Key{{Channel: "chat"}, {Channel: "WhatsApp", Referrer: "085 877 0023"}}
		e := newEnv(t, cfg)
		defer e.close()
		e.fake.SetPresence("WhatsApp", "+31858770023", true)
		if got := e.cache.Warm(); len(got) != 2 || got[0] != (Key{"Chat", ""}) || got[1] != (Key{"WhatsApp", "+31858770023"}) {
			t.Fatalf("Warm() = %v; want canonical keys", got)
		}

		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.cache.Run(ctx) }()
		synctest.Wait()
		if got := len(e.presenceRequests()); got != 2 {
			t.Fatalf("%d requests at start; want one per warm key", got)
		}

		const period = 2 * time.Minute
		flipped := false
		for start := time.Now(); time.Since(start) < period; time.Sleep(250 * time.Millisecond) {
			if !flipped && time.Since(start) >= time.Minute {
				e.fake.SetPresence("Chat", "", true)
				flipped = true
			}
			for _, k := range []Key{{"Chat", ""}, {"WhatsApp", "+31 85 877 0023"}} {
				at := time.Now()
				a, err := e.lookup(t, k.Channel, k.Referrer)
				if err != nil || a.Result != ResultHit || time.Since(at) != 0 {
					t.Fatalf("at %s: look-up of warm key %v = %+v, %v; want a cache hit without waiting",
						time.Since(start), k, a, err)
				}
			}
		}
		// The change at one minute is seen within a TTL.
		e.must(t, "Chat", "", true, ResultHit)
		perKey := int(period/(cfg.TTL-min(cfg.TTL/4, cfg.Timeout))) + 1
		if got := len(e.presenceRequests()); got < 2*(perKey-1) || got > 2*perKey {
			t.Errorf("%d requests in %s for 2 warm keys; want about %d (one per key every TTL-lead)", got, period, 2*perKey)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v; want nil", err)
		}
		synctest.Wait() // log lines come from the goroutines that asked ROBIN
		if !strings.Contains(e.logs.String(), "keeping keys fresh") {
			t.Errorf("Run did not log what it warms:\n%s", e.logs.String())
		}
	})
}

// TestWarmWithinQuota: warming spends no more than the quota allows; when
// the quota is spent it waits, and look-ups are served stale meanwhile.
func TestWarmWithinQuota(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := robin.NewQuota(context.Background(), robin.QuotaOptions{Windows: []robin.Window{{Limit: 3, Per: time.Hour}}})
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig
		cfg.StaleMax = 2 * time.Hour
		cfg.Warm = []Key{{Channel: "Chat"}}
		e := newEnv(t, cfg, withQuota(q))
		defer e.close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.cache.Run(ctx) }()

		time.Sleep(59 * time.Minute)
		if got := len(e.presenceRequests()); got != 3 {
			t.Errorf("%d requests within the hour; want the quota's 3", got)
		}
		if a, err := e.lookup(t, "Chat", ""); err != nil || !a.Stale {
			t.Errorf("look-up with the quota spent: %+v, %v; want a stale answer", a, err)
		}
		time.Sleep(time.Hour + time.Minute)
		if got := len(e.presenceRequests()); got != 6 {
			t.Errorf("%d requests within two hours; want 6", got)
		}
		cancel()
		<-done
	})
}

// TestRunWithoutWarm: without warm keys Run only waits, and closing ends the
// requests in flight.
func TestRunWithoutWarm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, testConfig, withAsker(func(a Asker) Asker {
			return askerFunc(func(ctx context.Context, ch, ref string) (bool, error) {
				<-ctx.Done() // a request that only ends when the cache closes
				return false, ctx.Err()
			})
		}))
		defer e.fake.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.cache.Run(ctx) }()
		if _, err := e.lookup(t, "Chat", ""); err == nil {
			t.Errorf("look-up of a hanging ROBIN succeeded")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v", err)
		}
		if _, err := e.lookup(t, "SMS", ""); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Errorf("look-up after Close: %v; want an error saying the cache is closed", err)
		}
		e.cache.Close() // a second Close is harmless
	})
}
