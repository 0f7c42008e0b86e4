package bridge

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// addrConn is one end of a pipe that says it comes from remote.
type addrConn struct {
	net.Conn
	remote net.Addr
}

func (c addrConn) RemoteAddr() net.Addr { return c.remote }

// TestConnLimiter: at the cap a new connection replaces the one idle
// longest; busy connections are never closed for it; when all are busy,
// others are refused and loopback gets the health reserve.
func TestConnLimiter(t *testing.T) {
	shed := map[string]int{}
	l := newConnLimiter(nil, 2, slog.New(slog.DiscardHandler), func(reason string) { shed[reason]++ })
	// dial admits a connection from ip and returns it with the far end of
	// its pipe (nil when refused).
	dial := func(ip string) (*limitedConn, net.Conn) {
		t.Helper()
		near, far := net.Pipe()
		t.Cleanup(func() { near.Close(); far.Close() })
		lc := l.admit(addrConn{near, &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
		if lc == nil {
			return nil, far
		}
		return lc, far
	}
	closed := func(far net.Conn) bool {
		far.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := far.Read(make([]byte, 1))
		return err == io.EOF
	}

	a, _ := dial("192.0.2.1")
	b, bFar := dial("192.0.2.2")
	a.markBusy()
	c, _ := dial("192.0.2.3") // b is the only idle one: it goes
	if c == nil || !closed(bFar) {
		t.Fatal("a new connection at the cap did not replace the idle one")
	}
	c.markBusy()
	if d, _ := dial("192.0.2.4"); d != nil {
		t.Fatal("a connection admitted while every one is busy")
	}
	e, _ := dial("127.0.0.1")
	if e == nil || !e.health {
		t.Fatalf("loopback at the cap: %+v, want a health-only connection", e)
	}
	c.markIdle()
	a.markIdle()
	f, _ := dial("::1") // c has been idle longer than a
	if f == nil || f.health {
		t.Fatalf("loopback with an idle connection to replace: %+v, want a normal connection", f)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	b.Close() // closed already, as the server will: counted once
	got := l.stats()
	if want := (connStats{open: 2, busy: 0, peak: 3, accepted: 6}); got != want {
		t.Errorf("stats %+v, want %+v", got, want)
	}
	if diff := cmp.Diff(map[string]int{"evicted": 2, "refused": 1}, shed); diff != "" {
		t.Errorf("shed (-want +got):\n%s", diff)
	}
}
