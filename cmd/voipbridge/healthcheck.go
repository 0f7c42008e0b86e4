package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// healthcheck asks the bridge running on this machine whether it is up
// (GET /healthz on HTTP_ADDR) and exits 0 for a 200, 1 for anything else.
// It is the container image's HEALTHCHECK: the image has no curl or shell.
func healthcheck(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("healthcheck", flag.ContinueOnError)
	fs.SetOutput(stderr)
	m := env.ToMap(environ)
	url := fs.String("url", healthURL(m), "the URL to ask")
	timeout := fs.Duration("timeout", 3*time.Second, "give up after this long")
	fs.Usage = func() {
		fmt.Fprint(stdout, `usage: voipbridge healthcheck [--url URL] [--timeout 3s]

exits 0 when the bridge answers GET /healthz with 200, 1 otherwise

  --url URL        the URL to ask (default: /healthz on HTTP_ADDR of this machine)
  --timeout 3s     give up after this long
`)
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "voipbridge healthcheck: unexpected argument %q\n", rest[0])
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintln(stderr, "voipbridge healthcheck:", err)
		return 2
	}
	client := &http.Client{
		Transport: &http.Transport{
			// The bridge is on this machine: a proxy from the environment
			// would only stand in the way.
			Proxy: nil,
			// With TLS on HTTP_ADDR the certificate names the public host,
			// not the loopback address asked here; only the status counts.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "voipbridge healthcheck: %v\n", err)
		return 1
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "voipbridge healthcheck: %s answered %s\n", *url, resp.Status)
		return 1
	}
	fmt.Fprintf(stdout, "ok: %s answered %s\n", *url, resp.Status)
	return 0
}

// healthURL is /healthz on HTTP_ADDR as seen from this machine (a wildcard
// address becomes 127.0.0.1), over HTTPS when TLS_CERT_FILE is set.
func healthURL(m map[string]string) string {
	u := defaultAdminURL(m["HTTP_ADDR"]) + "/healthz"
	if m["TLS_CERT_FILE"] != "" {
		u = "https://" + strings.TrimPrefix(u, "http://")
	}
	return u
}
