package events_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/robin"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// BenchmarkDispatcherThroughput: one op is one journaled event delivered to
// the fake ROBIN over loopback HTTP with the real client (no quota, no
// breaker) and removed from the journal. The events are journaled first,
// outside the timer, by the tracker.
func BenchmarkDispatcherThroughput(b *testing.B) {
	for _, workers := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) {
			ctx := context.Background()
			j, err := events.OpenJournal(ctx, events.JournalOptions{DataDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer j.Close()
			numbers, _ := phone.New(phone.Options{Region: "NL"})
			dir, _ := extensions.Load("", "")
			tr, err := events.NewTracker(ctx, events.TrackerOptions{Journal: j, Numbers: numbers, Dir: dir,
				Policies: events.Policies{ReportMissed: true, AnonymousNumber: "anonymous", CallTimeout: time.Hour}})
			if err != nil {
				b.Fatal(err)
			}
			for i := range b.N {
				st := events.Answered
				if i%2 == 1 {
					st = events.Ended
				}
				s := events.Signal{Source: "bench", CallID: fmt.Sprintf("c%d", i/2), Extension: "201", Remote: "+31612345678",
					Direction: events.Inbound, State: st, Time: time.Now(), DedupKey: fmt.Sprint(i)}
				if err := j.PublishSignal(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
			tctx, stopTracker := context.WithCancel(ctx)
			done := make(chan struct{})
			go func() { tr.Run(tctx); close(done) }()
			for tr.Applied() < uint64(b.N) {
				time.Sleep(time.Millisecond)
			}
			stopTracker()
			<-done
			want := b.N/2*2 + b.N%2 // every signal makes one event, the last Answered too

			fake := robintest.NewServer(robintest.Options{APIKey: "k"})
			defer fake.Close()
			client, err := robin.NewClient(robin.Config{APIURL: fake.URL(), APIKey: "k"})
			if err != nil {
				b.Fatal(err)
			}
			d := events.NewDispatcher(events.DispatcherOptions{Journal: j, Sink: client, Workers: workers})
			dctx, stop := context.WithCancel(ctx)
			b.ReportAllocs()
			b.ResetTimer()
			go d.Run(dctx)
			wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
			defer cancel()
			if _, err := fake.WaitEvents(wctx, want); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			stop()
			b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
