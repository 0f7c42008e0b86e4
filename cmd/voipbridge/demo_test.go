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
