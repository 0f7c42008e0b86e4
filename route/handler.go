package route

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// jsonAnswer is the JSON form of every answer.
type jsonAnswer struct {
	Extension    string `json:"extension,omitempty"`
	PBXID        string `json:"pbx_id,omitempty"`
	Agent        string `json:"agent,omitempty"`
	Via          string `json:"via,omitempty"`
	Conversation string `json:"conversation,omitempty"`
	AgeS         *int64 `json:"age_s,omitempty"`
	Caller       string `json:"caller,omitempty"`
	DID          string `json:"did,omitempty"`
	Stale        bool   `json:"stale,omitempty"`
	Cached       bool   `json:"cached,omitempty"`
	Error        string `json:"error,omitempty"`
	Reason       string `json:"reason,omitempty"`
}

// ServeHTTP answers GET /v1/route?caller=<number>[&did=<number>][&format=text].
//
// With an agent: 200 and JSON {"extension","agent","via","conversation",
// "age_s","caller"} (extension: the agent's phone extension, the
// directory's robin_extension; "pbx_id" too where the directory's pbx_id
// differs; age_s: seconds since the agent last had the caller, or
// since the conversation's last activity; "stale": true when served while
// the resolvers fail), or with format=text the bare extension as
// text/plain. Without one: 404, JSON {"error","reason"} or an empty text
// body, so that a call flow that reads the body as the extension finds
// nothing and falls back to its queue. A missing caller is 400 (an empty
// body in text too). did, the number the caller dialled, is normalised and
// echoed. Answers are never cached by HTTP caches.
func (r *Router) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	h := w.Header()
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed: use GET", http.StatusMethodNotAllowed)
		return
	}
	h.Set("Cache-Control", "no-store")
	q, err := url.ParseQuery(plusAsPlus(req.URL.RawQuery))
	text := q.Get("format") == "text"
	switch {
	case err != nil:
		r.write(w, text, http.StatusBadRequest, jsonAnswer{Error: "bad query: " + err.Error()})
		return
	case q.Get("format") != "" && !text && q.Get("format") != "json":
		r.write(w, text, http.StatusBadRequest, jsonAnswer{Error: "format: want json or text"})
		return
	case strings.TrimSpace(q.Get("caller")) == "":
		r.write(w, text, http.StatusBadRequest, jsonAnswer{Error: "caller is required: /v1/route?caller=<number>"})
		return
	}
	a := r.Lookup(req.Context(), q.Get("caller"))
	j := jsonAnswer{Caller: a.Caller}
	if did := strings.TrimSpace(q.Get("did")); did != "" {
		j.DID = did
		if n, _ := r.Caller(did); n != "" {
			j.DID = n
		}
	}
	if a.Extension == "" {
		j.Error, j.Reason = "no preferred agent", a.Reason
		r.write(w, text, http.StatusNotFound, j)
		return
	}
	j.Extension, j.Agent, j.Via, j.Conversation = a.Extension, a.Agent, a.Via, a.Conversation
	if a.PBXID != a.Extension {
		j.PBXID = a.PBXID
	}
	j.Stale, j.Cached = a.Stale, a.Result == ResultCached
	if a.Stale {
		j.Reason = a.Reason
	}
	if !a.Since.IsZero() {
		age := int64(max(time.Since(a.Since), 0) / time.Second)
		j.AgeS = &age
	}
	r.write(w, text, http.StatusOK, j)
}

func (r *Router) write(w http.ResponseWriter, text bool, status int, j jsonAnswer) {
	h := w.Header()
	if text {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		if j.Reason != "" || j.Error != "" {
			// Said in a header, never in the body, which a call flow
			// takes for the extension.
			h.Set("X-Route-Reason", strings.ToValidUTF8(strings.Join(nonEmpty(j.Error, j.Reason), ": "), ""))
		}
		w.WriteHeader(status)
		if status == http.StatusOK {
			_, _ = w.Write([]byte(j.Extension))
		}
		return
	}
	b, _ := json.Marshal(j)
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// plusAsPlus keeps a '+' that starts a caller or did value: PBXs send
// caller=+31612345678 unescaped, and form decoding would make it a space.
// A '+' elsewhere is the space of form encoding ("06+1234+5678").
func plusAsPlus(raw string) string {
	if !strings.Contains(raw, "=+") {
		return raw
	}
	parts := strings.Split(raw, "&")
	for i, p := range parts {
		if k, v, ok := strings.Cut(p, "="); ok && (k == "caller" || k == "did") && strings.HasPrefix(v, "+") {
			parts[i] = k + "=%2B" + v[1:]
		}
	}
	return strings.Join(parts, "&")
}
