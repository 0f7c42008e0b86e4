package robin

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
)

// The key and secret contain characters that URL escaping changes, so that the
// tests also catch an escaped copy leaking into an error.
const (
	ctKey    = "K3Y-live+7/x=9"
	ctSecret = "S3CRET-pass word"
)

// ctForbidden lists every form in which the key or secret could leak.
var ctForbidden = []string{
	ctKey, url.PathEscape(ctKey), url.QueryEscape(ctKey),
	ctSecret, url.PathEscape(ctSecret), url.QueryEscape(ctSecret),
	base64.StdEncoding.EncodeToString([]byte(ctKey + ":" + ctSecret)),
}

// ctNoSecrets fails the test when the text of err, or of any error it wraps,
// contains the key or the secret in any form.
func ctNoSecrets(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	queue := []error{err}
	for len(queue) > 0 {
		e := queue[0]
		queue = queue[1:]
		for _, text := range []string{e.Error(), fmt.Sprintf("%+v", e)} {
			for _, f := range ctForbidden {
				if strings.Contains(text, f) {
					t.Errorf("error text %q contains the secret form %q", text, f)
				}
			}
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			if w := u.Unwrap(); w != nil {
				queue = append(queue, w)
			}
		case interface{ Unwrap() []error }:
			queue = append(queue, u.Unwrap()...)
		}
	}
}

func ctEvent() events.Event {
	return events.Event{
		ID:             "24c562241e9f",
		Type:           events.EventAnswered,
		PhoneNumber:    "+31612345678",
		PhoneExtension: "201",
		Direction:      "Inbound",
		PhoneReferrer:  "+31858770023",
	}
}

// ctClient returns a client for a test server, with the test key and the
// given secret.
func ctClient(t *testing.T, apiURL, secret string, timeout time.Duration) *Client {
	t.Helper()
	c, err := NewClient(Config{APIURL: apiURL, PresenceURL: apiURL + "/api/v1", APIKey: ctKey, APISecret: secret, Timeout: timeout})
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// ctRecorded is one request as an httptest server saw it.
type ctRecorded struct {
	Method, Path, Query string
	Header              http.Header
	Body                []byte
}

// ctServer answers every request with handler after recording it.
func ctServer(t *testing.T, handler http.HandlerFunc) (*httptest.Server, func() []ctRecorded) {
	t.Helper()
	var mu sync.Mutex
	var got []ctRecorded
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, ctRecorded{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: b})
		mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []ctRecorded {
		mu.Lock()
		defer mu.Unlock()
		return append([]ctRecorded(nil), got...)
	}
}

func ctStatus(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

func TestClientSendRequest(t *testing.T) {
	full := ctEvent()
	noReferrer := ctEvent()
	noReferrer.PhoneReferrer = ""
	tests := []struct {
		name string
		ev   events.Event
		want map[string]any
	}{
		{"with referrer", full, map[string]any{
			"Id": "24c562241e9f", "EventType": "Answered", "PhoneNumber": "+31612345678",
			"PhoneExtension": "201", "Direction": "Inbound", "PhoneReferrer": "+31858770023",
		}},
		{"referrer omitted when empty", noReferrer, map[string]any{
			"Id": "24c562241e9f", "EventType": "Answered", "PhoneNumber": "+31612345678",
			"PhoneExtension": "201", "Direction": "Inbound",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, got := ctServer(t, ctStatus(http.StatusCreated, ""))
			c := ctClient(t, srv.URL, "", 0)
			if err := c.Send(t.Context(), tt.ev); err != nil {
				ctNoSecrets(t, err)
				t.Fatalf("Send: %v", err)
			}
			reqs := got()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost {
				t.Errorf("method = %s, want POST", r.Method)
			}
			if want := "/voip/registerevent/" + ctKey; r.Path != want {
				t.Errorf("path = %q, want %q", r.Path, want)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			if ua := r.Header.Get("User-Agent"); ua != DefaultUserAgent {
				t.Errorf("User-Agent = %q, want %q", ua, DefaultUserAgent)
			}
			var body map[string]any
			if err := json.Unmarshal(r.Body, &body); err != nil {
				t.Fatalf("body %q is not a JSON object: %v", r.Body, err)
			}
			if diff := cmp.Diff(tt.want, body); diff != "" {
				t.Errorf("body mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestClientSendBasicAuth(t *testing.T) {
	for _, secret := range []string{"", ctSecret} {
		t.Run("secret="+secret, func(t *testing.T) {
			srv, got := ctServer(t, ctStatus(http.StatusCreated, ""))
			c := ctClient(t, srv.URL, secret, 0)
			if err := c.Send(t.Context(), ctEvent()); err != nil {
				t.Fatalf("Send: %v", err)
			}
			r := got()[0]
			user, pass, ok := (&http.Request{Header: r.Header}).BasicAuth()
			if secret == "" {
				if ok || r.Header.Get("Authorization") != "" {
					t.Errorf("Authorization sent without a secret: %q", r.Header.Get("Authorization"))
				}
				return
			}
			if !ok || user != ctKey || pass != ctSecret {
				t.Errorf("Basic auth = (%q, %q, %v), want the key and the secret", user, pass, ok)
			}
		})
	}
}

func TestClassifyStatus(t *testing.T) {
	tests := []struct {
		status int
		want   events.Class
	}{
		{400, events.Permanent}, {404, events.Permanent}, {406, events.Permanent},
		{409, events.Permanent}, {413, events.Permanent}, {422, events.Permanent},
		{401, events.Auth}, {403, events.Auth},
		{429, events.RateLimited},
		{408, events.Retryable}, {500, events.Retryable}, {502, events.Retryable},
		{503, events.Retryable}, {504, events.Retryable}, {599, events.Retryable},
		{200, events.Permanent}, // only an error when its body is unusable
		{301, events.Retryable}, {307, events.Retryable}, {100, events.Retryable}, {600, events.Retryable},
	}
	for _, tt := range tests {
		if got := ClassifyStatus(tt.status); got != tt.want {
			t.Errorf("ClassifyStatus(%d) = %v, want %v", tt.status, got, tt.want)
		}
	}
}

// TestClientSendStatus drives every row of the status table through Send.
func TestClientSendStatus(t *testing.T) {
	tests := []struct {
		status  int
		wantErr bool
		class   events.Class
	}{
		{200, false, 0}, {201, false, 0}, {202, false, 0}, {204, false, 0},
		{400, true, events.Permanent}, {404, true, events.Permanent}, {406, true, events.Permanent},
		{422, true, events.Permanent},
		{401, true, events.Auth}, {403, true, events.Auth},
		{429, true, events.RateLimited},
		{408, true, events.Retryable}, {500, true, events.Retryable}, {502, true, events.Retryable},
		{503, true, events.Retryable}, {504, true, events.Retryable},
		{307, true, events.Retryable},
	}
	for _, tt := range tests {
		t.Run(http.StatusText(tt.status), func(t *testing.T) {
			body := "oops: " + http.StatusText(tt.status)
			srv, _ := ctServer(t, func(w http.ResponseWriter, r *http.Request) {
				if tt.status/100 == 3 {
					w.Header().Set("Location", "/elsewhere")
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, body)
			})
			c := ctClient(t, srv.URL, ctSecret, 0)
			err := c.Send(t.Context(), ctEvent())
			ctNoSecrets(t, err)
			if !tt.wantErr {
				if err != nil {
					t.Fatalf("Send = %v, want nil", err)
				}
				return
			}
			var re *Error
			if !errors.As(err, &re) {
				t.Fatalf("Send = %T %v, want *robin.Error", err, err)
			}
			if re.Status != tt.status {
				t.Errorf("Status = %d, want %d", re.Status, tt.status)
			}
			if got := events.ClassOf(err); got != tt.class {
				t.Errorf("ClassOf = %v, want %v", got, tt.class)
			}
			if want := "register event: status " + strconv.Itoa(tt.status) + ": " + body; err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

// TestClientNoRedirect: a redirected POST would turn into a GET without body
// (and send the key to another place); the client reports it instead.
func TestClientNoRedirect(t *testing.T) {
	hits := 0
	var mu sync.Mutex
	srv, _ := ctServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			mu.Lock()
			hits++
			mu.Unlock()
			w.WriteHeader(http.StatusOK)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	c := ctClient(t, srv.URL, "", 0)
	err := c.Send(t.Context(), ctEvent())
	ctNoSecrets(t, err)
	var re *Error
	if !errors.As(err, &re) || re.Status != http.StatusFound {
		t.Fatalf("Send = %v, want an Error with status 302", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if hits != 0 {
		t.Errorf("the redirect was followed %d times", hits)
	}
}

func TestClientErrorBody(t *testing.T) {
	long := strings.Repeat("é", 400) // 800 bytes, 2 per rune
	srv, _ := ctServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		// A server that echoes the key (raw and escaped) must not get it into our errors.
		_, _ = io.WriteString(w, "bad key "+ctKey+" / "+url.PathEscape(ctKey)+" "+long)
	})
	c := ctClient(t, srv.URL, "", 0)
	err := c.Send(t.Context(), ctEvent())
	ctNoSecrets(t, err)
	var re *Error
	if !errors.As(err, &re) {
		t.Fatalf("Send = %v, want *Error", err)
	}
	if len(re.Body) > maxErrorBody {
		t.Errorf("Body has %d bytes, want at most %d", len(re.Body), maxErrorBody)
	}
	if !strings.HasPrefix(re.Body, "bad key [redacted] / [redacted] é") {
		t.Errorf("Body = %q, want the redacted start of the answer", re.Body)
	}
	if !utf8Valid(re.Body) {
		t.Errorf("Body was cut inside a UTF-8 sequence: %q", re.Body[len(re.Body)-4:])
	}
}

func utf8Valid(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestClientRetryAfter(t *testing.T) {
	t.Run("seconds", func(t *testing.T) {
		srv, _ := ctServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
		})
		err := ctClient(t, srv.URL, "", 0).Send(t.Context(), ctEvent())
		ctNoSecrets(t, err)
		if got := events.ClassOf(err); got != events.RateLimited {
			t.Errorf("class = %v, want rate_limited", got)
		}
		if d, ok := events.RetryAfterOf(err); !ok || d != 7*time.Second {
			t.Errorf("RetryAfterOf = %v, %v; want 7s", d, ok)
		}
	})
	t.Run("http-date", func(t *testing.T) {
		srv, _ := ctServer(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", time.Now().Add(90*time.Second).UTC().Format(http.TimeFormat))
			w.WriteHeader(http.StatusTooManyRequests)
		})
		err := ctClient(t, srv.URL, "", 0).Send(t.Context(), ctEvent())
		ctNoSecrets(t, err)
		// The date has whole seconds and the clock moves on; anything clearly
		// derived from the date (not 0, not a default) is right.
		if d, ok := events.RetryAfterOf(err); !ok || d < 30*time.Second || d > 90*time.Second {
			t.Errorf("RetryAfterOf = %v, %v; want about 90s", d, ok)
		}
	})
	t.Run("absent", func(t *testing.T) {
		srv, _ := ctServer(t, ctStatus(http.StatusTooManyRequests, "Too Many Requests"))
		err := ctClient(t, srv.URL, "", 0).Send(t.Context(), ctEvent())
		ctNoSecrets(t, err)
		if d, ok := events.RetryAfterOf(err); ok {
			t.Errorf("RetryAfterOf = %v, want none", d)
		}
	})
}

func TestRetryAfterDelay(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"0", 0, true},
		{"7", 7 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"99999999999", 24 * time.Hour, true},
		{"Sun, 01 Mar 2026 12:00:30 GMT", 30 * time.Second, true},
		{"Sunday, 01-Mar-26 12:01:00 GMT", time.Minute, true}, // RFC 850
		{"Sun Mar  1 12:00:05 2026", 5 * time.Second, true},   // asctime
		{"Sun, 01 Mar 2026 11:00:00 GMT", 0, true},            // in the past
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		got, ok := retryAfterDelay(tt.in, now)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("retryAfterDelay(%q) = %v, %v; want %v, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// ctHang answers nothing until the client gives up.
func ctHang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

func TestClientTimeout(t *testing.T) {
	srv, _ := ctServer(t, ctHang)
	c := ctClient(t, srv.URL, ctSecret, 50*time.Millisecond)
	err := c.Send(t.Context(), ctEvent())
	ctNoSecrets(t, err)
	if got := events.ClassOf(err); got != events.Retryable {
		t.Errorf("class = %v, want retryable", got)
	}
	if !errors.Is(err, ErrTimeout) {
		t.Errorf("errors.Is(%v, ErrTimeout) = false", err)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		t.Errorf("the client's own timeout %v looks like the caller's cancellation", err)
	}
	if want := "register event: no answer within 50ms"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	_, err = c.Presence(t.Context(), "Chat", "")
	ctNoSecrets(t, err)
	if !errors.Is(err, ErrTimeout) || events.ClassOf(err) != events.Retryable {
		t.Errorf("Presence = %v, want a retryable timeout", err)
	}
}

// TestClientTimeoutSynctest checks that Timeout is per request and defaults to
// 10s, with a transport that never answers, in fake time.
func TestClientTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		hang := ctRoundTripper(func(r *http.Request) (*http.Response, error) {
			<-r.Context().Done()
			return nil, r.Context().Err()
		})
		c, err := NewClient(Config{APIKey: ctKey, APISecret: ctSecret, HTTPClient: &http.Client{Transport: hang}})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = c.Send(t.Context(), ctEvent())
		ctNoSecrets(t, err)
		if elapsed := time.Since(start); elapsed != DefaultTimeout {
			t.Errorf("gave up after %v, want %v", elapsed, DefaultTimeout)
		}
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("Send = %v, want ErrTimeout", err)
		}
	})
}

func TestClientCallerCancel(t *testing.T) {
	srv, _ := ctServer(t, ctHang)
	c := ctClient(t, srv.URL, ctSecret, time.Minute)

	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(20*time.Millisecond, cancel)
	err := c.Send(ctx, ctEvent())
	ctNoSecrets(t, err)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Send after cancel = %v, want context.Canceled", err)
	}
	if errors.Is(err, ErrTimeout) {
		t.Errorf("a cancellation by the caller was reported as a helpdesk timeout")
	}
	if want := "register event: context canceled"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}

	dctx, dcancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer dcancel()
	_, err = c.Presence(dctx, "Chat", "shop")
	ctNoSecrets(t, err)
	if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrTimeout) {
		t.Errorf("Presence past the caller's deadline = %v, want context.DeadlineExceeded", err)
	}
}

func TestClientConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := ctClient(t, "http://"+addr, ctSecret, 5*time.Second)
	err = c.Send(t.Context(), ctEvent())
	ctNoSecrets(t, err)
	if got := events.ClassOf(err); got != events.Retryable {
		t.Errorf("class = %v, want retryable", got)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("errors.Is(%v, ECONNREFUSED) = false", err)
	}
	if want := "register event: connection refused"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
	if !events.NotSentOf(err) {
		t.Errorf("NotSentOf(%v) = false: a refused connection never reached ROBIN and must spend no quota", err)
	}
	_, err = c.Presence(t.Context(), "Chat", "")
	ctNoSecrets(t, err)
	if want := "presence: connection refused"; err == nil || err.Error() != want {
		t.Errorf("Presence = %v, want %q", err, want)
	}
}

// TestClientConnectionDropped: the server closes the connection without an
// answer, with a reset (RST) or an orderly close (EOF).
func TestClientConnectionDropped(t *testing.T) {
	for _, reset := range []bool{true, false} {
		name := map[bool]string{true: "reset", false: "eof"}[reset]
		t.Run(name, func(t *testing.T) {
			srv, _ := ctServer(t, func(w http.ResponseWriter, r *http.Request) {
				conn, _, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("hijack: %v", err)
					return
				}
				if tc, ok := conn.(*net.TCPConn); ok && reset {
					_ = tc.SetLinger(0)
				}
				conn.Close()
			})
			c := ctClient(t, srv.URL, ctSecret, 5*time.Second)
			err := c.Send(t.Context(), ctEvent())
			ctNoSecrets(t, err)
			var re *Error
			if !errors.As(err, &re) || re.Status != 0 {
				t.Fatalf("Send = %v, want an Error without status", err)
			}
			if got := events.ClassOf(err); got != events.Retryable {
				t.Errorf("class = %v, want retryable", got)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "register event: connection ") {
				t.Errorf("Error() = %q, want a connection failure", msg)
			}
		})
	}
}

func TestClientPresence(t *testing.T) {
	tests := []struct {
		body   string
		online bool
	}{
		{"Online", true},
		{"Offline", false},
		{"Online\n", true},
		{"\r\n  offline \r\n", false},
		{`"Online"`, true},
		{`"Offline"`, false},
		{"ONLINE", true},
		{"\ufeffOnline", true},
		{`{"Data":{"Status":"online"}}`, true},
		{`{"Data":{"Status":"offline"}}`, false},
		{`{"data":{"status":"Online"}}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.body, func(t *testing.T) {
			srv, got := ctServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, _ = io.WriteString(w, tt.body)
			})
			c := ctClient(t, srv.URL, ctSecret, 0)
			online, err := c.Presence(t.Context(), "WhatsApp", "+31858770023")
			ctNoSecrets(t, err)
			if err != nil {
				t.Fatalf("Presence: %v", err)
			}
			if online != tt.online {
				t.Errorf("Presence(%q) = %v, want %v", tt.body, online, tt.online)
			}
			r := got()[0]
			if r.Method != http.MethodGet || r.Path != "/api/v1" {
				t.Errorf("request = %s %s, want GET /api/v1", r.Method, r.Path)
			}
			q, _ := url.ParseQuery(r.Query)
			want := url.Values{"apikey": {ctKey}, "Channel": {"WhatsApp"}, "referrer": {"+31858770023"}}
			if diff := cmp.Diff(want, q); diff != "" {
				t.Errorf("query mismatch (-want +got):\n%s", diff)
			}
			if r.Header.Get("Authorization") != "" {
				t.Errorf("presence sent credentials it does not need")
			}
		})
	}
}

func TestClientPresenceQueryWithoutReferrer(t *testing.T) {
	srv, got := ctServer(t, ctStatus(http.StatusOK, "Offline"))
	c := ctClient(t, srv.URL, "", 0)
	if _, err := c.Presence(t.Context(), "Apple Business Chat", ""); err != nil {
		t.Fatal(err)
	}
	q, _ := url.ParseQuery(got()[0].Query)
	want := url.Values{"apikey": {ctKey}, "Channel": {"Apple Business Chat"}}
	if diff := cmp.Diff(want, q); diff != "" {
		t.Errorf("query mismatch (-want +got):\n%s", diff)
	}
}

func TestClientPresenceErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		body   string
		class  events.Class
	}{
		{"unreadable body", 200, "maybe", events.Permanent},
		{"empty body", 200, "", events.Permanent},
		{"legacy json with other status", 200, `{"Data":{"Status":"away"}}`, events.Permanent},
		{"bad request", 400, "", events.Permanent},
		{"unknown channel", 404, "", events.Permanent},
		{"rate limited", 429, "Too Many Requests", events.RateLimited},
		{"server error", 500, "<html>", events.Retryable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, _ := ctServer(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				// The presence key is in the query; a server echoing it must not leak it.
				_, _ = io.WriteString(w, tt.body+" "+r.URL.RawQuery)
			})
			c := ctClient(t, srv.URL, ctSecret, 0)
			_, err := c.Presence(t.Context(), "Chat", "")
			ctNoSecrets(t, err)
			if err == nil {
				t.Fatal("Presence = nil error")
			}
			if got := events.ClassOf(err); got != tt.class {
				t.Errorf("class = %v, want %v (err %v)", got, tt.class, err)
			}
			if !strings.HasPrefix(err.Error(), "presence: status ") {
				t.Errorf("Error() = %q, want it to start with the operation and status", err)
			}
			if tt.status == 200 && !errors.Is(err, ErrUnexpectedBody) {
				t.Errorf("errors.Is(%v, ErrUnexpectedBody) = false", err)
			}
		})
	}
}

func TestClientRedact(t *testing.T) {
	c := ctClient(t, "http://127.0.0.1:1", ctSecret, 0)
	in := "POST /voip/registerevent/" + url.PathEscape(ctKey) + " ?apikey=" + url.QueryEscape(ctKey) +
		" raw " + ctKey + " secret " + ctSecret + " " + url.QueryEscape(ctSecret) +
		" Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(ctKey+":"+ctSecret))
	got := c.Redact(in)
	for _, f := range ctForbidden {
		if strings.Contains(got, f) {
			t.Errorf("Redact left %q in %q", f, got)
		}
	}
	if want := "POST /voip/registerevent/[redacted] ?apikey=[redacted] raw [redacted] secret [redacted] [redacted] Authorization: Basic [redacted]"; got != want {
		t.Errorf("Redact = %q\nwant     %q", got, want)
	}
	if got := c.Redact("nothing secret here"); got != "nothing secret here" {
		t.Errorf("Redact changed clean text: %q", got)
	}
}

type ctRoundTripper func(*http.Request) (*http.Response, error)

func (f ctRoundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestNewClientDefaults checks the documented default URLs without touching
// the network: a transport records where requests would go.
func TestNewClientDefaults(t *testing.T) {
	var urls []string
	rt := ctRoundTripper(func(r *http.Request) (*http.Response, error) {
		urls = append(urls, r.URL.String())
		body := "Online"
		if r.Method == http.MethodPost {
			body = ""
		}
		return &http.Response{StatusCode: 201, Body: io.NopCloser(strings.NewReader(body)), Header: http.Header{}, Request: r}, nil
	})
	c, err := NewClient(Config{APIKey: "abc", HTTPClient: &http.Client{Transport: rt}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(t.Context(), ctEvent()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Presence(t.Context(), "Chat", ""); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"https://api.robinhq.com/voip/registerevent/abc",
		"https://presence.robinhq.com/api/v1?Channel=Chat&apikey=abc",
	}
	if diff := cmp.Diff(want, urls); diff != "" {
		t.Errorf("URLs mismatch (-want +got):\n%s", diff)
	}
}

func TestNewClientRejects(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"empty key", Config{}},
		{"relative API URL", Config{APIKey: ctKey, APIURL: "api.robinhq.com"}},
		{"ftp API URL", Config{APIKey: ctKey, APIURL: "ftp://api.robinhq.com"}},
		{"bad presence URL", Config{APIKey: ctKey, PresenceURL: "://" + ctKey}},
		{"key in a bad URL", Config{APIKey: ctKey, APIURL: "http://[" + ctKey}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewClient(tt.cfg)
			if err == nil {
				t.Fatal("NewClient accepted the config")
			}
			ctNoSecrets(t, err)
		})
	}
}

func FuzzClientParsePresence(f *testing.F) {
	for _, s := range []string{"Online", "Offline", "online\n", `"Offline"`, `{"Data":{"Status":"online"}}`, "{", "", "\ufeff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		online, ok := parsePresence(b)
		if !ok && online {
			t.Fatalf("parsePresence(%q) = online but not ok", b)
		}
		// JSON may spell the word with escapes; plain bodies must contain it.
		if ok && !strings.Contains(string(b), "{") {
			l := strings.ToLower(string(b))
			if online && !strings.Contains(l, "online") {
				t.Fatalf("parsePresence(%q) = online without the word", b)
			}
			if !online && !strings.Contains(l, "offline") {
				t.Fatalf("parsePresence(%q) = offline without the word", b)
			}
		}
	})
}

func FuzzClientRetryAfter(f *testing.F) {
	for _, s := range []string{"0", "7", "Sun, 01 Mar 2026 12:00:30 GMT", "-1", "1e9", "99999999999999999999"} {
		f.Add(s)
	}
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := retryAfterDelay(s, now)
		if d < 0 || d > 24*time.Hour {
			t.Fatalf("retryAfterDelay(%q) = %v, outside [0, 24h]", s, d)
		}
		if !ok && d != 0 {
			t.Fatalf("retryAfterDelay(%q) = %v but not ok", s, d)
		}
	})
}
