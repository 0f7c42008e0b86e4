package webhook

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/voipbridge/voipbridge/events"
)

// BenchmarkIntake compares, in one run on one disk, how many signals per
// second the generic webhook journals (real HTTP over loopback, guard,
// decoding, validation, fsynced publish) with the floor under it: raw
// JetStream publishes of a signal-sized message with a message id to a
// stream configured like the journal's SIGNALS stream (SyncAlways), each
// stored and fsynced on its own. Between the two, journal is the journal's
// PublishSignal called directly: what the journal adds to the floor, and
// what HTTP adds to the journal. One op is one journaled signal; c is the
// number of concurrent clients. From 16 signals in flight on, the journal
// lets them share an fsync as one atomic batch (events/groupcommit.go), so
// journal and webhook can pass the raw rate there.
func BenchmarkIntake(b *testing.B) {
	// Each pair runs back to back: fsync latency on a shared disk drifts
	// by a factor of several between minutes, far more than within one.
	for _, c := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("raw-publish/c=%d", c), func(b *testing.B) { benchRawPublish(b, c) })
		b.Run(fmt.Sprintf("journal/c=%d", c), func(b *testing.B) { benchJournal(b, c) })
		b.Run(fmt.Sprintf("webhook/c=%d", c), func(b *testing.B) { benchWebhook(b, c) })
	}
}

// jetStreamServer starts an embedded JetStream server the way
// events.OpenJournal does (file store in dir, SyncAlways, no listener) and
// connects to it in-process. The journal does not expose its connection,
// so the raw floor and the tests that look into a closed journal's store
// start their own.
func jetStreamServer(tb testing.TB, dir string) jetstream.JetStream {
	tb.Helper()
	srv, err := server.NewServer(&server.Options{
		ServerName: "voipbridge",
		JetStream:  true,
		StoreDir:   dir,
		DontListen: true,
		SyncAlways: true,
		NoSigs:     true,
		NoLog:      true,
	})
	if err != nil {
		tb.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		tb.Fatal("embedded server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(srv))
	if err != nil {
		srv.Shutdown()
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		nc.Close()
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	js, err := jetstream.New(nc)
	if err != nil {
		tb.Fatal(err)
	}
	return js
}

// signalsStreamConfig is the journal's SIGNALS stream as events.OpenJournal
// creates it with default options (7 days retention, 10 minutes dedup),
// but for allow_atomic, which single publishes do not use.
func signalsStreamConfig() jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.SignalsStream,
		Description: "raw PBX signals, for the tracker, audit and replay",
		Subjects:    []string{"voipbridge.signals.>"},
		MaxAge:      7 * 24 * time.Hour,
		Duplicates:  10 * time.Minute,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Replicas:    1,
	}
}

// run calls op(i) for i in [0, b.N) from c goroutines and reports signals/s.
func run(b *testing.B, c int, op func(i int) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var failed error
	b.ResetTimer()
	start := time.Now()
	for range c {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := op(i); err != nil {
					once.Do(func() { failed = err })
					next.Store(int64(b.N))
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed != nil {
		b.Fatal(failed)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "signals/s")
}

func benchRawPublish(b *testing.B, c int) {
	js := jetStreamServer(b, b.TempDir())
	ctx := context.Background()
	if _, err := js.CreateOrUpdateStream(ctx, signalsStreamConfig()); err != nil {
		b.Fatal(err)
	}
	// The same shape and size as the webhook's signals.
	data, err := json.Marshal(events.Signal{
		Source: Source, CallID: "b1234567", Extension: "201", Remote: "+31612345678", Dialled: "+31858770023",
		Direction: events.Inbound, State: events.Ringing, Time: time.Now().UTC(), DedupKey: "id:1234567",
	})
	if err != nil {
		b.Fatal(err)
	}
	run(b, c, func(i int) error {
		// A message id like the journal's: a hash, distinct per signal.
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(i))
		h := sha256.Sum256(n[:])
		_, err := js.Publish(ctx, "voipbridge.signals.generic", data, jetstream.WithMsgID("s"+hex.EncodeToString(h[:20])))
		return err
	})
}

func benchJournal(b *testing.B, c int) {
	j, err := events.OpenJournal(context.Background(), events.JournalOptions{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	now := time.Now().UTC()
	run(b, c, func(i int) error {
		id := strconv.Itoa(i)
		return j.PublishSignal(context.Background(), events.Signal{
			Source: Source, CallID: "b" + id, Extension: "201", Remote: "+31612345678", Dialled: "+31858770023",
			Direction: events.Inbound, State: events.Ringing, Time: now, DedupKey: "id:" + id,
		})
	})
}

func benchWebhook(b *testing.B, c int) {
	j, err := events.OpenJournal(context.Background(), events.JournalOptions{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer j.Close()
	mux := http.NewServeMux()
	guard := &Guard{Token: "t", Logger: slog.New(slog.DiscardHandler)}
	mux.Handle("POST /v1/webhooks/generic", guard.Wrap(Source, &Generic{Journal: j, Logger: slog.New(slog.DiscardHandler)}))
	srv := httptest.NewServer(mux)
	defer srv.Close()
	tr := &http.Transport{MaxIdleConns: c, MaxIdleConnsPerHost: c}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	url := srv.URL + "/v1/webhooks/generic"
	run(b, c, func(i int) error {
		id := strconv.Itoa(i)
		body := `{"call_id":"b` + id + `","event":"ringing","from":"+31612345678","to":"+31858770023","extension":"201","event_id":"` + id + `"}`
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer t")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}
