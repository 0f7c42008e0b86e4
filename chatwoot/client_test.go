package chatwoot

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/route/routetest"
)

const (
	account = 7
	token   = "cw-secret-token"
	inbox   = 4
	number  = "+31612345678"
	did     = "+31858770023"
)

// TestClientThrottled: rack-attack's 429 is rate limited, until the end of
// its fixed minute when it sends no Retry-After, else as it says.
func TestClientThrottled(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(10 * time.Second) // into the minute
		cw := routetest.NewChatwoot(account, token)
		cw.SearchPerMinute = 1
		cl, err := New(Options{URL: "http://chatwoot.test", AccountID: "7", Token: token, HTTPClient: routetest.Client(cw)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.SearchContacts(t.Context(), number, 1); err != nil {
			t.Fatal(err)
		}
		_, err = cl.SearchContacts(t.Context(), number, 1)
		if d, ok := events.RetryAfterOf(err); events.ClassOf(err) != events.RateLimited || !ok || d != 50*time.Second {
			t.Fatalf("%v: class %v, retry after %v; want rate limited for the rest of the minute (50s)", err, events.ClassOf(err), d)
		}
		cw.SetThrottle(1, 20*time.Second, true)
		if _, err := cl.Agents(t.Context()); err != nil {
			t.Fatal(err)
		}
		_, err = cl.Agents(t.Context())
		if d, _ := events.RetryAfterOf(err); events.ClassOf(err) != events.RateLimited || d != 10*time.Second {
			t.Fatalf("%v: retry after %v; want Retry-After's 10s", err, d)
		}
	})
}

// TestClientErrors: failures say what Chatwoot said and never the token or
// the URL; the token travels as Api-Access-Token.
func TestClientErrors(t *testing.T) {
	cw := routetest.NewChatwoot(account, "another-token")
	u := routetest.Start(t, cw)
	cl, err := New(Options{URL: u, AccountID: "7", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.SearchContacts(t.Context(), number, 1)
	if events.ClassOf(err) != events.Auth || err.Error() != "chatwoot contacts/search: status 401: Invalid Access Token" {
		t.Errorf("wrong token: %v (%v)", err, events.ClassOf(err))
	}
	cw.SetStatus(http.StatusBadGateway)
	if err := cl.PostNote(t.Context(), 1, "x"); events.ClassOf(err) != events.Retryable || strings.Contains(err.Error(), u) {
		t.Errorf("502: %v", err)
	}
	cw.SetStatus(0)
	cw.SetDelay(time.Hour) // Chatwoot hangs
	slow, _ := New(Options{URL: u, AccountID: "7", Token: "another-token", Timeout: 100 * time.Millisecond})
	if _, err := slow.Agents(t.Context()); !errors.Is(err, robin.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) || events.ClassOf(err) != events.Retryable {
		t.Errorf("hanging: %v; want the client's timeout, a failure of Chatwoot", err)
	}
	dead, err := New(Options{URL: "http://127.0.0.1:1", AccountID: "7", Token: token})
	if err != nil {
		t.Fatal(err)
	}
	err = dead.PostNote(t.Context(), 1, "x")
	if !events.NotSentOf(err) || events.ClassOf(err) != events.Retryable || strings.Contains(err.Error(), token) || strings.Contains(err.Error(), "127.0.0.1:1/api") {
		t.Errorf("refused connection: %v (not sent %v)", err, events.NotSentOf(err))
	}
	if _, err := New(Options{URL: "chat.example", AccountID: "x", Token: token}); err == nil ||
		!strings.Contains(err.Error(), "CHATWOOT_URL") || !strings.Contains(err.Error(), "CHATWOOT_ACCOUNT_ID") {
		t.Errorf("bad settings: %v", err)
	}
	for body, want := range map[string]string{
		`{"error":"Resource could not be found"}`:                                               "Resource could not be found",
		`{"message":"Phone number should be in e164 format","attributes":["phone_number"]}`:     "Phone number should be in e164 format",
		`{"errors":["You need to sign in or sign up before continuing."]}`:                      "You need to sign in or sign up before continuing.",
		`{"description":"x","errors":[{"field":"phone_number","message":"bad","code":"e164"}]}`: "map[code:e164 field:phone_number message:bad]",
		"<html>502</html>": "<html>502</html>",
	} {
		if got := message([]byte(body)); got != want {
			t.Errorf("message(%s) = %q, want %q", body, got, want)
		}
	}
}
