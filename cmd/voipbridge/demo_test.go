package main

import (
	"bytes"
	"fmt"
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
