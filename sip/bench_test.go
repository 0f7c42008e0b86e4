package sip

import (
	"context"
	"fmt"
	"testing"

	gosip "github.com/emiago/sipgo/sip"

	"github.com/voipbridge/voipbridge/events"
)

// BenchmarkNotify measures handling one NOTIFY: SIP parsing, matching,
// dialog-info decoding, folding and handing the one resulting signal to the
// journal. Calls cycle early → confirmed → terminated, so every NOTIFY
// carries a change (the first also a snapshot).
func BenchmarkNotify(b *testing.B) {
	b.Run("journal=nop", func(b *testing.B) { benchNotify(b, nopJournal{}) })
	b.Run("journal=jetstream", func(b *testing.B) {
		j, err := events.OpenJournal(context.Background(), events.JournalOptions{DataDir: b.TempDir(), Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		defer j.Close()
		benchNotify(b, j)
	})
}

func benchNotify(b *testing.B, j Journal) {
	f := newNotifyFixture(b)
	f.c.journal = j
	states := [3]string{`<state>early</state>`, `<state>confirmed</state>`, `<state event="remote-bye">terminated</state>`}
	head := "NOTIFY sip:voipbridge@127.0.0.1:5070;transport=udp SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 10.0.0.10:5060;rport;branch=z9hG4bKPj0c7a0f0b\r\n" +
		"From: <sip:201@pbx.test>;tag=pbxtag\r\n" +
		"To: <sip:voipbridge@pbx.test>;tag=" + f.sub.localTag + "\r\n" +
		"Contact: <sip:10.0.0.10:5060>\r\nCall-ID: " + f.sub.callID + "\r\n"
	ctx := context.Background()
	var buf []byte
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		body := fmt.Sprintf(`<?xml version="1.0"?>`+"\n"+
			`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="%d" state="full" entity="sip:201@pbx.test">`+
			`<dialog id="d%d" call-id="c%d@10.0.0.10" local-tag="as51b7e3c2" remote-tag="8812400" direction="recipient">%s`+
			`<remote><identity display="Klant">sip:0612345678@pbx.test</identity><target uri="sip:0612345678@10.0.0.10"/></remote>`+
			`<local><identity>sip:0201234567@pbx.test</identity><target uri="sip:201@192.168.20.31"/></local>`+
			`</dialog></dialog-info>`, i+1, i/3, i/3, states[i%3])
		buf = fmt.Appendf(buf[:0], "%sCSeq: %d NOTIFY\r\nSubscription-State: active;expires=3599\r\nEvent: dialog\r\n"+
			"Max-Forwards: 70\r\nUser-Agent: Asterisk PBX 20.5.0\r\nContent-Type: application/dialog-info+xml\r\n"+
			"Content-Length: %d\r\n\r\n%s", head, i+1, len(body), body)
		msg, err := gosip.ParseMessage(buf)
		if err != nil {
			b.Fatal(err)
		}
		if st, _ := f.c.handleNotify(ctx, msg.(*gosip.Request)); st != 200 {
			b.Fatalf("status %d", st)
		}
	}
	b.StopTimer()
	if got := value(b, f.c.metrics.signals); int(got) != b.N+1 {
		b.Fatalf("%v signals for %d NOTIFYs, want one each and a snapshot", got, b.N)
	}
}
