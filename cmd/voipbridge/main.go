// Command voipbridge tells a helpdesk (CM.com Agent Inbox, formerly ROBIN)
// about the calls on a company phone system. See the README.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"
	// Time zones (XELION_TIMEZONE) work in a minimal container without zoneinfo files.
	_ "time/tzdata"

	"github.com/lmittmann/tint"
	"github.com/voipbridge/voipbridge/bridge"
)

func main() { os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr)) }

const usage = `usage: voipbridge [command] [flags]

commands:
  serve        run the bridge (default); configured by environment variables
  demo         run the whole flow on this machine: a simulated PBX, the bridge
               and a fake helpdesk, printing what happens (voipbridge demo -h)
  check        validate the configuration and the extension directory, then exit;
               --online also logs in to ROBIN, the PBX, Chatwoot and the shop
  send-test-event
               post one labelled test call to ROBIN and print its answers
               (voipbridge send-test-event -h)
  deadletters  list or replay events the helpdesk rejected (list | replay [ID])
  healthcheck  exit 0 when the bridge on HTTP_ADDR answers /healthz (for
               container health checks; the image has no curl)
  version      print the version

flags: -h, --help (here and after every command), --version
`

func run(args, environ []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		switch a := args[0]; {
		case a == "-h" || a == "-help" || a == "--help" || a == "help":
			fmt.Fprint(stdout, usage)
			return 0
		case a == "-version" || a == "--version":
			cmd, args = "version", args[1:]
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(stderr, "voipbridge: unknown flag %s (flags go after the command)\n\n%s", a, usage)
			return 2
		default:
			cmd, args = a, args[1:]
		}
	}
	switch cmd {
	case "serve":
		if !noArgs("serve", args, stdout, stderr) {
			return exitFor(args)
		}
		return serve(environ, stderr)
	case "demo":
		return demo(args, environ, stdout, stderr)
	case "check":
		return check(args, environ, stdout, stderr)
	case "send-test-event":
		return sendTestEvent(args, environ, stdout, stderr)
	case "deadletters":
		return deadletters(args, environ, stdout, stderr)
	case "healthcheck":
		return healthcheck(args, environ, stdout, stderr)
	case "version":
		if !noArgs("version", args, stdout, stderr) {
			return exitFor(args)
		}
		fmt.Fprintln(stdout, "voipbridge", version())
		return 0
	}
	fmt.Fprintf(stderr, "voipbridge: unknown command %q\n\n%s", cmd, usage)
	return 2
}

// noArgs checks that a command without flags or arguments got none: -h
// prints its help, anything else is refused. It reports whether to go on.
func noArgs(cmd string, args []string, stdout, stderr io.Writer) bool {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: voipbridge %s\n\nconfigured by environment variables: see the README\n", cmd)
	}
	if err := fs.Parse(args); err != nil {
		return false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "voipbridge %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return false
	}
	return true
}

// exitFor is the exit code after noArgs refused args: 0 for a request for
// help, 2 for a mistake.
func exitFor(args []string) int {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" {
			return 0
		}
	}
	return 2
}

// version is the version set at build time, else the module's version from
// the build info (go install), else "dev".
func version() string {
	if bridge.Version != "dev" {
		return bridge.Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return bridge.Version
}

// parseInterspersed parses flags wherever they stand among the arguments
// (voipbridge deadletters list --url …) and returns the arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos, args = append(pos, args[0]), args[1:]
	}
}

func serve(environ []string, stderr io.Writer) int {
	cfg, err := bridge.LoadConfig(environ)
	log := newLogger(stderr, cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(stderr, "voipbridge: configuration is not valid:\n%s\n", indent(err.Error()))
		return 2
	}
	// Libraries that log through slog's default (sipgo does) log like the bridge.
	slog.SetDefault(log)
	ctx, stop := signalContext(log)
	defer stop()
	b, err := bridge.New(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		return 1
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			if err := b.ReloadExtensions(); err != nil {
				log.Error("extensions not reloaded; keeping the current directory", "err", err)
			} else {
				log.Info("extensions reloaded")
			}
			if err := b.ReloadTLS(); err != nil {
				log.Error("TLS certificate not reloaded; keeping the current one", "err", err)
			}
		}
	}()
	if err := b.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

// check reports every configuration problem, or a summary, without
// starting anything; with --online it also logs in to everything
// configured, one line per check, and exits 1 if one failed.
func check(args, environ []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	online := fs.Bool("online", false, "also log in to everything configured (ROBIN, the PBX, Chatwoot, the shop) and say what works")
	fs.Usage = func() {
		fmt.Fprintf(stdout, "usage: voipbridge check [--online]\n\nconfigured by environment variables: see the README\n")
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
	summary, err := bridge.Check(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "voipbridge: configuration is not valid:\n%s\n", indent(err.Error()))
		return 2
	}
	fmt.Fprintf(stdout, "configuration is valid\n%s", summary)
	if !*online {
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintln(stdout, "\nonline:")
	code := 0
	for _, c := range bridge.CheckOnline(ctx, cfg, bridge.CheckOptions{}) {
		fmt.Fprintln(stdout, c)
		if !c.OK {
			code = 1
		}
	}
	return code
}

// signalContext is cancelled by the first SIGINT or SIGTERM (drain); a second
// one exits at once.
func signalContext(log *slog.Logger) (context.Context, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	go func() {
		s, ok := <-ch
		if !ok {
			return
		}
		log.Info("signal received; draining (send it again to exit at once)", "signal", s.String())
		cancel()
		if _, ok := <-ch; ok {
			log.Warn("second signal; exiting without draining")
			os.Exit(1)
		}
	}()
	return ctx, func() { signal.Stop(ch); close(ch); cancel() }
}

// newLogger: tint on a terminal, JSON otherwise (LOG_FORMAT=auto), or as asked.
func newLogger(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	f, isFile := w.(*os.File)
	tty := isFile && isTerminal(f)
	if format == "text" || ((format == "auto" || format == "") && tty) {
		_, noColor := os.LookupEnv("NO_COLOR")
		return slog.New(tint.NewTextHandler(w, &tint.Options{Level: level, TimeFormat: time.TimeOnly + ".000", NoColor: noColor || !tty}))
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level}))
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}
