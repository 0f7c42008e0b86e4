package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/voipbridge/voipbridge/sip/siptest"
)

// sipPBX plays a SIP PBX with the fake of siptest: the bridge SUBSCRIBEs to
// the dialog state of every extension (digest authentication, UDP) and every
// step of a script becomes the RFC 4235 NOTIFYs the PBX sends for the
// dialogs on those extensions. Changes come as partial documents, one dialog
// each: a full document of an extension with two dialogs (202 while the ring
// group rings it during the transfer) is larger than the 1300 bytes sipgo
// sends over UDP (RFC 3261 §18.1.1), and the fake would drop it.
type sipPBX struct {
	out      *demoPrinter
	pbx      *siptest.PBX
	password string
}

var demoSIPExtensions = []string{"201", "202", "203", "204"}

func newSIPPBX(out *demoPrinter) (simulator, error) {
	p := &sipPBX{out: out, password: randomToken()}
	pbx, err := siptest.New(siptest.Options{Partial: true, Username: "voipbridge-demo", Password: p.password})
	if err != nil {
		return nil, fmt.Errorf("fake SIP PBX: %w", err)
	}
	p.pbx = pbx
	return p, nil
}

func (p *sipPBX) Env() []string {
	return []string{
		"SIP_SERVER=" + p.pbx.Addr(), "SIP_TRANSPORT=udp", "SIP_DOMAIN=" + p.pbx.Domain(), "SIP_LISTEN=127.0.0.1:0",
		"SIP_USERNAME=voipbridge-demo", "SIP_PASSWORD=" + p.password, "SIP_EXTENSIONS=" + strings.Join(demoSIPExtensions, ","),
	}
}

func (p *sipPBX) Name() string {
	return "a fake SIP PBX sending dialog-info NOTIFYs from udp " + p.pbx.Addr()
}
func (p *sipPBX) Close() { p.pbx.Close() }

// Start waits until the bridge has subscribed to every extension and
// answered the first NOTIFY of each subscription, so that it hears of every
// change the calls make.
func (p *sipPBX) Start(string, string) error {
	return waitFor("the bridge to subscribe to every extension", func() bool {
		for _, ext := range demoSIPExtensions {
			if p.pbx.Subscribed(ext) == 0 {
				return false
			}
		}
		return p.pbx.Settled()
	})
}

func (p *sipPBX) Place(ctx context.Context, id string, c demoCall) error {
	// The fake PBX shows one dialog of the call at a time (see ringing).
	var current *siptest.Leg
	answered := false
	return playSteps(ctx, p.out, id, c, func(s demoStep) error {
		switch s.event {
		case "ringing":
			switch {
			case c.direction == "outbound":
				current = p.pbx.Outbound(s.ext, compactNumber(c.remote))
			case current == nil:
				current = p.pbx.Inbound(s.ext, compactNumber(c.remote), compactNumber(demoDID))
			default:
				// The fake cannot fork one call to two phones at once, so a
				// ring group hunts: the first phone's dialog ends and the
				// call (same Call-ID) rings on the next.
				current = current.BlindTransfer(s.ext, siptest.TransferOptions{})
			}
		case "answered":
			answered = true
			current.Answer()
		case "transferred":
			// The agent's dialog ends and the call (same Call-ID) starts on
			// the target, who picks up.
			current = current.BlindTransfer(s.ext, siptest.TransferOptions{})
			current.Answer()
		case "ended":
			switch {
			case !answered:
				current.Cancel()
			case c.direction == "outbound":
				current.Hangup("local-bye")
			default:
				current.Hangup("remote-bye")
			}
		default:
			return fmt.Errorf("sip: no translation for step %q", s.event)
		}
		return nil
	})
}
