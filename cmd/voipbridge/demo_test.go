package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestDemo runs `voipbridge demo` for every simulated PBX and checks that the
// four scripted calls arrive at the fake ROBIN as the eight events they make.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the whole demo")
	}
	want := 0
	for _, c := range demoCalls {
		want += c.events
	}
	for _, pbx := range simulatorNames() {
		t.Run(pbx, func(t *testing.T) {
			t.Parallel()
			var out, errOut bytes.Buffer
			if code := run([]string{"demo", "--pbx", pbx}, nil, &out, &errOut); code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errOut.String())
			}
			s := out.String()
			if !strings.Contains(s, fmt.Sprintf("ROBIN received %d events", want)) {
				t.Fatalf("demo output:\n%s", s)
			}
			for _, typ := range []string{"Answered", "Transfer", "Disconnected"} {
				if !strings.Contains(s, "ROBIN  "+typ) {
					t.Errorf("no %s line in:\n%s", typ, s)
				}
			}
		})
	}
}

func TestUnknownCommandAndPBX(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frobnicate"}, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "unknown command") {
		t.Fatalf("unknown command: %d %s", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"demo", "--pbx", "nope"}, nil, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "generic") {
		t.Fatalf("unknown pbx: %d %s", code, errOut.String())
	}
	errOut.Reset()
	if code := run([]string{"serve"}, []string{"CALL_TIMEOUT=x"}, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "ROBIN_API_KEY") || !strings.Contains(errOut.String(), "CALL_TIMEOUT") {
		t.Fatalf("bad config: %d %s", code, errOut.String())
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	csv := dir + "/agents.csv"
	var out, errOut bytes.Buffer
	base := []string{"ROBIN_API_KEY=k", "WEBHOOK_TOKEN=t", "EXTENSIONS_FILE=" + csv}
	if code := run([]string{"check"}, base, &out, &errOut); code != 2 || !strings.Contains(errOut.String(), "agents.csv") {
		t.Fatalf("missing extensions file: %d %s", code, errOut.String())
	}
	if err := os.WriteFile(csv, []byte("pbx_id,robin_extension,name,email\n201,301,Ann,ann@example.com\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	errOut.Reset()
	if code := run([]string{"check"}, append(base, "VOIPGRID_ENABLED=true"), &out, &errOut); code != 0 {
		t.Fatalf("valid configuration: %d %s", code, errOut.String())
	}
	for _, want := range []string{"configuration is valid", "1 from EXTENSIONS", "Voys/VoIPGRID"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "=k") {
		t.Fatal("check shows a secret")
	}
	// A source whose agents the directory cannot map is named.
	out.Reset()
	errOut.Reset()
	if err := os.WriteFile(csv, []byte("pbx_id,robin_extension,name,email,source\n201,301,Ann,ann@example.com,voipgrid\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := append(base, "VOIPGRID_ENABLED=true", "SIP_SERVER=127.0.0.1:5060", "SIP_EXTENSIONS=201,202")
	if code := run([]string{"check"}, env, &out, &errOut); code != 0 {
		t.Fatalf("valid configuration: %d %s", code, errOut.String())
	}
	for _, want := range []string{"warning:    SIP is on, but no entry", "SIP_EXTENSIONS without an agent in EXTENSIONS/EXTENSIONS_FILE: 201, 202"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "Voys/VoIPGRID is on, but") {
		t.Errorf("warned about a source that has agents:\n%s", out.String())
	}
}

// TestCommandLine: help and version everywhere, flags after verbs, unknown
// flags and stray arguments refused (none of these starts the bridge).
func TestCommandLine(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		out  string // in stdout or stderr
	}{
		{[]string{"-h"}, 0, "usage: voipbridge"},
		{[]string{"--help"}, 0, "usage: voipbridge"},
		{[]string{"--version"}, 0, "voipbridge "},
		{[]string{"version"}, 0, "voipbridge "},
		{[]string{"--frobnicate"}, 2, "unknown flag --frobnicate"},
		{[]string{"serve", "-h"}, 0, "usage: voipbridge serve"},
		{[]string{"serve", "--anything"}, 2, "not defined: -anything"},
		{[]string{"serve", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"check", "--help"}, 0, "usage: voipbridge check"},
		{[]string{"version", "--x"}, 2, "not defined"},
		{[]string{"demo", "-h"}, 0, "-calls"},
		{[]string{"demo", "stray"}, 2, `unexpected argument "stray"`},
		{[]string{"deadletters", "-h"}, 0, "usage: voipbridge deadletters"},
		{[]string{"deadletters", "list", "--bogus"}, 2, "not defined: -bogus"},
	} {
		var out, errOut bytes.Buffer
		code := run(tt.args, []string{"ADMIN_TOKEN=x"}, &out, &errOut)
		if code != tt.code || !strings.Contains(out.String()+errOut.String(), tt.out) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s%s", tt.args, code, tt.code, tt.out, out.String(), errOut.String())
		}
	}
	// A flag after the verb reaches the command: the URL is used (and
	// nothing listens there).
	var out, errOut bytes.Buffer
	if code := run([]string{"deadletters", "list", "--url", "http://127.0.0.1:1"}, []string{"ADMIN_TOKEN=x"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "127.0.0.1:1") {
		t.Errorf("deadletters list --url: exit %d: %s", code, errOut.String())
	}
}
