package bridge

import "context"

// STUB, owned by the VoIPGRID source: replace this file's contents, keeping the
// three names the bridge calls (VoIPGRIDConfig with its validate method,
// voipgridSecrets, startVoIPGRID).
//
// VoIPGRIDConfig is the VoIPGRID source's configuration, read from the environment
// with caarlos0/env tags (env:"NAME" envDefault:"..."); it is the field
// Config.VoIPGRID. validate reports every problem (errors.Join), nil when the
// source is simply not configured.
//
// voipgridSecrets lists the variables that may also be given as NAME_FILE.
//
// startVoIPGRID starts the source when it is configured, and returns nil without
// doing anything when it is not. Everything it needs comes in env (see
// sources.go): the journal to PublishSignal to, the extension directory, the
// logger, the metrics registry, env.Webhook to mount a webhook handler behind
// the shared guard, env.Go to run a goroutine for the bridge's lifetime
// (return nil on ctx cancellation) and env.Ready to add a readiness check.
// End-to-end tests start a whole bridge with startBridge (harness_test.go).
type VoIPGRIDConfig struct{}

func (c VoIPGRIDConfig) validate() error { return nil }

var voipgridSecrets = []string{}

func startVoIPGRID(ctx context.Context, c VoIPGRIDConfig, env *sourceEnv) error { return nil }
