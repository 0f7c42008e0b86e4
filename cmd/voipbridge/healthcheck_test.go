package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestHealthcheck: `voipbridge healthcheck` asks /healthz on HTTP_ADDR of
// this machine and exits 0 only for a 200, so a container whose bridge is
// down, failing or hanging is reported unhealthy within the timeout.
func TestHealthcheck(t *testing.T) {
	release := make(chan struct{})
	var (
		mu    sync.Mutex
		paths []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		switch r.URL.Path {
		case "/healthz":
			w.Write([]byte("ok\n"))
		case "/failing/healthz":
			http.Error(w, "down", http.StatusServiceUnavailable)
		case "/hanging/healthz":
			<-release
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // before Close, which waits for the hanging request
	_, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	closed := httptest.NewServer(http.NotFoundHandler())
	closedAddr := closed.Listener.Addr().String()
	closed.Close()

	for _, tt := range []struct {
		name    string
		args    []string
		environ []string
		code    int
		out     string // in stdout or stderr
	}{
		{"wildcard HTTP_ADDR asks loopback", []string{"healthcheck"}, []string{"HTTP_ADDR=:" + port}, 0, "200 OK"},
		{"host in HTTP_ADDR", []string{"healthcheck"}, []string{"HTTP_ADDR=127.0.0.1:" + port}, 0, "http://127.0.0.1:" + port + "/healthz"},
		{"503", []string{"healthcheck", "--url", srv.URL + "/failing/healthz"}, nil, 1, "503"},
		{"404", []string{"healthcheck", "--url", srv.URL + "/elsewhere"}, nil, 1, "404"},
		{"nothing listening", []string{"healthcheck"}, []string{"HTTP_ADDR=" + closedAddr}, 1, "voipbridge healthcheck:"},
		{"hanging", []string{"healthcheck", "--timeout", "200ms", "--url", srv.URL + "/hanging/healthz"}, nil, 1, "deadline exceeded"},
		{"help", []string{"healthcheck", "-h"}, nil, 0, "usage: voipbridge healthcheck"},
		{"stray argument", []string{"healthcheck", "now"}, nil, 2, `unexpected argument "now"`},
		{"unknown flag", []string{"healthcheck", "--bogus"}, nil, 2, "not defined: -bogus"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			start := time.Now()
			code := run(tt.args, tt.environ, &out, &errOut)
			if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.out) {
				t.Errorf("%v: exit %d, want %d with %q:\n%s%s", tt.args, code, tt.code, tt.out, out.String(), errOut.String())
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s: a health check must give up quickly", d)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	if len(paths) == 0 || paths[0] != "/healthz" {
		t.Errorf("asked %v, want /healthz first", paths)
	}
}

// TestHealthcheckURL: the default URL follows HTTP_ADDR and TLS_CERT_FILE.
func TestHealthcheckURL(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{}, "http://127.0.0.1:8080/healthz"},
		{map[string]string{"HTTP_ADDR": "[::]:9000"}, "http://127.0.0.1:9000/healthz"},
		{map[string]string{"HTTP_ADDR": "10.1.2.3:8080"}, "http://10.1.2.3:8080/healthz"},
		{map[string]string{"HTTP_ADDR": ":8443", "TLS_CERT_FILE": "/run/secrets/cert.pem"}, "https://127.0.0.1:8443/healthz"},
	} {
		if got := healthURL(tt.env); got != tt.want {
			t.Errorf("%v: %s, want %s", tt.env, got, tt.want)
		}
	}
}
