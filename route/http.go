package route

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/robin"
)

// maxBody bounds an answer read from the shop.
const maxBody = 4 << 20

// HTTPError is a non-2xx answer of the shop. Its message never
// contains a URL (which may carry credentials) or a token.
type HTTPError struct {
	// Op names the request, such as "chatwoot contact search".
	Op string
	// Status is the HTTP status.
	Status int
	// Body is the start of the answer (at most 200 bytes).
	Body string
	// RetryAfterDelay is the Retry-After the server sent, in whole seconds;
	// 0 when none.
	RetryAfterDelay time.Duration
}

// Error returns "<op>: status <code>[: <body>]".
func (e *HTTPError) Error() string {
	s := e.Op + ": status " + strconv.Itoa(e.Status)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

// Class classifies the status with the helpdesk client's table, so the
// breaker counts only the server's own failures.
func (e *HTTPError) Class() events.Class { return robin.ClassifyStatus(e.Status) }

// getJSON sends req with hc and decodes a 2xx answer into v. A non-2xx
// answer is an *HTTPError; a failed round trip is returned with op and
// without the URL.
func getJSON(hc *http.Client, req *http.Request, op string, v any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		if ctxErr := req.Context().Err(); ctxErr != nil {
			return fmt.Errorf("%s: %w", op, ctxErr)
		}
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL, which may carry credentials
		}
		return fmt.Errorf("%s: %w", op, err)
	}
	defer func() {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		_ = resp.Body.Close()
	}()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("%s: read answer: %w", op, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		e := &HTTPError{Op: op, Status: resp.StatusCode, Body: clip(string(b), 200)}
		if secs, err := strconv.Atoi(strings.TrimSpace(resp.Header.Get("Retry-After"))); err == nil && secs >= 0 {
			e.RetryAfterDelay = time.Duration(min(secs, 3600)) * time.Second
		}
		return e
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: answer is not the expected JSON: %w", op, err)
	}
	return nil
}

// clip trims s and cuts it to at most n bytes on a rune boundary.
func clip(s string, n int) string {
	s = strings.TrimSpace(s)
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}

// newRequest builds a GET request; its error never contains the URL.
func newRequest(ctx context.Context, u, op string) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: cannot build the request", op)
	}
	return req, nil
}
