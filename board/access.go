package board

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// SessionCookie is the name of the cookie a login sets.
const SessionCookie = "voipbridge_board"

// SessionTTL is how long a login lasts. Sessions are signed with a key
// derived from ADMIN_TOKEN, so changing the token ends them all.
const SessionTTL = 7 * 24 * time.Hour

// RequestHeader must accompany the board's POSTs made by script (replay):
// a cross-site page cannot set it without the browser asking first, and the
// board answers no such question.
const RequestHeader = "X-Board-Request"

// viewer is who is looking at the board.
type viewer struct {
	ok    bool // may see the board
	admin bool // logged in with ADMIN_TOKEN: may replay
}

// viewerOf tells who sent r: a valid session cookie (or the admin token as
// a Bearer header, for scripts) makes an admin; an address in Allow a
// viewer. Nothing is read from the URL.
func (b *Board) viewerOf(r *http.Request) viewer {
	if b.o.Token != "" {
		if c, err := r.Cookie(SessionCookie); err == nil && b.validSession(c.Value) {
			return viewer{ok: true, admin: true}
		}
		if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") && b.tokenMatches(strings.TrimSpace(tok)) {
			return viewer{ok: true, admin: true}
		}
	}
	if len(b.o.Allow) > 0 && allowed(b.o.Allow, r.RemoteAddr) {
		return viewer{ok: true}
	}
	return viewer{}
}

// tokenMatches compares in constant time, also in the token's length: both
// sides are hashed first.
func (b *Board) tokenMatches(s string) bool {
	if b.o.Token == "" {
		return false
	}
	got, want := sha256.Sum256([]byte(s)), sha256.Sum256([]byte(b.o.Token))
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// sessionKey signs sessions; it is derived from the token, so the token
// itself never travels in a cookie.
func (b *Board) sessionKey() []byte {
	m := hmac.New(sha256.New, []byte(b.o.Token))
	m.Write([]byte("voipbridge board session v1"))
	return m.Sum(nil)
}

// newSession returns a cookie value: expiry and a random nonce, signed.
func (b *Board) newSession() string {
	payload := make([]byte, 8+16)
	binary.BigEndian.PutUint64(payload, uint64(b.now().Add(SessionTTL).Unix()))
	_, _ = rand.Read(payload[8:])
	m := hmac.New(sha256.New, b.sessionKey())
	m.Write(payload)
	enc := base64.RawURLEncoding
	return enc.EncodeToString(payload) + "." + enc.EncodeToString(m.Sum(nil))
}

func (b *Board) validSession(v string) bool {
	p, s, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p)
	sig, err2 := enc.DecodeString(s)
	if err1 != nil || err2 != nil || len(payload) != 24 {
		return false
	}
	m := hmac.New(sha256.New, b.sessionKey())
	m.Write(payload)
	if !hmac.Equal(sig, m.Sum(nil)) {
		return false
	}
	return b.now().Unix() < int64(binary.BigEndian.Uint64(payload))
}

// allowed reports whether the client address (RemoteAddr, after the
// bridge's trusted-proxy rewrite) is in one of the networks.
func allowed(nets []netip.Prefix, remote string) bool {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, p := range nets {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// sameOrigin reports whether a state-changing request comes from a page of
// this board: its Origin must name this host, or, where the browser sends
// none or "null" (some referrer policies), its Sec-Fetch-Site must say
// same-origin. Pages cannot set either header. Requests that carry neither
// are refused: every browser that runs the board sends one of them.
func sameOrigin(r *http.Request) bool {
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && u.Host != "" && strings.EqualFold(u.Host, r.Host)
	}
	return r.Header.Get("Sec-Fetch-Site") == "same-origin"
}

// setSession sets (or, with an empty value, clears) the session cookie:
// HttpOnly (no script reads it), SameSite=Strict (no other site's page
// sends it), Secure when the board is served over TLS.
func setSession(w http.ResponseWriter, r *http.Request, value string, ttl time.Duration) {
	c := &http.Cookie{
		Name: SessionCookie, Value: value, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(ttl.Seconds())
	}
	http.SetCookie(w, c)
}

// serveLogin takes the login form (POST, the token in the body, never in a
// URL): the right token sets the session cookie and goes back to the
// board; a wrong one shows the form again.
func (b *Board) serveLogin(w http.ResponseWriter, r *http.Request) {
	if b.o.Token == "" {
		writeError(w, http.StatusNotFound, "no ADMIN_TOKEN is set: nobody logs in to this board")
		return
	}
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "the login must come from the board's own page")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "unreadable form")
		return
	}
	if !b.tokenMatches(r.PostForm.Get("token")) {
		b.log.Warn("board login refused: wrong token", "remote", r.RemoteAddr)
		b.servePage(w, r, pageLogin, http.StatusUnauthorized, "That is not the admin token.")
		return
	}
	setSession(w, r, b.newSession(), SessionTTL)
	b.log.Info("board login", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// serveLogout clears the session cookie.
func (b *Board) serveLogout(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "the logout must come from the board's own page")
		return
	}
	setSession(w, r, "", 0)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}
