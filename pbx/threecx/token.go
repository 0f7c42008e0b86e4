package threecx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// defaultTokenLifetime is assumed when the token answer has no expires_in.
// A third-party write-up reports expires_in 3600 for 3CX V20 (not verified).
const defaultTokenLifetime = time.Hour

// tokenSource hands out the OAuth2 client-credentials access token and takes
// a new one shortly before the old one expires or after the PBX refused it.
type tokenSource struct {
	client   *http.Client
	endpoint string
	id       string
	secret   string
	timeout  time.Duration
	onFetch  func()

	mu      sync.Mutex
	tok     string
	renewAt time.Time
}

// errAuth marks a refusal of our credentials or token by the PBX.
var errAuth = errors.New("3cx refused the credentials")

// token returns a valid access token, fetching a new one when there is none
// or the current one is about to expire.
func (t *tokenSource) token(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok != "" && time.Now().Before(t.renewAt) {
		return t.tok, nil
	}
	tok, lifetime, err := t.fetch(ctx)
	if err != nil {
		return "", err
	}
	// Renew a tenth of the lifetime (at most a minute) before the PBX would
	// refuse the token, so a request never goes out with a token about to die.
	margin := min(lifetime/10, time.Minute)
	t.tok, t.renewAt = tok, time.Now().Add(lifetime-margin)
	return tok, nil
}

// invalidate drops tok if it is still the current token, so the next call to
// token fetches a new one. Other goroutines that already renewed keep theirs.
func (t *tokenSource) invalidate(tok string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.tok == tok {
		t.tok = ""
	}
}

func (t *tokenSource) fetch(ctx context.Context) (string, time.Duration, error) {
	if t.onFetch != nil {
		t.onFetch()
	}
	ctx, cancel := context.WithTimeout(ctx, t.timeout)
	defer cancel()
	form := url.Values{
		"client_id":     {t.id},
		"client_secret": {t.secret},
		"grant_type":    {"client_credentials"},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	resp, err := t.client.Do(req)
	if err != nil {
		return "", 0, fmt.Errorf("token request: %w", redactURLError(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", 0, fmt.Errorf("token response: %w", err)
	}
	var answer struct {
		AccessToken string          `json:"access_token"`
		ExpiresIn   json.RawMessage `json:"expires_in"`
		Error       string          `json:"error"`
	}
	_ = json.Unmarshal(body, &answer)
	if resp.StatusCode != http.StatusOK {
		// The OAuth error code ("invalid_client") is safe to show; the body
		// as a whole is not (it could echo what we sent).
		code := ""
		if validSegment(answer.Error) {
			code = " (" + answer.Error + ")"
		}
		if resp.StatusCode == http.StatusBadRequest || resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			return "", 0, fmt.Errorf("token: status %d%s: %w", resp.StatusCode, code, errAuth)
		}
		return "", 0, fmt.Errorf("token: status %d%s", resp.StatusCode, code)
	}
	if answer.AccessToken == "" {
		return "", 0, errors.New("token: answer has no access_token")
	}
	return answer.AccessToken, parseExpiresIn(answer.ExpiresIn), nil
}

// parseExpiresIn reads expires_in (seconds, as a number or a string) and
// falls back to defaultTokenLifetime when it is missing or nonsense.
func parseExpiresIn(raw json.RawMessage) time.Duration {
	var n json.Number
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return defaultTokenLifetime
		}
		n = json.Number(s)
	} else if json.Unmarshal(raw, &n) != nil {
		return defaultTokenLifetime
	}
	secs, err := n.Float64()
	if err != nil || secs < 1 || secs > 7*24*3600 {
		return defaultTokenLifetime
	}
	return time.Duration(secs * float64(time.Second))
}

// redactURLError drops the query string from a *url.Error so that nothing the
// caller put into a URL reaches a log line. Our URLs carry no secrets today;
// this keeps it that way if a PBX setup ever adds one.
func redactURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if u, perr := url.Parse(ue.URL); perr == nil {
			u.RawQuery, u.User, u.Fragment = "", nil, ""
			return &url.Error{Op: ue.Op, URL: u.String(), Err: ue.Err}
		}
	}
	return err
}
