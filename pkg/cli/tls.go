// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// tlsOptions are the TLS settings gathered from flags and profiles.
type tlsOptions struct {
	CAFile     string
	CAPath     string
	CertFile   string
	KeyFile    string
	Insecure   bool
	Version    string // minimum: tlsv1.3, tlsv1.2 (default) or tlsv1.1
	ALPN       string
	UseOSCerts bool
}

// errTLSOptions is mosquitto's message for a bad TLS option value.
const errTLSOptions = "Problem setting TLS options, check the options are valid."

// config builds the client's tls.Config. Certificates are verified
// against the CAs in CAFile and CAPath (plus the system's with
// UseOSCerts), or against the system's when neither is given. Insecure
// skips only the host name check, like mosquitto 2.0: the chain is still
// verified.
func (t *tlsOptions) config() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.Version != "" {
		v, ok := tlsfiles.TLSVersion(strings.ToLower(t.Version))
		if !ok {
			return nil, usageErrorf("%s --tls-version must be tlsv1.3, tlsv1.2 or tlsv1.1, not %q.", errTLSOptions, t.Version)
		}
		cfg.MinVersion = v
	}
	if t.CAFile != "" || t.CAPath != "" {
		pool := x509.NewCertPool()
		if t.UseOSCerts {
			if sys, err := x509.SystemCertPool(); err == nil {
				pool = sys
			}
		}
		if t.CAFile != "" {
			if err := addPEMFile(pool, "--cafile", t.CAFile); err != nil {
				return nil, err
			}
		}
		if t.CAPath != "" {
			if err := addPEMDir(pool, t.CAPath); err != nil {
				return nil, err
			}
		}
		cfg.RootCAs = pool
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		return nil, usageErrorf("Both certfile and keyfile must be provided if one of them is set.")
	}
	if t.CertFile != "" {
		for _, f := range [][2]string{{"--cert", t.CertFile}, {"--key", t.KeyFile}} {
			if _, err := os.Stat(f[1]); err != nil {
				return nil, fileErr(f[0], f[1], err)
			}
		}
		pair, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, usageErrorf("Problem setting TLS options: cannot use client certificate %s with key %s: %v.", t.CertFile, t.KeyFile, strings.TrimPrefix(err.Error(), "tls: "))
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	if t.ALPN != "" {
		cfg.NextProtos = []string{t.ALPN}
	}
	if t.Insecure {
		roots := cfg.RootCAs
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			return verifyChain(cs, roots)
		}
	}
	return cfg, nil
}

// verifyChain checks the broker's certificate chain without checking its
// names (--insecure).
func verifyChain(cs tls.ConnectionState, roots *x509.CertPool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the broker sent no certificate")
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: x509.NewCertPool()}
	for _, c := range cs.PeerCertificates[1:] {
		opts.Intermediates.AddCert(c)
	}
	_, err := cs.PeerCertificates[0].Verify(opts)
	return err
}

// fileErr words a missing or unreadable TLS file like mosquitto, then
// says which one.
func fileErr(flag, path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return usageErrorf("Problem setting TLS options: File not found. %s %s does not exist.", flag, path)
	}
	return usageErrorf("Problem setting TLS options: %s %s: %v.", flag, path, unwrapPath(err))
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func addPEMFile(pool *x509.CertPool, flag, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fileErr(flag, path, err)
	}
	if !pool.AppendCertsFromPEM(b) {
		return usageErrorf("Problem setting TLS options: %s %s holds no PEM certificate.", flag, path)
	}
	return nil
}

// addPEMDir adds every certificate found in the files of dir, like
// OpenSSL's hashed CA directories (openssl rehash) but without needing
// the hash names.
func addPEMDir(pool *x509.CertPool, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fileErr("--capath", dir, err)
	}
	n := 0
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // subdirectories, dangling links
		}
		if pool.AppendCertsFromPEM(b) {
			n++
		}
	}
	if n == 0 {
		return usageErrorf("Problem setting TLS options: --capath %s holds no PEM certificate.", dir)
	}
	return nil
}
