package bridge

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// edgeStats is the public listener's connection counts.
func (tb *testBridge) edgeStats() connStats { return tb.edge.servers[0].conns.stats() }

// timedRequest sends req on a connection of its own and returns the
// status and how long the answer took. A generous client timeout: the 1 s
// goal is logged, not asserted, so a loaded machine cannot make it flake.
func timedRequest(t *testing.T, client *http.Client, req *http.Request) (int, time.Duration) {
	t.Helper()
	start := time.Now()
	resp, err := client.Do(req)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("%s %s: no answer after %s: %v", req.Method, req.URL.Path, took, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, took
}

func freshClient() *http.Client {
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
}

func webhookRequest(t *testing.T, url, token, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/v1/webhooks/generic", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return req
}

// TestHTTPHeldOpenStillAnswers: 1 100 connections without a token that sit
// idle, trickle their headers or trickle a body do not keep /healthz or a
// webhook with a token from being answered, and the server never holds more
// than HTTP_MAX_CONNS of them (plus the loopback reserve).
func TestHTTPHeldOpenStillAnswers(t *testing.T) {
	n, maxConns := 1100, 512
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		// Both ends live in this process, and the journal needs files too.
		if need := uint64(n + maxConns + healthReserve + 400); lim.Cur < need {
			n = max(int(lim.Cur)-400, 60) * 2 / 3
			maxConns = n / 2
			t.Logf("open file limit %d is below the %d this test needs: %d connections against HTTP_MAX_CONNS=%d instead", lim.Cur, need, n, maxConns)
		}
	}
	attacks := []struct {
		name, first, trickle string
		// released: the server lets go of every attacker at once.
		released bool
	}{
		{name: "idle"},
		{name: "slow headers", first: "POST /v1/webhooks/generic HTTP/1.1\r\nHost: bridge\r\n", trickle: "X-Slow: 1\r\n"},
		{
			name:     "slow body",
			first:    "POST /v1/webhooks/generic HTTP/1.1\r\nHost: bridge\r\nContent-Type: application/json\r\nContent-Length: 4000\r\n\r\n{",
			trickle:  " ",
			released: true,
		},
	}
	for i, a := range attacks {
		t.Run(a.name, func(t *testing.T) {
			// A read timeout longer than the waits below: only closing
			// refused connections at once can release them in time.
			tb := startBridge(t, fmt.Sprintf("HTTP_MAX_CONNS=%d", maxConns), "HTTP_READ_TIMEOUT=2m")
			conns := openConns(t, tb.Addr(), n, a.first)
			eventually(t, "the server accepted every connection", func() bool { return tb.edgeStats().accepted >= n })
			if a.trickle != "" {
				trickle(t, conns, a.trickle)
			}

			status, took := timedRequest(t, freshClient(), must(http.NewRequest(http.MethodGet, tb.URL+"/healthz", nil)))
			if status != http.StatusOK {
				t.Fatalf("/healthz: %d", status)
			}
			t.Logf("/healthz answered in %s with %d connections held", took, n)
			status, took = timedRequest(t, freshClient(), webhookRequest(t, tb.URL, tb.Token, generic(fmt.Sprintf("held%d", i), "ringing", "201")))
			if status != http.StatusAccepted {
				t.Fatalf("webhook with a token: %d", status)
			}
			t.Logf("webhook answered in %s with %d connections held", took, n)

			if st := tb.edgeStats(); st.peak > maxConns+healthReserve {
				t.Fatalf("the server held %d connections at once; the cap is %d (+%d for health)", st.peak, maxConns, healthReserve)
			}
			if a.released {
				// Refused before their bodies: each is answered and closed,
				// not read on for HTTP_READ_TIMEOUT.
				eventually(t, "the server closed every refused connection", func() bool { return tb.edgeStats().open == 0 })
			}
		})
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// openConns dials n connections to addr, each sending first; they close
// when the test ends. Write errors are ignored: the server may have closed
// the connection to make room.
func openConns(t *testing.T, addr string, n int, first string) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	next := make(chan int)
	for range 16 {
		wg.Go(func() {
			for i := range next {
				c, err := net.DialTimeout("tcp", addr, 10*time.Second)
				if err != nil {
					errs <- err
					continue
				}
				if first != "" {
					_, _ = io.WriteString(c, first)
				}
				conns[i] = c
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	close(errs)
	for err := range errs {
		t.Fatalf("dial: %v", err)
	}
	return conns
}

// trickle writes s to every connection every 100 ms until the test ends, as
// a slow client does.
func trickle(t *testing.T, conns []net.Conn, s string) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, c := range conns {
				c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
				_, _ = io.WriteString(c, s)
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
}

// TestHTTPHealthReserve: when every connection is busy in a handler, health
// checks from loopback are still answered on the reserve, and nothing else
// is served there.
func TestHTTPHealthReserve(t *testing.T) {
	tb := startBridge(t, "HTTP_MAX_CONNS=2", "HTTP_READ_TIMEOUT=5m")
	// Two webhooks with a token whose bodies never come: both sit in the
	// guard's read of the body.
	slow := openConns(t, tb.Addr(), 2, "POST /v1/webhooks/generic HTTP/1.1\r\nHost: bridge\r\nAuthorization: Bearer "+tb.Token+
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
	eventually(t, "both connections busy", func() bool { return tb.edgeStats().busy == 2 })

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := freshClient().Get(tb.URL + path)
		if err != nil {
			t.Fatalf("%s at the cap: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !resp.Close {
			t.Fatalf("%s at the cap: %d (connection close %v), want 200 and the connection closed", path, resp.StatusCode, resp.Close)
		}
	}
	if st, _ := timedRequest(t, freshClient(), webhookRequest(t, tb.URL, tb.Token, generic("r1", "ringing", "201"))); st != http.StatusServiceUnavailable {
		t.Fatalf("webhook on a health-only connection: %d, want 503", st)
	}
	if st := tb.edgeStats(); st.peak > 2+healthReserve {
		t.Fatalf("peak %d connections", st.peak)
	}

	for _, c := range slow {
		c.Close()
	}
	eventually(t, "the busy connections closed", func() bool { return tb.edgeStats().open == 0 })
	if st, _ := timedRequest(t, freshClient(), webhookRequest(t, tb.URL, tb.Token, generic("r1", "ringing", "201"))); st != http.StatusAccepted {
		t.Fatalf("webhook after the cap: %d", st)
	}
}

// TestHTTPTimeouts: a body that stops coming is given up after
// HTTP_READ_TIMEOUT, and an idle keep-alive connection is closed after
// HTTP_IDLE_TIMEOUT.
func TestHTTPTimeouts(t *testing.T) {
	tb := startBridge(t, "HTTP_READ_TIMEOUT=1s", "HTTP_IDLE_TIMEOUT=1s")

	c := openConns(t, tb.Addr(), 1, "POST /v1/webhooks/generic HTTP/1.1\r\nHost: bridge\r\nAuthorization: Bearer "+tb.Token+
		"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")[0]
	start := time.Now()
	if err := readUntilClosed(c); err != nil {
		t.Fatalf("a stalled body: %v", err)
	}
	t.Logf("a stalled body was given up after %s (HTTP_READ_TIMEOUT=1s)", time.Since(start))

	c = openConns(t, tb.Addr(), 1, "GET /healthz HTTP/1.1\r\nHost: bridge\r\n\r\n")[0]
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("keep-alive /healthz: %v %+v", err, resp)
	}
	resp.Body.Close()
	start = time.Now()
	if err := readUntilClosed(c); err != nil {
		t.Fatalf("an idle keep-alive connection: %v", err)
	}
	t.Logf("an idle keep-alive connection was closed after %s (HTTP_IDLE_TIMEOUT=1s)", time.Since(start))
}

// readUntilClosed reads c until the server closes it; an error when that
// takes more than 30 s.
func readUntilClosed(c net.Conn) error {
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("the server kept the connection open for 30 s")
	}
	return nil
}

// selfSigned writes a self-signed certificate for 127.0.0.1 named cn to
// certFile and keyFile, and returns it.
func selfSigned(t *testing.T, cn, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return must(x509.ParseCertificate(der))
}

// TestHTTPSReloadsCertificate: TLS_CERT_FILE and TLS_KEY_FILE serve HTTPS
// on HTTP_ADDR and ADMIN_ADDR; a reload swaps the certificate for new
// connections, and a broken pair keeps the one that works.
func TestHTTPSReloadsCertificate(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := selfSigned(t, "first", certFile, keyFile)
	tb := startBridge(t, "TLS_CERT_FILE="+certFile, "TLS_KEY_FILE="+keyFile, "ADMIN_ADDR=127.0.0.1:0")

	roots := x509.NewCertPool()
	roots.AddCert(first)
	served := func(addr, path string) string {
		t.Helper()
		client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: roots}, DisableKeepAlives: true, ForceAttemptHTTP2: true,
		}}
		resp, err := client.Get("https://" + addr + path)
		if err != nil {
			t.Fatalf("GET https://%s%s: %v", addr, path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" {
			t.Fatalf("GET %s: %d over %s", path, resp.StatusCode, resp.Proto)
		}
		return resp.TLS.PeerCertificates[0].Subject.CommonName
	}
	if cn := served(tb.Addr(), "/healthz"); cn != "first" {
		t.Fatalf("certificate %q, want first", cn)
	}
	if cn := served(tb.AdminAddr(), "/metrics"); cn != "first" {
		t.Fatalf("admin certificate %q, want first", cn)
	}
	// Plain HTTP on the HTTPS port gets no answer.
	if resp, err := freshClient().Get(tb.URL + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP answered on the HTTPS port")
		}
	}

	second := selfSigned(t, "second", certFile, keyFile)
	roots.AddCert(second)
	if err := tb.ReloadTLS(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if cn := served(tb.Addr(), "/healthz"); cn != "second" {
		t.Fatalf("after the reload: certificate %q, want second", cn)
	}

	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tb.ReloadTLS(); err == nil || !strings.Contains(err.Error(), "TLS_CERT_FILE") {
		t.Fatalf("reload of a broken file: %v, want an error naming TLS_CERT_FILE", err)
	}
	if cn := served(tb.Addr(), "/healthz"); cn != "second" {
		t.Fatalf("after a failed reload: certificate %q, want second (kept)", cn)
	}
}

// TestAdminListener: without ADMIN_ADDR, /metrics and the admin endpoints
// are on HTTP_ADDR; with it, only there, and health is answered on both.
func TestAdminListener(t *testing.T) {
	get := func(t *testing.T, url string) int {
		t.Helper()
		req := must(http.NewRequest(http.MethodGet, url, nil))
		req.Header.Set("Authorization", "Bearer adm")
		st, _ := timedRequest(t, freshClient(), req)
		return st
	}
	t.Run("shared", func(t *testing.T) {
		tb := startBridge(t, "ADMIN_TOKEN=adm")
		if tb.AdminAddr() != "" {
			t.Fatalf("admin address %q without ADMIN_ADDR", tb.AdminAddr())
		}
		for path, want := range map[string]int{"/metrics": 200, "/v1/deadletters": 200, "/healthz": 200, "/readyz": 200} {
			if st := get(t, tb.URL+path); st != want {
				t.Errorf("GET %s: %d, want %d", path, st, want)
			}
		}
	})
	t.Run("own port", func(t *testing.T) {
		tb := startBridge(t, "ADMIN_TOKEN=adm", "ADMIN_ADDR=127.0.0.1:0")
		admin := "http://" + tb.AdminAddr()
		for url, want := range map[string]int{
			tb.URL + "/metrics": 404, tb.URL + "/v1/deadletters": 404, tb.URL + "/v1/signals/recent": 404,
			tb.URL + "/healthz": 200, tb.URL + "/readyz": 200,
			admin + "/metrics": 200, admin + "/v1/deadletters": 200, admin + "/v1/signals/recent": 200,
			admin + "/healthz": 200, admin + "/readyz": 200, admin + "/v1/status": 200, admin + "/v1/presence?channel=chat": 404,
		} {
			if st := get(t, url); st != want {
				t.Errorf("GET %s: %d, want %d", url, st, want)
			}
		}
		if st, _ := timedRequest(t, freshClient(), webhookRequest(t, admin, tb.Token, generic("a1", "ringing", "201"))); st != http.StatusNotFound {
			t.Errorf("webhook on the admin port: %d, want 404", st)
		}
		if st, _ := timedRequest(t, freshClient(), webhookRequest(t, tb.URL, tb.Token, generic("a1", "ringing", "201"))); st != http.StatusAccepted {
			t.Errorf("webhook on the public port: %d", st)
		}
	})
}

func TestConfigHTTP(t *testing.T) {
	base := []string{"ROBIN_API_KEY=key-1234", "WEBHOOK_TOKEN=tok"}
	cfg, err := LoadConfig(base)
	if err != nil {
		t.Fatal(err)
	}
	if h := cfg.HTTP; h.MaxConns != 512 || h.ReadTimeout != 30*time.Second || h.WriteTimeout != time.Minute ||
		h.IdleTimeout != time.Minute || h.MaxHeaderBytes != 32<<10 || h.ProxyHeader != "X-Forwarded-For" || h.AdminAddr != "" {
		t.Fatalf("defaults: %+v", h)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	selfSigned(t, "ok", cert, key)
	if _, err := LoadConfig(append(base, "TLS_CERT_FILE="+cert, "TLS_KEY_FILE="+key, "TRUSTED_PROXIES=10.0.0.0/8,192.0.2.1", "TRUSTED_PROXY_HEADER=forwarded", "ADMIN_ADDR=127.0.0.1:9090")); err != nil {
		t.Fatalf("a good configuration: %v", err)
	}
	for _, tc := range []struct {
		env  []string
		want string
	}{
		{[]string{"TLS_CERT_FILE=" + cert}, "TLS_CERT_FILE and TLS_KEY_FILE go together"},
		{[]string{"TLS_KEY_FILE=" + key}, "TLS_CERT_FILE and TLS_KEY_FILE go together"},
		{[]string{"TLS_CERT_FILE=" + filepath.Join(dir, "none.pem"), "TLS_KEY_FILE=" + key}, "TLS_CERT_FILE/TLS_KEY_FILE"},
		{[]string{"TLS_CERT_FILE=" + key, "TLS_KEY_FILE=" + cert}, "TLS_CERT_FILE/TLS_KEY_FILE"},
		{[]string{"TRUSTED_PROXIES=10.0.0.0/33"}, "TRUSTED_PROXIES"},
		{[]string{"TRUSTED_PROXY_HEADER=X-Real-IP"}, "TRUSTED_PROXY_HEADER"},
		{[]string{"ADMIN_ADDR=9090"}, "ADMIN_ADDR"},
		{[]string{"HTTP_ADDR=:8080", "ADMIN_ADDR=:8080"}, "ADMIN_ADDR"},
		{[]string{"HTTP_MAX_CONNS=0"}, "HTTP_MAX_CONNS"},
		{[]string{"HTTP_READ_TIMEOUT=0s"}, "HTTP_READ_TIMEOUT"},
		{[]string{"HTTP_MAX_HEADER_BYTES=100"}, "HTTP_MAX_HEADER_BYTES"},
	} {
		_, err := LoadConfig(append(base, tc.env...))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error with %q", tc.env, err, tc.want)
		} else if n := strings.Count(err.Error(), "\n") + 1; n != 1 {
			t.Errorf("%v: %d errors, want one:\n%v", tc.env, n, err)
		}
	}
}
