package threecx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

func BenchmarkDecodeMessage(b *testing.B) {
	data := fixture(b, "ws_upsert.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessage(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeParticipant(b *testing.B) {
	data := fixture(b, "participant_ringing_inbound.json")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeParticipant(data, "150"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLeg is the book's work for one leg's life: ringing, answered, ended.
func BenchmarkLeg(b *testing.B) {
	p, err := DecodeParticipant(fixture(b, "participant_ringing_inbound.json"), "150")
	if err != nil {
		b.Fatal(err)
	}
	bk := newBook(nil)
	bk.learnDN("150", TypeExtension)
	now := time.Unix(1700000000, 0)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		p.ID, p.CallID = ID(strconv.Itoa(i)), ID(strconv.Itoa(i))
		path := ParticipantPath(p.DN, p.ID)
		for _, st := range []string{StatusRinging, StatusConnected} {
			p.Status = st
			pd, _ := bk.observe(path, p, now)
			bk.commit(pd, now)
		}
		pd, _ := bk.end(path, CauseRemoved, now)
		bk.commit(pd, now)
	}
}

// BenchmarkSnapshotDiff is the diff of a snapshot of 500 extensions with two
// calls each against a book that already knows them all: the steady-state
// cost of a resync.
func BenchmarkSnapshotDiff(b *testing.B) {
	var dns []DNInfo
	for d := range 500 {
		dn := strconv.Itoa(100 + d)
		info := DNInfo{DN: dn, Type: TypeExtension}
		for k := range 2 {
			info.Participants = append(info.Participants, Participant{
				ID: ID(strconv.Itoa(d*2 + k)), CallID: ID(strconv.Itoa(d*2 + k)), DN: dn,
				Status: StatusConnected, PartyDNType: TypeExternalLine, PartyCallerID: "0891234567",
			})
		}
		dns = append(dns, info)
	}
	bk := newBook(nil)
	now := time.Unix(1700000000, 0)
	apply := func() {
		for _, st := range bk.diff(dns, now) {
			if st.p != nil {
				if pd, ok := bk.observe(st.path, *st.p, now); ok {
					bk.commit(pd, now)
				}
			}
		}
	}
	apply()
	b.ReportAllocs()
	for b.Loop() {
		apply()
	}
}

type chanJournal chan events.Signal

func (c chanJournal) PublishSignal(_ context.Context, s events.Signal) error {
	c <- s
	return nil
}

// BenchmarkMessage is one participant change from the fake PBX to the
// journal: WebSocket message, GET of the participant, decode, signal, over
// an in-memory network.
func BenchmarkMessage(b *testing.B) {
	srv := threecxtest.New(threecxtest.Options{})
	srv.SetDN("150", TypeExtension)
	base, client := srv.StartMemory()
	journal := make(chanJournal, 1)
	src, err := New(Options{
		Config:     Config{URL: base, ClientID: "bridge", ClientSecret: "secret"},
		Journal:    journal,
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		HTTPClient: client,
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	for !src.Connected() {
		time.Sleep(time.Millisecond)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if err := srv.Upsert(map[string]any{
			"dn": "150", "id": i, "callid": i, "status": StatusRinging,
			"party_dn_type": TypeExternalLine, "party_caller_id": "0891234567",
		}, threecxtest.Send); err != nil {
			b.Fatal(err)
		}
		if s := <-journal; s.LegID != fmt.Sprint(i) {
			b.Fatalf("signal for leg %s, want %d", s.LegID, i)
		}
	}
	b.StopTimer()
	cancel()
	<-done
	srv.Close()
}
