// Package webhook is the generic JSON webhook source, and the guard every
// webhook source sits behind (tokens, HMAC signatures, address allow-list,
// body limit).
package webhook

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/voipbridge/voipbridge/events"
)

// DefaultMaxBody is the largest webhook body accepted (64 KiB).
const DefaultMaxBody = 64 << 10

// Guard authenticates webhook requests before a source sees them. A request
// that fails any check gets its error status and is never journaled.
type Guard struct {
	// Token is required as "Authorization: Bearer <token>" or as the last
	// path segment (/v1/webhooks/{source}/{token}) for platforms that cannot
	// set headers. Empty: no token check (only allowed with Insecure).
	Token string
	// HMACSecret, when set, requires "X-Signature: sha256=<hex>" of the body.
	HMACSecret string
	// Allow, when non-empty, limits callers to these networks.
	Allow []netip.Prefix
	// MaxBody bounds the body (default DefaultMaxBody); larger gets 413.
	MaxBody int64
	// Logger receives one line per refused request, with the reason and never the token.
	Logger *slog.Logger
	// Observe, when set, is told the status every request was answered,
	// whether the guard refused it or the source answered it.
	Observe func(source string, status int)
}

// Wrap returns h behind the guard. The body h reads is the verified body.
// The path may carry the token as the wildcard {token}.
func (g *Guard) Wrap(source string, h http.Handler) http.Handler {
	max := g.MaxBody
	if max <= 0 {
		max = DefaultMaxBody
	}
	log := g.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		limited := w // MaxBytesReader closes the connection of a too large body through it
		if g.Observe != nil {
			sw := &statusWriter{ResponseWriter: w}
			defer func() { g.Observe(source, sw.status()) }()
			w = sw
		}
		refuse := func(status int, reason, msg string) {
			log.Warn("webhook refused", "source", source, "status", status, "reason", reason, "remote", r.RemoteAddr)
			WriteError(w, status, msg)
		}
		if len(g.Allow) > 0 && !g.allowed(r.RemoteAddr) {
			refuse(http.StatusForbidden, "address not allowed", "caller address is not allowed")
			return
		}
		if g.Token != "" && !g.tokenOK(r) {
			refuse(http.StatusUnauthorized, "missing or wrong token", "missing or wrong token")
			return
		}
		body, err := readBody(http.MaxBytesReader(limited, r.Body, max), r.ContentLength, max)
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				refuse(http.StatusRequestEntityTooLarge, "body too large", "body is larger than the limit")
				return
			}
			refuse(http.StatusBadRequest, "unreadable body", "could not read the body")
			return
		}
		if g.HMACSecret != "" && !g.signatureOK(r.Header.Get("X-Signature"), body) {
			refuse(http.StatusUnauthorized, "missing or wrong signature", "missing or wrong X-Signature")
			return
		}
		vb := &verifiedBody{b: body}
		vb.Reset(body)
		r.Body = vb
		r.ContentLength = int64(len(body))
		h.ServeHTTP(w, r)
	})
}

// readBody reads r to its end like io.ReadAll, into one buffer of the
// declared length when there is one (at most max: the reader stops there).
func readBody(r io.Reader, length, max int64) ([]byte, error) {
	var b []byte
	if length >= 0 && length <= max {
		// One more byte, so that the read that finds the end needs no
		// larger buffer.
		b = make([]byte, 0, length+1)
	}
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// verifiedBody is the request body the guard read and verified. A source
// behind the guard reads it as any body; bodyBytes takes it without a copy.
type verifiedBody struct {
	bytes.Reader
	b []byte
}

func (*verifiedBody) Close() error { return nil }

// bodyBytes reads the rest of a request body: of a body the guard verified
// without copying it, of another with io.ReadAll.
func bodyBytes(body io.Reader) ([]byte, error) {
	if vb, ok := body.(*verifiedBody); ok {
		rest := vb.b[len(vb.b)-vb.Len():]
		vb.Reset(nil)
		return rest, nil
	}
	return io.ReadAll(body)
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// status is the status answered; 200 when the handler wrote nothing.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

func (g *Guard) tokenOK(r *http.Request) bool {
	got := r.PathValue("token")
	if auth := r.Header.Get("Authorization"); got == "" && auth != "" {
		scheme, tok, ok := strings.Cut(auth, " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") {
			return false
		}
		got = strings.TrimSpace(tok)
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(g.Token)) == 1
}

func (g *Guard) signatureOK(header string, body []byte) bool {
	sig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(sig)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, []byte(g.HMACSecret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

func (g *Guard) allowed(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return false
	}
	a = a.Unmap()
	for _, p := range g.Allow {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ParseCIDRs parses WEBHOOK_ALLOW_CIDRS entries; a bare address is a single host.
func ParseCIDRs(list []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	var errs []error
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			errs = append(errs, errors.New("WEBHOOK_ALLOW_CIDRS: "+strings.TrimPrefix(err.Error(), "netip.ParseAddr")))
			continue
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, errors.Join(errs...)
}

// WriteError answers status with {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// WriteJournalError answers a request whose signal the journal did not take:
// 503, with Retry-After, saying why (a nearly full disk, or the journal
// unavailable). Nothing was journaled, so the PBX must send it again.
func WriteJournalError(w http.ResponseWriter, err error) {
	w.Header().Set("Retry-After", "30")
	if errors.Is(err, events.ErrDiskFull) {
		WriteError(w, http.StatusServiceUnavailable, "journal disk nearly full; retry later")
		return
	}
	WriteError(w, http.StatusServiceUnavailable, "journal unavailable; retry later")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
