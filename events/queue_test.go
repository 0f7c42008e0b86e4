package events

import (
	"testing"
)

// TestJournalQueueRemoveTwice: the journal answers the removal of a message
// that is already gone with "no message found" (err_code 10057); the queue
// counts that as removed instead of retrying it forever.
func TestJournalQueueRemoveTwice(t *testing.T) {
	j := openJournal(t, t.TempDir())
	defer j.Close()
	if err := j.publishEvent(t.Context(), policyEvent("a")); err != nil {
		t.Fatal(err)
	}
	q := NewJournalQueue(j)
	defer q.Close()
	e, err := q.Next(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if e.Env.Event.ID != "a" || e.Unreadable != nil {
		t.Fatalf("read %+v, want the event of call a", e)
	}
	if err := q.Remove(t.Context(), e.Seq); err != nil {
		t.Fatal(err)
	}
	raw := j.events.DeleteMsg(t.Context(), e.Seq)
	if raw == nil {
		t.Fatal("the journal removed a message twice without an error: this test cannot tell anything")
	}
	t.Logf("second removal answered: %v", raw)
	if !alreadyRemoved(raw) {
		t.Errorf("alreadyRemoved(%v) = false", raw)
	}
	if err := q.Remove(t.Context(), e.Seq); err != nil {
		t.Errorf("second Remove: %v, want nil (already removed)", err)
	}
	if n := streamMsgs(t, j.events); n != 0 {
		t.Errorf("%d events left", n)
	}
}
