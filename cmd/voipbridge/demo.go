package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/voipbridge/voipbridge/bridge"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// demoStep is one thing the simulated PBX does in a call.
type demoStep struct {
	after time.Duration
	event string // ringing, answered, transferred, ended
	ext   string
	leg   string
	say   string
}

// demoCall is a scripted call and the events ROBIN should receive for it.
type demoCall struct {
	name      string
	direction string
	remote    string
	steps     []demoStep
	events    int
}

var demoCalls = []demoCall{
	{name: "answered", direction: "inbound", remote: "06 1234 5678", events: 2, steps: []demoStep{
		{0, "ringing", "201", "", "rings extension 201"},
		{800 * time.Millisecond, "answered", "201", "", "extension 201 answers"},
		{1500 * time.Millisecond, "ended", "201", "", "the caller hangs up"},
	}},
	{name: "transferred", direction: "inbound", remote: "+31 20 123 4567", events: 3, steps: []demoStep{
		{0, "ringing", "202", "", "rings extension 202"},
		{700 * time.Millisecond, "answered", "202", "", "extension 202 answers"},
		{1200 * time.Millisecond, "transferred", "203", "", "202 transfers the call to extension 203"},
		{1500 * time.Millisecond, "ended", "", "", "the call ends"},
	}},
	{name: "missed", direction: "inbound", remote: "0031 6 8765 4321", events: 1, steps: []demoStep{
		{0, "ringing", "201", "a", "rings extensions 201 and 202 (ring group)"},
		{0, "ringing", "202", "b", ""},
		{2 * time.Second, "ended", "", "", "nobody answers; the caller gives up"},
	}},
	{name: "outbound", direction: "outbound", remote: "010 765 4321", events: 2, steps: []demoStep{
		{0, "ringing", "204", "", "extension 204 dials out"},
		{900 * time.Millisecond, "answered", "204", "", "the customer picks up"},
		{1300 * time.Millisecond, "ended", "204", "", "extension 204 hangs up"},
	}},
}

const demoDID = "+31 85 877 0023"

func demo(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	calls := fs.Int("calls", len(demoCalls), "how many calls the simulated PBX places")
	follow := fs.Bool("follow", false, "keep placing calls until Ctrl-C")
	pbx := fs.String("pbx", "generic", "which PBX to simulate: "+strings.Join(simulatorNames(), ", "))
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if len(rest) > 0 {
		fmt.Fprintf(stderr, "voipbridge demo: unexpected argument %q\n", rest[0])
		return 2
	}
	newSim, ok := simulators[*pbx]
	if !ok {
		fmt.Fprintf(stderr, "voipbridge demo: --pbx %q is not one of: %s\n", *pbx, strings.Join(simulatorNames(), ", "))
		return 2
	}
	if *calls < 1 && !*follow {
		fmt.Fprintln(stderr, "voipbridge demo: --calls must be at least 1")
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := runDemo(ctx, newSim, *calls, *follow, stdout, stderr); err != nil {
		fmt.Fprintln(stderr, "voipbridge demo:", err)
		return 1
	}
	return 0
}

// simulator plays one kind of PBX in the demo.
type simulator interface {
	// Env returns the bridge settings that make it listen to this PBX.
	Env() []string
	// Start is called once the bridge runs, with its HTTP base URL and webhook token.
	Start(bridgeURL, token string) error
	// Place plays one scripted call.
	Place(ctx context.Context, id string, c demoCall) error
	// Name says what the bridge listens to, for the introduction.
	Name() string
	Close()
}

// simulators are the PBXs the demo can play, by --pbx name.
var simulators = map[string]func(out *demoPrinter) (simulator, error){
	"generic":  func(out *demoPrinter) (simulator, error) { return &genericPBX{out: out}, nil },
	"3cx":      newThreeCXPBX,
	"xelion":   newXelionPBX,
	"voipgrid": newVoIPGRIDPBX,
	"sip":      newSIPPBX,
}

func simulatorNames() []string {
	names := make([]string, 0, len(simulators))
	for n := range simulators {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func runDemo(ctx context.Context, newSim func(*demoPrinter) (simulator, error), calls int, follow bool, stdout, stderr io.Writer) error {
	dir, err := os.MkdirTemp("", "voipbridge-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	out := &demoPrinter{w: stdout, start: time.Now()}

	const key = "demo-key"
	robinFake := robintest.NewServer(robintest.Options{APIKey: key, APISecret: demoSecret})
	defer robinFake.Close()
	robinFake.OnEvent(func(r robintest.Received) {
		e := r.Event
		ref := ""
		if e.PhoneReferrer != "" {
			ref = " via " + e.PhoneReferrer
		}
		out.line("ROBIN", fmt.Sprintf("%-12s call %-8s ext %-4s %s %s%s", e.Type, e.ID, e.PhoneExtension, strings.ToLower(e.Direction), e.PhoneNumber, ref))
	})

	sim, err := newSim(out)
	if err != nil {
		return err
	}
	defer sim.Close()
	token := randomToken()
	cfg, err := bridge.LoadConfig(append([]string{
		"HTTP_ADDR=127.0.0.1:0",
		"DATA_DIR=" + dir,
		"ROBIN_API_URL=" + robinFake.URL(),
		"ROBIN_PRESENCE_URL=" + robinFake.PresenceURL(),
		"ROBIN_API_KEY=" + key,
		"WEBHOOK_TOKEN=" + token,
		"TRANSFER_WINDOW=1s",
		"BOARD_ALLOW_CIDRS=127.0.0.0/8", // the live call board, for this machine only
	}, append(demoFollowUpEnv(), sim.Env()...)...))
	if err != nil {
		return err
	}
	log := newLogger(stderr, "text", slog.LevelWarn)
	b, err := bridge.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	runCtx, stopBridge := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- b.Run(runCtx) }()
	defer func() { stopBridge(); <-done }()

	if err := sim.Start("http://"+b.Addr(), token); err != nil {
		return err
	}
	if follow {
		out.printf("the live call board: http://%s/ (open it in a browser)\n", b.Addr())
	}
	out.printf("voipbridge demo: a simulated PBX reports calls to the bridge (%s, bridge at http://%s);\n", sim.Name(), b.Addr())
	out.printf("the bridge journals them, works out the events and delivers them to a fake ROBIN at %s.\n\n", robinFake.URL())

	want := 0
	var wg sync.WaitGroup
	for i := 0; follow || i < calls; i++ {
		c := demoCalls[i%len(demoCalls)]
		want += c.events
		id := fmt.Sprintf("demo-%d", i+1)
		wg.Go(func() {
			if err := sim.Place(ctx, id, c); err != nil && ctx.Err() == nil {
				out.line("PBX", fmt.Sprintf("call %s: %v", id, err))
			}
		})
		select {
		case <-ctx.Done():
			follow, calls = false, 0
		case <-time.After(1200 * time.Millisecond):
		}
		if ctx.Err() != nil {
			break
		}
	}
	wg.Wait()
	if ctx.Err() != nil {
		out.println("\ninterrupted; stopping the bridge")
		return nil
	}
	waitCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	got, err := robinFake.WaitEvents(waitCtx, want)
	if err != nil {
		return fmt.Errorf("ROBIN received %d of %d events: %w", len(robinFake.Events()), want, err)
	}
	types := map[string]int{}
	for _, r := range got {
		types[string(r.Event.Type)]++
	}
	var parts []string
	for t, n := range types {
		parts = append(parts, fmt.Sprintf("%d %s", n, t))
	}
	sort.Strings(parts)
	out.printf("\ndone: %d calls, ROBIN received %d events (%s).\n", calls, len(got), strings.Join(parts, ", "))
	if err := demoFollowUps(ctx, out, robinFake, calls); err != nil {
		return err
	}
	return demoRoute(ctx, out, "http://"+b.Addr(), calls)
}

// genericPBX plays a PBX that reports calls to the generic webhook.
type genericPBX struct {
	url, token string
	out        *demoPrinter
	client     http.Client
}

func (p *genericPBX) Env() []string { return nil }
func (p *genericPBX) Name() string  { return "generic JSON webhook" }
func (p *genericPBX) Close()        {}

func (p *genericPBX) Start(bridgeURL, token string) error {
	p.url, p.token = bridgeURL+"/v1/webhooks/generic", token
	return nil
}

func (p *genericPBX) Place(ctx context.Context, id string, c demoCall) error {
	from, to := c.remote, demoDID
	if c.direction == "outbound" {
		from, to = demoDID, c.remote
	}
	intro := fmt.Sprintf("call %s: %s calls %s", id, from, to)
	p.out.line("PBX", intro)
	last := time.Duration(0)
	for i, s := range c.steps {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(s.after - last):
		}
		last = s.after
		body, _ := json.Marshal(map[string]string{
			"call_id": id, "event": s.event, "direction": c.direction, "from": from, "to": to,
			"extension": s.ext, "leg_id": s.leg, "timestamp": time.Now().UTC().Format(time.RFC3339Nano),
			"event_id": fmt.Sprintf("%s-%d", id, i),
		})
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+p.token)
		resp, err := p.client.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			return fmt.Errorf("webhook answered %s", resp.Status)
		}
		if s.say != "" {
			p.out.line("PBX", fmt.Sprintf("call %s: %s", id, s.say))
		}
	}
	return nil
}

// demoPrinter writes one timestamped line at a time.
type demoPrinter struct {
	mu    sync.Mutex
	w     io.Writer
	start time.Time
}

// printf writes free text, serialised with the lines.
func (p *demoPrinter) printf(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, format, args...)
}

func (p *demoPrinter) println(args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintln(p.w, args...)
}

func (p *demoPrinter) line(who, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.w, "%6.1fs  %-5s  %s\n", time.Since(p.start).Seconds(), who, msg)
}

func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
