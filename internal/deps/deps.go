// Package deps pins the project's direct dependencies in go.mod while the
// packages that use them are being written. It is removed once every module
// here is imported by real code.
package deps

import (
	_ "github.com/caarlos0/env/v11"
	_ "github.com/coder/websocket"
	_ "github.com/emiago/sipgo"
	_ "github.com/google/go-cmp/cmp"
	_ "github.com/lmittmann/tint"
	_ "github.com/nats-io/nats-server/v2/server"
	_ "github.com/nats-io/nats.go/jetstream"
	_ "github.com/nyaruka/phonenumbers"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/sony/gobreaker/v2"
)
