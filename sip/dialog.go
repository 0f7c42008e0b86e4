package sip

import (
	"io"
	"strconv"
	"strings"
	"sync"

	gosip "github.com/emiago/sipgo/sip"
	"github.com/icholy/digest"
)

// subscription is one RFC 6665 subscription dialog for one extension: what
// is needed to send in-dialog SUBSCRIBEs and to match NOTIFYs. A new
// subscription (new Call-ID and From tag) replaces it whenever the PBX drops
// it; the extension's dialog memory lives in the watch and survives that.
type subscription struct {
	w        *watch
	callID   string
	localTag string
	target   gosip.Uri // sip:<ext>@<domain>, the initial Request-URI and To

	mu          sync.Mutex
	remoteTag   string
	remote      *gosip.Uri // remote target from the PBX's Contact, once known
	routes      []string   // route set: the 2xx Record-Route, reversed
	cseq        uint32
	established bool

	// Version ordering of dialog-info documents, and whether the first
	// full document was journaled with its snapshot. Guarded by w.mu, which
	// serialises NOTIFY handling per extension.
	haveVersion bool
	version     uint64
	snapshotted bool
}

func newSubscription(w *watch, domain string) *subscription {
	return &subscription{
		w:        w,
		callID:   gosip.GenerateTagN(24),
		localTag: gosip.GenerateTagN(16),
		target:   gosip.Uri{Scheme: "sip", User: w.ext, Host: domain},
	}
}

// matchNotify reports whether a NOTIFY with these tags belongs to this
// dialog. A NOTIFY may overtake the 2xx to the SUBSCRIBE (RFC 6665
// §4.1.2.4), so the first one seen also sets the remote tag.
func (s *subscription) matchNotify(toTag, fromTag string) bool {
	if toTag != s.localTag || fromTag == "" {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.remoteTag == "" {
		s.remoteTag = fromTag
		return true
	}
	return s.remoteTag == fromTag
}

// setRemoteTarget records the PBX's Contact as the Request-URI of later
// in-dialog SUBSCRIBEs.
func (s *subscription) setRemoteTarget(c *gosip.ContactHeader) {
	if c == nil || c.Address.Host == "" || (c.Address.Scheme != "sip" && c.Address.Scheme != "sips" && c.Address.Scheme != "") {
		return
	}
	u := c.Address.Clone()
	u.Headers = nil
	s.mu.Lock()
	s.remote = u
	s.mu.Unlock()
}

// establish takes the dialog state from a 2xx to a SUBSCRIBE.
func (s *subscription) establish(res *gosip.Response) {
	s.setRemoteTarget(res.Contact())
	s.mu.Lock()
	defer s.mu.Unlock()
	if to := res.To(); to != nil && s.remoteTag == "" {
		s.remoteTag, _ = to.Params.Get("tag")
	}
	if !s.established {
		rr := res.GetHeaders("Record-Route")
		for i := len(rr) - 1; i >= 0; i-- {
			s.routes = append(s.routes, rr[i].Value())
		}
		s.established = true
	}
}

// request builds the next SUBSCRIBE of this dialog (CSeq+1). auth adds a
// digest Authorization header when a challenge is known.
func (s *subscription) request(from gosip.Uri, contact *gosip.ContactHeader, expires int, auth *authCache) *gosip.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	ruri := s.target
	if s.remote != nil {
		ruri = *s.remote.Clone()
	}
	req := gosip.NewRequest(gosip.SUBSCRIBE, ruri)
	req.AppendHeader(&gosip.FromHeader{Address: from, Params: gosip.HeaderParams{{K: "tag", V: s.localTag}}})
	to := &gosip.ToHeader{Address: s.target}
	if s.remoteTag != "" {
		to.Params = gosip.HeaderParams{{K: "tag", V: s.remoteTag}}
	}
	req.AppendHeader(to)
	cid := gosip.CallIDHeader(s.callID)
	req.AppendHeader(&cid)
	s.cseq++
	req.AppendHeader(&gosip.CSeqHeader{SeqNo: s.cseq, MethodName: gosip.SUBSCRIBE})
	for _, r := range s.routes {
		req.AppendHeader(gosip.NewHeader("Route", r))
	}
	req.AppendHeader(contact.Clone())
	req.AppendHeader(gosip.NewHeader("Event", "dialog"))
	req.AppendHeader(gosip.NewHeader("Accept", "application/dialog-info+xml"))
	req.AppendHeader(gosip.NewHeader("Expires", strconv.Itoa(expires)))
	req.AppendHeader(gosip.NewHeader("Allow", "NOTIFY, OPTIONS"))
	req.AppendHeader(gosip.NewHeader("User-Agent", "voipbridge"))
	if auth != nil {
		if name, value, ok := auth.authorization("SUBSCRIBE", ruri.String()); ok {
			req.AppendHeader(gosip.NewHeader(name, value))
		}
	}
	return req
}

// authCache keeps the last digest challenge so that refreshes and new
// subscriptions answer it up front instead of paying a 401 round trip each
// time (RFC 7616 nonce reuse with an increasing nonce count). A server that
// does not accept the reuse answers 401 again, which costs what not caching
// would have cost.
type authCache struct {
	username, password string

	mu    sync.Mutex
	chal  *digest.Challenge
	proxy bool // challenge came in Proxy-Authenticate (407)
	nc    int
}

// learn stores the challenge of a 401/407. It reports whether the challenge
// is usable and whether the server said our nonce was merely stale.
func (a *authCache) learn(res *gosip.Response) (stale, ok bool) {
	name := "WWW-Authenticate"
	proxy := res.StatusCode == gosip.StatusProxyAuthRequired
	if proxy {
		name = "Proxy-Authenticate"
	}
	for _, h := range res.GetHeaders(name) {
		chal, err := digest.ParseChallenge(h.Value())
		if err != nil {
			continue
		}
		chal.Algorithm = strings.ToUpper(chal.Algorithm)
		for i := range chal.QOP {
			chal.QOP[i] = strings.ToLower(strings.TrimSpace(chal.QOP[i]))
		}
		if !digest.CanDigest(chal) {
			continue
		}
		a.mu.Lock()
		a.chal, a.proxy, a.nc = chal, proxy, 0
		a.mu.Unlock()
		return chal.Stale, true
	}
	return false, false
}

// authorization returns the header answering the cached challenge for a
// request, with the next nonce count.
func (a *authCache) authorization(method, uri string) (name, value string, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.chal == nil {
		return "", "", false
	}
	a.nc++
	cred, err := digest.Digest(a.chal, digest.Options{
		Method: method, URI: uri, Username: a.username, Password: a.password, Count: a.nc,
		GetBody: emptyBody,
	})
	if err != nil {
		return "", "", false
	}
	name = "Authorization"
	if a.proxy {
		name = "Proxy-Authorization"
	}
	return name, cred.String(), true
}

// forget drops the cached challenge after the server refused an answer to it.
func (a *authCache) forget() {
	a.mu.Lock()
	a.chal = nil
	a.mu.Unlock()
}

// emptyBody is the body of a SUBSCRIBE, for qop=auth-int.
func emptyBody() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader("")), nil }
