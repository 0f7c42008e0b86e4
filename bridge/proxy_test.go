package bridge

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
)

func TestTrustedProxiesClientAddr(t *testing.T) {
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	for _, tc := range []struct {
		name, peer, header string
		values             []string
		want               string
	}{
		{"no header", "192.0.2.10:5555", headerXFF, nil, "192.0.2.10:5555"},
		{"one hop", "192.0.2.10:5555", headerXFF, []string{"10.1.2.3"}, "10.1.2.3:0"},
		{"spoofed left-most entries", "192.0.2.10:5555", headerXFF, []string{"10.9.9.9, 10.1.2.3"}, "10.1.2.3:0"},
		{"a chain of trusted proxies", "192.0.2.10:5555", headerXFF, []string{"10.9.9.9, 203.0.113.7, 192.0.2.20, 127.0.0.1"}, "203.0.113.7:0"},
		{"every hop trusted", "192.0.2.10:5555", headerXFF, []string{"192.0.2.30, 192.0.2.20"}, "192.0.2.30:0"},
		{"several header lines", "192.0.2.10:5555", headerXFF, []string{"10.9.9.9", "10.1.2.3, 192.0.2.20"}, "10.1.2.3:0"},
		{"hop with a port", "192.0.2.10:5555", headerXFF, []string{"10.1.2.3:4711"}, "10.1.2.3:4711"},
		{"IPv6 hop", "[2001:db8::1]:443", headerXFF, []string{"2001:db9::5"}, "[2001:db9::5]:0"},
		{"IPv4-mapped hop", "192.0.2.10:5555", headerXFF, []string{"::ffff:10.1.2.3"}, "10.1.2.3:0"},
		{"garbage behind a trusted proxy", "192.0.2.10:5555", headerXFF, []string{"10.1.2.3, nonsense"}, unknownClient},
		{"garbage left of the client is never read", "192.0.2.10:5555", headerXFF, []string{"nonsense, 10.1.2.3"}, "10.1.2.3:0"},
		{"untrusted peer", "203.0.113.7:5555", headerXFF, []string{"10.1.2.3"}, "203.0.113.7:5555"},
		{"the other header is not read", "192.0.2.10:5555", headerXFF, nil, "192.0.2.10:5555"},
		{"Forwarded", "192.0.2.10:5555", headerForwarded, []string{`for=10.9.9.9, for=10.1.2.3;proto=https;by=192.0.2.10`}, "10.1.2.3:0"},
		{"Forwarded quoted IPv6 with port", "192.0.2.10:5555", headerForwarded, []string{`For="[2001:db9::17]:4711"`}, "[2001:db9::17]:4711"},
		{"Forwarded quoted comma", "192.0.2.10:5555", headerForwarded, []string{`for=10.1.2.3;x="a,b"`}, "10.1.2.3:0"},
		{"Forwarded unknown", "192.0.2.10:5555", headerForwarded, []string{`for=unknown`}, unknownClient},
		{"Forwarded element without for", "192.0.2.10:5555", headerForwarded, []string{`proto=https`}, unknownClient},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got string
			h := trustedProxies(trusted, tc.header, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.RemoteAddr }))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.peer
			for _, v := range tc.values {
				r.Header.Add(tc.header, v)
			}
			if tc.name == "the other header is not read" {
				r.Header.Set(headerForwarded, "for=10.1.2.3")
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got != tc.want {
				t.Errorf("client %q, want %q", got, tc.want)
			}
		})
	}
}

// TestTrustedProxiesAllowLists: behind a trusted proxy, WEBHOOK_ALLOW_CIDRS
// and PRESENCE_ALLOW_CIDRS see the client the proxy names; from a peer that
// is not trusted, the same header changes nothing.
func TestTrustedProxiesAllowLists(t *testing.T) {
	allow := []string{"WEBHOOK_ALLOW_CIDRS=10.0.0.0/8", "PRESENCE_ALLOW_CIDRS=10.0.0.0/8"}
	send := func(t *testing.T, tb *testBridge, xff string) (webhook, presence int) {
		t.Helper()
		req := webhookRequest(t, tb.URL, tb.Token, generic("p1", "ringing", "201"))
		req.Header.Set("X-Forwarded-For", xff)
		webhook, _ = timedRequest(t, freshClient(), req)
		req = must(http.NewRequest(http.MethodGet, tb.URL+"/v1/presence?channel=chat", nil))
		req.Header.Set("X-Forwarded-For", xff)
		presence, _ = timedRequest(t, freshClient(), req)
		return webhook, presence
	}
	t.Run("trusted", func(t *testing.T) {
		tb := startBridge(t, append(allow, "TRUSTED_PROXIES=127.0.0.1/32")...)
		if w, p := send(t, tb, "10.1.2.3"); w != http.StatusAccepted || p == http.StatusForbidden {
			t.Errorf("via a trusted proxy for 10.1.2.3: webhook %d, presence %d; want 202 and not 403", w, p)
		}
		if w, p := send(t, tb, "10.1.2.3, 203.0.113.7"); w != http.StatusForbidden || p != http.StatusForbidden {
			t.Errorf("a spoofed left-most 10.1.2.3 from 203.0.113.7: webhook %d, presence %d; want 403", w, p)
		}
	})
	t.Run("untrusted", func(t *testing.T) {
		tb := startBridge(t, append(allow, "TRUSTED_PROXIES=192.0.2.0/24")...)
		if w, p := send(t, tb, "10.1.2.3"); w != http.StatusForbidden || p != http.StatusForbidden {
			t.Errorf("X-Forwarded-For from a peer that is no trusted proxy: webhook %d, presence %d; want 403", w, p)
		}
	})
}
