// Package eventstest helps sources test their translation against the one
// call model of package events.
package eventstest

import (
	"time"

	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/phone"
)

// TB is the part of testing.TB Replay uses.
type TB interface {
	Helper()
	Fatal(args ...any)
}

// Policies are the defaults a bridge runs with: missed calls reported,
// withheld numbers as "anonymous", CALL_TIMEOUT 4h, TRANSFER_WINDOW 2s.
func Policies() events.Policies {
	return events.Policies{ReportMissed: true, AnonymousNumber: "anonymous", CallTimeout: 4 * time.Hour, TransferWindow: 2 * time.Second}
}

// Replay folds journaled signals through the call model (events.Replay)
// with Policies, numbers of region NL and the directory spec in EXTENSIONS
// syntax ("" maps every extension to itself).
func Replay(t TB, spec string, sigs []events.Signal) []events.Event {
	t.Helper()
	return ReplayWith(t, Policies(), spec, sigs)
}

// ReplayWith is Replay under the given policies (for example without a
// CallTimeout, to see whether the signals alone end a call).
func ReplayWith(t TB, pol events.Policies, spec string, sigs []events.Signal) []events.Event {
	t.Helper()
	numbers, err := phone.New(phone.Options{Region: "NL"})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := extensions.Load(spec, "")
	if err != nil {
		t.Fatal(err)
	}
	return events.Replay(pol, numbers, dir, sigs)
}
