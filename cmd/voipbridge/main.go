// Command voipbridge tells a helpdesk (CM.com Agent Inbox, formerly ROBIN)
// about the calls on a company phone system. See the README.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
	// Time zones (XELION_TIMEZONE) work in a minimal container without zoneinfo files.
	_ "time/tzdata"

	"github.com/lmittmann/tint"
	"github.com/voipbridge/voipbridge/bridge"
)

func main() { os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr)) }

const usage = `usage: voipbridge [command]

commands:
  serve        run the bridge (default); configured by environment variables
  demo         run the whole flow on this machine: a simulated PBX, the bridge
               and a fake helpdesk, printing what happens (voipbridge demo -h)
  check        validate the configuration and the extension directory, then exit
  deadletters  list or replay events the helpdesk rejected (list | replay [ID])
  version      print the version
`

func run(args, environ []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(environ, stderr)
	case "demo":
		return demo(args, environ, stdout, stderr)
	case "check":
		return check(environ, stdout, stderr)
	case "deadletters":
		return deadletters(args, environ, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "voipbridge", bridge.Version)
		return 0
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "voipbridge: unknown command %q\n\n%s", cmd, usage)
	return 2
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
		}
	}()
	if err := b.Run(ctx); err != nil {
		log.Error("stopped with an error", "err", err)
		return 1
	}
	return 0
}

// check reports every configuration problem, or a summary, without
// starting anything.
func check(environ []string, stdout, stderr io.Writer) int {
	cfg, err := bridge.LoadConfig(environ)
	if err != nil {
		fmt.Fprintf(stderr, "voipbridge: configuration is not valid:\n%s\n", indent(err.Error()))
		return 2
	}
	summary, err := bridge.Check(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "voipbridge: configuration is not valid:\n%s\n", indent(err.Error()))
		return 2
	}
	fmt.Fprintf(stdout, "configuration is valid\n%s", summary)
	return 0
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
