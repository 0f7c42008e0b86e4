package threecx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// maxBody bounds what the source reads from one REST answer; a snapshot of a
// large PBX is a few hundred kilobytes.
const maxBody = 16 << 20

// api is the REST and WebSocket side of the Call Control API.
type api struct {
	base    *url.URL // scheme and host of the PBX, path without trailing slash
	client  *http.Client
	tokens  *tokenSource
	timeout time.Duration
}

// statusError is an answer the source did not expect.
type statusError struct {
	path   string
	status int
}

func (e *statusError) Error() string {
	return fmt.Sprintf("GET %s: status %d", e.path, e.status)
}

// get fetches path with the current token. A 401 or 403 is answered with one
// new token and one retry, so an expired token costs no message. It returns
// found=false for 404 (the entity is gone) and an error for any other
// failure.
func (a *api) get(ctx context.Context, path string) (body []byte, found bool, err error) {
	for attempt := 0; ; attempt++ {
		tok, err := a.tokens.token(ctx)
		if err != nil {
			return nil, false, err
		}
		body, status, err := a.do(ctx, path, tok)
		if err != nil {
			return nil, false, err
		}
		switch {
		case status == http.StatusOK:
			return body, true, nil
		case status == http.StatusNotFound:
			return nil, false, nil
		case (status == http.StatusUnauthorized || status == http.StatusForbidden) && attempt == 0:
			a.tokens.invalidate(tok)
			continue
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return nil, false, fmt.Errorf("%w: %w", &statusError{path, status}, errAuth)
		default:
			return nil, false, &statusError{path, status}
		}
	}
}

func (a *api) do(ctx context.Context, path, tok string) ([]byte, int, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, a.url(path, false), nil)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Accept", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", path, redactURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return nil, resp.StatusCode, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, 0, fmt.Errorf("GET %s: %w", path, err)
	}
	if len(body) > maxBody {
		return nil, 0, fmt.Errorf("GET %s: answer larger than %d bytes", path, maxBody)
	}
	return body, resp.StatusCode, nil
}

// dial opens the Call Control WebSocket. Like get, it retries once with a new
// token when the upgrade is refused with 401 or 403.
func (a *api) dial(ctx context.Context) (*websocket.Conn, error) {
	for attempt := 0; ; attempt++ {
		tok, err := a.tokens.token(ctx)
		if err != nil {
			return nil, err
		}
		dctx, cancel := context.WithTimeout(ctx, a.timeout)
		conn, resp, err := websocket.Dial(dctx, a.url("/callcontrol/ws", true), &websocket.DialOptions{
			HTTPClient: a.client,
			HTTPHeader: http.Header{"Authorization": {"Bearer " + tok}},
		})
		cancel()
		if err == nil {
			return conn, nil
		}
		if resp != nil && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
			if attempt == 0 {
				a.tokens.invalidate(tok)
				continue
			}
			return nil, fmt.Errorf("websocket: status %d: %w", resp.StatusCode, errAuth)
		}
		if resp != nil {
			return nil, fmt.Errorf("websocket: status %d", resp.StatusCode)
		}
		return nil, fmt.Errorf("websocket: %w", redactURLError(err))
	}
}

// url joins the PBX base with an absolute API path; ws selects the WebSocket
// scheme.
func (a *api) url(path string, ws bool) string {
	u := *a.base
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	u.RawPath = ""
	if ws {
		switch u.Scheme {
		case "https":
			u.Scheme = "wss"
		case "http":
			u.Scheme = "ws"
		}
	}
	return u.String()
}

// isAuth reports whether err is the PBX refusing our credentials.
func isAuth(err error) bool { return errors.Is(err, errAuth) }
