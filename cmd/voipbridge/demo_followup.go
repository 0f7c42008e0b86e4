package main

import (
	"context"
	"fmt"
	"time"

	"github.com/voipbridge/voipbridge/robin/robintest"
)

// demoFollowUpEnv turns on the missed-call follow-ups against the fake
// ROBIN's Channel API.
func demoFollowUpEnv() []string {
	return []string{"MISSED_CALL_CHANNEL=voipbridge-missed-calls", "ROBIN_API_SECRET=" + demoSecret}
}

const demoSecret = "demo-secret"

// demoFollowUps waits for the follow-up of each missed inbound call the demo
// placed and shows it as ROBIN got it: a message on the custom channel, in
// the caller's own conversation.
func demoFollowUps(ctx context.Context, out *demoPrinter, fake *robintest.Server, calls int) error {
	want := 0
	for i := 0; i < calls; i++ {
		if c := demoCalls[i%len(demoCalls)]; c.name == "missed" {
			want++
		}
	}
	if want == 0 {
		return nil
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(fake.Messages()) < want {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("ROBIN received %d of %d missed-call follow-ups", len(fake.Messages()), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	out.println("\nmissed calls became follow-ups in ROBIN (a custom channel, one conversation per caller):")
	for _, m := range fake.Messages() {
		out.line("ROBIN", fmt.Sprintf("%s  conversation %s: %s", m.Subject, m.ConversationExternalIdentifier, m.Content))
	}
	return nil
}
