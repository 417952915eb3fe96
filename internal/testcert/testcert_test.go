// SPDX-License-Identifier: Apache-2.0

package testcert

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestWriteVerifies(t *testing.T) {
	f := WriteT(t)
	caPEM, err := os.ReadFile(f.CA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(caPEM))

	pair, err := tls.LoadX509KeyPair(f.ServerCert, f.ServerKey)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	require.NoError(t, err)
	for _, name := range []string{"localhost", "127.0.0.1", "::1"} {
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name})
		require.NoError(t, err, name)
	}
	_, err = leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "example.com"})
	require.Error(t, err)

	otherPEM, err := os.ReadFile(f.OtherCA)
	require.NoError(t, err)
	other := x509.NewCertPool()
	require.True(t, other.AppendCertsFromPEM(otherPEM))
	_, err = leaf.Verify(x509.VerifyOptions{Roots: other, DNSName: "localhost"})
	var ua x509.UnknownAuthorityError
	require.ErrorAs(t, err, &ua)

	cp, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	require.NoError(t, err)
	cl, err := x509.ParseCertificate(cp.Certificate[0])
	require.NoError(t, err)
	_, err = cl.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	require.NoError(t, err)

	st, err := os.Stat(f.ServerKey)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())
}

func TestHandshake(t *testing.T) {
	ca, err := NewCA("ca")
	require.NoError(t, err)
	srv, err := ca.Server("127.0.0.1")
	require.NoError(t, err)
	cli, err := ca.Client("alice")
	require.NoError(t, err)
	l, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srv.TLSCertificate()},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
	})
	require.NoError(t, err)
	defer l.Close()
	errc := make(chan error, 1)
	cn := make(chan string, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			errc <- err
			return
		}
		defer c.Close()
		tc := c.(*tls.Conn)
		err = tc.Handshake()
		if err == nil {
			cn <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
		}
		errc <- err
	}()
	c, err := tls.Dial("tcp", l.Addr().String(), &tls.Config{
		RootCAs:      ca.Pool(),
		Certificates: []tls.Certificate{cli.TLSCertificate()},
		ServerName:   "127.0.0.1",
	})
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, <-errc)
	require.Equal(t, "alice", <-cn)
}

func TestExpired(t *testing.T) {
	ca, err := NewCA("ca")
	require.NoError(t, err)
	p, err := ca.Expired("localhost")
	require.NoError(t, err)
	_, err = p.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "localhost"})
	var ci x509.CertificateInvalidError
	require.ErrorAs(t, err, &ci)
	require.Equal(t, x509.Expired, ci.Reason)
}
