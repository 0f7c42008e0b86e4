package sip_test

import (
	"context"
	"crypto/tls"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/sip"
	"github.com/voipbridge/voipbridge/sip/siptest"
)

func inDialogRefreshes(pbx *siptest.PBX, callID string) int {
	n := 0
	for _, s := range pbx.Subscribes() {
		if s.CallID == callID && s.InDialog && s.Expires > 0 && s.Status == 200 {
			n++
		}
	}
	return n
}

func lastSubscription(pbx *siptest.PBX, ext string) string {
	id := ""
	for _, s := range pbx.Subscribes() {
		if s.Ext == ext && s.Status == 200 && s.Expires > 0 {
			id = s.CallID
		}
	}
	return id
}

func TestRefreshAfterIntervalTooBrief(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			pbx := siptest.Start(t, siptest.Options{Network: network, Username: user, Password: pass, MinExpires: 2, NonceUses: 1})
			h := start(t, pbx, []string{"201"}, func(c *sip.Config, _ *sip.Options) { c.Expires = 1 })
			first := lastSubscription(pbx, "201")
			// Granted 2 s: refreshed in-dialog after 1 s, again and again, each
			// time through a stale-nonce challenge (NonceUses 1).
			waitFor(t, "two refreshes", func() bool { return inDialogRefreshes(pbx, first) >= 2 })
			var saw423, sawStale bool
			for _, s := range pbx.Subscribes() {
				saw423 = saw423 || s.Status == 423
				sawStale = sawStale || (s.InDialog && s.Status == 401)
			}
			if !saw423 || !sawStale {
				t.Errorf("423 seen %v, stale challenge on refresh seen %v", saw423, sawStale)
			}
			if got := lastSubscription(pbx, "201"); got != first {
				t.Errorf("subscription replaced instead of refreshed")
			}
			// Calls still come through.
			leg := pbx.Inbound("201", "0612345678", "")
			leg.Cancel()
			h.expect(t, []events.Signal{sig(leg, events.Ringing, ""), sig(leg, events.Ended, "cancelled")})
		})
	}
}

func TestResubscribeAfterPBXForgetsOrTerminates(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Username: user, Password: pass, Proxy: true})
	h := start(t, pbx, []string{"201", "202"}, func(c *sip.Config, _ *sip.Options) { c.Expires = 2 })
	first := lastSubscription(pbx, "201")

	pbx.Forget() // a PBX restart: the next refresh gets 481
	waitFor(t, "new subscription after 481", func() bool {
		id := lastSubscription(pbx, "201")
		return id != "" && id != first && pbx.Subscribed("201") == 1
	})
	second := lastSubscription(pbx, "202")
	pbx.Terminate("202", "deactivated", 0)
	waitFor(t, "new subscription after termination", func() bool {
		id := lastSubscription(pbx, "202")
		return id != second && pbx.Subscribed("202") == 1
	})
	var saw481 bool
	for _, s := range pbx.Subscribes() {
		saw481 = saw481 || s.Status == 481
	}
	if !saw481 {
		t.Error("no refresh was refused with 481")
	}
	waitFor(t, "both active", func() bool { return h.mon.Status().Active == 2 })
	// Each new subscription's first document is a snapshot of its own.
	waitFor(t, "a snapshot per subscription", func() bool {
		n := map[string]int{}
		for _, s := range pbx.Subscribes() {
			if !s.InDialog && s.Status == 200 && s.Expires > 0 {
				n[s.Ext]++
			}
		}
		for _, s := range h.rec.snapshots() {
			n[s.Extension]--
		}
		return n["201"] == 0 && n["202"] == 0
	})
	leg := pbx.Inbound("202", "0612345678", "")
	leg.Answer()
	waitFor(t, "answered", func() bool { return h.rec.count() == 2 })
	leg.Hangup("remote-bye")
	h.expect(t, []events.Signal{sig(leg, events.Ringing, ""), sig(leg, events.Answered, ""), sig(leg, events.Ended, "remote-bye")})
}

// TestRestartSnapshotsWhatIsStillGoing: a monitor's memory of dialogs dies
// with it, and the PBX forgets a dialog once it ended. A call that ended
// while no monitor ran is simply absent from the next monitor's first
// NOTIFY; the snapshot of that document lists only the dialogs still going,
// which is what lets the tracker end the others.
func TestRestartSnapshotsWhatIsStillGoing(t *testing.T) {
	for _, network := range networks {
		t.Run(network, func(t *testing.T) {
			pbx := siptest.Start(t, siptest.Options{Network: network, Username: user, Password: pass})
			exts := []string{"201", "202"}
			first := start(t, pbx, exts, nil)
			gone := pbx.Inbound("201", "0612345678", "0201234567")
			gone.Answer()
			kept := pbx.Inbound("202", "0687654321", "0201234567")
			kept.Answer()
			waitFor(t, "both answered", func() bool { return len(first.rec.unique()) == 4 })
			first.stop() // unsubscribes: the PBX tells this monitor nothing more
			gone.Hangup("remote-bye")

			second := start(t, pbx, exts, nil)
			waitFor(t, "a snapshot per extension", func() bool { return len(second.rec.snapshots()) == 2 })
			open := map[string][]string{}
			for _, s := range second.rec.snapshots() {
				open[s.Extension] = s.Open
			}
			want := map[string][]string{"201": {}, "202": {kept.ID + "@202"}}
			if d := cmp.Diff(want, open); d != "" {
				t.Errorf("open legs after the restart (-want +got):\n%s", d)
			}
			// The call still going is reported as it stands, under the key it
			// had before the restart: the journal keeps one copy.
			before := map[string]bool{}
			for _, s := range first.rec.unique() {
				before[s.DedupKey] = true
			}
			got := second.rec.unique()
			if len(got) != 1 || got[0].State != events.Answered || got[0].LegID != kept.ID+"@202" || !before[got[0].DedupKey] {
				t.Errorf("signals after the restart %+v, want the one answered call again", got)
			}
		})
	}
}

func TestJournalOutageIsRetriedByThePBX(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Username: user, Password: pass, RetryNotify: 5})
	h := start(t, pbx, []string{"201"}, nil)
	// The subscription's first full document journals a snapshot; the
	// failures are for the call's NOTIFYs, so they start after it (else the
	// snapshot's retries could take them: 1 failure in 10 runs).
	waitFor(t, "the first snapshot", func() bool { return len(h.rec.snapshots()) == 1 })
	failures := 2
	h.rec.setFail(func(events.Signal) error {
		if failures > 0 {
			failures--
			return errors.New("stream unavailable")
		}
		return nil
	})
	leg := pbx.Inbound("201", "0612345678", "0201234567")
	h.expect(t, []events.Signal{sig(leg, events.Ringing, "")})
	var statuses []int
	for _, n := range pbx.Notifies() {
		if n.Body != "" && n.Version > 0 {
			statuses = append(statuses, n.Status)
		}
	}
	if len(statuses) != 3 || statuses[0] != 500 || statuses[1] != 500 || statuses[2] != 200 {
		t.Errorf("NOTIFY answers %v, want 500 500 200", statuses)
	}
}

func TestWrongPasswordDoesNotHammer(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Username: user, Password: "other"})
	rec := &recorder{}
	mon, err := sip.New(sip.Config{Server: pbx.Addr(), Listen: "127.0.0.1:0", Username: user, Password: pass,
		Extensions: []string{"201"}, SubscribeRate: -1}, rec, sip.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{pbx: pbx, rec: rec, mon: mon}
	_ = h
	ctx, cancel := contextWithCancel()
	done := make(chan error, 1)
	go func() { done <- mon.Run(ctx) }()
	waitFor(t, "failing", func() bool { return mon.Status().Failing == 1 })
	time.Sleep(500 * time.Millisecond)
	cancel()
	<-done
	if n := len(pbx.Subscribes()); n != 2 {
		t.Errorf("%d SUBSCRIBEs with a wrong password, want 2 (challenge, refused answer)", n)
	}
	if st := mon.Status(); st.Running || st.Failing != 0 {
		t.Errorf("status after stop %+v", st)
	}
}

func TestAsteriskStylePBX(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Username: user, Password: pass, Style: siptest.Asterisk})
	h := start(t, pbx, []string{"103"}, nil)
	leg := pbx.Inbound("103", "0612345678", "")
	waitFor(t, "ringing", func() bool { return h.rec.count() == 1 })
	leg.Answer()
	waitFor(t, "answered", func() bool { return h.rec.count() == 2 })
	leg.Hangup("remote-bye")
	waitFor(t, "ended", func() bool { return h.rec.count() == 3 })
	got := h.rec.unique()
	for i, st := range []events.State{events.Ringing, events.Answered, events.Ended} {
		s := got[i]
		if s.State != st || s.CallID != got[0].CallID || s.Remote != "sip:0612345678@pbx.test" || s.Direction != events.Inbound || s.LegID != "103@103" {
			t.Errorf("signal %d: %+v", i, s)
		}
	}
	if got[0].CallID == "" || got[0].CallID == leg.CallID {
		t.Errorf("Asterisk sends no call-id; want an invented one, got %q", got[0].CallID)
	}
	if len(got) != 3 {
		t.Errorf("%d signals, want 3", len(got))
	}
}

func TestPartialDocuments(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Network: "tcp", Username: user, Password: pass, Partial: true})
	h := start(t, pbx, []string{"201"}, nil)
	a := pbx.Inbound("201", "0612345678", "")
	b := pbx.Inbound("201", "0687654321", "")
	waitFor(t, "two ringing", func() bool { return h.rec.count() == 2 })
	a.Answer()
	waitFor(t, "answered", func() bool { return h.rec.count() == 3 })
	b.Cancel()
	waitFor(t, "b missed", func() bool { return h.rec.count() == 4 })
	a.Hangup("local-bye")
	h.expect(t, []events.Signal{
		sig(a, events.Ringing, ""), sig(b, events.Ringing, ""), sig(a, events.Answered, ""),
		sig(b, events.Ended, "cancelled"), sig(a, events.Ended, "local-bye"),
	})
}

func TestShutdownUnsubscribesAndLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		pbx, err := siptest.New(siptest.Options{Network: "tcp", Username: user, Password: pass})
		if err != nil {
			t.Fatal(err)
		}
		defer pbx.Close()
		h := start(t, pbx, []string{"201", "202", "203"}, nil)
		h.stop()
		for _, ext := range []string{"201", "202", "203"} {
			if n := pbx.Subscribed(ext); n != 0 {
				t.Errorf("%s still subscribed at the PBX after shutdown", ext)
			}
		}
		var unsub int
		for _, s := range pbx.Subscribes() {
			if s.Expires == 0 && s.Status == 200 {
				unsub++
			}
		}
		if unsub != 3 {
			t.Errorf("%d unsubscribes, want 3", unsub)
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf[:runtime.Stack(buf, true)])
	}
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}

func TestSetExtensionsWhileRunning(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Username: user, Password: pass})
	h := start(t, pbx, []string{"201"}, nil)
	if err := h.mon.SetExtensions([]string{"201", " 202 ", "202", ""}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "202 subscribed", func() bool { return pbx.Subscribed("202") == 1 && h.mon.Status().Active == 2 })
	if err := h.mon.SetExtensions([]string{"202"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "201 unsubscribed", func() bool { return pbx.Subscribed("201") == 0 && h.mon.Status().Active == 1 })
	if st := h.mon.Status(); st.Watched != 1 {
		t.Errorf("status %+v, want 1 watched", st)
	}
	if err := h.mon.SetExtensions([]string{"ok", "bad\r\nInjected: x"}); err == nil {
		t.Error("an extension with a line break was accepted")
	}
	if got := h.mon.Extensions(); len(got) != 1 || got[0] != "202" {
		t.Errorf("a rejected list changed the extensions: %v", got)
	}
	leg := pbx.Inbound("202", "0612345678", "")
	leg.Cancel()
	h.expect(t, []events.Signal{sig(leg, events.Ringing, ""), sig(leg, events.Ended, "cancelled")})
}

// TestTLS subscribes over TLS to a PBX with a certificate we trust through
// Options.TLS; the PBX sends its NOTIFYs back over our connection.
func TestTLS(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Network: "tls", Username: user, Password: pass})
	h := start(t, pbx, []string{"201"}, func(_ *sip.Config, o *sip.Options) {
		o.TLS = &tls.Config{RootCAs: pbx.CertPool(), MinVersion: tls.VersionTLS12}
	})
	leg := pbx.Inbound("201", "0612345678", "0201234567")
	waitFor(t, "ringing", func() bool { return h.rec.count() == 1 })
	leg.Answer()
	waitFor(t, "answered", func() bool { return h.rec.count() == 2 })
	leg.Hangup("remote-bye")
	h.expect(t, []events.Signal{sig(leg, events.Ringing, ""), sig(leg, events.Answered, ""), sig(leg, events.Ended, "remote-bye")})
}

func TestTLSRefusesAnUntrustedPBX(t *testing.T) {
	pbx := siptest.Start(t, siptest.Options{Network: "tls", Username: user, Password: pass})
	rec := &recorder{}
	mon, err := sip.New(sip.Config{Server: pbx.Addr(), Transport: "tls", Listen: "127.0.0.1:0", Username: user, Password: pass,
		Extensions: []string{"201"}, SubscribeRate: -1}, rec, sip.Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel()
	done := make(chan error, 1)
	go func() { done <- mon.Run(ctx) }()
	waitFor(t, "failing", func() bool { return mon.Status().Failing == 1 })
	cancel()
	<-done
	if n := len(pbx.Subscribes()); n != 0 {
		t.Errorf("%d SUBSCRIBEs reached a PBX whose certificate is not trusted", n)
	}
}
