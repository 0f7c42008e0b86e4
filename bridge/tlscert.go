package bridge

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"sync/atomic"
	"time"
)

// certLoader serves the certificate of TLS_CERT_FILE and TLS_KEY_FILE to
// every new TLS connection and re-reads both files on load, so a renewed
// certificate is taken without a restart; a pair that does not load leaves
// the current certificate in place.
type certLoader struct {
	certFile, keyFile string
	cert              atomic.Pointer[tls.Certificate]
}

// newCertLoader loads the pair once; an error means there is no certificate.
func newCertLoader(certFile, keyFile string) (*certLoader, error) {
	c := &certLoader{certFile: certFile, keyFile: keyFile}
	if _, err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

// load reads the pair; on success new connections get it, and it returns
// the certificate's leaf.
func (c *certLoader) load() (*x509.Certificate, error) {
	pair, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE/TLS_KEY_FILE: %w", err)
	}
	// LoadX509KeyPair fills Leaf since Go 1.23.
	if pair.Leaf == nil {
		return nil, fmt.Errorf("TLS_CERT_FILE: no certificate")
	}
	c.cert.Store(&pair)
	return pair.Leaf, nil
}

func (c *certLoader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return c.cert.Load(), nil
}

// tlsConfig is the server side: TLS 1.2 or later, HTTP/1.1 only (see
// httpEdge), the certificate as last loaded.
func (c *certLoader) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"http/1.1"},
		GetCertificate: c.get,
	}
}

// describe is what the logs say about a certificate.
func describeCert(leaf *x509.Certificate) []any {
	return []any{"subject", leaf.Subject.String(), "dns_names", leaf.DNSNames, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339)}
}
