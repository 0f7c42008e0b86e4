package events

import (
	"context"
	"testing"
)

type envRecorder struct{ got []Envelope }

func (r *envRecorder) SendEnvelope(_ context.Context, env Envelope) error {
	r.got = append(r.got, env)
	return nil
}

// TestEnvelopes: a sink that takes only envelopes is a Sink, and the
// dispatcher still finds its SendEnvelope.
func TestEnvelopes(t *testing.T) {
	r := &envRecorder{}
	s := Envelopes(r)
	if err := s.Send(context.Background(), Event{ID: "c1", Type: EventAnswered}); err != nil {
		t.Fatal(err)
	}
	es, ok := s.(EnvelopeSink)
	if !ok {
		t.Fatal("Envelopes(x) hides SendEnvelope from the dispatcher")
	}
	if err := es.SendEnvelope(context.Background(), Envelope{Event: Event{ID: "c2"}, Call: &CallSummary{Customer: "+31612345678"}}); err != nil {
		t.Fatal(err)
	}
	if len(r.got) != 2 || r.got[0].Event.ID != "c1" || r.got[0].Call != nil || r.got[1].Call == nil {
		t.Errorf("got %+v", r.got)
	}
	if k := BucketKey("+31612345678"); len(k) != 25 || k[0] != 'c' || k == BucketKey("+31612345679") {
		t.Errorf("BucketKey = %q", k)
	}
}
