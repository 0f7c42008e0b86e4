package presence

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Header names of the answer.
const (
	// HeaderStale is "true" on an answer older than its TTL, served because
	// ROBIN could not be asked, and "false" on any other answer of ROBIN's.
	HeaderStale = "X-Presence-Stale"
	// HeaderFallback is "true" on the configured fallback answer.
	HeaderFallback = "X-Presence-Fallback"
)

// Constant header values, shared so that a cache hit allocates none.
var (
	hdrText    = []string{"text/plain; charset=utf-8"}
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrAccept  = []string{"Accept"}
	hdrTrue    = []string{"true"}
	hdrFalse   = []string{"false"}
	hdrGetHead = []string{"GET, HEAD"}
	bodyOnline = []byte("Online")
	bodyOffln  = []byte("Offline")
)

// maxQueryParams bounds the parameters a look-up may carry.
const maxQueryParams = 32

// ServeHTTP answers GET /v1/presence?channel=<channel>&referrer=<referrer>
// (referrer optional; "Channel" is accepted for "channel").
//
// The answer is text/plain "Online" or "Offline" (no newline), or JSON
// {"channel","referrer","status","checked_at","stale"} (plus "fallback" and
// "reason" where they apply) when the Accept header prefers
// application/json or the query says format=json. X-Presence-Stale says
// whether the answer is stale, Age how many seconds ago ROBIN gave it, and
// X-Presence-Fallback: true marks the configured fallback. Errors: 400 for an
// unknown channel (naming the valid ones) or an unusable referrer, 404 with
// ROBIN's reason when ROBIN does not know the channel or referrer, 503 when
// presence is unknown and the fallback is "error". Answers are never cached
// by HTTP caches.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h["Allow"] = hdrGetHead
		http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
		return
	}
	h["Cache-Control"] = hdrNoStore
	h["Vary"] = hdrAccept
	p, err := parseQuery(r.URL.RawQuery)
	asJSON := wantsJSON(r.Header.Get("Accept"))
	switch p.format {
	case "":
	case "json":
		asJSON = true
	case "text":
		asJSON = false
	default:
		if err == nil {
			err = fmt.Errorf("format %q: want json or text", p.format)
		}
	}
	if err != nil {
		c.m.lookup(ResultInvalid, time.Now())
		writeError(w, asJSON, http.StatusBadRequest, jsonAnswer{Error: "bad query: " + err.Error()})
		return
	}
	a, err := c.Lookup(r.Context(), p.channel, p.referrer)
	if err == nil {
		writeAnswer(w, asJSON, a)
		return
	}
	var (
		invalid  *InvalidError
		notFound *NotFoundError
	)
	switch {
	case errors.As(err, &invalid):
		j := jsonAnswer{Channel: p.channel, Referrer: p.referrer, Error: err.Error()}
		if invalid.Param == "channel" {
			j.Channels = invalid.Channels
		}
		writeError(w, asJSON, http.StatusBadRequest, j)
	case errors.As(err, &notFound):
		setAge(h, a)
		j := jsonAnswer{Channel: a.Key.Channel, Referrer: a.Key.Referrer, CheckedAt: checkedAt(a), Stale: a.Stale,
			Error: err.Error(), RobinStatus: notFound.Status}
		if a.Stale {
			j.Reason = a.Reason
		}
		writeError(w, asJSON, http.StatusNotFound, j)
	default:
		writeError(w, asJSON, http.StatusServiceUnavailable,
			jsonAnswer{Channel: a.Key.Channel, Referrer: a.Key.Referrer, Error: err.Error()})
	}
}

// jsonAnswer is the JSON form of every answer.
type jsonAnswer struct {
	Channel     string   `json:"channel"`
	Referrer    string   `json:"referrer"`
	Status      string   `json:"status,omitempty"`
	CheckedAt   string   `json:"checked_at,omitempty"`
	Stale       bool     `json:"stale"`
	Fallback    bool     `json:"fallback,omitempty"`
	Reason      string   `json:"reason,omitempty"`
	Error       string   `json:"error,omitempty"`
	RobinStatus int      `json:"robin_status,omitempty"`
	Channels    []string `json:"channels,omitempty"`
}

const checkedAtLayout = "2006-01-02T15:04:05.000Z07:00"

func checkedAt(a Answer) string {
	if a.CheckedAt.IsZero() {
		return ""
	}
	return a.CheckedAt.UTC().Format(checkedAtLayout)
}

// setAge sets Age and X-Presence-Stale for an answer of ROBIN's, or
// X-Presence-Fallback for a fallback.
func setAge(h http.Header, a Answer) {
	if a.Fallback {
		h[HeaderFallback] = hdrTrue
		return
	}
	if a.CheckedAt.IsZero() {
		return
	}
	h["Age"] = []string{strconv.Itoa(int(max(time.Since(a.CheckedAt), 0) / time.Second))}
	if a.Stale {
		h[HeaderStale] = hdrTrue
	} else {
		h[HeaderStale] = hdrFalse
	}
}

func writeAnswer(w http.ResponseWriter, asJSON bool, a Answer) {
	h := w.Header()
	setAge(h, a)
	status := "Offline"
	if a.Online {
		status = "Online"
	}
	if asJSON {
		j := jsonAnswer{Channel: a.Key.Channel, Referrer: a.Key.Referrer, Status: status, CheckedAt: checkedAt(a),
			Stale: a.Stale, Fallback: a.Fallback, Reason: a.Reason}
		writeJSON(w, http.StatusOK, j)
		return
	}
	h["Content-Type"] = hdrText
	w.WriteHeader(http.StatusOK)
	if a.Online {
		_, _ = w.Write(bodyOnline)
	} else {
		_, _ = w.Write(bodyOffln)
	}
}

func writeError(w http.ResponseWriter, asJSON bool, status int, j jsonAnswer) {
	if asJSON {
		writeJSON(w, status, j)
		return
	}
	h := w.Header()
	h["Content-Type"] = hdrText
	h["X-Content-Type-Options"] = []string{"nosniff"}
	w.WriteHeader(status)
	_, _ = fmt.Fprintln(w, j.Error)
}

func writeJSON(w http.ResponseWriter, status int, j jsonAnswer) {
	b, err := json.Marshal(j)
	if err != nil {
		// Only strings, booleans and numbers: Marshal cannot fail.
		panic(err)
	}
	w.Header()["Content-Type"] = hdrJSON
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// params are a look-up's query parameters.
type params struct {
	channel, referrer, format string
}

// parseQuery reads channel (or Channel), referrer and format from a raw
// query, the first value of each winning. It accepts and rejects exactly
// what url.ParseQuery does, and also rejects more than maxQueryParams
// parameters; it does not allocate unless a value is escaped.
func parseQuery(raw string) (params, error) {
	var (
		p                     params
		err                   error
		gotCh, gotCap, gotRef bool
		gotFmt                bool
		capChannel            string
	)
	if strings.Count(raw, "&") >= maxQueryParams {
		return p, fmt.Errorf("more than %d query parameters", maxQueryParams)
	}
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		if strings.Contains(kv, ";") {
			err = errors.New("invalid semicolon separator in query")
			continue
		}
		if kv == "" {
			continue
		}
		k, v, _ := strings.Cut(kv, "=")
		k, err1 := unescape(k)
		if err1 != nil {
			if err == nil {
				err = err1
			}
			continue
		}
		v, err1 = unescape(v)
		if err1 != nil {
			if err == nil {
				err = err1
			}
			continue
		}
		switch {
		case k == "channel" && !gotCh:
			p.channel, gotCh = v, true
		case k == "Channel" && !gotCap:
			capChannel, gotCap = v, true
		case k == "referrer" && !gotRef:
			p.referrer, gotRef = v, true
		case k == "format" && !gotFmt:
			p.format, gotFmt = v, true
		}
	}
	if !gotCh {
		p.channel = capChannel
	}
	return p, err
}

// unescape is url.QueryUnescape without the allocation for the usual value
// that needs none.
func unescape(s string) (string, error) {
	if !strings.ContainsAny(s, "%+") {
		return s, nil
	}
	return url.QueryUnescape(s)
}

// wantsJSON reports whether an Accept header prefers application/json to
// text/plain: the most specific range matching each decides its quality,
// and a tie goes to text.
func wantsJSON(accept string) bool {
	if accept == "" {
		return false
	}
	var jsonQ, textQ float64
	var jsonSpec, textSpec int
	for part := range strings.SplitSeq(accept, ",") {
		mt, ps, _ := strings.Cut(part, ";")
		mt = strings.ToLower(strings.TrimSpace(mt))
		q := 1.0
		for param := range strings.SplitSeq(ps, ";") {
			name, val, ok := strings.Cut(param, "=")
			if ok && strings.EqualFold(strings.TrimSpace(name), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil && f >= 0 && f <= 1 {
					q = f
				}
			}
		}
		js, ts := 0, 0
		switch mt {
		case "application/json":
			js = 3
		case "application/*":
			js = 2
		case "text/plain":
			ts = 3
		case "text/*":
			ts = 2
		case "*/*":
			js, ts = 1, 1
		}
		if js > jsonSpec {
			jsonSpec, jsonQ = js, q
		}
		if ts > textSpec {
			textSpec, textQ = ts, q
		}
	}
	return jsonSpec > 0 && jsonQ > 0 && (textSpec == 0 || jsonQ > textQ)
}
