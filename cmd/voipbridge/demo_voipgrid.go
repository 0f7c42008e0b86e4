package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/voipbridge/voipbridge/phone"
)

// voipgridPBX plays Voys (a VoIPGRID platform): it POSTs a call
// notification for every moment of a call to the bridge's VoIPGRID webhook,
// with the token in the URL because the platform cannot set headers.
type voipgridPBX struct {
	out     *demoPrinter
	url     string
	numbers *phone.Normalizer
	client  http.Client
}

func newVoIPGRIDPBX(out *demoPrinter) (simulator, error) {
	numbers, err := phone.New(phone.Options{})
	if err != nil {
		return nil, err
	}
	return &voipgridPBX{out: out, numbers: numbers}, nil
}

func (p *voipgridPBX) Env() []string { return []string{"VOIPGRID_ENABLED=true"} }
func (p *voipgridPBX) Name() string {
	return "Voys (VoIPGRID) call notifications POSTed to /v1/webhooks/voipgrid/<token>"
}
func (p *voipgridPBX) Close() {}

func (p *voipgridPBX) Start(bridgeURL, token string) error {
	p.url = bridgeURL + "/v1/webhooks/voipgrid/" + token
	return nil
}

func (p *voipgridPBX) Place(ctx context.Context, id string, c demoCall) error {
	customer, did := p.numbers.Normalize(c.remote).E164, p.numbers.Normalize(demoDID).E164
	// user is the platform's description of the phone account on ext.
	user := func(ext string) map[string]any {
		return map[string]any{"number": did, "name": "Extension " + ext, "account_number": "1" + ext, "user_numbers": []string{ext}}
	}
	// post sends one notification; targets are the agents it is about.
	post := func(status, reason string, targets ...string) error {
		n := map[string]any{
			"call_id": id, "timestamp": time.Now().UTC().Format("2006-01-02T15:04:05.000000-07:00"),
			"status": status, "reason": reason, "version": "v2", "direction": c.direction,
		}
		if c.direction == "outbound" {
			// The agent is the caller; the destination is the customer.
			n["caller"], n["destination"] = user(targets[0]), map[string]any{"number": customer}
		} else {
			dest := map[string]any{"number": did}
			var ts []map[string]any
			for _, ext := range targets {
				ts = append(ts, user(ext))
			}
			if ts != nil {
				dest["targets"] = ts
			}
			n["caller"], n["destination"] = map[string]any{"number": customer, "user_numbers": []string{}}, dest
		}
		body, _ := json.Marshal(n)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := p.client.Do(req)
		if err != nil {
			return fmt.Errorf("voipgrid webhook: %w", err)
		}
		answer, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("voipgrid webhook answered %s: %s", resp.Status, strings.TrimSpace(string(answer)))
		}
		return nil
	}
	created := false
	var agent string // the agent who has the call
	return playSteps(ctx, p.out, id, c, func(s demoStep) error {
		switch s.event {
		case "ringing":
			// An inbound call is announced once before the first phone rings.
			if c.direction == "inbound" && !created {
				created = true
				if err := post("created", ""); err != nil {
					return err
				}
			}
			if c.direction == "outbound" {
				agent = s.ext
			}
			return post("ringing", "", s.ext)
		case "answered":
			agent = s.ext
			return post("in-progress", "", s.ext)
		case "transferred":
			agent = s.ext
			return post("cold-transfer", "", s.ext)
		case "ended":
			if agent == "" {
				return post("ended", "no-answer") // missed: the platform names no target
			}
			return post("ended", "completed", agent)
		}
		return fmt.Errorf("voipgrid: no translation for step %q", s.event)
	})
}
