// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/internal/testcert"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

func startDeadlineBroker(t *testing.T, timeout time.Duration) *Broker {
	t.Helper()
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, ConnectTimeout: timeout})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.Start())
	return b
}

func dialDeadline(t *testing.T, b *Broker) *rawmqtt.Conn {
	t.Helper()
	c, err := rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// A connection that never completes its CONNECT is closed after the
// connect timeout: silence, half a fixed header, half a body.
func TestConnectTimeoutDropsIncompleteConnect(t *testing.T) {
	b := startDeadlineBroker(t, 300*time.Millisecond)
	connect := rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: "slow", Clean: true})
	for name, sent := range map[string][]byte{
		"nothing":         nil,
		"first byte":      connect[:1],
		"half the length": {0x10, 0x80},
		"half the body":   connect[:len(connect)/2],
		"all but one":     connect[:len(connect)-1],
	} {
		t.Run(name, func(t *testing.T) {
			c := dialDeadline(t, b)
			require.NoError(t, c.Send(sent))
			_, err := c.WaitClosed(10 * time.Second)
			require.NoError(t, err, "the broker must drop a client that does not finish CONNECT")
		})
	}
}

// Once CONNECT is accepted the connect deadline no longer applies: a
// client with keep-alive 0 may stay idle as long as it likes.
func TestConnectTimeoutEndsAtConnack(t *testing.T) {
	timeout := 200 * time.Millisecond
	b := startDeadlineBroker(t, timeout)
	for _, v := range []byte{4, 5} {
		c, err := rawmqtt.Dial(b.Addr(), v)
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: "idle", Clean: true, KeepAlive: 0})
		require.NoError(t, err)
		// Wait well past the connect timeout: the read must time out on our
		// side, not end because the broker closed the connection.
		_, err = c.Read(5 * timeout)
		var ne net.Error
		require.ErrorAs(t, err, &ne, "the broker closed an idle client after CONNECT: %v", err)
		require.True(t, ne.Timeout())
		require.NoError(t, c.Send(rawmqtt.Pingreq()))
		p, err := c.Read(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, rawmqtt.PINGRESP, p.Type)
	}
}

// A CONNECT announcing more than MaxConnectSize bytes is refused at once,
// before the broker allocates a buffer for it.
func TestOversizedConnectRefused(t *testing.T) {
	b := startDeadlineBroker(t, time.Minute) // the timeout must not be what closes it
	for _, n := range []int{MaxConnectSize + 1, rawmqtt.MaxRemaining} {
		c := dialDeadline(t, b)
		require.NoError(t, c.Send(append([]byte{0x10}, rawmqtt.EncodeLength(n)...)))
		_, err := c.WaitClosed(10 * time.Second)
		require.NoError(t, err, "CONNECT of %d bytes", n)
	}
	// The limit leaves room for a large legitimate CONNECT.
	c := dialDeadline(t, b)
	_, err := c.Connect(rawmqtt.ConnectOptions{ClientID: "big", Clean: true, Username: "u", Password: string(make([]byte, 60000))})
	require.NoError(t, err)
}

// The CONNECT size guard holds on every kind of listener: over TLS and
// WebSockets the CONNECT is only readable above the encryption and the
// upgrade, so the guard must sit there too.
func TestOversizedConnectRefusedEveryListener(t *testing.T) {
	f := testcert.WriteT(t)
	files := &tlsfiles.Files{CertFile: f.ServerCert, KeyFile: f.ServerKey}
	b, err := New(Config{AllowAnonymous: true, ConnectTimeout: time.Minute, Listeners: []Listener{ // the timeout must not be what closes it
		{Address: "127.0.0.1:0"},
		{Address: "127.0.0.1:0", TLS: files},
		{Address: "127.0.0.1:0", Protocol: "websockets"},
		{Address: "127.0.0.1:0", Protocol: "websockets", TLS: files},
	}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.Start())
	pool, err := tlsfiles.LoadCertPool(f.CA)
	require.NoError(t, err)
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}

	for _, l := range b.Listeners() {
		dial := func(t *testing.T) *rawmqtt.Conn {
			t.Helper()
			var c net.Conn
			switch l.Protocol {
			case "mqtt":
				c, err = net.DialTimeout("tcp", l.Addr, 5*time.Second)
			case "mqtts":
				c, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr, tlsCfg)
			case "ws", "wss":
				d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: tlsCfg, HandshakeTimeout: 5 * time.Second}
				ws, resp, derr := d.Dial(l.Protocol+"://"+l.Addr+"/mqtt", nil)
				if derr == nil {
					resp.Body.Close()
					c = &wsConn{Conn: ws.UnderlyingConn(), ws: ws}
				}
				err = derr
			}
			require.NoError(t, err)
			t.Cleanup(func() { _ = c.Close() })
			return rawmqtt.NewConn(c, 4)
		}
		t.Run(l.Protocol, func(t *testing.T) {
			for _, n := range []int{MaxConnectSize + 1, rawmqtt.MaxRemaining} {
				c := dial(t)
				require.NoError(t, c.Send(append([]byte{0x10}, rawmqtt.EncodeLength(n)...)))
				_, err := c.WaitClosed(10 * time.Second)
				require.NoError(t, err, "CONNECT of %d bytes", n)
			}
			// A normal client on the same listener still works.
			c := dial(t)
			_, err := c.Connect(rawmqtt.ConnectOptions{ClientID: "big-" + l.Protocol, Clean: true, Username: "u", Password: string(make([]byte, 60000))})
			require.NoError(t, err)
		})
	}
}
