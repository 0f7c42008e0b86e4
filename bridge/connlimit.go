package bridge

import (
	"container/list"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
)

// healthReserve is how many connections from loopback are taken beyond
// HTTP_MAX_CONNS, to answer /healthz and /readyz only, when every other
// connection is busy with a request: a local probe (container health
// check, systemd watchdog, an operator's curl) still gets an answer.
const healthReserve = 8

// connLimiter is a listener that keeps at most max connections open. Unlike
// a semaphore in front of Accept (golang.org/x/net/netutil.LimitListener),
// it never stops accepting: a blocked Accept leaves new connections in the
// kernel's queue, health probes included, for as long as the holders like.
// Instead, at the cap a new connection takes the place of the connection
// that has waited longest without a request in a handler (idle keep-alive,
// headers not complete, TLS handshake not done), so connections that only
// sit there cannot keep anyone out. Only when every connection is in a
// handler is a new one refused, except from loopback: up to healthReserve
// of those are taken on top, to answer health checks.
//
// A connection counts as busy from the moment its request reaches a
// handler (markBusy) until the server calls it idle again (ConnState); a
// request that is read completely but not yet handed to its handler can
// still lose its connection, and the client sees that as a network error.
type connLimiter struct {
	net.Listener
	max int
	log *slog.Logger
	// shed counts connections closed at the cap, by reason (evicted, refused).
	shed func(reason string)

	mu       sync.Mutex
	open     int       // connections in the main pool
	reserved int       // health-only connections from loopback
	idle     list.List // main pool's connections outside a handler, longest idle first
	idleRes  list.List // the same for the health-only connections
	busy     int       // connections in a handler (both pools)
	peak     int       // most connections open at once (both pools)
	accepted int       // connections accepted from the kernel, admitted or not
	atLimit  bool      // the cap was met: logged once until the pool has room again
}

// limitedConn is a connection counted by a connLimiter.
type limitedConn struct {
	net.Conn
	l *connLimiter
	// health: admitted on the loopback reserve; it serves health checks only.
	health bool

	// Guarded by l.mu.
	elem     *list.Element // in the idle list while outside a handler; nil while busy
	released bool
}

func newConnLimiter(inner net.Listener, max int, log *slog.Logger, shed func(reason string)) *connLimiter {
	return &connLimiter{Listener: inner, max: max, log: log, shed: shed}
}

// Accept returns the next connection the cap admits; connections it
// refuses are closed at once.
func (l *connLimiter) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if lc := l.admit(c); lc != nil {
			return lc, nil
		}
		c.Close()
	}
}

// admit finds c a place, closing the connection it replaces, or returns
// nil when there is none.
func (l *connLimiter) admit(c net.Conn) *limitedConn {
	loopback := false
	if ap, err := netip.ParseAddrPort(c.RemoteAddr().String()); err == nil {
		loopback = ap.Addr().Unmap().IsLoopback()
	}
	lc := &limitedConn{Conn: c, l: l}
	var victim *limitedConn
	l.mu.Lock()
	l.accepted++
	switch {
	case l.open < l.max:
		l.open++
		if l.atLimit && l.open <= l.max*3/4 {
			l.atLimit = false
			l.log.Info("HTTP connections below the limit again", "open", l.open, "max", l.max)
		}
	case l.idle.Len() > 0:
		victim = l.idle.Remove(l.idle.Front()).(*limitedConn)
	case loopback && l.reserved < healthReserve:
		l.reserved++
		lc.health = true
	case loopback && l.idleRes.Len() > 0:
		victim = l.idleRes.Remove(l.idleRes.Front()).(*limitedConn)
		lc.health = true
	default:
		l.noteLimitLocked("refusing new connections: every connection is in a request")
		l.mu.Unlock()
		l.shed("refused")
		return nil
	}
	if victim != nil {
		// The victim's place goes to c: the counts stay.
		victim.elem, victim.released = nil, true
		l.noteLimitLocked("closing the connections idle longest to make room")
	}
	lc.elem = l.idleList(lc.health).PushBack(lc)
	l.peak = max(l.peak, l.open+l.reserved)
	l.mu.Unlock()
	if victim != nil {
		victim.Conn.Close()
		l.shed("evicted")
	}
	return lc
}

// noteLimitLocked logs the first time the cap is met since the pool last
// had room.
func (l *connLimiter) noteLimitLocked(what string) {
	if !l.atLimit {
		l.atLimit = true
		l.log.Warn("HTTP connection limit reached (HTTP_MAX_CONNS); "+what, "max", l.max)
	}
}

func (l *connLimiter) idleList(health bool) *list.List {
	if health {
		return &l.idleRes
	}
	return &l.idle
}

// markBusy takes c out of the connections that may be closed to make room:
// a request of it is in a handler.
func (c *limitedConn) markBusy() {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.released && c.elem != nil {
		l.idleList(c.health).Remove(c.elem)
		c.elem = nil
		l.busy++
	}
}

// markIdle puts c back among the connections that may be closed to make
// room, as the one idle the shortest time.
func (c *limitedConn) markIdle() {
	l := c.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if !c.released && c.elem == nil {
		c.elem = l.idleList(c.health).PushBack(c)
		l.busy--
	}
}

// Close frees c's place and closes it.
func (c *limitedConn) Close() error {
	l := c.l
	l.mu.Lock()
	if !c.released {
		c.released = true
		if c.elem != nil {
			l.idleList(c.health).Remove(c.elem)
			c.elem = nil
		} else {
			l.busy--
		}
		if c.health {
			l.reserved--
		} else {
			l.open--
		}
	}
	l.mu.Unlock()
	return c.Conn.Close()
}

// connStats is a connLimiter's counts: connections open now (both pools),
// in a handler now, the most ever open at once, and every one accepted.
type connStats struct{ open, busy, peak, accepted int }

func (l *connLimiter) stats() connStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return connStats{l.open + l.reserved, l.busy, l.peak, l.accepted}
}

// connOf returns the limited connection under c (a TLS connection wraps it).
func connOf(c net.Conn) *limitedConn {
	for c != nil {
		if lc, ok := c.(*limitedConn); ok {
			return lc
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = u.NetConn()
	}
	return nil
}

// connKey is the request context key of a request's *limitedConn.
type connKey struct{}

// track wires the limiter into srv: each request's context carries its
// connection, and a connection the server calls idle may be closed for a
// new one again.
func (l *connLimiter) track(srv *http.Server) {
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if lc := connOf(c); lc != nil {
			return context.WithValue(ctx, connKey{}, lc)
		}
		return ctx
	}
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateIdle {
			if lc := connOf(c); lc != nil {
				lc.markIdle()
			}
		}
	}
}
