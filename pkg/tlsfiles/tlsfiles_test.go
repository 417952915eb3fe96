// SPDX-License-Identifier: Apache-2.0

package tlsfiles

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	s, err := WriteSelfSigned(dir)
	require.NoError(t, err)
	require.False(t, s.Reused)
	for _, p := range []string{s.KeyFile, s.ClientKeyFile} {
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), p)
	}

	// The server certificate verifies for localhost and 127.0.0.1 against the CA.
	pool, err := LoadCertPool(s.CAFile)
	require.NoError(t, err)
	pair, err := tls.LoadX509KeyPair(s.CertFile, s.KeyFile)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name})
		require.NoError(t, err, name)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"})
	require.Error(t, err)

	// A second run keeps the files, so distributed ca.crt copies stay valid.
	ca, err := os.ReadFile(s.CAFile)
	require.NoError(t, err)
	again, err := WriteSelfSigned(dir)
	require.NoError(t, err)
	require.True(t, again.Reused)
	ca2, err := os.ReadFile(s.CAFile)
	require.NoError(t, err)
	require.Equal(t, ca, ca2)

	// A damaged set is replaced.
	require.NoError(t, os.WriteFile(s.KeyFile, []byte("garbage"), 0o600))
	third, err := WriteSelfSigned(dir)
	require.NoError(t, err)
	require.False(t, third.Reused)
}

func TestServerConfigErrors(t *testing.T) {
	s, err := WriteSelfSigned(t.TempDir())
	require.NoError(t, err)
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600))
	tests := []struct {
		name string
		f    Files
		msg  string
	}{
		{"no key", Files{CertFile: s.CertFile}, "tls: both a certificate file and a key file are needed"},
		{"missing cert", Files{CertFile: "/nonexistent.crt", KeyFile: s.KeyFile}, "load certificate /nonexistent.crt and key " + s.KeyFile + ": open /nonexistent.crt: no such file or directory"},
		{"bad cafile", Files{CertFile: s.CertFile, KeyFile: s.KeyFile, CAFile: notPEM}, "cafile " + notPEM + ": no PEM certificates found"},
		{"require without cafile", Files{CertFile: s.CertFile, KeyFile: s.KeyFile, RequireCertificate: true}, "tls: require_certificate needs a cafile to verify client certificates"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ServerConfig(tt.f)
			require.EqualError(t, err, tt.msg)
		})
	}
}

func TestCipherSuites(t *testing.T) {
	ids, err := CipherSuites("ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:AES256-GCM-SHA384:ECDHE-RSA-AES256-SHA:TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
	require.NoError(t, err)
	require.Equal(t, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
		tls.TLS_RSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}, ids)
	_, err = CipherSuites("HIGH:!aNULL")
	require.EqualError(t, err, "ciphers: HIGH, !aNULL: not a TLS 1.2 cipher suite name mqtt broker knows (give names such as ECDHE-RSA-AES128-GCM-SHA256; OpenSSL classes like HIGH or !aNULL are not understood)")
}
