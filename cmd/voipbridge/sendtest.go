package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/voipbridge/voipbridge/bridge"
	"github.com/voipbridge/voipbridge/events"
	"github.com/voipbridge/voipbridge/extensions"
	"github.com/voipbridge/voipbridge/pbx/threecx"
	"github.com/voipbridge/voipbridge/pbx/voipgrid"
	"github.com/voipbridge/voipbridge/pbx/webhook"
	"github.com/voipbridge/voipbridge/pbx/xelion"
	"github.com/voipbridge/voipbridge/phone"
	"github.com/voipbridge/voipbridge/sip"
)

// testCallPrefix starts the call id of every test event, so that nobody
// mistakes one for a customer's call in ROBIN.
const testCallPrefix = "voipbridge-test-"

// sendTestEvent posts one labelled test call to ROBIN's register-event, an
// Answered and at once its Disconnected, through the quota the bridge
// keeps, and prints what ROBIN answered each.
func sendTestEvent(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("send-test-event", flag.ContinueOnError)
	fs.SetOutput(stderr)
	ext := fs.String("extension", "", "the agent's ROBIN extension (default: the first agent of EXTENSIONS or EXTENSIONS_FILE)")
	number := fs.String("number", bridge.CheckNumber, "the caller's number (E.164, or as dialled in PHONE_REGION)")
	fs.Usage = func() {
		fmt.Fprintln(stdout, "usage: voipbridge send-test-event [--extension E] [--number N]")
		fmt.Fprintln(stdout, "\nposts one test call to ROBIN (Answered, then Disconnected), its call id starting "+testCallPrefix+",")
		fmt.Fprintln(stdout, "and prints what ROBIN answered; configured by environment variables like serve")
		fs.SetOutput(stdout)
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	cfg, ok := loadConfig(environ, stderr)
	if !ok {
		return 2
	}
	var err error
	if *ext == "" {
		if *ext, err = firstAgent(cfg); err != nil {
			fmt.Fprintln(stderr, "voipbridge send-test-event:", err)
			return 2
		}
	}
	numbers, err := phone.New(phone.Options{Region: cfg.PhoneRegion, OutsideLinePrefix: cfg.OutsideLinePrefix, InternalMaxDigits: cfg.InternalMaxDigits})
	if err != nil {
		fmt.Fprintln(stderr, "voipbridge send-test-event: PHONE_REGION/OUTSIDE_LINE_PREFIX:", err)
		return 2
	}
	caller := numbers.Normalize(*number)
	if caller.Kind != phone.External {
		fmt.Fprintf(stderr, "voipbridge send-test-event: --number %q is not a customer's phone number in region %s\n", *number, cfg.PhoneRegion)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, err := bridge.OpenHelpdesk(ctx, cfg)
	if err != nil {
		fmt.Fprintln(stderr, "voipbridge send-test-event:", err)
		return 1
	}
	defer h.Close()
	id := testCallPrefix + time.Now().UTC().Format("20060102T150405Z")
	fmt.Fprintf(stdout, "test call %s: extension %s, caller %s, at %s\n(%s)\n", id, *ext, caller.E164, cfg.RobinAPIURL, h.Quota)
	for _, typ := range []events.EventType{events.EventAnswered, events.EventDisconnected} {
		a := h.Send(ctx, events.Event{ID: id, Type: typ, PhoneNumber: caller.E164, PhoneExtension: *ext, Direction: "Inbound"})
		fmt.Fprintf(stdout, "%-12s ROBIN answered %s\n", typ, a)
		if a.Err != nil {
			return 1
		}
	}
	return 0
}

// parseFlags parses the flags of a command that takes no arguments,
// wherever they stand. It reports whether to go on, and otherwise the exit
// code: 0 after -h, 2 for a flag or an argument it does not know.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	rest, err := parseInterspersed(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0, false
	case err != nil:
		return 2, false
	case len(rest) > 0:
		fmt.Fprintf(stderr, "voipbridge %s: unexpected argument %q\n", fs.Name(), rest[0])
		return 2, false
	}
	return 0, true
}

// loadConfig reads the configuration, or prints every problem and
// reports false.
func loadConfig(environ []string, stderr io.Writer) (bridge.Config, bool) {
	cfg, err := bridge.LoadConfig(environ)
	if err != nil {
		fmt.Fprintf(stderr, "voipbridge: configuration is not valid:\n%s\n", indent(err.Error()))
		return cfg, false
	}
	return cfg, true
}

// firstAgent is the ROBIN extension of the directory's first agent:
// unscoped entries first, then those of each source.
func firstAgent(cfg bridge.Config) (string, error) {
	dir, err := extensions.Load(cfg.Extensions, cfg.ExtensionsFile)
	if err != nil {
		return "", fmt.Errorf("extensions: %w", err)
	}
	for _, src := range []string{"", sip.SourceName, threecx.SourceName, xelion.SourceName, voipgrid.SourceName, webhook.Source} {
		if agents := dir.Agents(src); len(agents) > 0 {
			return agents[0].Extension, nil
		}
	}
	return "", errors.New("EXTENSIONS and EXTENSIONS_FILE name no agent: say whose phone to ring with --extension")
}
