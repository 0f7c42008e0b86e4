package sip_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/sip"
)

// TestAgainstSIPp runs SIPp, a SIP test tool none of us wrote, as the PBX
// (testdata/sip/sipp-dialog-notifier.xml): it challenges our SUBSCRIBE,
// verifies the digest, sends early, confirmed and terminated NOTIFYs and
// expects a 200 to each and an unsubscribe at the end. The test fails when
// SIPp exits non-zero or the journal does not hold the three signals. Over
// TCP SIPp sends its NOTIFYs back on the connection our SUBSCRIBE opened.
func TestAgainstSIPp(t *testing.T) {
	bin, err := exec.LookPath("sipp")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("sipp is not installed (Debian package sip-tester); CI must run this test")
		}
		t.Skip("sipp not installed (apt-get install sip-tester); set CI to make this a failure")
	}
	for _, network := range networks {
		t.Run(network, func(t *testing.T) { runSIPp(t, bin, network) })
	}
}

func runSIPp(t *testing.T, bin, network string) {
	scenario, err := filepath.Abs(filepath.Join("..", "testdata", "sip", "sipp-dialog-notifier.xml"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	dir := t.TempDir()
	var (
		port   int
		out    bytes.Buffer
		exited chan error
		report func()
	)
	// A port found free can be taken by another process (another test
	// suite) before SIPp binds it: then SIPp says so and exits, and it is
	// started again on another port.
	for attempt := 1; ; attempt++ {
		port = freePort(t, network)
		out.Reset()
		cmd := exec.CommandContext(ctx, bin,
			"-sf", scenario, "-i", "127.0.0.1", "-p", strconv.Itoa(port), "-t", network[:1]+"1",
			"-m", "1", "-timeout", "60s", "-nostdin", "-trace_err", "-error_file", filepath.Join(dir, "errors.log"),
			"-set", "user", user, "-set", "pass", pass)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited = make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		report = func() {
			errs, _ := os.ReadFile(filepath.Join(dir, "errors.log"))
			t.Logf("sipp output:\n%s\nsipp errors:\n%s", lastBytes(out.Bytes(), 4000), errs)
		}
		// Wait until SIPp holds its port, so the first SUBSCRIBE is not lost.
		var early error
		waitFor(t, "sipp listening", func() bool {
			select {
			case early = <-exited:
				return true
			default:
			}
			return !portFree(network, port)
		})
		if early == nil {
			break
		}
		if attempt < 3 && bytes.Contains(out.Bytes(), []byte("Unable to bind main socket")) {
			t.Logf("port %d was taken before SIPp bound it; trying another", port)
			continue
		}
		report()
		t.Fatalf("sipp exited early: %v", early)
	}

	rec := &recorder{}
	mon, err := sip.New(sip.Config{
		Server: "127.0.0.1:" + strconv.Itoa(port), Domain: "sipp.test", Listen: "127.0.0.1:0", Transport: network,
		Username: user, Password: pass, Extensions: []string{"2001"},
	}, rec, sip.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	mctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- mon.Run(mctx) }()
	waitFor(t, "three signals", func() bool { return rec.count() >= 3 })
	stop() // unsubscribes: the last step SIPp waits for
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case err := <-exited:
		if err != nil {
			report()
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("sipp failed the scenario: exit code %d", ee.ExitCode())
			}
			t.Fatalf("sipp: %v", err)
		}
	case <-time.After(30 * time.Second):
		report()
		t.Fatal("sipp did not finish the scenario")
	}
	base := events.Signal{Source: "sip", CallID: "sipp-call-7781@sipp.test", LegID: "d7a1c0de@2001", Extension: "2001",
		Remote: `"Klant" <sip:0612345678@sipp.test>`, Dialled: "sip:0201234567@sipp.test", Direction: events.Inbound}
	ringing, answered, ended := base, base, base
	ringing.State, answered.State, ended.State, ended.Cause = events.Ringing, events.Answered, events.Ended, "remote-bye"
	h := &harness{rec: rec}
	h.compare(t, []events.Signal{ringing, answered, ended})
	// SIPp's first NOTIFY is a full document with the ringing dialog.
	snaps := rec.snapshots()
	if len(snaps) != 1 || snaps[0].Extension != "2001" || !slices.Equal(snaps[0].Open, []string{"d7a1c0de@2001"}) {
		t.Errorf("snapshots %+v, want one for 2001 with the ringing dialog open", snaps)
	}
}

// freePort finds a loopback port nobody holds (there is a window before
// SIPp binds it; a clash makes SIPp exit at once and the test say so).
func freePort(t *testing.T, network string) int {
	t.Helper()
	if network == "tcp" {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}

func portFree(network string, port int) bool {
	addr := "127.0.0.1:" + strconv.Itoa(port)
	if network == "tcp" {
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			return false
		}
		l.Close()
		return true
	}
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return false
	}
	pc.Close()
	return true
}

func lastBytes(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
