// Package routetest has fakes of the services routing look-ups ask, built
// from their public documentation (shared/reference and the research notes):
// a shop's customer endpoint (ROBIN's dynamic integration), ROBIN's
// conversation retrieval and Chatwoot's account API (contact search and
// creation, conversations, private notes, assignments, agents, for routing
// and the Chatwoot call log), with Chatwoot's substring search, '+'
// decoding, missing meta.assignee, 422 on a number that is not E.164 and
// rack-attack throttle. Each serves on a loopback listener (Start) or in
// process (Transport), which keeps a testing/synctest bubble's clock going.
package routetest

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"time"
)

// Faults are what a fake plays instead of answering.
type Faults struct {
	mu     sync.Mutex
	delay  time.Duration
	status int
	reqs   map[string][]time.Time
}

// SetDelay makes every answer wait d first (or until the client gives up).
func (f *Faults) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// SetStatus makes every request answer status (0 restores answers), with
// an HTML body as a proxy in front of a failing server would.
func (f *Faults) SetStatus(status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = status
}

// Requests returns how many requests reached endpoint ("" for all).
func (f *Faults) Requests(endpoint string) int {
	return len(f.Times(endpoint))
}

// Times returns when the requests to endpoint ("" for all) arrived.
func (f *Faults) Times(endpoint string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if endpoint != "" {
		return append([]time.Time(nil), f.reqs[endpoint]...)
	}
	var all []time.Time
	for _, ts := range f.reqs {
		all = append(all, ts...)
	}
	return all
}

// arrive records a request to endpoint and plays the faults; it reports
// false when the request was answered (or abandoned) here.
func (f *Faults) arrive(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	f.note(endpoint)
	f.mu.Lock()
	delay, status := f.delay, f.status
	f.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return false
		}
	}
	if status != 0 {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, "<html><body><h1>"+strconv.Itoa(status)+" "+http.StatusText(status)+"</h1></body></html>")
		return false
	}
	return true
}

// note records a request to endpoint.
func (f *Faults) note(endpoint string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.reqs == nil {
		f.reqs = map[string][]time.Time{}
	}
	f.reqs[endpoint] = append(f.reqs[endpoint], time.Now())
}

// Start serves h on a loopback port until the test ends, and returns its
// base URL.
func Start(tb interface{ Cleanup(func()) }, h http.Handler) string {
	s := httptest.NewServer(h)
	tb.Cleanup(s.Close)
	return s.URL
}

// Transport hands every request to h in process, whatever the URL's host.
// A request whose context ends before h answers fails with the context's
// error, as on a network.
func Transport(h http.Handler) http.RoundTripper { return transport{h} }

// Client returns an http.Client using Transport(h).
func Client(h http.Handler) *http.Client { return &http.Client{Transport: Transport(h)} }

type transport struct{ h http.Handler }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	var body []byte
	if req.Body != nil {
		body, _ = io.ReadAll(req.Body)
		_ = req.Body.Close()
	}
	sreq := req.Clone(req.Context())
	sreq.Body = io.NopCloser(bytes.NewReader(body))
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "127.0.0.1:1"
	sreq.Host = req.URL.Host
	rec := httptest.NewRecorder()
	done := make(chan struct{})
	go func() {
		defer close(done)
		t.h.ServeHTTP(rec, sreq)
	}()
	select {
	case <-done:
	case <-req.Context().Done():
		<-done
		return nil, context.Cause(req.Context())
	}
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}
