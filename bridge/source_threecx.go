package bridge

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/voipbridge/voipbridge/pbx/threecx"
)

// ThreeCXConfig configures the 3CX V20 Call Control source (package
// pbx/threecx). The source runs when THREECX_URL is set.
type ThreeCXConfig struct {
	// URL is the PBX's base URL, e.g. https://pbx.example.com.
	URL string `env:"THREECX_URL"`
	// ClientID is the Client ID of the API integration (Admin Console →
	// Integrations → API, with Call Control access).
	ClientID string `env:"THREECX_CLIENT_ID"`
	// ClientSecret is the integration's API key; also THREECX_CLIENT_SECRET_FILE.
	ClientSecret string `env:"THREECX_CLIENT_SECRET"`
	// QueueDNs are DNs whose participants are never agents, for DNs the API
	// lists without a type (queues, IVRs and route points it names are
	// recognised anyway).
	QueueDNs []string `env:"THREECX_QUEUE_DNS" envSeparator:","`
}

func (c ThreeCXConfig) source() threecx.Config {
	return threecx.Config{URL: c.URL, ClientID: c.ClientID, ClientSecret: c.ClientSecret, QueueDNs: c.QueueDNs}
}

// validate reports every problem, nil when no THREECX_ variable is set.
func (c ThreeCXConfig) validate() error {
	if c.URL == "" && c.ClientID == "" && c.ClientSecret == "" && len(c.QueueDNs) == 0 {
		return nil
	}
	return c.source().Validate()
}

var threecxSecrets = []string{"THREECX_CLIENT_SECRET"}

// startThreeCX starts the 3CX source when THREECX_URL is set. It follows the
// PBX for the bridge's lifetime, reconnecting on its own; /readyz reports
// "threecx" not ready while it is not connected and in sync.
func startThreeCX(ctx context.Context, c ThreeCXConfig, env *sourceEnv) error {
	if c.URL == "" {
		return nil
	}
	kv, err := env.Journal.KeyValue(ctx, threecxBucket, "3CX legs reported and not yet ended, per PBX", env.b.cfg.NATSReplicas)
	if err != nil {
		return fmt.Errorf("3cx: %w", err)
	}
	src, err := threecx.New(threecx.Options{
		Config:     c.source(),
		Journal:    env.Journal,
		Logger:     env.Log,
		Registerer: env.Registry,
		Store:      newThreeCXStore(kv, c),
	})
	if err != nil {
		return err
	}
	env.Go("threecx", src.Run)
	env.Ready("threecx", func() error {
		if !src.Connected() {
			return errors.New("not connected to the 3CX call control API")
		}
		return nil
	})
	env.Log.Info("3CX source configured", "threecx", c.source())
	return nil
}

// threecxBucket keeps the 3CX source's open legs across restarts, so that a
// call that ended while the bridge was down ends at the first snapshot rather
// than on the call timeout.
const threecxBucket = "VOIPBRIDGE_THREECX_LEGS"

// threecxStore is a threecx.Store in a JetStream key-value bucket. Keys are
// prefixed with a digest of the PBX URL and client id, so that bridges that
// share a NATS but follow different PBXs do not see each other's legs.
type threecxStore struct {
	kv     jetstream.KeyValue
	prefix string
}

func newThreeCXStore(kv jetstream.KeyValue, c ThreeCXConfig) *threecxStore {
	h := sha256.Sum256([]byte(c.URL + "\x00" + c.ClientID))
	return &threecxStore{kv: kv, prefix: "p" + hex.EncodeToString(h[:8]) + "."}
}

func (s *threecxStore) Put(ctx context.Context, key string, value []byte) error {
	_, err := s.kv.Put(ctx, s.prefix+key, value)
	return err
}

func (s *threecxStore) Delete(ctx context.Context, key string) error {
	err := s.kv.Delete(ctx, s.prefix+key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	return err
}

func (s *threecxStore) All(ctx context.Context) (map[string][]byte, error) {
	w, err := s.kv.Watch(ctx, s.prefix+">", jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	out := map[string][]byte{}
	for {
		select {
		case e, ok := <-w.Updates():
			// A nil entry marks the end of the stored values.
			if !ok || e == nil {
				return out, nil
			}
			out[e.Key()[len(s.prefix):]] = e.Value()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
