package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// demoRoute plays the IVR when the demo's inbound callers ring again: for
// each it asks the bridge (GET /v1/route) which agent should take the call,
// and checks that the answer is the agent who had the caller last, or none
// for a caller nobody answered (the IVR then sends them to the queue).
func demoRoute(ctx context.Context, out *demoPrinter, bridgeURL string, calls int) error {
	out.println("\nthe callers ring again; the IVR asks the bridge which agent should take each call:")
	client := &http.Client{Timeout: 5 * time.Second}
	for i := 0; i < calls && i < len(demoCalls); i++ {
		c := demoCalls[i]
		if c.direction != "inbound" {
			continue
		}
		want := lastAgent(c)
		var (
			got demoRouteAnswer
			err error
		)
		// The history learns of a call when the tracker commits its
		// events; give the last call's a moment.
		for try := 0; try < 20; try++ {
			if got, err = askRoute(ctx, client, bridgeURL, c.remote); err != nil || got.Extension == want {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			return fmt.Errorf("route look-up for %s: %w", c.remote, err)
		}
		switch {
		case got.Extension != want:
			return fmt.Errorf("route look-up for %s: extension %q, want %q (%s)", c.remote, got.Extension, want, got.Reason)
		case want == "":
			out.line("IVR", fmt.Sprintf("%-16s → no preferred agent (%s): to the queue", c.remote, got.Reason))
		default:
			out.line("IVR", fmt.Sprintf("%-16s → extension %s, who had this caller %ds ago (via %s)", c.remote, got.Extension, got.AgeS, got.Via))
		}
	}
	return nil
}

// demoRouteAnswer is the part of GET /v1/route's JSON the demo prints.
type demoRouteAnswer struct {
	Extension string `json:"extension"`
	Via       string `json:"via"`
	AgeS      int64  `json:"age_s"`
	Reason    string `json:"reason"`
}

func askRoute(ctx context.Context, client *http.Client, bridgeURL, caller string) (demoRouteAnswer, error) {
	var a demoRouteAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, bridgeURL+"/v1/route?caller="+url.QueryEscape(caller), nil)
	if err != nil {
		return a, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return a, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return a, fmt.Errorf("%s: %s", resp.Status, b)
	}
	return a, json.Unmarshal(b, &a)
}

// lastAgent is the extension that last had the caller of c on the phone:
// the one who answered, or the last one the call was transferred to; ""
// for a call nobody answered.
func lastAgent(c demoCall) string {
	ext, answered := "", false
	for _, s := range c.steps {
		switch s.event {
		case "answered":
			ext, answered = s.ext, true
		case "transferred":
			if answered {
				ext = s.ext
			}
		}
	}
	return ext
}
