package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// robinEnv is a bridge's environment against fake, with the journal in a
// temporary directory.
func robinEnv(t *testing.T, fake *robintest.Server, extra ...string) []string {
	return append([]string{
		"DATA_DIR=" + t.TempDir(), "WEBHOOK_TOKEN=tok", "EXTENSIONS=201,202",
		"ROBIN_API_URL=" + fake.URL(), "ROBIN_PRESENCE_URL=" + fake.PresenceURL(),
		"ROBIN_API_KEY=secret-test-key",
	}, extra...)
}

// TestSendTestEvent: one labelled test call reaches ROBIN, Answered then
// Disconnected, for the first agent of the directory and the test number;
// ROBIN's answers are printed and the key is not.
func TestSendTestEvent(t *testing.T) {
	fake := robintest.NewServer(robintest.Options{APIKey: "secret-test-key", Extensions: []string{"201", "202"}})
	defer fake.Close()
	var out, errOut bytes.Buffer
	if code := run([]string{"send-test-event"}, robinEnv(t, fake), &out, &errOut); code != 0 {
		t.Fatalf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	got := fake.Events()
	if len(got) != 2 {
		t.Fatalf("ROBIN got %d events, want 2:\n%s", len(got), out.String())
	}
	id := got[0].Event.ID
	if !strings.HasPrefix(id, "voipbridge-test-") || got[1].Event.ID != id {
		t.Errorf("call ids %q and %q: want one id starting voipbridge-test-", id, got[1].Event.ID)
	}
	var types []string
	for _, r := range got {
		types = append(types, string(r.Event.Type))
		if r.Event.PhoneExtension != "201" || r.Event.PhoneNumber != "+442079460000" || r.Event.Direction != "Inbound" || r.OutOfOrder || r.Duplicate {
			t.Errorf("event %+v", r)
		}
	}
	if diff := cmp.Diff([]string{"Answered", "Disconnected"}, types); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	for _, want := range []string{
		"test call " + id + ": extension 201, caller +442079460000",
		"count in the quota record the bridge keeps there",
		"Answered     ROBIN answered 201 Created\n",
		"Disconnected ROBIN answered 201 Created\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the output does not say %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String()+errOut.String(), "secret-test-key") {
		t.Errorf("the output shows the API key:\n%s", out.String())
	}
}

// TestSendTestEventRefused: ROBIN's refusal is printed, nothing more is
// sent, and the exit code says it failed; a number as dialled is sent in
// E.164.
func TestSendTestEventRefused(t *testing.T) {
	fake := robintest.NewServer(robintest.Options{APIKey: "secret-test-key", Extensions: []string{"201"}})
	defer fake.Close()
	var out, errOut bytes.Buffer
	code := run([]string{"send-test-event", "--extension", "999", "--number", "0612345678"}, robinEnv(t, fake), &out, &errOut)
	if code != 1 || !strings.Contains(out.String(), "Answered     ROBIN answered 406 Not Acceptable\n") ||
		!strings.Contains(out.String(), "extension 999, caller +31612345678") {
		t.Errorf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	if strings.Contains(out.String(), "Disconnected") {
		t.Errorf("a Disconnected went after the refused Answered:\n%s", out.String())
	}
	if n := len(fake.Requests()); n != 1 {
		t.Errorf("ROBIN got %d requests, want 1", n)
	}
}

// TestCheckOnlineCommand: check --online prints a line per check and exits
// 0 when all pass, 1 when one fails; config errors stay exit 2.
func TestCheckOnlineCommand(t *testing.T) {
	fake := robintest.NewServer(robintest.Options{APIKey: "secret-test-key"})
	defer fake.Close()
	var out, errOut bytes.Buffer
	if code := run([]string{"check", "--online"}, robinEnv(t, fake), &out, &errOut); code != 0 ||
		!strings.Contains(out.String(), "configuration is valid\n") ||
		!strings.Contains(out.String(), "\nok      robin     API key accepted") {
		t.Errorf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"check", "--online"}, robinEnv(t, fake, "ROBIN_API_KEY=other-key"), &out, &errOut); code != 1 ||
		!strings.Contains(out.String(), "\nFAILED  robin     presence answered 404 Not Found") ||
		strings.Contains(out.String(), "other-key") {
		t.Errorf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"check", "--online"}, robinEnv(t, fake, "ROBIN_TIMEOUT=soon"), &out, &errOut); code != 2 ||
		!strings.Contains(errOut.String(), `ROBIN_TIMEOUT: "soon" is not a duration`) {
		t.Errorf("exit %d:\n%s%s", code, out.String(), errOut.String())
	}
}

func TestSendTestEventCommandLine(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"send-test-event", "-h"}, 0, "usage: voipbridge send-test-event [--extension E] [--number N]"},
		{[]string{"send-test-event", "--help"}, 0, "-extension"},
		{[]string{"send-test-event", "stray"}, 2, `unexpected argument "stray"`},
		{[]string{"send-test-event", "--bogus"}, 2, "not defined: -bogus"},
		{[]string{"check", "--online", "stray"}, 2, `unexpected argument "stray"`},
		{[]string{"check", "-h"}, 0, "-online"},
		{[]string{"check", "--bogus"}, 2, "not defined: -bogus"},
		{[]string{"--help"}, 0, "send-test-event"},
	} {
		var out, errOut bytes.Buffer
		code := run(tt.args, nil, &out, &errOut)
		if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.out) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s%s", tt.args, code, tt.code, tt.out, out.String(), errOut.String())
		}
	}
}
