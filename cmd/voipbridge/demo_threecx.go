package main

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync/atomic"
	"time"

	"github.com/voipbridge/voipbridge/pbx/threecx/threecxtest"
)

// threecxPBX plays a 3CX V20 with the fake Call Control API of threecxtest:
// the bridge follows it over the WebSocket as it would a real 3CX, and every
// step of a script becomes what 3CX shows of a call: participants on the
// extensions' DNs that ring, connect and are removed.
type threecxPBX struct {
	out    *demoPrinter
	srv    *threecxtest.Server
	url    string
	secret string
	calls  atomic.Int64 // callids
	parts  atomic.Int64 // participant ids
}

func newThreeCXPBX(out *demoPrinter) (simulator, error) {
	p := &threecxPBX{out: out, secret: randomToken()}
	p.calls.Store(1263)
	p.parts.Store(8105)
	p.srv = threecxtest.New(threecxtest.Options{ClientID: "voipbridge-demo", ClientSecret: p.secret})
	for _, dn := range []string{"201", "202", "203", "204"} {
		p.srv.SetDN(dn, "Wextension")
	}
	p.srv.SetDN("800", "Wringgroup")
	p.url = p.srv.StartHTTP()
	return p, nil
}

func (p *threecxPBX) Env() []string {
	return []string{"THREECX_URL=" + p.url, "THREECX_CLIENT_ID=voipbridge-demo", "THREECX_CLIENT_SECRET=" + p.secret}
}

func (p *threecxPBX) Name() string { return "a fake 3CX V20 Call Control API at " + p.url }
func (p *threecxPBX) Close()       { p.srv.Close() }

// Start waits until the bridge has the WebSocket open: 3CX does not replay
// what a client missed, and the socket goes up before the bridge's snapshot.
func (p *threecxPBX) Start(string, string) error {
	return waitFor("the bridge to connect to the 3CX API", func() bool { return p.srv.Connections() > 0 })
}

func (p *threecxPBX) Place(ctx context.Context, id string, c demoCall) error {
	callID := p.calls.Add(1)
	parts := map[string]int64{} // DN → its live participant in this call
	var order []string          // DNs in the order they joined
	party := func(dn, status string, extra map[string]any) error {
		pid, ok := parts[dn]
		if !ok {
			pid = p.parts.Add(1)
			parts[dn] = pid
			order = append(order, dn)
		}
		fields := with(extra, map[string]any{"dn": dn, "id": pid, "callid": callID, "status": status})
		return p.srv.Upsert(fields, threecxtest.Send)
	}
	remove := func(dn string) {
		p.srv.Remove(dn, fmt.Sprint(parts[dn]), threecxtest.Send)
		delete(parts, dn)
	}
	// The other party as 3CX describes it: the customer on an outside line.
	caller := map[string]any{
		"party_caller_id": compactNumber(c.remote), "party_caller_name": compactNumber(c.remote),
		"party_dn_type": "Wexternalline",
	}
	if c.direction == "inbound" {
		caller["party_did"] = compactNumber(demoDID)
		caller["originated_by_dn"], caller["originated_by_type"] = "ROUTER", "Wroutepoint"
	}
	var agent string // the DN that has the call
	return playSteps(ctx, p.out, id, c, func(s demoStep) error {
		switch s.event {
		case "ringing":
			status, extra := "Ringing", caller
			if c.direction == "outbound" {
				status = "Dialing" // the agent's phone dials out
			} else if s.leg != "" {
				extra = with(caller, map[string]any{"originated_by_dn": "800", "originated_by_type": "Wringgroup"})
			}
			return party(s.ext, status, extra)
		case "answered":
			agent = s.ext
			return party(s.ext, "Connected", nil)
		case "transferred":
			// A blind transfer: the target rings, referred by the agent, who
			// drops out; the call (same callid) connects on the target.
			referred := with(caller, map[string]any{"referred_by_dn": agent, "referred_by_type": "Wextension"})
			if err := party(s.ext, "Ringing", referred); err != nil {
				return err
			}
			remove(agent)
			agent = s.ext
			return party(s.ext, "Connected", nil)
		case "ended":
			for _, dn := range order {
				if _, live := parts[dn]; live {
					remove(dn)
				}
			}
			return nil
		}
		return fmt.Errorf("3cx: no translation for step %q", s.event)
	})
}

// The helpers below are shared by the vendor simulators.

// playSteps plays c as the generic simulator does: it announces the call,
// performs each step at its time with do, and prints what the PBX did.
func playSteps(ctx context.Context, out *demoPrinter, id string, c demoCall, do func(demoStep) error) error {
	from, to := c.remote, demoDID
	if c.direction == "outbound" {
		from, to = demoDID, c.remote
	}
	out.line("PBX", fmt.Sprintf("call %s: %s calls %s", id, from, to))
	start := time.Now()
	for _, s := range c.steps {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Until(start.Add(s.after))):
		}
		if err := do(s); err != nil {
			return err
		}
		if s.say != "" {
			out.line("PBX", fmt.Sprintf("call %s: %s", id, s.say))
		}
	}
	return nil
}

// compactNumber writes a number of the scripts without spaces, as PBXs send
// them.
func compactNumber(s string) string { return strings.ReplaceAll(s, " ", "") }

// with returns a copy of base with extra's fields added.
func with(base, extra map[string]any) map[string]any {
	out := maps.Clone(base)
	if out == nil {
		out = map[string]any{}
	}
	maps.Copy(out, extra)
	return out
}

// waitFor polls cond for up to 30 seconds (the machine may be busy).
func waitFor(what string, cond func() bool) error {
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
