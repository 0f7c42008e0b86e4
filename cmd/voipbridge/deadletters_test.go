package main

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/bridge"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// TestDeadlettersCommand lists and replays a dead letter through a running
// bridge, as an operator would.
func TestDeadlettersCommand(t *testing.T) {
	fake := robintest.NewServer(robintest.Options{APIKey: "cli-test-key"})
	defer fake.Close()
	fake.SetFault(robintest.Fault{Status: 406, Body: "unknown extension", Count: 1})
	cfg, err := bridge.LoadConfig([]string{
		"HTTP_ADDR=127.0.0.1:0", "DATA_DIR=" + t.TempDir(), "ROBIN_API_URL=" + fake.URL(),
		"ROBIN_PRESENCE_URL=" + fake.PresenceURL(), "ROBIN_API_KEY=cli-test-key", "WEBHOOK_TOKEN=w", "ADMIN_TOKEN=adm",
		"ROBIN_RATE_LIMITS=100/1s",
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := bridge.New(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- b.Run(ctx) }()
	defer func() { cancel(); <-done }()

	req, _ := http.NewRequest("POST", "http://"+b.Addr()+"/v1/webhooks/generic", strings.NewReader(`{"call_id":"x1","event":"answered","from":"0612345678","extension":"299"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer w")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 202 {
		t.Fatalf("webhook: %v %v", err, resp)
	}
	resp.Body.Close()

	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(append([]string{"deadletters", "--url", "http://" + b.Addr()}, args...), []string{"ADMIN_TOKEN=adm"}, &out, &errOut)
		return code, out.String(), errOut.String()
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, out, errOut := cli("list")
		if code != 0 {
			t.Fatalf("list: %d %s", code, errOut)
		}
		if strings.Contains(out, "x1") {
			if !strings.Contains(out, "406") || !strings.Contains(out, "unknown extension") || !strings.Contains(out, "Answered") || !strings.Contains(out, "robin") {
				t.Fatalf("list output lacks the details:\n%s", out)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter listed: %s", out)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, out, errOut := cli("replay"); code != 0 || !strings.Contains(out, "replayed 1") {
		t.Fatalf("replay: %d %s %s", code, out, errOut)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer wcancel()
	if _, err := fake.WaitEvents(wctx, 1); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := cli("list"); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Fatalf("after replay: %d %s", code, out)
	}
	// Wrong token and no token are clear errors.
	var out, errOut bytes.Buffer
	if code := run([]string{"deadletters", "--url", "http://" + b.Addr(), "list"}, []string{"ADMIN_TOKEN=nope"}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "401") {
		t.Fatalf("wrong token: %d %s", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"deadletters", "list"}, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "ADMIN_TOKEN") {
		t.Fatalf("no token: %d %s", code, errOut.String())
	}
}
