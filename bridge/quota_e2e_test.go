package bridge

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// greedyStarts is how many requests the fastest schedule that keeps limits
// can start within span from an empty record: every request as early as the
// windows allow.
func greedyStarts(limits []robintest.Limit, span time.Duration) int {
	var at []time.Duration
	for {
		t := time.Duration(0)
		if n := len(at); n > 0 {
			t = at[n-1]
		}
		for _, l := range limits {
			if k := len(at) - l.N; k >= 0 {
				t = max(t, at[k]+l.Per)
			}
		}
		if t > span {
			return len(at)
		}
		at = append(at, t)
	}
}

// checkQuotaOnArrival drains a backlog of calls through the bridge against a
// fake ROBIN that counts requests as they arrive and answers 429 to any over
// its limits, and reports violations and utilisation.
func checkQuotaOnArrival(t *testing.T, rateLimits string, limits []robintest.Limit, calls int, minUtilisation float64) {
	fake := robintest.NewServer(robintest.Options{APIKey: "test-key", Limits: limits, RetryAfter: true})
	t.Cleanup(fake.Close)
	tb := startBridgeWith(t, fake, t.TempDir(), "ROBIN_RATE_LIMITS="+rateLimits, "ROBIN_PRESENCE_RESERVE=0")
	want := postCalls(t, tb, "q", calls)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	if _, err := fake.WaitEvents(ctx, want); err != nil {
		t.Fatal(err)
	}
	var arrivals []time.Time
	for _, r := range registerRequests(fake, time.Time{}) {
		arrivals = append(arrivals, r.At)
	}
	slices.SortFunc(arrivals, time.Time.Compare)
	span := arrivals[len(arrivals)-1].Sub(arrivals[0])
	u := float64(len(arrivals)) / float64(greedyStarts(limits, span))
	t.Logf("%d events: %d requests over %v, %d answered 429 (violations), utilisation %.3f", want, len(arrivals), span.Round(time.Millisecond), fake.Violations(), u)
	if v := fake.Violations(); v != 0 {
		t.Errorf("ROBIN counted %d requests over its limits", v)
	}
	if u < minUtilisation {
		t.Errorf("utilisation %.3f, want at least %.2f", u, minUtilisation)
	}
}

// TestQuotaOnROBINsClock: 80 events at scaled windows (5/1s + 20/5s), counted
// on arrival: no request over the limits, and the backlog drains at least at
// 95 % of the fastest rate the limits allow.
func TestQuotaOnROBINsClock(t *testing.T) {
	checkQuotaOnArrival(t, "5/1s,20/5s", []robintest.Limit{{N: 5, Per: time.Second}, {N: 20, Per: 5 * time.Second}}, 40, 0.95)
}

// TestQuotaOnROBINsClockRealLimits: 500 events at ROBIN's documented limits
// (about three minutes, so only with VOIPBRIDGE_LONG_TESTS=1).
func TestQuotaOnROBINsClockRealLimits(t *testing.T) {
	if os.Getenv("VOIPBRIDGE_LONG_TESTS") == "" {
		t.Skip("takes about three minutes; set VOIPBRIDGE_LONG_TESTS=1")
	}
	checkQuotaOnArrival(t, "3/1s,180/1m,10000/1h,100000/24h", robintest.DocumentedLimits(), 250, 0.9)
}
