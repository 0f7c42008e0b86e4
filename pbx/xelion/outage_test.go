package xelion

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
)

// TestSourceBackAfterOutage: the Xelion server goes down briefly (every
// request refused, the WebSocket gone) and comes back. With the default
// backoff the source retries at once and is subscribed again within a
// second of the server's return (Xelion does not replay what it sent
// meanwhile: every second later is a second in which a call can start
// unseen), logs the outage once with its length, and the call that hung up
// during the outage is ended by the resync.
func TestSourceBackAfterOutage(t *testing.T) {
	sc := loadScripts(t)["answered"]
	const gone = "1709632800.101"
	h := start(t, xeliontest.Options{}, nil, func(o *Options) {
		o.MinBackoff, o.MaxBackoff = 0, 0 // the defaults
	})
	ctx := h.ctx(t)
	if err := h.fake.Play(ctx, sc.Steps[:2]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the call answered", func() bool { return len(h.j.signals()) == 2 })

	h.fake.Down()
	// The immediate retry is refused: the source is now waiting out its
	// backoff, as it would in a real outage.
	if err := h.fake.WaitFor(ctx, func(st xeliontest.Stats) bool { return st.RefusedWhileDown >= 1 }); err != nil {
		t.Fatalf("the source did not retry: %v", err)
	}
	if !h.fake.HangUp(gone) {
		t.Fatalf("call %s was not running on the fake", gone)
	}
	back := h.fake.Up()
	if err := h.fake.WaitConnected(ctx, 2, Subscriptions...); err != nil {
		t.Fatal(err)
	}
	st := h.fake.Stats()
	if late := st.LastHandshake.Sub(back); late > time.Second {
		t.Errorf("the source reconnected %v after the server was back, want within 1s", late)
	}

	got := h.settle(t)
	if diff := cmp.Diff(goneSignals(t, sc), ofCall(got, gone), ignoreTimeKey); diff != "" {
		t.Errorf("the call hung up during the outage (-want +got):\n%s", diff)
	}
	waitFor(t, "the outage logged", func() bool { return strings.Contains(h.logs.String(), "Xelion connection back after") })
	lines := slices.DeleteFunc(strings.Split(h.logs.String(), "\n"), func(l string) bool {
		return !strings.Contains(l, "Xelion connection back after")
	})
	if len(lines) != 1 || !strings.Contains(lines[0], `"level":"INFO"`) || !strings.Contains(lines[0], `"outage"`) {
		t.Errorf("want one info line for the outage, with its length:\n%s", strings.Join(lines, "\n"))
	}
	if !h.src.Connected() {
		t.Error("source not connected")
	}
}
