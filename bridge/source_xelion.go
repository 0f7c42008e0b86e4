package bridge

import "context"

// STUB, owned by the Xelion source: replace this file's contents, keeping the
// three names the bridge calls (XelionConfig with its validate method,
// xelionSecrets, startXelion).
//
// XelionConfig is the Xelion source's configuration, read from the environment
// with caarlos0/env tags (env:"NAME" envDefault:"..."); it is the field
// Config.Xelion. validate reports every problem (errors.Join), nil when the
// source is simply not configured.
//
// xelionSecrets lists the variables that may also be given as NAME_FILE.
//
// startXelion starts the source when it is configured, and returns nil without
// doing anything when it is not. Everything it needs comes in env (see
// sources.go): the journal to PublishSignal to, the extension directory, the
// logger, the metrics registry, env.Webhook to mount a webhook handler behind
// the shared guard, env.Go to run a goroutine for the bridge's lifetime
// (return nil on ctx cancellation) and env.Ready to add a readiness check.
// End-to-end tests start a whole bridge with startBridge (harness_test.go).
type XelionConfig struct{}

func (c XelionConfig) validate() error { return nil }

var xelionSecrets = []string{"XELION_PASSWORD"}

func startXelion(ctx context.Context, c XelionConfig, env *sourceEnv) error { return nil }
