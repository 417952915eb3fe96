// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"crypto/tls"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/internal/testcert"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// TestConnectTimeoutTLS: on an mqtts listener the connect timeout bounds
// the TLS handshake and the CONNECT after it (connListener.wrap arms it
// on the socket, under TLS): a client that stalls in either is closed.
func TestConnectTimeoutTLS(t *testing.T) {
	f := testcert.WriteT(t)
	b, err := New(Config{AllowAnonymous: true, SysInterval: -1, ConnectTimeout: 300 * time.Millisecond,
		Listeners: []Listener{{Address: "127.0.0.1:0", TLS: &tlsfiles.Files{CertFile: f.ServerCert, KeyFile: f.ServerKey}}}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.Start())
	pool, err := tlsfiles.LoadCertPool(f.CA)
	require.NoError(t, err)
	addr := b.Listeners()[0].Addr
	connect := rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: "slow-tls", Clean: true})

	closed := func(t *testing.T, c net.Conn) {
		t.Helper()
		require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
		buf := make([]byte, 64)
		for {
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				require.False(t, errors.As(err, &ne) && ne.Timeout(), "still open after 10 s: %v", err)
				return
			}
		}
	}
	for name, sent := range map[string][]byte{
		"nothing":            nil,
		"half a ClientHello": {0x16, 0x03, 0x01, 0x02, 0x00, 0x01},
	} {
		t.Run(name, func(t *testing.T) {
			c, err := net.DialTimeout("tcp", addr, 5*time.Second)
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			_, err = c.Write(sent)
			require.NoError(t, err)
			closed(t, c)
		})
	}
	for name, sent := range map[string][]byte{
		"handshake, then nothing":      nil,
		"handshake, then half CONNECT": connect[:len(connect)/2],
	} {
		t.Run(name, func(t *testing.T) {
			c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			require.NoError(t, c.Handshake())
			_, err = c.Write(sent)
			require.NoError(t, err)
			closed(t, c)
		})
	}
}
