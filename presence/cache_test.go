package presence

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

var testConfig = Config{TTL: 15 * time.Second, NegativeTTL: time.Minute, StaleMax: 10 * time.Minute, Timeout: 2 * time.Second}

// TestSingleFlight: 1000 concurrent look-ups of one key, all waiting while
// ROBIN's answer is on its way, cause exactly one request to ROBIN; the
// look-ups after it are cache hits.
func TestSingleFlight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		e := newEnv(t, testConfig, withAsker(func(a Asker) Asker {
			return askerFunc(func(ctx context.Context, ch, ref string) (bool, error) {
				<-release // hold ROBIN's answer until every look-up waits
				return a.Presence(ctx, ch, ref)
			})
		}))
		defer e.close()
		e.fake.SetPresence("Chat", "", true)

		const n = 1000
		var wg sync.WaitGroup
		answers := make([]Answer, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { answers[i], errs[i] = e.cache.Lookup(context.Background(), "chat", "") })
		}
		synctest.Wait() // all 1000 are blocked on the one request
		close(release)
		wg.Wait()
		for i := range n {
			if errs[i] != nil || !answers[i].Online || answers[i].Result != ResultMiss {
				t.Fatalf("look-up %d = %+v, %v; want Online from ROBIN (miss)", i, answers[i], errs[i])
			}
		}
		if got := len(e.presenceRequests()); got != 1 {
			t.Fatalf("%d concurrent look-ups made %d requests to ROBIN; want 1", n, got)
		}
		for range n {
			e.must(t, "Chat", "", true, ResultHit)
		}
		if got := len(e.presenceRequests()); got != 1 {
			t.Errorf("cache hits made requests: %d in all; want 1", got)
		}
	})
}

// TestExpiryAndRefresh: an answer is served from the cache for exactly the
// TTL; the first look-up after it asks ROBIN again and sees the change.
func TestExpiryAndRefresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, testConfig)
		defer e.close()
		e.fake.SetPresence("WhatsApp", "shop.example", true)

		first := e.must(t, "whatsapp", "shop.example", true, ResultMiss)
		if !first.CheckedAt.Equal(time.Now()) || first.Key != (Key{"WhatsApp", "shop.example"}) {
			t.Errorf("answer %+v: want key WhatsApp|shop.example checked now", first)
		}
		e.fake.SetPresence("WhatsApp", "shop.example", false)
		time.Sleep(testConfig.TTL - time.Nanosecond)
		e.must(t, "WhatsApp", "shop.example", true, ResultHit) // still within the TTL
		time.Sleep(time.Nanosecond)
		e.must(t, "WhatsApp", "shop.example", false, ResultMiss) // expired: asked again
		e.must(t, "WhatsApp", "shop.example", false, ResultHit)

		reqs := e.presenceRequests()
		if len(reqs) != 2 {
			t.Fatalf("%d requests to ROBIN; want 2", len(reqs))
		}
		if got := reqs[1].At.Sub(reqs[0].At); got != testConfig.TTL {
			t.Errorf("second request %s after the first; want exactly the TTL %s", got, testConfig.TTL)
		}
		for _, r := range reqs {
			if r.Query.Get("Channel") != "WhatsApp" || r.Query.Get("referrer") != "shop.example" {
				t.Errorf("ROBIN was asked for %v; want the canonical channel WhatsApp and the referrer as given", r.Query)
			}
		}
	})
}

// TestStaleWhenRobinFails: while ROBIN answers 503, the last answer is
// served, marked stale, up to StaleMax after ROBIN gave it; a failing key is
// asked at most once per TTL; after StaleMax the fallback applies.
func TestStaleWhenRobinFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, testConfig)
		defer e.close()
		e.fake.SetPresence("Chat", "", true)
		checked := e.must(t, "Chat", "", true, ResultMiss).CheckedAt

		e.fake.SetFault(robintest.Fault{Status: http.StatusServiceUnavailable, Body: "maintenance"})
		time.Sleep(testConfig.TTL)
		a := e.must(t, "Chat", "", true, ResultStale)
		if !a.Stale || !a.CheckedAt.Equal(checked) || a.Reason == "" {
			t.Errorf("stale answer %+v: want Stale, CheckedAt %v and a reason", a, checked)
		}
		// Many look-ups within the next TTL: served stale, no new request.
		for range 100 {
			e.must(t, "Chat", "", true, ResultStale)
			time.Sleep(100 * time.Millisecond)
		}
		if got := len(e.presenceRequests()); got != 2 {
			t.Errorf("%d requests to ROBIN; want 2 (one answer, one failure, then held back for the TTL)", got)
		}
		// Until StaleMax after the answer, every look-up is stale ...
		deadline := checked.Add(testConfig.StaleMax)
		for time.Now().Before(deadline) {
			e.must(t, "Chat", "", true, ResultStale)
			time.Sleep(5 * time.Second)
		}
		e.must(t, "Chat", "", true, ResultStale) // exactly StaleMax old still counts
		// ... and after it, the fallback (here: error).
		time.Sleep(time.Second)
		_, err := e.lookup(t, "Chat", "")
		var ue *UnavailableError
		if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) {
			t.Fatalf("after StaleMax: err = %v; want an UnavailableError", err)
		}
		// At most one request per TTL while failing: 10m of failures.
		if got, max := len(e.presenceRequests()), 2+int(testConfig.StaleMax/testConfig.TTL)+1; got > max {
			t.Errorf("%d requests to ROBIN during the outage; want at most %d (one per TTL)", got, max)
		}
		// ROBIN recovers: the next look-up after the hold gets a fresh answer.
		e.fake.SetFault(robintest.Fault{})
		time.Sleep(testConfig.TTL)
		e.must(t, "Chat", "", true, ResultMiss)
		synctest.Wait() // log lines come from the goroutines that asked ROBIN
		logs := e.logs.String()
		for _, want := range []string{"cannot ask ROBIN", "status_503", "ROBIN answering again"} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs lack %q:\n%s", want, logs)
			}
		}
		noKey(t, "logs", logs)
	})
}

// TestStaleWhenQuotaSpent: with the quota spent, a look-up does not wait for
// the next slot beyond the timeout: it gets the last answer, stale, at once,
// and ROBIN is not asked.
func TestStaleWhenQuotaSpent(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := robin.NewQuota(context.Background(), robin.QuotaOptions{
			Windows: []robin.Window{{Limit: 1, Per: time.Hour}},
		})
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, testConfig, withQuota(q))
		defer e.close()
		e.fake.SetPresence("Email", "", true)
		e.must(t, "Email", "", true, ResultMiss) // the hour's one request

		time.Sleep(testConfig.TTL)
		start := time.Now()
		a := e.must(t, "Email", "", true, ResultStale)
		if waited := time.Since(start); waited != 0 {
			t.Errorf("look-up waited %s for a quota that frees in an hour; want no wait", waited)
		}
		if !strings.Contains(a.Reason, "quota") {
			t.Errorf("stale reason %q does not mention the quota", a.Reason)
		}
		// A key never asked: nothing known, so the fallback (error) applies.
		_, err = e.lookup(t, "SMS", "")
		if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrQuota) {
			t.Errorf("unknown key with no quota: err = %v; want ErrUnavailable caused by ErrQuota", err)
		}
		if got := len(e.presenceRequests()); got != 1 {
			t.Errorf("%d requests to ROBIN; want 1 (quota spent)", got)
		}
		synctest.Wait() // log lines come from the goroutines that asked ROBIN
		if !strings.Contains(e.logs.String(), "reason=quota") {
			t.Errorf("logs do not say the quota is spent:\n%s", e.logs.String())
		}
	})
}

// TestQuotaWaitWithinTimeout: when the next quota slot is within the
// timeout, the look-up waits for it and gets ROBIN's answer.
func TestQuotaWaitWithinTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		q, err := robin.NewQuota(context.Background(), robin.QuotaOptions{
			Windows: []robin.Window{{Limit: 1, Per: time.Second}},
		})
		if err != nil {
			t.Fatal(err)
		}
		e := newEnv(t, testConfig, withQuota(q))
		defer e.close()
		e.must(t, "Chat", "", false, ResultMiss)
		start := time.Now()
		e.must(t, "SMS", "", false, ResultMiss) // the second slot is one second away
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("waited %s for the next slot; want 1s", waited)
		}
	})
}

// TestTimeoutRequestContinues: a look-up waits no longer than the timeout for
// a slow ROBIN; the request goes on in the background and its answer serves
// the next look-ups without another request.
func TestTimeoutRequestContinues(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, Config{TTL: 15 * time.Second, StaleMax: 10 * time.Minute, Timeout: 2 * time.Second, Fallback: FallbackOffline},
			withAsker(func(a Asker) Asker {
				return askerFunc(func(ctx context.Context, ch, ref string) (bool, error) {
					time.Sleep(5 * time.Second) // a slow ROBIN
					return a.Presence(ctx, ch, ref)
				})
			}))
		defer e.close()
		e.fake.SetPresence("Chat", "", true)

		start := time.Now()
		a := e.must(t, "Chat", "", false, ResultFallback)
		if waited := time.Since(start); waited != 2*time.Second {
			t.Errorf("look-up waited %s; want exactly the 2s timeout", waited)
		}
		if !a.Fallback || !strings.Contains(a.Reason, "in time") {
			t.Errorf("fallback answer %+v: want Fallback and a reason saying ROBIN did not answer in time", a)
		}
		time.Sleep(500 * time.Millisecond) // the request is still in flight: look-ups join it
		e.must(t, "Chat", "", false, ResultFallback)
		time.Sleep(time.Second) // it has answered, 5s after it started
		e.must(t, "Chat", "", true, ResultHit)
		if got := len(e.presenceRequests()); got != 1 {
			t.Errorf("%d requests to ROBIN; want 1", got)
		}
	})
}

// TestHangingRobin: a request that never gets an answer ends at the client's
// timeout; look-ups meanwhile wait at most PRESENCE_TIMEOUT each.
func TestHangingRobin(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, testConfig)
		defer e.close()
		e.fake.SetFault(robintest.Fault{Hang: true, Endpoint: robintest.EndpointPresence})
		for range 3 {
			start := time.Now()
			_, err := e.lookup(t, "Chat", "")
			if !errors.Is(err, ErrTimeout) {
				t.Errorf("err = %v; want ErrTimeout", err)
			}
			if waited := time.Since(start); waited != testConfig.Timeout {
				t.Errorf("look-up waited %s; want %s", waited, testConfig.Timeout)
			}
		}
		time.Sleep(10 * time.Second) // the client's timeout ends the request
		if got := len(e.presenceRequests()); got != 1 {
			t.Errorf("%d requests to ROBIN; want 1", got)
		}
		synctest.Wait() // log lines come from the goroutines that asked ROBIN
		if !strings.Contains(e.logs.String(), "reason=timeout") {
			t.Errorf("logs do not report the timeout:\n%s", e.logs.String())
		}
	})
}

// TestFallbackPolicies: with nothing known and ROBIN failing, the policy
// decides the answer.
func TestFallbackPolicies(t *testing.T) {
	for _, tc := range []struct {
		fallback Fallback
		online   bool
		wantErr  bool
	}{
		{FallbackError, false, true},
		{FallbackOnline, true, false},
		{FallbackOffline, false, false},
	} {
		t.Run(tc.fallback.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := testConfig
				cfg.Fallback = tc.fallback
				e := newEnv(t, cfg)
				defer e.close()
				e.fake.SetFault(robintest.Fault{Status: http.StatusInternalServerError})
				a, err := e.lookup(t, "Chat", "")
				if tc.wantErr {
					var ue *UnavailableError
					if !errors.As(err, &ue) || a.Result != ResultError {
						t.Fatalf("Lookup = %+v, %v; want an UnavailableError and result error", a, err)
					}
					var re *robin.Error
					if !errors.As(err, &re) || re.Status != 500 {
						t.Errorf("cause %v: want ROBIN's 500", ue.Cause)
					}
					return
				}
				if err != nil || a.Online != tc.online || !a.Fallback || a.Result != ResultFallback || !a.CheckedAt.IsZero() {
					t.Fatalf("Lookup = %+v, %v; want fallback online=%v", a, err, tc.online)
				}
			})
		})
	}
}

// TestNotFound: ROBIN's 404 (unknown channel) and 400 are answers: cached
// for the negative TTL with ROBIN's reason, not asked again meanwhile.
func TestNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig
		cfg.ExtraChannels = []string{"Carrier Pigeon"}
		e := newEnv(t, cfg)
		defer e.close()

		_, err := e.lookup(t, "carrier-pigeon", "")
		var nf *NotFoundError
		if !errors.As(err, &nf) || nf.Status != 404 || nf.Key.Channel != "Carrier Pigeon" || nf.Stale {
			t.Fatalf("err = %v; want ROBIN's 404 for Carrier Pigeon", err)
		}
		for range 50 {
			a, err := e.lookup(t, "Carrier Pigeon", "")
			if !errors.As(err, &nf) || a.Result != ResultHit {
				t.Fatalf("cached 404: %+v, %v", a, err)
			}
			time.Sleep(time.Second)
		}
		if got := len(e.presenceRequests()); got != 1 {
			t.Errorf("%d requests within the negative TTL; want 1", got)
		}
		time.Sleep(cfg.NegativeTTL) // expired: asked again
		if a, _ := e.lookup(t, "Carrier Pigeon", ""); a.Result != ResultMiss {
			t.Errorf("after the negative TTL: result %s; want miss", a.Result)
		}
		if got := len(e.presenceRequests()); got != 2 {
			t.Errorf("%d requests; want 2", got)
		}

		// 400 with a reason, for one referrer.
		e.fake.SetFault(robintest.Fault{Status: 400, Body: "referrer not configured", Count: 1})
		_, err = e.lookup(t, "Chat", "unknown.example")
		if !errors.As(err, &nf) || nf.Status != 400 || nf.Reason != "referrer not configured" || nf.Key.Referrer != "unknown.example" {
			t.Fatalf("err = %v; want ROBIN's 400 with its reason", err)
		}
		want := `ROBIN does not know channel "Chat" for referrer "unknown.example": status 400: referrer not configured`
		if err.Error() != want {
			t.Errorf("message %q; want %q", err.Error(), want)
		}
		if _, err := e.lookup(t, "Chat", "unknown.example"); !errors.As(err, &nf) {
			t.Errorf("second look-up: %v; want the cached 400", err)
		}
		if got := len(e.presenceRequests()); got != 3 {
			t.Errorf("%d requests; want 3", got)
		}
		// The breaker does not count a 404 as a failure of ROBIN's: the
		// log stays quiet.
		synctest.Wait() // log lines come from the goroutines that asked ROBIN
		if strings.Contains(e.logs.String(), "cannot ask ROBIN") {
			t.Errorf("a 404 was logged as a failure:\n%s", e.logs.String())
		}
	})
}

// TestStaleNotFound: ROBIN's 404, once its negative TTL is over, is served
// stale like any other answer while ROBIN fails.
func TestStaleNotFound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig
		cfg.ExtraChannels = []string{"Fax"}
		e := newEnv(t, cfg)
		defer e.close()
		var nf *NotFoundError
		if _, err := e.lookup(t, "Fax", ""); !errors.As(err, &nf) {
			t.Fatalf("err = %v; want 404", err)
		}
		e.fake.SetFault(robintest.Fault{Status: 502})
		time.Sleep(cfg.NegativeTTL)
		a, err := e.lookup(t, "Fax", "")
		if !errors.As(err, &nf) || !nf.Stale || a.Result != ResultStale {
			t.Errorf("Lookup = %+v, %v; want a stale 404", a, err)
		}
	})
}

// TestBreakerOpen: once the shared breaker is open, look-ups do not reach
// ROBIN and do not spend quota; they get stale answers or the fallback at
// once.
func TestBreakerOpen(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := robin.NewBreaker(robin.BreakerOptions{Failures: 2, Interval: time.Minute})
		q, err := robin.NewQuota(context.Background(), robin.QuotaOptions{Windows: []robin.Window{{Limit: 100, Per: time.Hour}}})
		if err != nil {
			t.Fatal(err)
		}
		cfg := testConfig
		cfg.Fallback = FallbackOffline
		e := newEnv(t, cfg, withBreaker(b), withQuota(q))
		defer e.close()
		e.fake.SetFault(robintest.Fault{Status: 503})
		e.must(t, "Chat", "", false, ResultFallback)
		e.must(t, "SMS", "", false, ResultFallback)
		if b.State() != "open" {
			t.Fatalf("breaker %s after two 503s; want open", b.State())
		}
		used := q.Usage()[0].Used
		start := time.Now()
		e.must(t, "Email", "", false, ResultFallback)
		if time.Since(start) != 0 {
			t.Errorf("look-up waited with the breaker open")
		}
		if got := len(e.presenceRequests()); got != 2 {
			t.Errorf("%d requests; want 2 (none while open)", got)
		}
		if got := q.Usage()[0].Used; got != used {
			t.Errorf("quota used %d → %d with the breaker open; want unchanged", used, got)
		}
		synctest.Wait() // the refusal is logged by the goroutine that asked
		if !strings.Contains(e.logs.String(), "reason=breaker_open") {
			t.Errorf("logs do not say the breaker is open:\n%s", e.logs.String())
		}
		// The probe after the interval closes it again.
		e.fake.SetFault(robintest.Fault{})
		time.Sleep(time.Minute + time.Millisecond)
		if a, err := e.lookup(t, "Email", ""); err != nil || a.Result != ResultMiss {
			t.Fatalf("after the interval: %+v, %v; want ROBIN's answer", a, err)
		}
		if b.State() != "closed" {
			t.Errorf("breaker %s after a good answer; want closed", b.State())
		}
	})
}

// TestRetryAfterHolds: a 429 with Retry-After longer than the TTL holds the
// key back for the Retry-After.
func TestRetryAfterHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, testConfig)
		defer e.close()
		e.fake.SetFault(robintest.Fault{Status: 429, RetryAfter: "120", Count: 1})
		if _, err := e.lookup(t, "Chat", ""); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("err = %v; want unavailable", err)
		}
		time.Sleep(119 * time.Second)
		if _, err := e.lookup(t, "Chat", ""); !errors.Is(err, ErrUnavailable) {
			t.Errorf("err = %v; want unavailable while held back", err)
		}
		if got := len(e.presenceRequests()); got != 1 {
			t.Errorf("%d requests within Retry-After; want 1", got)
		}
		time.Sleep(time.Second)
		e.must(t, "Chat", "", false, ResultMiss)
	})
}

// TestRateLimitedServesStale: a 429 holds a key back only until its
// Retry-After (not a whole TTL), the last answer is served stale meanwhile,
// and the key is asked again when the Retry-After ends.
func TestRateLimitedServesStale(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, testConfig)
		defer e.close()
		e.fake.SetPresence("Chat", "", true)
		e.must(t, "Chat", "", true, ResultMiss)
		time.Sleep(testConfig.TTL + time.Millisecond)
		e.fake.SetFault(robintest.Fault{Status: 429, RetryAfter: "3", Count: 1})
		e.must(t, "Chat", "", true, ResultStale)
		time.Sleep(2 * time.Second)
		e.must(t, "Chat", "", true, ResultStale)
		if got := len(e.presenceRequests()); got != 2 {
			t.Errorf("%d requests within Retry-After; want 2 (the first answer and the 429)", got)
		}
		time.Sleep(time.Second)
		e.must(t, "Chat", "", true, ResultMiss)
		if got := len(e.presenceRequests()); got != 3 {
			t.Errorf("%d requests; want 3: asked again once Retry-After ended, not a TTL later", got)
		}
	})
}

// TestReferrers: phone-number referrers in any national or international
// spelling share one key in E.164; other referrers go to ROBIN as given;
// unusable ones are refused.
func TestReferrers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := newEnv(t, testConfig)
		defer e.close()
		e.fake.SetPresence("WhatsApp", "+31858770023", true)
		e.fake.SetPresence("Chat", "shop.example.com", true)
		e.fake.SetPresence("Email", "0612345678@shop.example", true)

		e.must(t, "WhatsApp", "085 877 0023", true, ResultMiss)
		for _, ref := range []string{"0858770023", "+31 85 877 0023", "+31858770023", "0031858770023", " (085) 877-0023 "} {
			a := e.must(t, "WhatsApp", ref, true, ResultHit)
			if a.Key.Referrer != "+31858770023" {
				t.Errorf("referrer %q became %q; want +31858770023", ref, a.Key.Referrer)
			}
		}
		e.must(t, "Chat", "shop.example.com", true, ResultMiss)
		e.must(t, "Email", "0612345678@shop.example", true, ResultMiss)
		e.must(t, "Chat", "1234", false, ResultMiss) // a short number is not normalised

		var got []string
		for _, r := range e.presenceRequests() {
			got = append(got, r.Query.Get("referrer"))
		}
		if diff := cmp.Diff([]string{"+31858770023", "shop.example.com", "0612345678@shop.example", "1234"}, got); diff != "" {
			t.Errorf("referrers sent to ROBIN (-want +got):\n%s", diff)
		}
		for _, bad := range []string{"a\x00b", "bad\nline", string(make([]byte, 600)), "\xff"} {
			var ie *InvalidError
			if a, err := e.lookup(t, "Chat", bad); !errors.As(err, &ie) || ie.Param != "referrer" || a.Result != ResultInvalid {
				t.Errorf("referrer %q: %+v, %v; want an InvalidError for the referrer", bad, a, err)
			}
		}
	})
}

// TestChannels: channel names match regardless of case, spaces, hyphens and
// underscores and go to ROBIN in their canonical spelling; anything else is
// refused with the list of valid channels.
func TestChannels(t *testing.T) {
	cfg := testConfig
	cfg.ExtraChannels = []string{"Google Business Messages", " RCS "}
	e := newEnv(t, cfg)
	defer e.close()
	for in, want := range map[string]string{
		"chat": "Chat", "CHAT": "Chat", "whatsapp": "WhatsApp", "facebook messenger": "Facebook Messenger",
		"facebook_messenger": "Facebook Messenger", "Apple-Business-Chat": "Apple Business Chat",
		"sms": "SMS", "webchat": "WebChat", "Web Chat": "WebChat", "rcs": "RCS",
		"google-business-messages": "Google Business Messages", " Twitter ": "Twitter",
	} {
		a, err := e.lookup(t, in, "")
		if err != nil || a.Key.Channel != want {
			t.Errorf("channel %q: %+v, %v; want %s", in, a, err, want)
		}
	}
	seen := map[string]bool{}
	for _, r := range e.presenceRequests() {
		seen[r.Query.Get("Channel")] = true
	}
	for _, want := range []string{"Chat", "WhatsApp", "Facebook Messenger", "Apple Business Chat", "SMS", "WebChat", "RCS", "Google Business Messages", "Twitter"} {
		if !seen[want] {
			t.Errorf("ROBIN was never asked for %q; asked for %v", want, seen)
		}
	}
	for _, bad := range []string{"", "Telegram", "chatt", "Chat;SMS"} {
		var ie *InvalidError
		_, err := e.lookup(t, bad, "")
		if !errors.As(err, &ie) || ie.Param != "channel" {
			t.Errorf("channel %q: err %v; want an InvalidError", bad, err)
			continue
		}
		for _, name := range []string{"Email", "Apple Business Chat", "Twitter", "RCS"} {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error %q does not name the valid channel %s", err, name)
			}
		}
	}
}

// TestSweep: entries that can no longer be served are forgotten, so unique
// referrers cannot grow the cache without bound; warm keys stay.
func TestSweep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := testConfig
		cfg.Warm = []Key{{Channel: "Chat"}}
		e := newEnv(t, cfg)
		defer e.close()
		for i := range 20 {
			e.must(t, "Chat", "ref-"+string(rune('a'+i)), false, ResultMiss)
		}
		size := func() int {
			e.cache.mu.RLock()
			defer e.cache.mu.RUnlock()
			return len(e.cache.entries)
		}
		if got := size(); got != 21 {
			t.Fatalf("%d entries; want 21", got)
		}
		time.Sleep(cfg.StaleMax + sweepEvery)
		e.must(t, "Chat", "new", false, ResultMiss) // a finished request sweeps
		if got := size(); got != 2 {
			t.Errorf("%d entries after StaleMax; want 2 (the warm key and the new one)", got)
		}
	})
}
