package xelion

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
)

// newTestSession returns a session against the fake's REST API in memory
// (no network), so that it can run in a synctest bubble.
func newTestSession(t *testing.T, fake *xeliontest.Server, userSpace string) *session {
	t.Helper()
	base, _ := url.Parse("http://xelion.invalid/api/v1/master/")
	return &session{
		api:         &rest{base: base, client: &http.Client{Transport: fake.Transport()}, timeout: 15 * time.Second},
		creds:       Credentials{UserName: "admin", Password: "secret", UserSpace: userSpace},
		loc:         time.UTC,
		now:         time.Now,
		renewBefore: 5 * time.Minute,
		log:         slog.New(slog.DiscardHandler),
		m:           newMetrics(prometheus.NewRegistry()),
		changed:     make(chan struct{}, 1),
	}
}

// TestSessionRenewsBeforeExpiry: one login, then a renewal before every
// expiry; the renewed token works and the old one no longer does.
func TestSessionRenewsBeforeExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := xeliontest.New(xeliontest.Options{TokenLifetime: time.Hour})
		s := newTestSession(t, fake, "bridge")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go s.keep(ctx, time.Second)

		first, err := s.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(54 * time.Minute) // renewal is due 5 minutes before the hour
		synctest.Wait()
		if st := fake.Stats(); st.Renewals != 0 {
			t.Fatalf("renewed after 54 minutes: %+v", st)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		second, err := s.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st := fake.Stats(); st.Logins != 1 || st.Renewals != 1 || second == first {
			t.Fatalf("after 56 minutes: %+v, token changed: %v", st, second != first)
		}
		if err := s.api.do(ctx, "websocket", "me/websocket", first, nil, nil); err == nil {
			// The fake only serves me/websocket when listening; a 401 is what matters.
			t.Fatal("old token still accepted")
		} else if !isAuth(err) {
			t.Fatalf("old token: %v, want 401", err)
		}
		// Hours later the session is still alive on renewals alone.
		time.Sleep(5 * time.Hour)
		synctest.Wait()
		if _, err := s.Token(ctx); err != nil {
			t.Fatal(err)
		}
		if st := fake.Stats(); st.Logins != 1 || st.Renewals != 6 {
			t.Fatalf("after 6 hours: %+v, want 1 login and 6 renewals", st)
		}
	})
}

func isAuth(err error) bool { return errors.Is(err, errAuth) }

// TestSessionLogsInAgain: the server forgot the session (a restart); the
// renewal gets 401 and the session logs in again, ending the old session
// first.
func TestSessionLogsInAgain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := xeliontest.New(xeliontest.Options{TokenLifetime: time.Hour})
		s := newTestSession(t, fake, "bridge")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go s.keep(ctx, time.Second)
		if _, err := s.Token(ctx); err != nil {
			t.Fatal(err)
		}
		fake.ExpireSessions()
		time.Sleep(56 * time.Minute)
		synctest.Wait()
		if _, err := s.Token(ctx); err != nil {
			t.Fatal(err)
		}
		if st := fake.Stats(); st.Logins != 2 || st.Renewals != 0 || st.Unauthorized != 1 {
			t.Fatalf("stats %+v, want a second login after one 401", st)
		}
	})
}

// TestSessionInvalidate: a 401 seen elsewhere (me/websocket) makes the next
// Token log in again, and the login carries the refused token so that the
// server ends that session instead of refusing a second login.
func TestSessionInvalidate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := xeliontest.New(xeliontest.Options{TokenLifetime: 24 * time.Hour})
		s := newTestSession(t, fake, "bridge")
		ctx := t.Context()
		tok, err := s.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		s.Invalidate("some other token") // a stale refusal changes nothing
		if again, _ := s.Token(ctx); again != tok {
			t.Fatal("token changed after invalidating another one")
		}
		s.Invalidate(tok)
		again, err := s.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st := fake.Stats(); again == tok || st.Logins != 2 || st.FailedLogins != 0 {
			t.Fatalf("stats %+v; a new login in the same user space must succeed", st)
		}
	})
}

// TestSessionSecondUserSpace: an earlier run's session is alive in the same
// user space; the login is refused (10005) and retried in a fresh one.
func TestSessionSecondUserSpace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := xeliontest.New(xeliontest.Options{TokenLifetime: time.Hour})
		earlier := newTestSession(t, fake, "bridge")
		if _, err := earlier.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		s := newTestSession(t, fake, "bridge")
		if _, err := s.Token(t.Context()); err != nil {
			t.Fatal(err)
		}
		if st := fake.Stats(); st.Logins != 2 || st.FailedLogins != 1 {
			t.Fatalf("stats %+v", st)
		}
		if s.creds.UserSpace == "bridge" || len(s.creds.UserSpace) <= len("bridge-") {
			t.Errorf("user space %q, want bridge-<suffix>", s.creds.UserSpace)
		}
	})
}

// TestSessionUnreadableExpiry: an expiry that cannot be read still gets a
// renewal every ten minutes.
func TestSessionUnreadableExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := xeliontest.New(xeliontest.Options{TokenLifetime: time.Hour})
		s := newTestSession(t, fake, "bridge")
		s.loc = time.FixedZone("far away", 14*3600) // expiry reads as already past
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go s.keep(ctx, time.Second)
		if _, err := s.Token(ctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(31 * time.Minute)
		synctest.Wait()
		if st := fake.Stats(); st.Renewals != 3 || st.Logins != 1 {
			t.Fatalf("stats %+v, want 3 renewals in 31 minutes", st)
		}
	})
}

// TestSessionRenewalRetries: while renewals fail (the server answers 500),
// they are retried; the old token is served until the server refuses it.
func TestSessionRenewalRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		fake := xeliontest.New(xeliontest.Options{TokenLifetime: time.Hour})
		var failing atomic.Bool
		failing.Store(true)
		tr := fake.Transport()
		base, _ := url.Parse("http://xelion.invalid/api/v1/master/")
		s := newTestSession(t, fake, "bridge")
		s.api = &rest{base: base, timeout: time.Minute, client: &http.Client{Transport: roundTrip(func(r *http.Request) (*http.Response, error) {
			if failing.Load() && r.URL.Path == "/api/v1/master/me/renew" {
				return &http.Response{StatusCode: 500, Body: http.NoBody, Header: http.Header{}, Request: r}, nil
			}
			return tr.RoundTrip(r)
		})}}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go s.keep(ctx, 10*time.Second)
		tok, err := s.Token(ctx)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(57 * time.Minute)
		synctest.Wait()
		if got := s.current(); got != tok {
			t.Fatal("token dropped while renewals fail")
		}
		failing.Store(false)
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if got := s.current(); got == tok {
			t.Fatal("token not renewed once renewals work")
		}
		if st := fake.Stats(); st.Renewals != 1 || st.Logins != 1 {
			t.Fatalf("stats %+v", st)
		}
	})
}

type roundTrip func(*http.Request) (*http.Response, error)

func (f roundTrip) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
