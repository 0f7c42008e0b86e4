package robintest_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

const (
	rtKey    = "K3Y-round+trip/1"
	rtSecret = "S3CRET-round-trip"
)

func rtEvent(id string, typ events.EventType) events.Event {
	return events.Event{ID: id, Type: typ, PhoneNumber: "+31612345678", PhoneExtension: "201", Direction: "Inbound", PhoneReferrer: "+31858770023"}
}

// rtClient returns the real client pointed at s; a non-nil transport-backed
// s.Client() is used for servers without a socket.
func rtClient(t *testing.T, s *robintest.Server, secret string, timeout time.Duration, inProcess bool) *robin.Client {
	t.Helper()
	cfg := robin.Config{APIURL: s.URL(), PresenceURL: s.PresenceURL(), APIKey: rtKey, APISecret: secret, Timeout: timeout}
	if inProcess {
		cfg.HTTPClient = s.Client()
	}
	c, err := robin.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rtNoSecrets(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		for _, f := range []string{rtKey, rtSecret, "K3Y-round"} {
			if strings.Contains(e.Error(), f) {
				t.Errorf("error %q leaks %q", e.Error(), f)
			}
		}
	}
}

// TestClientRoundTrip runs the real client against the fake over loopback.
func TestClientRoundTrip(t *testing.T) {
	s := start(t, robintest.Options{APIKey: rtKey, APISecret: rtSecret, RequireBasic: true, RetryAfter: true,
		Limits: []robintest.Limit{{N: 4, Per: time.Hour}}})
	c := rtClient(t, s, rtSecret, 5*time.Second, false)
	ctx := t.Context()

	if err := c.Send(ctx, rtEvent("call-1", events.EventAnswered)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	noRef := rtEvent("call-1", events.EventDisconnected)
	noRef.PhoneReferrer = ""
	if err := c.Send(ctx, noRef); err != nil {
		t.Fatalf("Send without referrer: %v", err)
	}
	evs := s.Events()
	if len(evs) != 2 || evs[0].Event != rtEvent("call-1", events.EventAnswered) || evs[1].Event != noRef {
		t.Fatalf("Events() = %+v", evs)
	}
	if evs[0].Duplicate || evs[0].OutOfOrder || evs[1].Duplicate || evs[1].OutOfOrder {
		t.Errorf("a clean call was flagged: %+v", evs)
	}

	s.SetPresence("Chat", "shop.example", true)
	online, err := c.Presence(ctx, "Chat", "shop.example")
	if err != nil || !online {
		t.Errorf("Presence(Chat, shop.example) = %v, %v; want online", online, err)
	}
	online, err = c.Presence(ctx, "Chat", "")
	if err != nil || online {
		t.Errorf("Presence(Chat) = %v, %v; want offline", online, err)
	}

	// The hour window (4) is now full: the client sees RateLimited with the
	// server's Retry-After.
	err = c.Send(ctx, rtEvent("call-2", events.EventAnswered))
	rtNoSecrets(t, err)
	if events.ClassOf(err) != events.RateLimited {
		t.Fatalf("Send over the limit = %v, want rate limited", err)
	}
	if d, ok := events.RetryAfterOf(err); !ok || d < 50*time.Minute || d > time.Hour {
		t.Errorf("RetryAfterOf = %v, %v; want about an hour", d, ok)
	}
	_, err = c.Presence(ctx, "Chat", "")
	rtNoSecrets(t, err)
	if events.ClassOf(err) != events.RateLimited {
		t.Errorf("Presence over the limit = %v, want rate limited", err)
	}
	if v := s.Violations(); v != 2 {
		t.Errorf("Violations() = %d, want 2", v)
	}
}

func TestClientRoundTripFailures(t *testing.T) {
	tests := []struct {
		name      string
		fault     robintest.Fault
		secret    string
		class     events.Class
		recorded  int
		wantCause error
	}{
		{name: "wrong secret", secret: "wrong", class: events.Auth},
		{name: "503", fault: robintest.Fault{Status: 503, Body: "maintenance"}, class: events.Retryable},
		{name: "400", fault: robintest.Fault{Status: 400, Body: `{"message":"Id is invalid"}`}, class: events.Permanent},
		{name: "401", fault: robintest.Fault{Status: 401}, class: events.Auth},
		{name: "reset", fault: robintest.Fault{Reset: true}, class: events.Retryable},
		{name: "lost ack", fault: robintest.Fault{DropAck: true}, class: events.Retryable, recorded: 1},
		{name: "hang", fault: robintest.Fault{Hang: true}, class: events.Retryable, wantCause: robin.ErrTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := start(t, robintest.Options{APIKey: rtKey, APISecret: rtSecret, RequireBasic: true})
			s.SetFault(tt.fault)
			secret := rtSecret
			if tt.secret != "" {
				secret = tt.secret
			}
			c := rtClient(t, s, secret, 300*time.Millisecond, false)
			err := c.Send(t.Context(), rtEvent("call-1", events.EventAnswered))
			rtNoSecrets(t, err)
			if err == nil {
				t.Fatal("Send succeeded")
			}
			if got := events.ClassOf(err); got != tt.class {
				t.Errorf("class = %v, want %v (err %v)", got, tt.class, err)
			}
			if tt.wantCause != nil && !errors.Is(err, tt.wantCause) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantCause)
			}
			if n := len(s.Events()); n != tt.recorded {
				t.Errorf("%d events recorded, want %d", n, tt.recorded)
			}
		})
	}
}

// TestLimiterSynctest drives the limiter in fake time through the in-process
// transport: a burst of 10 at 3/s admits 3, the next second admits 3 more,
// and the minute window refuses with the right Retry-After.
func TestLimiterSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := robintest.New(robintest.Options{APIKey: rtKey, RetryAfter: true,
			Limits: []robintest.Limit{{N: 3, Per: time.Second}, {N: 10, Per: time.Minute}}})
		defer s.Close()
		c := rtClient(t, s, "", 0, true)
		ctx := t.Context()

		burst := func() (ok, limited int, retry []time.Duration) {
			for i := range 10 {
				err := c.Send(ctx, rtEvent("c"+string(rune('a'+i)), events.EventAnswered))
				switch {
				case err == nil:
					ok++
				case events.ClassOf(err) == events.RateLimited:
					limited++
					d, _ := events.RetryAfterOf(err)
					retry = append(retry, d)
				default:
					t.Fatalf("Send: %v", err)
				}
			}
			return ok, limited, retry
		}
		if ok, limited, retry := burst(); ok != 3 || limited != 7 || retry[0] != time.Second {
			t.Fatalf("t=0: %d admitted, %d limited, Retry-After %v; want 3, 7, 1s", ok, limited, retry)
		}
		time.Sleep(999 * time.Millisecond)
		if ok, _, _ := burst(); ok != 0 {
			t.Fatalf("t=0.999s: %d admitted, want 0", ok)
		}
		time.Sleep(time.Millisecond)
		if ok, _, _ := burst(); ok != 3 {
			t.Fatalf("t=1s: %d admitted, want 3", ok)
		}
		time.Sleep(time.Second)
		if ok, _, _ := burst(); ok != 3 {
			t.Fatalf("t=2s: %d admitted, want 3", ok)
		}
		// 9 in the minute; at t=3s one more fits, then the minute window is
		// full until the first admission (t=0) leaves it at t=60s.
		time.Sleep(time.Second)
		ok, _, retry := burst()
		if ok != 1 || retry[0] != 57*time.Second {
			t.Fatalf("t=3s: %d admitted, Retry-After %v; want 1 and 57s", ok, retry[0])
		}
		time.Sleep(57 * time.Second)
		if ok, _, _ := burst(); ok != 3 {
			t.Fatalf("t=60s: %d admitted, want 3 (the t=0 ones left the minute window)", ok)
		}
		if v, want := s.Violations(), 7+10+7+7+9+7; v != want {
			t.Errorf("Violations() = %d, want %d", v, want)
		}
	})
}

// TestHangSynctest: a hanging server costs the client exactly its Timeout,
// and the error says timeout, not the caller's cancellation.
func TestHangSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := robintest.New(robintest.Options{APIKey: rtKey})
		defer s.Close()
		s.SetFault(robintest.Fault{Hang: true, Count: 1})
		c := rtClient(t, s, "", 3*time.Second, true)
		start := time.Now()
		err := c.Send(t.Context(), rtEvent("c1", events.EventAnswered))
		if elapsed := time.Since(start); elapsed != 3*time.Second {
			t.Errorf("gave up after %v, want 3s", elapsed)
		}
		if !errors.Is(err, robin.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Send = %v, want ErrTimeout", err)
		}
		if err := c.Send(t.Context(), rtEvent("c1", events.EventAnswered)); err != nil {
			t.Errorf("after the hang: %v", err)
		}
	})
}

// TestHangClose: closing the server under a hanging request must fail the
// request, never let it look accepted.
func TestHangClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := robintest.New(robintest.Options{APIKey: rtKey})
		s.SetFault(robintest.Fault{Hang: true})
		c := rtClient(t, s, "", time.Hour, true)
		result := make(chan error, 1)
		go func() { result <- c.Send(t.Context(), rtEvent("c1", events.EventAnswered)) }()
		synctest.Wait()
		if r := s.Requests(); len(r) != 1 || r[0].Fault != "hang" {
			t.Fatalf("Requests() = %+v, want the hanging one", r)
		}
		s.Close()
		err := <-result
		if err == nil || events.ClassOf(err) != events.Retryable {
			t.Errorf("Send to a hanging server that closed = %v, want a retryable failure", err)
		}
		if n := len(s.Events()); n != 0 {
			t.Errorf("%d events recorded", n)
		}
	})
}

// TestTransportFaults checks that the in-process transport shows faults as a
// network would.
func TestTransportFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := robintest.New(robintest.Options{APIKey: rtKey})
		c := rtClient(t, s, "", time.Second, true)
		ev := rtEvent("c1", events.EventAnswered)

		s.SetFault(robintest.Fault{Reset: true, Count: 1})
		err := c.Send(t.Context(), ev)
		if err == nil || err.Error() != "register event: connection reset" {
			t.Errorf("reset: %v", err)
		}
		s.SetFault(robintest.Fault{DropAck: true, Count: 1})
		err = c.Send(t.Context(), ev)
		if err == nil || err.Error() != "register event: connection closed without an answer" {
			t.Errorf("drop ack: %v", err)
		}
		if n := len(s.Events()); n != 1 {
			t.Errorf("drop ack recorded %d events, want 1", n)
		}
		s.SetPresence("Chat", "", true)
		if online, err := c.Presence(t.Context(), "Chat", ""); err != nil || !online {
			t.Errorf("Presence = %v, %v", online, err)
		}
		s.Close()
		err = c.Send(t.Context(), ev)
		if err == nil || err.Error() != "register event: connection refused" {
			t.Errorf("after Close: %v", err)
		}
	})
}
