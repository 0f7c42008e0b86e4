package bridge

// PresenceConfig configures presence look-ups.
type PresenceConfig struct{}

func (c PresenceConfig) validate() error { return nil }
