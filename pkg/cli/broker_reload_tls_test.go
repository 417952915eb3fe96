// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"crypto/tls"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testcert"
)

// SIGHUP reloads the server certificate as mosquitto does; a broken pair
// keeps the previous one and the log says why.
func TestRunBrokerReloadTLS(t *testing.T) {
	ca, err := testcert.NewCA("reload CA")
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	install := func() string {
		p, err := ca.Server("localhost", "127.0.0.1")
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(certFile, p.CertPEM, 0o644))
		require.NoError(t, os.WriteFile(keyFile, p.KeyPEM, 0o600))
		return p.Cert.SerialNumber.String()
	}
	first := install()
	_, stderr, hup := startBroker(t, "-p", "0", "--tls-port", "0", "--cert", certFile, "--key", keyFile)
	m := regexp.MustCompile(`listening on (\S+) \(mqtts\)`).FindStringSubmatch(stderr.String())
	require.NotNil(t, m, stderr.String())
	served := func() string {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", m[1], &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost"})
		require.NoError(t, err)
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	require.Equal(t, first, served())

	second := install()
	hup <- syscall.SIGHUP
	waitForText(t, stderr, `msg="reloaded TLS certificates" cert_files=`+certFile)
	require.Equal(t, second, served())

	require.NoError(t, os.WriteFile(keyFile, []byte("not a key\n"), 0o600))
	hup <- syscall.SIGHUP
	waitForText(t, stderr, `msg="TLS certificate reload failed, the previous certificate stays in force" error="listener `+m[1]+` (mqtts): load certificate `+certFile+` and key `+keyFile+`: tls: failed to find any PEM data in key input"`)
	require.Equal(t, second, served())
}
