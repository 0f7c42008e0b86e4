package board

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/voipbridge/voipbridge/events"
)

//go:embed web
var webFS embed.FS

// Mount serves the board on mux (the bridge's admin mux):
//
//	GET  /                                    the board, or the login form
//	GET  /board/{file}                        its stylesheet, script and icon
//	GET  /v1/board                            every part as one JSON object (polling)
//	GET  /v1/board/stream                     the parts as Server-Sent Events
//	POST /v1/board/login, /v1/board/logout    the session cookie
//	POST /v1/board/deadletters/{id}/replay    replay a dead letter (admins)
//
// f is what the board reads of the bridge when it draws.
func (b *Board) Mount(mux *http.ServeMux, f Feeds) error {
	var err error
	if b.assets, err = loadAssets(); err != nil {
		return err
	}
	b.feeds = f
	mux.HandleFunc("GET /{$}", b.serveIndex)
	mux.HandleFunc("GET /board/{file}", b.serveAsset)
	mux.Handle("GET /v1/board", b.viewers(b.serveSnapshot))
	mux.Handle("GET /v1/board/stream", b.viewers(b.serveStream))
	mux.HandleFunc("POST /v1/board/login", b.serveLogin)
	mux.HandleFunc("POST /v1/board/logout", b.serveLogout)
	mux.HandleFunc("POST /v1/board/deadletters/{id}/replay", b.serveReplay)
	return nil
}

// viewers lets through who may see the board; others get 401 (403 when
// nobody could log in).
func (b *Board) viewers(h func(http.ResponseWriter, *http.Request, viewer)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v := b.viewerOf(r)
		if !v.ok {
			b.refuse(w)
			return
		}
		h(w, r, v)
	})
}

func (b *Board) refuse(w http.ResponseWriter) {
	if b.o.Token == "" {
		writeError(w, http.StatusForbidden, "this address may not see the board (BOARD_ALLOW_CIDRS)")
		return
	}
	writeError(w, http.StatusUnauthorized, "log in to the board first")
}

// page is one of the board's HTML pages.
type page int

const (
	pageBoard page = iota
	pageLogin
	pageForbidden
)

// pageData is what the HTML templates see.
type pageData struct {
	Login    bool // the login form (login.html)
	Admin    bool
	CanLogin bool // an admin token exists, so the login form is offered
	Message  string
	Masked   bool
	Assets   map[string]string // file name to its URL with a content hash
}

func (b *Board) serveIndex(w http.ResponseWriter, r *http.Request) {
	v := b.viewerOf(r)
	switch {
	case v.ok && !(r.URL.Query().Has("login") && b.o.Token != "" && !v.admin):
		b.servePage(w, r, pageBoard, http.StatusOK, "")
	case b.o.Token != "":
		b.servePage(w, r, pageLogin, http.StatusOK, "")
	default:
		b.servePage(w, r, pageForbidden, http.StatusForbidden, "")
	}
}

func (b *Board) servePage(w http.ResponseWriter, r *http.Request, p page, status int, msg string) {
	v := b.viewerOf(r)
	d := pageData{Login: p == pageLogin, Admin: v.admin, CanLogin: b.o.Token != "", Message: msg, Masked: b.o.Mask, Assets: b.assets.urls}
	var buf bytes.Buffer
	name := "board.html"
	if p != pageBoard {
		name = "login.html"
	}
	if err := b.assets.pages.ExecuteTemplate(&buf, name, d); err != nil {
		b.log.Error("board: page", "err", err)
		writeError(w, http.StatusInternalServerError, "the board's page failed")
		return
	}
	h := w.Header()
	securityHeaders(h)
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	writeMaybeGzip(w, r, status, buf.Bytes())
}

// securityHeaders keep the board's pages to their own assets: no inline
// script, no frames, no form posting elsewhere, no referrer.
func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	// Not no-referrer: browsers then send "Origin: null" with the login
	// form, and the origin is what shows the form is the board's own.
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Frame-Options", "DENY")
}

// serveReplay queues a dead letter again. It needs an admin: the session
// cookie on a same-origin request with RequestHeader (the board's button),
// or the admin token as a Bearer header (a script; a browser never sends
// that by itself).
func (b *Board) serveReplay(w http.ResponseWriter, r *http.Request) {
	bearer := false
	if scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "Bearer") {
		bearer = b.tokenMatches(strings.TrimSpace(tok))
	}
	if !bearer {
		c, err := r.Cookie(SessionCookie)
		if err != nil || !b.validSession(c.Value) {
			writeError(w, http.StatusUnauthorized, "log in as admin to replay")
			return
		}
		if !sameOrigin(r) || r.Header.Get(RequestHeader) == "" {
			b.log.Warn("board replay refused: not from the board's page", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"))
			writeError(w, http.StatusForbidden, "replays must come from the board's own page")
			return
		}
	}
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil || b.feeds.Replay == nil {
		writeError(w, http.StatusBadRequest, "id must be a dead letter's number")
		return
	}
	var dl events.StoredDeadLetter
	b.mu.Lock()
	for _, d := range b.dead {
		if d.ID == id {
			dl = d
		}
	}
	b.mu.Unlock()
	if err := b.feeds.Replay(r.Context(), id); err != nil {
		status := http.StatusServiceUnavailable
		if errors.Is(err, events.ErrNoDeadLetter) {
			status = http.StatusNotFound
		}
		writeError(w, status, b.nums.scrub(err.Error()))
		return
	}
	if dl.ID == 0 {
		dl.ID = id
	}
	b.replayed(dl)
	b.log.Info("dead letter replayed from the board", "id", id, "remote", r.RemoteAddr)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"replayed": 1, "id": id})
}

// writeError answers status with {"error": msg}.
func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}

// assetSet is the board's embedded files: the page templates, and each
// other file with a content hash for its URL (so browsers may keep it for
// good) and a gzipped copy.
type assetSet struct {
	files map[string]*asset
	urls  map[string]string // file name to its URL
	pages *template.Template
}

type asset struct {
	body, gz []byte
	ctype    string
	hash     string
}

func loadAssets() (*assetSet, error) {
	set := &assetSet{files: map[string]*asset{}, urls: map[string]string{}}
	entries, err := fs.ReadDir(webFS, "web")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".html") {
			continue
		}
		body, err := webFS.ReadFile("web/" + name)
		if err != nil {
			return nil, err
		}
		sum := sha256.Sum256(body)
		a := &asset{body: body, ctype: mime.TypeByExtension(path.Ext(name)), hash: hex.EncodeToString(sum[:6])}
		if a.ctype == "" {
			a.ctype = "application/octet-stream"
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		if gz.Len() < len(body) {
			a.gz = gz.Bytes()
		}
		set.files[name] = a
		set.urls[name] = "/board/" + name + "?v=" + a.hash
	}
	if set.pages, err = template.ParseFS(webFS, "web/*.html"); err != nil {
		return nil, err
	}
	return set, nil
}

// serveAsset serves an embedded file. They hold no data, so they are served
// to anyone (the login page needs its stylesheet too).
func (b *Board) serveAsset(w http.ResponseWriter, r *http.Request) {
	a, ok := b.assets.files[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("v") == a.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	etag := `"` + a.hash + `"`
	h.Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	writeMaybeGzipAsset(w, r, a)
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, q, _ := strings.Cut(strings.TrimSpace(part), ";")
		if strings.EqualFold(strings.TrimSpace(enc), "gzip") && strings.TrimSpace(q) != "q=0" {
			return true
		}
	}
	return false
}

func writeMaybeGzipAsset(w http.ResponseWriter, r *http.Request, a *asset) {
	w.Header().Add("Vary", "Accept-Encoding")
	if a.gz != nil && acceptsGzip(r) {
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(a.gz)))
		_, _ = w.Write(a.gz)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(a.body)))
	_, _ = w.Write(a.body)
}

// writeMaybeGzip writes a page, gzipped when the browser takes it.
func writeMaybeGzip(w http.ResponseWriter, r *http.Request, status int, body []byte) {
	w.Header().Add("Vary", "Accept-Encoding")
	if len(body) > 1024 && acceptsGzip(r) {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(body)
		zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		body = gz.Bytes()
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
