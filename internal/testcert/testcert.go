// SPDX-License-Identifier: Apache-2.0

// Package testcert makes throwaway certificate authorities, server and
// client certificates for TLS tests, in memory or as PEM files that
// brokers (mosquitto, mqtt broker) and clients (--cafile, --cert, --key)
// can read. Keys are ECDSA P-256, so generation is fast.
package testcert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// CA is a certificate authority that signs test certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is the CA certificate, PEM encoded (what --cafile reads).
	PEM []byte
}

// Pair is a certificate signed by a CA, with its key.
type Pair struct {
	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA makes a self-signed CA whose common name is cn.
func NewCA(cn string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"mqttkit tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// Intermediate signs a CA certificate with common name cn that can sign
// certificates in turn: a chain root → intermediate → leaf.
func (ca *CA) Intermediate(cn string) (*CA, error) {
	tmpl := ca.template(cn, x509.ExtKeyUsageServerAuth)
	tmpl.ExtKeyUsage = nil
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid, tmpl.IsCA = true, true
	p, err := ca.sign(tmpl)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: p.Cert, Key: p.Key, PEM: p.CertPEM}, nil
}

// Server signs a server certificate valid for names: each name that
// parses as an IP address becomes an IP SAN, the others DNS SANs. The
// first name is also the common name.
func (ca *CA) Server(names ...string) (*Pair, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("testcert: a server certificate needs at least one name")
	}
	tmpl := ca.template(names[0], x509.ExtKeyUsageServerAuth)
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	return ca.sign(tmpl)
}

// Client signs a client certificate with common name cn.
func (ca *CA) Client(cn string) (*Pair, error) {
	return ca.sign(ca.template(cn, x509.ExtKeyUsageClientAuth))
}

// Expired signs a server certificate for names that expired an hour ago.
func (ca *CA) Expired(names ...string) (*Pair, error) {
	tmpl := ca.template(names[0], x509.ExtKeyUsageServerAuth)
	tmpl.DNSNames = names
	tmpl.NotBefore = time.Now().Add(-48 * time.Hour)
	tmpl.NotAfter = time.Now().Add(-time.Hour)
	return ca.sign(tmpl)
}

func (ca *CA) template(cn string, usage x509.ExtKeyUsage) *x509.Certificate {
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"mqttkit tests"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
}

func (ca *CA) sign(tmpl *x509.Certificate) (*Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &Pair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}),
	}, nil
}

// TLSCertificate returns the pair as a tls.Certificate for a server or client config.
func (p *Pair) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{p.Cert.Raw}, PrivateKey: p.Key, Leaf: p.Cert}
}

// Pool returns a certificate pool holding only the CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Files names the PEM files written by Write.
type Files struct {
	Dir        string
	CA         string // ca.pem: the CA certificate
	ServerCert string // server.pem: for localhost, 127.0.0.1 and ::1 unless other names were given
	ServerKey  string // server.key
	ClientCert string // client.pem: common name "client"
	ClientKey  string // client.key
	OtherCA    string // other-ca.pem: a second CA that signed nothing here
}

// Write makes a CA, a server certificate for names (default localhost,
// 127.0.0.1 and ::1), a client certificate and an unrelated second CA, and
// writes them as PEM files into dir (created if missing). Keys get mode 0600.
func Write(dir string, names ...string) (*Files, error) {
	if len(names) == 0 {
		names = []string{"localhost", "127.0.0.1", "::1"}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	ca, err := NewCA("mqttkit test CA")
	if err != nil {
		return nil, err
	}
	other, err := NewCA("some other CA")
	if err != nil {
		return nil, err
	}
	srv, err := ca.Server(names...)
	if err != nil {
		return nil, err
	}
	cli, err := ca.Client("client")
	if err != nil {
		return nil, err
	}
	f := &Files{
		Dir:        dir,
		CA:         filepath.Join(dir, "ca.pem"),
		ServerCert: filepath.Join(dir, "server.pem"),
		ServerKey:  filepath.Join(dir, "server.key"),
		ClientCert: filepath.Join(dir, "client.pem"),
		ClientKey:  filepath.Join(dir, "client.key"),
		OtherCA:    filepath.Join(dir, "other-ca.pem"),
	}
	for _, w := range []struct {
		path string
		data []byte
		mode os.FileMode
	}{
		{f.CA, ca.PEM, 0o644},
		{f.ServerCert, srv.CertPEM, 0o644},
		{f.ServerKey, srv.KeyPEM, 0o600},
		{f.ClientCert, cli.CertPEM, 0o644},
		{f.ClientKey, cli.KeyPEM, 0o600},
		{f.OtherCA, other.PEM, 0o644},
	} {
		if err := os.WriteFile(w.path, w.data, w.mode); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// WriteT is Write for tests: it writes into a new temporary directory and
// fails the test on error.
func WriteT(t testing.TB, names ...string) *Files {
	t.Helper()
	f, err := Write(t.TempDir(), names...)
	if err != nil {
		t.Fatalf("testcert: %v", err)
	}
	return f
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}
