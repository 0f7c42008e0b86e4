package bridge

// QuotaConfig is the quota of the helpdesk's API that the bridge may use.
type QuotaConfig struct {
	RateLimits      string  `env:"ROBIN_RATE_LIMITS" envDefault:"3/1s,180/1m,10000/1h,100000/24h"`
	Share           float64 `env:"ROBIN_QUOTA_SHARE" envDefault:"1.0"`
	PresenceReserve float64 `env:"ROBIN_PRESENCE_RESERVE" envDefault:"0.10"`
}

func (c QuotaConfig) validate() error { return nil }
