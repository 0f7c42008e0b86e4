package sip

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/voipbridge/voipbridge/events"
)

// memJournal records signals; failing makes it refuse them, refuse refuses
// those it returns an error for.
type memJournal struct {
	mu      sync.Mutex
	signals []events.Signal
	failing bool
	refuse  func(events.Signal) error
}

func (j *memJournal) PublishSignal(_ context.Context, s events.Signal) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.failing {
		return errors.New("journal unavailable")
	}
	if j.refuse != nil {
		if err := j.refuse(s); err != nil {
			return err
		}
	}
	j.signals = append(j.signals, s)
	return nil
}

func (j *memJournal) got() []events.Signal {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]events.Signal(nil), j.signals...)
}

func (j *memJournal) setFailing(f bool) {
	j.mu.Lock()
	j.failing = f
	j.mu.Unlock()
}

// notifyFixture is a core with one established subscription for ext 201.
type notifyFixture struct {
	c   *core
	w   *watch
	sub *subscription
	j   *memJournal
}

func newNotifyFixture(t testing.TB) *notifyFixture {
	t.Helper()
	met, err := newMetrics(nil)
	if err != nil {
		t.Fatal(err)
	}
	j := &memJournal{}
	c := newCore(settings{domain: "pbx.test"}, Options{}, j, discard, met)
	w := newWatch(c, "201")
	sub := newSubscription(w, "pbx.test")
	sub.remoteTag = "pbxtag"
	c.index.add(sub)
	return &notifyFixture{c: c, w: w, sub: sub, j: j}
}

// notify builds a NOTIFY as a PBX would send it for the fixture's subscription.
func (f *notifyFixture) notify(t testing.TB, cseq int, headers string, body string) *gosip.Request {
	t.Helper()
	raw := "NOTIFY sip:voipbridge@127.0.0.1:5070;transport=udp SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK" + fmt.Sprint(cseq) + "x\r\n" +
		"From: <sip:201@pbx.test>;tag=pbxtag\r\n" +
		"To: <sip:voipbridge@pbx.test>;tag=" + f.sub.localTag + "\r\n" +
		"Call-ID: " + f.sub.callID + "\r\n" +
		"CSeq: " + fmt.Sprint(cseq) + " NOTIFY\r\n" +
		"Contact: <sip:127.0.0.1:5060>\r\n" +
		"Max-Forwards: 70\r\n" + headers
	if body != "" && !strings.Contains(headers, "Content-Type:") {
		raw += "Content-Type: application/dialog-info+xml\r\n"
	}
	raw += fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
	msg, err := gosip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse NOTIFY: %v", err)
	}
	return msg.(*gosip.Request)
}

const dialogEvent = "Event: dialog\r\nSubscription-State: active;expires=500\r\n"

func early(v int, id string) string {
	return fmt.Sprintf(`<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="%d" state="full" entity="sip:201@pbx.test">`+
		`<dialog id="%s" call-id="call-%s" direction="recipient"><state>early</state><remote><identity>sip:0612345678@pbx.test</identity></remote></dialog></dialog-info>`, v, id, id)
}

func confirmed(v int, id string) string {
	return fmt.Sprintf(`<dialog-info version="%d" state="full"><dialog id="%s" call-id="call-%s" direction="recipient"><state>confirmed</state></dialog></dialog-info>`, v, id, id)
}

func TestNotifyAnswers(t *testing.T) {
	f := newNotifyFixture(t)
	ctx := context.Background()
	check := func(name string, req *gosip.Request, want int) {
		t.Helper()
		if got, _ := f.c.handleNotify(ctx, req); got != want {
			t.Errorf("%s: status %d, want %d", name, got, want)
		}
	}
	check("dialog event", f.notify(t, 1, dialogEvent, early(1, "a")), 200)
	check("compact event header", f.notify(t, 2, "o: dialog;id=77\r\nSubscription-State: active\r\n", confirmed(2, "a")), 200)
	check("other package", f.notify(t, 3, "Event: presence\r\nSubscription-State: active\r\n", ""), 489)
	check("no event", f.notify(t, 4, "Subscription-State: active\r\n", ""), 489)

	unknown := f.notify(t, 5, dialogEvent, "")
	unknown.ReplaceHeader(ptr(gosip.CallIDHeader("nobody-knows-this")))
	check("unknown call-id", unknown, 481)
	wrongTag := f.notify(t, 6, dialogEvent, "")
	wrongTag.To().Params.Remove("tag")
	wrongTag.To().Params.Add("tag", "someone-else")
	check("wrong to-tag", wrongTag, 481)
	otherDialog := f.notify(t, 7, dialogEvent, "")
	otherDialog.From().Params.Remove("tag")
	otherDialog.From().Params.Add("tag", "forked")
	check("other from-tag", otherDialog, 481)

	check("empty body is subscription state only", f.notify(t, 8, dialogEvent, ""), 200)
	check("garbage body is acknowledged", f.notify(t, 9, dialogEvent, "<dialog-info version="), 200)
	check("wrong content type", f.notify(t, 10, dialogEvent+"Content-Type: application/pidf+xml\r\n", early(11, "z")), 200)

	if n := len(f.j.got()); n != 3 {
		t.Errorf("%d signals journaled, want 3 (ringing, the first document's snapshot, answered)", n)
	}
	if got := value(t, f.c.metrics.parseErrors); got != 2 {
		t.Errorf("parse errors = %v, want 2", got)
	}
	for result, want := range map[string]float64{resultOK: 3, resultBadEvent: 2, resultUnknown: 3, resultParseError: 2} {
		if got := value(t, f.c.metrics.notifies.WithLabelValues(result)); got != want {
			t.Errorf("notifies{result=%s} = %v, want %v", result, got, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// value reads a counter or gauge.
func value(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	if pb.Counter != nil {
		return pb.Counter.GetValue()
	}
	return pb.Gauge.GetValue()
}

var discard = slog.New(slog.DiscardHandler)

func TestStaleAndRepeatedVersionsAreDropped(t *testing.T) {
	f := newNotifyFixture(t)
	ctx := context.Background()
	for _, n := range []struct {
		cseq int
		body string
	}{
		{1, early(5, "a")},
		{2, confirmed(7, "a")},
		{3, early(6, "b")},     // older than 7: dropped, b never rang
		{4, confirmed(7, "a")}, // same version again: dropped
	} {
		if st, _ := f.c.handleNotify(ctx, f.notify(t, n.cseq, dialogEvent, n.body)); st != 200 {
			t.Fatalf("status %d", st)
		}
	}
	var got []string
	for _, s := range f.j.got() {
		got = append(got, s.CallID+":"+string(s.State))
	}
	if want := "call-a:ringing :snapshot call-a:answered"; strings.Join(got, " ") != want {
		t.Errorf("signals %v, want %s", got, want)
	}
	if got := value(t, f.c.metrics.notifies.WithLabelValues(resultStale)); got != 2 {
		t.Errorf("stale = %v, want 2", got)
	}
}

func TestJournalFailureIsNotAcknowledged(t *testing.T) {
	f := newNotifyFixture(t)
	ctx := context.Background()
	f.j.setFailing(true)
	req := f.notify(t, 1, dialogEvent, early(3, "a"))
	if st, _ := f.c.handleNotify(ctx, req); st != 500 {
		t.Fatalf("status %d with a failing journal, want 500", st)
	}
	if len(f.w.legs) != 0 || f.sub.haveVersion || f.sub.snapshotted {
		t.Fatal("state committed although nothing was journaled")
	}
	if n := f.w.mbox.take(); len(n) != 1 || n[0].kind != noticeResync {
		t.Errorf("notices %+v, want one resync", n)
	}
	// The PBX retries the same document; now it is journaled.
	f.j.setFailing(false)
	if st, _ := f.c.handleNotify(ctx, f.notify(t, 2, dialogEvent, early(3, "a"))); st != 200 {
		t.Fatalf("retry status %d", st)
	}
	if got := f.j.got(); len(got) != 2 || got[0].State != events.Ringing || got[1].State != events.Snapshot {
		t.Fatalf("after retry: %+v", got)
	}
}

// TestSnapshotWithTheFirstFullDocumentOfEachSubscription: the first full
// document of a subscription is journaled as its dialogs' signals and then
// one snapshot of the extension; later documents are diffed only; a new
// subscription (after the PBX dropped the old one) snapshots again.
func TestSnapshotWithTheFirstFullDocumentOfEachSubscription(t *testing.T) {
	f := newNotifyFixture(t)
	ctx := context.Background()
	send := func(cseq int, body string) {
		t.Helper()
		if st, _ := f.c.handleNotify(ctx, f.notify(t, cseq, dialogEvent, body)); st != 200 {
			t.Fatalf("status %d", st)
		}
	}
	dialog := func(id, state string) string {
		return fmt.Sprintf(`<dialog id="%s" call-id="call-%s" direction="recipient"><state>%s</state></dialog>`, id, id, state)
	}
	doc := func(v int, state string, dialogs ...string) string {
		return fmt.Sprintf(`<dialog-info version="%d" state="%s">%s</dialog-info>`, v, state, strings.Join(dialogs, ""))
	}
	send(1, doc(1, "partial", dialog("a", "early"))) // a partial first document says nothing about other dialogs
	full := doc(2, "full", dialog("a", "confirmed"), dialog("b", "early"), dialog("c", "terminated"))
	send(2, full)
	send(2, full) // retransmitted
	send(3, doc(3, "full", dialog("b", "early")))
	f.sub = newSubscription(f.w, "pbx.test") // the PBX dropped us; a new subscription, same memory
	f.sub.remoteTag = "pbxtag"
	f.c.index.add(f.sub)
	send(1, doc(0, "full", dialog("b", "confirmed")))

	var got []string
	keys := map[string]bool{}
	for _, s := range f.j.got() {
		if s.State == events.Snapshot {
			got = append(got, "snapshot "+s.Extension+" ["+strings.Join(s.Open, " ")+"]")
			keys[s.DedupKey] = true
			continue
		}
		got = append(got, string(s.State)+" "+s.LegID)
	}
	want := []string{
		"ringing a@201",
		"answered a@201", "ringing b@201", "ended c@201", "snapshot 201 [a@201 b@201]",
		"ended a@201",
		"answered b@201", "snapshot 201 [b@201]",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("signals (-want +got):\n%s", d)
	}
	if len(keys) != 2 {
		t.Errorf("%d distinct snapshot keys, want 2", len(keys))
	}
}

// TestInvalidSignalIsDroppedNotRetried: a signal the journal refuses as
// invalid would be refused again on every retry; it is dropped and counted,
// the NOTIFY acknowledged and the rest of it journaled, so the extension's
// later NOTIFYs are not held back.
func TestInvalidSignalIsDroppedNotRetried(t *testing.T) {
	f := newNotifyFixture(t)
	f.j.refuse = func(s events.Signal) error {
		if s.CallID == "call-bad" {
			return fmt.Errorf("journal: %w", &events.FieldError{Field: "call_id", Problem: "is unusable"})
		}
		return nil
	}
	body := `<dialog-info version="3" state="full">` +
		`<dialog id="bad" call-id="call-bad"><state>early</state></dialog>` +
		`<dialog id="good" call-id="call-good"><state>early</state></dialog></dialog-info>`
	if st, _ := f.c.handleNotify(context.Background(), f.notify(t, 1, dialogEvent, body)); st != 200 {
		t.Fatalf("status %d, want 200", st)
	}
	var got []string
	for _, s := range f.j.got() {
		got = append(got, s.CallID+":"+string(s.State))
	}
	if want := "call-good:ringing :snapshot"; strings.Join(got, " ") != want {
		t.Errorf("journaled %v, want %s", got, want)
	}
	if v := value(t, f.c.metrics.dropped.WithLabelValues(reasonInvalid)); v != 1 {
		t.Errorf("dropped{reason=invalid} = %v, want 1", v)
	}
	if !f.sub.haveVersion || f.sub.version != 3 {
		t.Error("the document was not committed")
	}
}

func TestSubscriptionStateReachesTheStateMachine(t *testing.T) {
	f := newNotifyFixture(t)
	ctx := context.Background()
	f.c.handleNotify(ctx, f.notify(t, 1, "Event: dialog\r\nSubscription-State: active;expires=120\r\n", ""))
	f.c.handleNotify(ctx, f.notify(t, 2, "Event: dialog\r\nSubscription-State: terminated;reason=probation;retry-after=30\r\n", ""))
	partialGap := `<dialog-info version="9" state="partial"><dialog id="x" call-id="x"><state>early</state></dialog></dialog-info>`
	f.c.handleNotify(ctx, f.notify(t, 3, dialogEvent, confirmed(4, "a")))
	f.c.handleNotify(ctx, f.notify(t, 4, dialogEvent, partialGap))
	got := f.w.mbox.take()
	want := []notice{
		{sub: f.sub, kind: noticeExpires, expires: 120e9},
		{sub: f.sub, kind: noticeTerminated, reason: "probation", retryAfter: 30e9},
		{sub: f.sub, kind: noticeExpires, expires: 500e9},
		{sub: f.sub, kind: noticeExpires, expires: 500e9},
		{sub: f.sub, kind: noticeResync},
	}
	if len(got) != len(want) {
		t.Fatalf("notices %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("notice %d = %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestConcurrentNotifiesApplyInVersionOrder sends a call's documents in a
// random order from many goroutines (sipgo handles every request on its own
// goroutine): no leg may ever move backwards and the end state must be the
// newest document's.
func TestConcurrentNotifiesApplyInVersionOrder(t *testing.T) {
	for round := range 20 {
		f := newNotifyFixture(t)
		var bodies []string
		for call := range 10 {
			id := fmt.Sprint(call)
			v := call * 3
			bodies = append(bodies, early(v+1, id), confirmed(v+2, id),
				fmt.Sprintf(`<dialog-info version="%d" state="full"></dialog-info>`, v+3))
		}
		order := rand.Perm(len(bodies))
		var wg sync.WaitGroup
		for i, k := range order {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if st, _ := f.c.handleNotify(context.Background(), f.notify(t, i+1, dialogEvent, bodies[k])); st != 200 {
					t.Errorf("status %d", st)
				}
			}()
		}
		wg.Wait()
		last := map[string]int{}
		snapshots := 0
		for _, s := range f.j.got() {
			if s.State == events.Snapshot {
				snapshots++
				continue
			}
			if r := rank(s.State); r <= last[s.LegID] {
				t.Fatalf("round %d: leg %s went from rank %d to %s", round, s.LegID, last[s.LegID], s.State)
			}
			last[s.LegID] = rank(s.State)
		}
		if len(f.w.legs) != 0 || f.sub.version != 30 || snapshots != 1 {
			t.Fatalf("round %d: legs %v version %d snapshots %d, want none, 30 and 1", round, f.w.legs, f.sub.version, snapshots)
		}
	}
}

// FuzzNotify sends NOTIFYs with arbitrary Event and Subscription-State
// values and bodies through the handler: it must answer one of the statuses
// it documents, never panic, and journal only valid signals.
func FuzzNotify(f *testing.F) {
	f.Add("dialog", "active;expires=600", early(1, "a"))
	f.Add("dialog;id=5", "terminated;reason=probation;retry-after=abc", confirmed(2, "a"))
	f.Add("Dialog", "TERMINATED;Reason=Rejected", "")
	f.Add("presence", "active", "<x/>")
	f.Fuzz(func(t *testing.T, event, state, body string) {
		if strings.ContainsAny(event+state, "\r\n") {
			return // not a header value
		}
		fx := newNotifyFixture(t)
		raw := "NOTIFY sip:voipbridge@127.0.0.1:5070 SIP/2.0\r\n" +
			"Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfz\r\n" +
			"From: <sip:201@pbx.test>;tag=pbxtag\r\nTo: <sip:voipbridge@pbx.test>;tag=" + fx.sub.localTag + "\r\n" +
			"Call-ID: " + fx.sub.callID + "\r\nCSeq: 7 NOTIFY\r\n" +
			"Event: " + event + "\r\nSubscription-State: " + state + "\r\n" +
			"Content-Type: application/dialog-info+xml\r\n" +
			fmt.Sprintf("Content-Length: %d\r\n\r\n%s", len(body), body)
		msg, err := gosip.ParseMessage([]byte(raw))
		if err != nil {
			return
		}
		req, ok := msg.(*gosip.Request)
		if !ok {
			return
		}
		switch st, _ := fx.c.handleNotify(context.Background(), req); st {
		case 200, 481, 489:
		default:
			t.Fatalf("status %d", st)
		}
		for _, s := range fx.j.got() {
			if err := s.Validate(); err != nil {
				t.Fatalf("invalid signal %+v: %v", s, err)
			}
		}
		for _, n := range fx.w.mbox.take() {
			if n.expires < 0 || n.retryAfter < 0 {
				t.Fatalf("negative duration in %+v", n)
			}
		}
	})
}

func TestHugeDurationsAreClamped(t *testing.T) {
	ss := parseSubState(gosip.NewHeader("Subscription-State", "terminated;reason=giveup;retry-after=99999999999999999;expires=18446744073709551615"))
	if ss.retryAfter != maxSeconds*time.Second || ss.expires != maxSeconds*time.Second {
		t.Errorf("%+v", ss)
	}
	res := gosip.NewResponse(200, "OK")
	res.AppendHeader(gosip.NewHeader("Expires", "99999999999999"))
	res.AppendHeader(gosip.NewHeader("Retry-After", "120 (maintenance);duration=30"))
	if r := replyOf(res); r.expires != maxSeconds || r.retryAfter != 120*time.Second {
		t.Errorf("%+v", r)
	}
}
