package bridge

import "context"

// STUB, owned by the SIP source: replace this file's contents, keeping the
// three names the bridge calls (SIPConfig with its validate method,
// sipSecrets, startSIP).
//
// SIPConfig is the SIP source's configuration, read from the environment
// with caarlos0/env tags (env:"NAME" envDefault:"..."); it is the field
// Config.SIP. validate reports every problem (errors.Join), nil when the
// source is simply not configured.
//
// sipSecrets lists the variables that may also be given as NAME_FILE.
//
// startSIP starts the source when it is configured, and returns nil without
// doing anything when it is not. Everything it needs comes in env (see
// sources.go): the journal to PublishSignal to, the extension directory, the
// logger, the metrics registry, env.Webhook to mount a webhook handler behind
// the shared guard, env.Go to run a goroutine for the bridge's lifetime
// (return nil on ctx cancellation) and env.Ready to add a readiness check.
// End-to-end tests start a whole bridge with startBridge (harness_test.go).
type SIPConfig struct{}

func (c SIPConfig) validate() error { return nil }

var sipSecrets = []string{"SIP_PASSWORD"}

func startSIP(ctx context.Context, c SIPConfig, env *sourceEnv) error { return nil }
