package threecx_test

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/threecx"
	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

// TestLoopback runs the source against the fake on a real loopback socket
// (the other tests use an in-memory network): a call whose end happens while
// the PBX is unreachable still ends after the reconnect.
func TestLoopback(t *testing.T) {
	srv := threecxtest.New(threecxtest.Options{ClientID: testClientID, ClientSecret: testSecret})
	srv.SetDN("150", "Wextension")
	base := srv.StartHTTP()
	journal := &recordingJournal{}
	src, err := threecx.New(threecx.Options{
		Config:     threecx.Config{URL: base, ClientID: testClientID, ClientSecret: testSecret},
		Journal:    journal,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer: prometheus.NewRegistry(),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	defer func() {
		cancel()
		<-done
		srv.Close()
	}()

	// Generous deadlines: the machine may be busy; a pass takes milliseconds.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting until %s; signals so far: %+v", what, journal.all())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	signals := func(n int) func() bool { return func() bool { return len(journal.all()) >= n } }

	waitFor("connected", src.Connected)
	upsert := func(fields map[string]any) {
		t.Helper()
		if err := srv.Upsert(fields, threecxtest.Send); err != nil {
			t.Fatal(err)
		}
	}
	upsert(map[string]any{
		"dn": "150", "id": 8106, "callid": 1264, "status": "Ringing", "party_dn_type": "Wexternalline", "party_dn": "10007",
		"party_caller_id": "0891234567", "party_did": "0301234567", "originated_by_dn": "ROUTER",
	})
	waitFor("ringing", signals(1))
	upsert(map[string]any{"dn": "150", "id": 8106, "status": "Connected"})
	waitFor("answered", signals(2))
	srv.SetDown(true)
	waitFor("disconnected", func() bool { return !src.Connected() })
	srv.Remove("150", "8106", threecxtest.Lose)
	srv.SetDown(false)
	waitFor("ended", signals(3))

	checkSignals(t, journal.all(), []events.Signal{
		sig("1264", "8106", "150", events.Ringing),
		sig("1264", "8106", "150", events.Answered),
		sig("1264", "8106", "150", events.Ended, gone),
	})
}
