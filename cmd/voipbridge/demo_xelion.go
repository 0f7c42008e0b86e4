package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/voipbridge/voipbridge/pbx/xelion"
	"github.com/voipbridge/voipbridge/pbx/xelion/xeliontest"
	"github.com/voipbridge/voipbridge/phone"
)

// xelionPBX plays a Xelion server with the fake of xeliontest: the bridge
// logs in, opens the WebSocket and subscribes as it would to a real Xelion,
// and every step of a script becomes the call notifications Xelion sends.
// Xelion names users by their OID; the directory maps those to extensions.
type xelionPBX struct {
	out      *demoPrinter
	fake     *xeliontest.Server
	password string
	numbers  *phone.Normalizer
	calls    atomic.Int64
}

// xelionUsers are the Xelion users behind the scripts' extensions.
var xelionUsers = map[string]struct{ oid, name string }{
	"201": {"1650201", "Anna"}, "202": {"1650202", "Bert"}, "203": {"1650203", "Carla"}, "204": {"1650204", "Daan"},
}

func newXelionPBX(out *demoPrinter) (simulator, error) {
	numbers, err := phone.New(phone.Options{})
	if err != nil {
		return nil, err
	}
	p := &xelionPBX{out: out, password: randomToken(), numbers: numbers}
	p.calls.Store(100)
	p.fake = xeliontest.New(xeliontest.Options{Username: "voipbridge-demo", Password: p.password})
	p.fake.Start()
	return p, nil
}

func (p *xelionPBX) Env() []string {
	var dir []string
	for ext, u := range xelionUsers {
		dir = append(dir, u.oid+":"+ext)
	}
	slices.Sort(dir)
	return []string{
		"XELION_URL=" + p.fake.URL, "XELION_USERNAME=voipbridge-demo", "XELION_PASSWORD=" + p.password,
		"XELION_USERSPACE=voipbridge-demo", "EXTENSIONS=" + strings.Join(dir, ","),
	}
}

func (p *xelionPBX) Name() string { return "a fake Xelion server at " + p.fake.URL }
func (p *xelionPBX) Close()       { p.fake.Close() }

// Start waits until the bridge has subscribed to the call notifications:
// Xelion sends them only to sessions that asked.
func (p *xelionPBX) Start(string, string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return p.fake.WaitConnected(ctx, 1, xelion.Subscriptions...)
}

func (p *xelionPBX) Place(ctx context.Context, id string, c demoCall) error {
	callID := fmt.Sprintf("%d.%d", time.Now().Unix(), p.calls.Add(1))
	started := time.Now()
	customer, did := p.numbers.Normalize(c.remote).E164, p.numbers.Normalize(demoDID).E164
	// event describes the call between the customer and the agent on ext,
	// as Xelion's CallEvent does.
	event := func(ext string) map[string]any {
		u := xelionUsers[ext]
		agent := map[string]any{"oid": u.oid, "commonName": u.name, "objectType": "Person"}
		e := map[string]any{
			"callId": callID, "initiation": "incoming", "date": started.Format(time.DateTime),
			"callerPhoneNumber": customer, "calleePhoneNumber": did, "calleeName": u.name, "calleeAddressable": agent,
			"duration": int(time.Since(started).Seconds()),
		}
		if c.direction == "outbound" {
			e["initiation"] = "outgoing"
			e["callerPhoneNumber"], e["callerName"], e["callerAddressable"] = did, u.name, agent
			e["calleePhoneNumber"], e["calleeName"], e["calleeAddressable"] = customer, "", nil
		}
		return e
	}
	send := func(typ string, e map[string]any) error {
		return p.fake.Send(ctx, xeliontest.Notification(typ, e))
	}
	var ringing []string // agents whose phone rings and who have not answered
	var agent string     // the agent who has the call
	return playSteps(ctx, p.out, id, c, func(s demoStep) error {
		switch s.event {
		case "ringing":
			ringing = append(ringing, s.ext)
			return send("newCallEvent", event(s.ext))
		case "answered":
			ringing = slices.DeleteFunc(ringing, func(e string) bool { return e == s.ext })
			agent = s.ext
			return send("callConnectedEvent", event(s.ext))
		case "transferred":
			// Xelion reports the transfer with the call's new party, then
			// hangs up the channel of the agent who handed it on.
			if err := send("callTransferredEvent", event(s.ext)); err != nil {
				return err
			}
			hangup := event(agent)
			delete(hangup, "callerPhoneNumber")
			agent = s.ext
			return send("channelHungUpEvent", hangup)
		case "ended":
			// Unanswered: each user whose phone rang missed the call.
			for _, ext := range ringing {
				if err := send("missedCallEvent", event(ext)); err != nil {
					return err
				}
				agent = ext
			}
			ringing = nil
			return send("callHungUpEvent", event(agent))
		}
		return fmt.Errorf("xelion: no translation for step %q", s.event)
	})
}
