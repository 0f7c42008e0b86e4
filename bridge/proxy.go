package bridge

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Proxy headers TRUSTED_PROXY_HEADER can name.
const (
	headerXFF       = "X-Forwarded-For"
	headerForwarded = "Forwarded"
)

// unknownClient is the RemoteAddr of a request whose client a trusted proxy
// did not name usably ("unknown", an obfuscated identifier, garbage): no
// allow-list admits it.
const unknownClient = "unknown:0"

// trustedProxies sets r.RemoteAddr to the client's address when the peer is
// a trusted proxy, so every allow-list and log line downstream sees the
// client and not the proxy. The client is the right-most address of the
// proxy header (header: X-Forwarded-For or Forwarded) that is not itself a
// trusted proxy: each trusted proxy appends the address it saw, so entries
// left of the first untrusted one are whatever the client wrote and are
// never believed. A peer that is not a trusted proxy keeps its own address,
// whatever it sends. Only one header is read: a proxy that sets one and
// passes the other on from the client would otherwise let the client choose.
func trustedProxies(trusted []netip.Prefix, header string, next http.Handler) http.Handler {
	if len(trusted) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if peer, ok := hostAddr(r.RemoteAddr); ok && inPrefixes(trusted, peer) {
			if hops := proxyHops(r.Header, header); len(hops) > 0 {
				r.RemoteAddr = clientAddr(peer, hops, trusted)
			}
		}
		next.ServeHTTP(w, r)
	})
}

// clientAddr walks hops (left to right as the proxies appended them) from
// the right while the address in hand is a trusted proxy, and returns the
// first address that is not, as host:port (port 0 when no port was given).
// When every hop is trusted, the left-most one is the client.
func clientAddr(peer netip.Addr, hops []string, trusted []netip.Prefix) string {
	addr, port := peer, uint16(0)
	for i := len(hops) - 1; i >= 0 && inPrefixes(trusted, addr); i-- {
		ap, ok := parseHop(hops[i])
		if !ok {
			return unknownClient
		}
		addr, port = ap.Addr(), ap.Port()
	}
	return netip.AddrPortFrom(addr, port).String()
}

// proxyHops lists the addresses in the request's proxy header, across
// every line of it, in order; for Forwarded, the for= of each element
// (an element without one counts as an unknown hop).
func proxyHops(h http.Header, header string) []string {
	var hops []string
	for _, line := range h.Values(header) {
		for _, elem := range splitOutsideQuotes(line, ',') {
			if strings.TrimSpace(elem) == "" {
				continue
			}
			if header != headerForwarded {
				hops = append(hops, strings.TrimSpace(elem))
				continue
			}
			hop := ""
			for _, pair := range splitOutsideQuotes(elem, ';') {
				k, v, _ := strings.Cut(strings.TrimSpace(pair), "=")
				if strings.EqualFold(strings.TrimSpace(k), "for") {
					hop = strings.Trim(strings.TrimSpace(v), `"`)
				}
			}
			hops = append(hops, hop)
		}
	}
	return hops
}

// splitOutsideQuotes splits s at sep where sep is not inside a quoted
// string (RFC 7239 values may be quoted).
func splitOutsideQuotes(s string, sep byte) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\' && quoted:
			i++
		case s[i] == '"':
			quoted = !quoted
		case s[i] == sep && !quoted:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// parseHop reads one hop: an IPv4 or IPv6 address, optionally with a port
// ("192.0.2.1:443", "[2001:db8::1]:443", "[2001:db8::1]").
func parseHop(s string) (netip.AddrPort, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")); err == nil && a.Zone() == "" {
		return netip.AddrPortFrom(a.Unmap(), 0), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil && ap.Addr().Zone() == "" {
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	return netip.AddrPort{}, false
}

// hostAddr reads the address of a RemoteAddr.
func hostAddr(remote string) (netip.Addr, bool) {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}, false
	}
	return a.Unmap(), true
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
