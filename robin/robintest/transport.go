package robintest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"syscall"
)

// Transport returns an http.RoundTripper that hands every request straight to
// the server's handler, whatever the URL's host, without a socket. Faults look
// to the client as they would on a network: Reset as a connection reset,
// DropAck as a connection closed without an answer, Hang as no answer until
// the request's context ends; after Close, requests fail with connection
// refused. Inside a testing/synctest bubble this keeps the fake clock going.
func (s *Server) Transport() http.RoundTripper { return transport{s} }

// Client returns an http.Client that uses Transport.
func (s *Server) Client() *http.Client { return &http.Client{Transport: s.Transport()} }

type transport struct{ s *Server }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	s := t.s
	if req.Body != nil {
		defer req.Body.Close()
	}
	select {
	case <-s.done:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
	default:
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	sreq := req.Clone(req.Context())
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "127.0.0.1:1"
	sreq.Host = req.URL.Host
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	w := &memWriter{header: http.Header{}}
	s.ServeHTTP(w, sreq)
	switch {
	case w.aborted && w.reset:
		return nil, &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	case w.aborted:
		return nil, fmt.Errorf("robintest: connection closed without an answer: %w", io.EOF)
	}
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return &http.Response{
		Status:        strconv.Itoa(w.status) + " " + http.StatusText(w.status),
		StatusCode:    w.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        w.header,
		Body:          io.NopCloser(bytes.NewReader(w.body.Bytes())),
		ContentLength: int64(w.body.Len()),
		Request:       req,
	}, nil
}

// memWriter collects an answer in memory and implements aborter.
type memWriter struct {
	header         http.Header
	status         int
	body           bytes.Buffer
	aborted, reset bool
}

func (w *memWriter) Header() http.Header { return w.header }

func (w *memWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *memWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.body.Write(p)
}

func (w *memWriter) abort(reset bool) { w.aborted, w.reset = true, reset }
