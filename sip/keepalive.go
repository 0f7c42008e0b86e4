package sip

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	gosip "github.com/emiago/sipgo/sip"
)

// keeper sends the OPTIONS keep-alive (SIP_KEEPALIVE) and tells the monitor
// when the PBX restarted. A restarted PBX has forgotten every subscription
// and says nothing about it: without the keep-alive the loss shows only at
// the next refresh (a 481), up to three quarters of SIP_EXPIRES later, and
// every call in between is lost.
//
// Neither Asterisk nor Kamailio puts anything into its answer to OPTIONS
// that identifies the running instance (Kamailio's stateless To tag is a
// hash of its configuration and address, Asterisk's is random per answer),
// so the keeper relies on what a restart does to the transport: the PBX
// stops answering while it is down, and over TCP or TLS it closes our
// connection. A PBX that answers again after a keep-alive went unanswered,
// or that answers over a new connection because it closed the one before,
// has restarted (or was unreachable long enough that its NOTIFYs were lost:
// re-subscribing, which brings full state, is right either way).
type keeper struct {
	// probe sends one OPTIONS and returns, over TCP or TLS, the connection
	// the answer came on (nil over UDP).
	probe   func(ctx context.Context) (link any, err error)
	every   time.Duration
	timeout time.Duration
	// restarted is called once per restart noticed.
	restarted func(why string)
	log       *slog.Logger
	metrics   *metrics
}

// probeTimeout is how long a keep-alive waits for its answer: its interval,
// but at least 1 s (loaded machines, UDP retransmits after 500 ms) and at
// most 5 s (four transmissions over UDP).
func probeTimeout(every time.Duration) time.Duration {
	return min(max(every, time.Second), 5*time.Second)
}

// run probes at once and then every k.every (from the end of one probe to
// the start of the next) until ctx ends.
func (k *keeper) run(ctx context.Context) {
	gone := "" // why the PBX is considered gone; "" while it answers
	var link any
	for first := true; ; first = false {
		if !first && sleep(ctx, k.every) != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, k.timeout)
		l, err := k.probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			k.metrics.keepaliveFailures.Inc()
			why := describe(reply{}, err)
			if gone == "" {
				k.log.Warn("sip PBX does not answer the keep-alive", "err", why)
			}
			gone, link = why, nil
			continue
		}
		switch {
		case gone != "":
			k.restarted("answers again after the keep-alive failed: " + gone)
		case link != nil && l != nil && l != link:
			k.restarted("closed our connection")
		}
		gone = ""
		if l != nil {
			// An answer whose connection was closed right after it (it left
			// the pool before we looked: nil) says nothing about the
			// connection; the next answer's is compared with the last known.
			link = l
		}
	}
}

// options sends one OPTIONS to the PBX. Any answer, a 401 or a 404 too,
// shows the PBX is up. Over TCP and TLS it returns the pooled connection the
// answer came on: sipgo drops a connection the PBX closed from its pool and
// dials a new one for the next request.
func (s *stack) options(ctx context.Context) (any, error) {
	host, p, _ := net.SplitHostPort(s.server)
	port, _ := strconv.Atoi(p)
	if net.ParseIP(host) != nil && net.ParseIP(host).To4() == nil {
		host = "[" + host + "]"
	}
	target := gosip.Uri{Scheme: "sip", Host: host, Port: port}
	req := gosip.NewRequest(gosip.OPTIONS, target)
	req.AppendHeader(&gosip.FromHeader{Address: s.from, Params: gosip.HeaderParams{{K: "tag", V: gosip.GenerateTagN(16)}}})
	req.AppendHeader(&gosip.ToHeader{Address: target})
	req.SetDestination(s.server)
	req.SetTransport(s.transport)
	res, err := s.cli.Do(ctx, req)
	if err == nil && res == nil {
		err = errNoResponse
	}
	if err != nil {
		return nil, fmt.Errorf("keep-alive: %w", err)
	}
	if s.transport == "UDP" {
		return nil, nil
	}
	c := s.ua.TransportLayer().Pool(s.transport).Get(res.Source())
	if c == nil {
		return nil, nil
	}
	_, _ = c.TryClose() // Get took a reference
	return c, nil
}
