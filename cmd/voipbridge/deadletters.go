package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/caarlos0/env/v11"
)

// deadletters talks to a running bridge's admin API: the journal belongs to
// that process, so the command line goes through it.
func deadletters(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("deadletters", flag.ContinueOnError)
	fs.SetOutput(stderr)
	m := env.ToMap(environ)
	url := fs.String("url", defaultAdminURL(m["HTTP_ADDR"]), "the bridge's HTTP address")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: voipbridge deadletters [--url http://host:port] list | replay [ID]")
		fmt.Fprintln(stderr, "ADMIN_TOKEN (or ADMIN_TOKEN_FILE) must hold the bridge's admin token.")
		fs.PrintDefaults()
	}
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	token := m["ADMIN_TOKEN"]
	if p := m["ADMIN_TOKEN_FILE"]; token == "" && p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			fmt.Fprintln(stderr, "voipbridge deadletters: ADMIN_TOKEN_FILE:", err)
			return 2
		}
		token = strings.TrimRight(string(b), "\r\n")
	}
	if token == "" {
		fmt.Fprintln(stderr, "voipbridge deadletters: ADMIN_TOKEN is not set (the bridge's admin endpoints need it)")
		return 2
	}
	var method, path string
	switch {
	case len(rest) == 1 && rest[0] == "list":
		method, path = http.MethodGet, "/v1/deadletters"
	case len(rest) == 1 && rest[0] == "replay":
		method, path = http.MethodPost, "/v1/deadletters/replay"
	case len(rest) == 2 && rest[0] == "replay":
		method, path = http.MethodPost, "/v1/deadletters/"+rest[1]+"/replay"
	default:
		fs.Usage()
		return 2
	}
	req, err := http.NewRequest(method, strings.TrimRight(*url, "/")+path, nil)
	if err != nil {
		fmt.Fprintln(stderr, "voipbridge deadletters:", err)
		return 2
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintln(stderr, "voipbridge deadletters: is the bridge running?", err)
		return 1
	}
	defer resp.Body.Close()
	var body map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		fmt.Fprintf(stderr, "voipbridge deadletters: %s (no JSON answer; are the admin endpoints on? they need ADMIN_TOKEN on the bridge)\n", resp.Status)
		return 1
	}
	if resp.StatusCode != http.StatusOK {
		var msg string
		_ = json.Unmarshal(body["error"], &msg)
		fmt.Fprintf(stderr, "voipbridge deadletters: %s: %s\n", resp.Status, msg)
		return 1
	}
	if rest[0] == "replay" {
		var n int
		_ = json.Unmarshal(body["replayed"], &n)
		fmt.Fprintf(stdout, "replayed %d dead letter(s); they are queued for delivery again\n", n)
		return 0
	}
	var list []struct {
		ID     uint64 `json:"id"`
		CallID string `json:"call_id"`
		Event  struct {
			Type string `json:"EventType"`
			Ext  string `json:"PhoneExtension"`
		} `json:"event"`
		Sink   string `json:"sink"`
		Status int    `json:"status"`
		Reason string `json:"reason"`
		Time   string `json:"time"`
		Body   string `json:"body"`
	}
	_ = json.Unmarshal(body["deadletters"], &list)
	if len(list) == 0 {
		fmt.Fprintln(stdout, "no dead letters")
		return 0
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTIME\tSINK\tCALL\tEVENT\tEXT\tSTATUS\tREASON\tANSWER")
	for _, d := range list {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.Time, d.Sink, d.CallID, d.Event.Type, d.Event.Ext, d.Status, d.Reason, oneLine(d.Body, 60))
	}
	tw.Flush()
	return 0
}

func defaultAdminURL(addr string) string {
	if addr == "" {
		addr = ":8080"
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n] + "…"
	}
	return s
}
