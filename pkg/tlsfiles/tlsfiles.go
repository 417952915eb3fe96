// SPDX-License-Identifier: Apache-2.0

// Package tlsfiles turns mosquitto's TLS listener files and options
// (certfile, keyfile, cafile, require_certificate, tls_version, ciphers,
// crlfile) into a server tls.Config whose certificate can be reloaded
// (ServerConfig, Cert), and writes the throwaway CA and certificates of
// --tls-self-signed (WriteSelfSigned).
package tlsfiles

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// Files names the PEM files of a TLS listener (mosquitto's certfile,
// keyfile, cafile, require_certificate) and its options.
type Files struct {
	CertFile           string // server certificate chain
	KeyFile            string // server private key
	CAFile             string // CAs that sign client certificates, "" for none
	RequireCertificate bool   // refuse clients without a valid certificate
	// MinVersion is tls_version: "tlsv1.3", "tlsv1.2" or "tlsv1.1", the
	// oldest version accepted; "" means TLS 1.2.
	MinVersion string
	// Ciphers is ciphers: a colon-separated list of cipher suite names
	// (OpenSSL's, e.g. ECDHE-RSA-AES128-GCM-SHA256, or IANA's) for TLS 1.2
	// and older; "" means Go's defaults.
	Ciphers string
	// CRLFile is crlfile: a PEM certificate revocation list; client
	// certificates it revokes are refused.
	CRLFile string
}

// tlsVersions are the values of mosquitto's tls_version.
var tlsVersions = map[string]uint16{"tlsv1.3": tls.VersionTLS13, "tlsv1.2": tls.VersionTLS12, "tlsv1.1": tls.VersionTLS11}

// TLSVersion is the minimum TLS version a mosquitto tls_version value
// ("tlsv1.3", "tlsv1.2", "tlsv1.1") names; ok is false for another value.
func TLSVersion(name string) (v uint16, ok bool) {
	v, ok = tlsVersions[name]
	return v, ok
}

// CipherSuites turns a ciphers list into Go cipher suite IDs. Each entry
// must name a suite Go implements, in OpenSSL's or IANA's spelling;
// OpenSSL's classes and operators (HIGH, !aNULL, +, @STRENGTH) are not
// understood.
func CipherSuites(list string) ([]uint16, error) {
	byName := map[string]uint16{}
	for _, cs := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if len(cs.SupportedVersions) == 1 && cs.SupportedVersions[0] == tls.VersionTLS13 {
			continue // TLS 1.3 suites are not configurable (mosquitto: ciphers_tls1.3)
		}
		byName[cs.Name] = cs.ID
		byName[opensslName(cs.Name)] = cs.ID
	}
	var ids, unknown = []uint16{}, []string{}
	for _, name := range strings.FieldsFunc(list, func(r rune) bool { return r == ':' || r == ',' || r == ' ' }) {
		if id, ok := byName[name]; ok {
			ids = append(ids, id)
		} else {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		return nil, fmt.Errorf("ciphers: %s: not a TLS 1.2 cipher suite name mqtt broker knows (give names such as ECDHE-RSA-AES128-GCM-SHA256; OpenSSL classes like HIGH or !aNULL are not understood)", strings.Join(unknown, ", "))
	}
	if len(ids) == 0 {
		return nil, errors.New("ciphers: empty list")
	}
	return ids, nil
}

// opensslName is OpenSSL's name of an IANA cipher suite name, e.g.
// TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 → ECDHE-RSA-AES128-GCM-SHA256.
func opensslName(iana string) string {
	n := strings.TrimPrefix(iana, "TLS_")
	n = strings.Replace(n, "_WITH_", "_", 1)
	n = strings.NewReplacer("AES_128", "AES128", "AES_256", "AES256", "3DES_EDE_CBC", "DES-CBC3", "CHACHA20_POLY1305", "CHACHA20-POLY1305").Replace(n)
	n = strings.ReplaceAll(n, "_", "-")
	if strings.HasPrefix(n, "RSA-") {
		n = strings.TrimPrefix(n, "RSA-") // OpenSSL: AES128-GCM-SHA256
	}
	if strings.HasSuffix(n, "-CBC-SHA") {
		n = strings.TrimSuffix(n, "-CBC-SHA") + "-SHA"
	}
	if strings.HasSuffix(n, "-CBC-SHA256") {
		n = strings.TrimSuffix(n, "-CBC-SHA256") + "-SHA256"
	}
	n = strings.Replace(n, "ECDHE-ECDSA-CHACHA20-POLY1305-SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", 1)
	n = strings.Replace(n, "ECDHE-RSA-CHACHA20-POLY1305-SHA256", "ECDHE-RSA-CHACHA20-POLY1305", 1)
	return n
}

// ServerConfig builds the tls.Config of a listener: TLS 1.2 or newer, the
// server certificate, and client certificates verified against CAFile.
// With a CAFile but without RequireCertificate a certificate is asked for
// and verified when given (needed by use_identity_as_username). The
// returned Cert serves the certificate to every handshake; Cert.Reload
// replaces it.
func ServerConfig(f Files) (*tls.Config, *Cert, error) {
	if f.CertFile == "" || f.KeyFile == "" {
		return nil, nil, errors.New("tls: both a certificate file and a key file are needed")
	}
	src := &Cert{certFile: f.CertFile, keyFile: f.KeyFile, caFile: f.CAFile}
	if err := src.Reload(); err != nil {
		return nil, nil, err
	}
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: src.get,
	}
	if f.MinVersion != "" {
		v, ok := TLSVersion(f.MinVersion)
		if !ok {
			return nil, nil, fmt.Errorf("tls_version %s: must be tlsv1.3, tlsv1.2 or tlsv1.1", f.MinVersion)
		}
		cfg.MinVersion = v
	}
	if f.Ciphers != "" {
		ids, err := CipherSuites(f.Ciphers)
		if err != nil {
			return nil, nil, err
		}
		cfg.CipherSuites = ids
	}
	if f.CRLFile != "" {
		if f.CAFile == "" {
			return nil, nil, errors.New("tls: crlfile needs a cafile: it revokes client certificates")
		}
		crl, err := loadCRL(f.CRLFile)
		if err != nil {
			return nil, nil, err
		}
		cfg.VerifyPeerCertificate = crl.verify
	}
	if f.CAFile != "" {
		pool, err := LoadCertPool(f.CAFile)
		if err != nil {
			return nil, nil, err
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if f.RequireCertificate {
		if f.CAFile == "" {
			return nil, nil, errors.New("tls: require_certificate needs a cafile to verify client certificates")
		}
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, src, nil
}

// Cert holds the server certificate of a TLS listener. The
// listener's tls.Config asks it for the certificate on every handshake, so
// a certificate reloaded from its files (SIGHUP, as mosquitto does) serves
// new connections at once, without a restart; established connections
// keep the one they negotiated.
type Cert struct {
	certFile, keyFile string
	caFile            string // cafile: completes the chain sent to clients
	cur               atomic.Pointer[tls.Certificate]
}

// Reload reads the certificate and key files, and completes the chain
// from the cafile (see completeChain). On error the certificate in use
// stays.
func (s *Cert) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return fmt.Errorf("load certificate %s and key %s: %w", s.certFile, s.keyFile, err)
	}
	if s.caFile != "" {
		if pemData, err := os.ReadFile(s.caFile); err == nil {
			completeChain(&cert, pemData)
		}
	}
	s.cur.Store(&cert)
	return nil
}

// maxChain bounds the certificates completeChain adds.
const maxChain = 10

// completeChain appends to cert the issuers of its last certificate found
// in the PEM bundle caPEM (mosquitto's cafile), up to and including a
// self-signed root, as OpenSSL does for mosquitto when the certfile holds
// the leaf alone: a client that trusts only the root CA can then verify a
// leaf signed by an intermediate CA from the cafile. Certificates already
// sent are not repeated; a bundle without the issuer changes nothing.
func completeChain(cert *tls.Certificate, caPEM []byte) {
	var cas []*x509.Certificate
	for rest := caPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		if c, err := x509.ParseCertificate(block.Bytes); err == nil {
			cas = append(cas, c)
		}
	}
	if len(cert.Certificate) == 0 {
		return
	}
	last, err := x509.ParseCertificate(cert.Certificate[len(cert.Certificate)-1])
	if err != nil {
		return
	}
	sent := func(c *x509.Certificate) bool {
		for _, der := range cert.Certificate {
			if bytes.Equal(der, c.Raw) {
				return true
			}
		}
		return false
	}
	for added := 0; added < maxChain && !bytes.Equal(last.RawSubject, last.RawIssuer); added++ {
		var issuer *x509.Certificate
		for _, c := range cas {
			if bytes.Equal(c.RawSubject, last.RawIssuer) && !sent(c) && last.CheckSignatureFrom(c) == nil {
				issuer = c
				break
			}
		}
		if issuer == nil {
			return
		}
		cert.Certificate = append(cert.Certificate, issuer.Raw)
		last = issuer
	}
}

// CertFile is the certificate file the Cert is loaded from.
func (s *Cert) CertFile() string { return s.certFile }

// get is the listener's tls.Config.GetCertificate.
func (s *Cert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load(), nil
}

// revocations is a loaded crlfile.
type revocations struct {
	lists []*x509.RevocationList
}

// loadCRL reads the PEM (or DER) revocation lists in path.
func loadCRL(path string) (*revocations, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read crlfile: %w", err)
	}
	r := &revocations{}
	if !bytes.Contains(data, []byte("-----BEGIN")) {
		rl, err := x509.ParseRevocationList(data)
		if err != nil {
			return nil, fmt.Errorf("crlfile %s: %w", path, err)
		}
		r.lists = append(r.lists, rl)
		return r, nil
	}
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "X509 CRL" {
			continue
		}
		rl, err := x509.ParseRevocationList(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("crlfile %s: %w", path, err)
		}
		r.lists = append(r.lists, rl)
	}
	if len(r.lists) == 0 {
		return nil, fmt.Errorf("crlfile %s: no PEM X509 CRL found", path)
	}
	return r, nil
}

// verify refuses a client whose verified certificate chain holds a
// certificate revoked by a list its issuer signed
// (tls.Config.VerifyPeerCertificate).
func (r *revocations) verify(_ [][]byte, chains [][]*x509.Certificate) error {
	for _, chain := range chains {
		for i, cert := range chain {
			if i+1 >= len(chain) {
				break
			}
			issuer := chain[i+1]
			for _, rl := range r.lists {
				if !bytes.Equal(rl.RawIssuer, cert.RawIssuer) || rl.CheckSignatureFrom(issuer) != nil {
					continue
				}
				for _, e := range rl.RevokedCertificateEntries {
					if e.SerialNumber != nil && e.SerialNumber.Cmp(cert.SerialNumber) == 0 {
						return fmt.Errorf("certificate %q (serial %s) is revoked", cert.Subject.CommonName, cert.SerialNumber)
					}
				}
			}
		}
	}
	return nil
}

// LoadCertPool reads the PEM certificates of a cafile.
func LoadCertPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cafile: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("cafile %s: no PEM certificates found", path)
	}
	return pool, nil
}

// SelfSigned names the files written by WriteSelfSigned.
type SelfSigned struct {
	CAFile         string // the throwaway CA: give it to clients (--cafile)
	CertFile       string // server certificate for localhost, signed by the CA
	KeyFile        string // server key
	ClientCertFile string // a client certificate (CN mqtt-client) for --require-certificate
	ClientKeyFile  string // its key
	Reused         bool   // the files existed and were kept
}

// WriteSelfSigned writes into dir a throwaway CA (ca.crt), a server
// certificate for localhost, 127.0.0.1 and ::1 (server.crt, server.key) and
// a client certificate (client.crt, client.key), all valid for a year. When
// the files already exist and still load, they are kept, so that clients
// holding ca.crt keep working across restarts. Keys are written with mode
// 0600.
func WriteSelfSigned(dir string) (SelfSigned, error) {
	s := SelfSigned{
		CAFile:         filepath.Join(dir, "ca.crt"),
		CertFile:       filepath.Join(dir, "server.crt"),
		KeyFile:        filepath.Join(dir, "server.key"),
		ClientCertFile: filepath.Join(dir, "client.crt"),
		ClientKeyFile:  filepath.Join(dir, "client.key"),
	}
	if selfSignedUsable(s) {
		s.Reused = true
		return s, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return s, fmt.Errorf("tls-self-signed: %w", err)
	}
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return s, err
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "mqtt broker throwaway CA", Organization: []string{"mqttkit"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(1, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return s, err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return s, err
	}
	leaf := func(cn string, usage x509.ExtKeyUsage, server bool) ([]byte, *ecdsa.PrivateKey, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: serial(),
			Subject:      pkix.Name{CommonName: cn, Organization: []string{"mqttkit"}},
			NotBefore:    now.Add(-time.Hour),
			NotAfter:     now.AddDate(1, 0, 0),
			KeyUsage:     x509.KeyUsageDigitalSignature,
			ExtKeyUsage:  []x509.ExtKeyUsage{usage},
		}
		if server {
			tmpl.DNSNames = []string{"localhost"}
			tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		return der, key, err
	}
	srvDER, srvKey, err := leaf("localhost", x509.ExtKeyUsageServerAuth, true)
	if err != nil {
		return s, err
	}
	cliDER, cliKey, err := leaf("mqtt-client", x509.ExtKeyUsageClientAuth, false)
	if err != nil {
		return s, err
	}
	for _, w := range []struct {
		path string
		der  []byte
		key  *ecdsa.PrivateKey
	}{
		{s.CAFile, caDER, nil},
		{s.CertFile, srvDER, nil},
		{s.KeyFile, nil, srvKey},
		{s.ClientCertFile, cliDER, nil},
		{s.ClientKeyFile, nil, cliKey},
	} {
		if err := writePEM(w.path, w.der, w.key); err != nil {
			return s, fmt.Errorf("tls-self-signed: %w", err)
		}
	}
	return s, nil
}

// selfSignedUsable reports whether earlier files can be kept: all present,
// the server pair loads and is valid for at least another day.
func selfSignedUsable(s SelfSigned) bool {
	for _, p := range []string{s.CAFile, s.ClientCertFile, s.ClientKeyFile} {
		if _, err := os.Stat(p); err != nil {
			return false
		}
	}
	pair, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	if err != nil || len(pair.Certificate) == 0 {
		return false
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil || time.Until(leaf.NotAfter) < 24*time.Hour {
		return false
	}
	pool, err := LoadCertPool(s.CAFile)
	if err != nil {
		return false
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"})
	return err == nil
}

func writePEM(path string, der []byte, key *ecdsa.PrivateKey) error {
	block := &pem.Block{Type: "CERTIFICATE", Bytes: der}
	mode := os.FileMode(0o644)
	if key != nil {
		b, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		block = &pem.Block{Type: "EC PRIVATE KEY", Bytes: b}
		mode = 0o600
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := pem.Encode(tmp, block); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}
