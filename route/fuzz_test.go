package route

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzRouteQuery: any query string gets 200, 400 or 404 and, in text form,
// a body that is either empty or the extension.
func FuzzRouteQuery(f *testing.F) {
	for _, s := range []string{"caller=+31612345678", "caller=06+1234+5678&format=text", "caller=%2B31&did=+3185", "caller=anonymous",
		"format=text&caller=;", "caller=%zz", "caller=" + strings.Repeat("9", 300), "caller=sip:0612345678@pbx;user=phone"} {
		f.Add(s)
	}
	w := newWorld(f, loopback(f))
	r := w.router(f, Config{}, ViaHistory)
	f.Fuzz(func(t *testing.T, q string) {
		req := httptest.NewRequest(http.MethodGet, "/v1/route", nil)
		req.URL.RawQuery = q
		rec := httptest.NewRecorder()
		r.ServeHTTP(rec, req)
		switch rec.Code {
		case 200, 400, 404:
		default:
			t.Fatalf("status %d for %q", rec.Code, q)
		}
		if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/plain") {
			if rec.Code != 200 && rec.Body.Len() != 0 {
				t.Fatalf("text body %q with status %d", rec.Body, rec.Code)
			}
			return
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("invalid JSON %q", rec.Body)
		}
	})
}

// FuzzCustomers: the shop's answer, whatever it is, yields addresses or
// nothing, never a panic.
func FuzzCustomers(f *testing.F) {
	for _, s := range []string{`{"email_address":"a@b.example","phone_number":"+31612345678"}`, `[{"email_address":"x@y"}]`,
		`{"customers":[{"email_address":"c@d"}],"orders":[]}`, `null`, `"text"`, `[1,2]`, `{"email_address":7}`, ``} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, c := range customersOf(b) {
			if !utf8.ValidString(c.Email) && json.Valid(b) {
				t.Fatalf("invalid UTF-8 from valid JSON %q", b)
			}
		}
	})
}
