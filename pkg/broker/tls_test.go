// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/testcert"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// startTLS runs a mochi server with the security hook on a TLS listener.
func startTLS(t *testing.T, f tlsfiles.Files, cfg SecurityConfig, identity bool) string {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := mqtt.New(&mqtt.Options{Logger: log})
	sec, err := loadSecurity(cfg, log)
	require.NoError(t, err)
	require.NoError(t, srv.AddHook(newSecurityHook(srv, log, sec, map[string]bool{"tls": identity}), nil))
	addr := serveOn(t, srv, "tls", Listener{Address: "127.0.0.1:0", TLS: &f})
	require.NoError(t, srv.Serve())
	t.Cleanup(func() { srv.Close() })
	return addr
}

func dialTLS(t *testing.T, addr string, cfg *tls.Config) (*tls.Conn, error) {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err == nil {
		t.Cleanup(func() { conn.Close() })
	}
	return conn, err
}

func TestTLSListener(t *testing.T) {
	s, err := tlsfiles.WriteSelfSigned(t.TempDir())
	require.NoError(t, err)
	pool, err := tlsfiles.LoadCertPool(s.CAFile)
	require.NoError(t, err)
	clientCert, err := tls.LoadX509KeyPair(s.ClientCertFile, s.ClientKeyFile)
	require.NoError(t, err)

	t.Run("server certificate and TLS 1.2 minimum", func(t *testing.T) {
		addr := startTLS(t, tlsfiles.Files{CertFile: s.CertFile, KeyFile: s.KeyFile}, SecurityConfig{AllowAnonymous: true}, false)
		conn, err := dialTLS(t, addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		require.NoError(t, err)
		c := rawclient.New(t, conn, 4)
		c.MustConnect("tls1", "", "")

		_, err = dialTLS(t, addr, &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS11})
		require.Error(t, err)
		_, err = dialTLS(t, addr, &tls.Config{ServerName: "localhost"})
		require.Error(t, err, "unknown CA must fail")
	})

	t.Run("require_certificate", func(t *testing.T) {
		addr := startTLS(t, tlsfiles.Files{CertFile: s.CertFile, KeyFile: s.KeyFile, CAFile: s.CAFile, RequireCertificate: true}, SecurityConfig{AllowAnonymous: true}, false)
		conn, err := dialTLS(t, addr, &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{clientCert}})
		require.NoError(t, err)
		rawclient.New(t, conn, 5).MustConnect("withcert", "", "")

		// Without a certificate the handshake fails (TLS 1.3 reports it on
		// the first read).
		conn, err = dialTLS(t, addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err == nil {
			c := rawclient.New(t, conn, 5)
			c.Send(c.ConnectPacket("nocert", "", ""))
			_, _, err = c.RecvRaw(5 * time.Second)
		}
		require.Error(t, err)
	})

	t.Run("use_identity_as_username", func(t *testing.T) {
		pw := passwordFile(t, map[string]string{"alice": "secret"})
		acl := writeFile(t, "acl", "user mqtt-client\ntopic readwrite devices/#\n")
		addr := startTLS(t, tlsfiles.Files{CertFile: s.CertFile, KeyFile: s.KeyFile, CAFile: s.CAFile},
			SecurityConfig{PasswordFile: pw, ACLFile: acl}, true)

		conn, err := dialTLS(t, addr, &tls.Config{RootCAs: pool, ServerName: "localhost", Certificates: []tls.Certificate{clientCert}})
		require.NoError(t, err)
		c := rawclient.New(t, conn, 5)
		// The CONNECT username and password are ignored: the CN is the username.
		c.MustConnect("dev1", "alice", "wrong")
		c.Publish(1, 1, "devices/1", "x", false)
		require.Equal(t, byte(0), c.Recv().ReasonCode)
		c.Publish(2, 1, "alice/1", "x", false)
		require.Equal(t, byte(0x87), c.Recv().ReasonCode)

		// No certificate: refused with bad username or password (4 / 0x86).
		for v, want := range map[byte]byte{4: 4, 5: 0x86} {
			conn, err = dialTLS(t, addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
			require.NoError(t, err)
			c = rawclient.New(t, conn, v)
			require.Equal(t, want, c.Connect("dev2", "alice", "secret"), "v%d", v)
		}
	})
}

// SIGHUP's certificate reload: new connections on mqtts and wss get the
// new certificate, an established one stays connected, and a broken pair
// keeps the previous certificate with an error naming the listener.
func TestReloadTLS(t *testing.T) {
	ca, err := testcert.NewCA("reload CA")
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	install := func() *x509.Certificate {
		p, err := ca.Server("localhost", "127.0.0.1")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(certFile, p.CertPEM, 0o644))
		require.NoError(t, os.WriteFile(keyFile, p.KeyPEM, 0o600))
		return p.Cert
	}
	first := install()
	files := &tlsfiles.Files{CertFile: certFile, KeyFile: keyFile}
	b := start(t, Config{AllowAnonymous: true, Listeners: []Listener{
		{Address: "127.0.0.1:0"},
		{Address: "127.0.0.1:0", TLS: files},
		{Address: "127.0.0.1:0", Protocol: "websockets", TLS: files},
	}})
	ls := b.Listeners()
	require.Equal(t, []string{"mqtt", "mqtts", "wss"}, []string{ls[0].Protocol, ls[1].Protocol, ls[2].Protocol})
	tlsCfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"}
	// served returns the serial number of the certificate each TLS
	// listener presents to a new connection.
	served := func() []string {
		conn, err := dialTLS(t, ls[1].Addr, tlsCfg)
		require.NoError(t, err)
		defer conn.Close()
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: tlsCfg}
		ws, resp, err := d.Dial("wss://"+ls[2].Addr+"/mqtt", nil)
		require.NoError(t, err)
		resp.Body.Close()
		defer ws.Close()
		wsState := ws.UnderlyingConn().(*tls.Conn).ConnectionState()
		return []string{conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), wsState.PeerCertificates[0].SerialNumber.String()}
	}
	require.Equal(t, []string{first.SerialNumber.String(), first.SerialNumber.String()}, served())
	conn, err := dialTLS(t, ls[1].Addr, tlsCfg)
	require.NoError(t, err)
	old := rawclient.New(t, conn, 4)
	old.MustConnect("before-reload", "", "")

	second := install()
	reloaded, err := b.ReloadTLS()
	require.NoError(t, err)
	require.Equal(t, []string{certFile}, reloaded)
	require.Equal(t, []string{second.SerialNumber.String(), second.SerialNumber.String()}, served())
	require.Empty(t, old.Ping(), "the connection made before the reload stays up")

	// A key that does not match the certificate: the previous pair stays.
	other, err := ca.Server("localhost")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(keyFile, other.KeyPEM, 0o600))
	reloaded, err = b.ReloadTLS()
	require.Empty(t, reloaded)
	require.ErrorContains(t, err, "listener "+ls[1].Addr+" (mqtts): load certificate "+certFile+" and key "+keyFile+": tls: private key does not match public key")
	require.ErrorContains(t, err, "listener "+ls[2].Addr+" (wss): ")
	require.Equal(t, []string{second.SerialNumber.String(), second.SerialNumber.String()}, served())
	require.NoError(t, os.Remove(certFile))
	_, err = b.ReloadTLS()
	require.ErrorContains(t, err, "no such file or directory")
	require.Equal(t, []string{second.SerialNumber.String(), second.SerialNumber.String()}, served())

	// A broker without TLS listeners has nothing to reload.
	reloaded, err = start(t, Config{AllowAnonymous: true}).ReloadTLS()
	require.NoError(t, err)
	require.Empty(t, reloaded)
}
