package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/voipbridge/voipbridge/robin/robintest"
)

// natsCluster is three JetStream servers clustered on loopback, in this
// process: the external NATS a highly available deployment runs.
type natsCluster struct {
	servers []*server.Server
}

func startNATSCluster(t *testing.T) *natsCluster {
	t.Helper()
	routes := make([]string, 3)
	for i := range routes {
		routes[i] = freeAddr(t)
	}
	var routeURLs []*url.URL
	for _, r := range routes {
		routeURLs = append(routeURLs, &url.URL{Scheme: "nats", Host: r})
	}
	c := &natsCluster{}
	for i, r := range routes {
		host, port := splitHostPort(t, r)
		srv, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "voipbridge-test", Host: host, Port: port},
			Routes:     routeURLs,
			NoSigs:     true,
			NoLog:      true,
		})
		if err != nil {
			t.Fatal(err)
		}
		srv.Start()
		c.servers = append(c.servers, srv)
		t.Cleanup(srv.Shutdown)
	}
	for _, s := range c.servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatal("NATS server not ready")
		}
	}
	// Ready when a leader is elected, every server is current with it and
	// the leader knows all three peers: before that, creating a stream of
	// three replicas can fail.
	ready := func() bool {
		leader := slices.ContainsFunc(c.servers, func(s *server.Server) bool {
			return s.JetStreamIsLeader() && len(s.JetStreamClusterPeers()) == len(c.servers)
		})
		return leader && !slices.ContainsFunc(c.servers, func(s *server.Server) bool { return !s.JetStreamIsCurrent() })
	}
	deadline := time.Now().Add(60 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatal("the cluster was not ready (a JetStream leader with every peer current) within 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return c
}

func splitHostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	host, p, _ := strings.Cut(addr, ":")
	var port int
	if _, err := fmt.Sscan(p, &port); err != nil {
		t.Fatal(err)
	}
	return host, port
}

// URL lists every server, as NATS_URL takes them.
func (c *natsCluster) URL() string {
	var out []string
	for _, s := range c.servers {
		out = append(out, s.ClientURL())
	}
	return strings.Join(out, ",")
}

// streamLeader returns the server leading the stream, or nil.
func (c *natsCluster) streamLeader(stream string) *server.Server {
	for _, s := range c.servers {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			return s
		}
	}
	return nil
}

// role reads the bridge's role from /v1/status ("" while it does not answer).
func role(addr string) string {
	resp, err := http.Get("http://" + addr + "/v1/status")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var st struct {
		Role string `json:"role"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&st)
	return st.Role
}

func waitRole(t *testing.T, addr, want string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for role(addr) != want {
		if time.Since(start) > within {
			t.Fatalf("bridge at %s not %s within %v (now %q)", addr, want, within, role(addr))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}

func haEnv(nats, robinURL, addr, dir string) []string {
	return []string{
		"HTTP_ADDR=" + addr, "DATA_DIR=" + dir, "LOG_FORMAT=json",
		"NATS_URL=" + nats, "NATS_REPLICAS=3", "JOURNAL_NAME=ha", "LEASE_TTL=2s",
		"ROBIN_API_URL=" + robinURL, "ROBIN_PRESENCE_URL=" + robinURL + "/api/v1", "ROBIN_API_KEY=ha-key",
		"WEBHOOK_TOKEN=ha-token", "TRANSFER_WINDOW=0s", "ROBIN_RATE_LIMITS=1000/1s",
	}
}

// TestStandbyTakesOver: two bridges on one journal in a 3-node cluster: one
// is active, the other stands by and still journals webhooks; SIGKILL the
// active one and the standby takes over within LEASE_TTL and delivers
// everything, each event at most once more than the requests in flight at
// the kill.
func TestStandbyTakesOver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary against a NATS cluster")
	}
	bin := buildBinary(t)
	cluster := startNATSCluster(t)
	fake := robintest.NewServer(robintest.Options{APIKey: "ha-key"})
	defer fake.Close()
	slow := slowHelpdesk(t, fake, 40*time.Millisecond)

	const workers = 3
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := startProcess(t, bin, addrA, append(haEnv(cluster.URL(), slow.URL, addrA, t.TempDir()), fmt.Sprint("DELIVERY_WORKERS=", workers)))
	defer func() { a.Process.Kill(); _ = a.Wait() }()
	waitRole(t, addrA, "active", 30*time.Second)
	b := startProcess(t, bin, addrB, append(haEnv(cluster.URL(), slow.URL, addrB, t.TempDir()), fmt.Sprint("DELIVERY_WORKERS=", workers)))
	defer func() { b.Process.Signal(syscall.SIGTERM); _ = b.Wait() }()
	waitRole(t, addrB, "standby", 30*time.Second)

	// Both take webhooks; only the active one folds and delivers.
	const calls = 40
	want := postCalls(t, addrA, "ha-token", "a", calls) + postCalls(t, addrB, "ha-token", "b", calls)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := fake.WaitEvents(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if err := a.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.Wait()
	killed := time.Now()
	before := len(fake.Events())
	if before >= want {
		t.Fatalf("everything was delivered before the kill; the test proves nothing")
	}
	waitRole(t, addrB, "active", 30*time.Second)
	t.Logf("killed the active bridge with %d of %d events delivered; the standby took over after %v (LEASE_TTL 2s)", before, want, time.Since(killed).Round(time.Millisecond))
	var seen map[string]int
	repeats := 0
	for {
		seen, repeats = map[string]int{}, 0
		for _, r := range fake.Events() {
			k := r.Event.ID + "|" + string(r.Event.Type)
			seen[k]++
			if seen[k] > 1 {
				repeats++
			}
		}
		if len(seen) == want {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("after the takeover ROBIN has %d of %d distinct events", len(seen), want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// At most one repeat per request in flight at the kill: DELIVERY_WORKERS.
	t.Logf("%d repeats (at most %d requests were in flight)", repeats, workers)
	if repeats > workers {
		t.Errorf("%d events repeated, more than the %d requests that can have been in flight", repeats, workers)
	}
}

// TestLeaderKillResumesDelivery: shutting down the server that leads the
// EVENTS stream under load stalls delivery only for the election.
func TestLeaderKillResumesDelivery(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary against a NATS cluster")
	}
	bin := buildBinary(t)
	cluster := startNATSCluster(t)
	fake := robintest.NewServer(robintest.Options{APIKey: "ha-key"})
	defer fake.Close()
	slow := slowHelpdesk(t, fake, 40*time.Millisecond)
	addr := freeAddr(t)
	env := append(haEnv(cluster.URL(), slow.URL, addr, t.TempDir()), "DELIVERY_WORKERS=2")
	p := startProcess(t, bin, addr, env)
	defer func() { p.Process.Signal(syscall.SIGTERM); _ = p.Wait() }()
	waitRole(t, addr, "active", 30*time.Second)

	const calls = 150
	want := postCalls(t, addr, "ha-token", "l", calls)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	if _, err := fake.WaitEvents(ctx, 20); err != nil {
		t.Fatal(err)
	}
	leader := cluster.streamLeader("ha_EVENTS")
	if leader == nil {
		t.Fatal("no leader for the EVENTS stream")
	}
	killedAt := time.Now()
	leader.Shutdown()
	if _, err := fake.WaitEvents(ctx, want); err != nil {
		t.Fatalf("after the leader's shutdown ROBIN has %d of %d events: %v", len(fake.Events()), want, err)
	}
	// The longest pause in arrivals after the shutdown.
	var arrivals []time.Time
	for _, r := range fake.Events() {
		if r.At.After(killedAt) {
			arrivals = append(arrivals, r.At)
		}
	}
	slices.SortFunc(arrivals, time.Time.Compare)
	gap, prev := time.Duration(0), killedAt
	for _, at := range arrivals {
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	t.Logf("shut down %s, the EVENTS leader: longest pause in deliveries %v", leader.Name(), gap.Round(time.Millisecond))
	if gap > 15*time.Second {
		t.Errorf("deliveries paused %v after the leader's shutdown, want a few seconds (the goal is under 5s)", gap)
	}
}
