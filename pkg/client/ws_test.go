// SPDX-License-Identifier: Apache-2.0

package client

import (
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testbroker"
	"github.com/mqttkit/mqttkit/internal/testcert"
)

func TestWebSocket(t *testing.T) {
	b := testbroker.Start(t)
	backend := net.JoinHostPort(b.Host, b.PortString())
	p := newWSProxy(t, "/mqtt", backend, nil)
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			roundTrip(t, b, &Config{Transport: WebSocket, Host: "127.0.0.1", Port: p.Port, Version: v, KeepAlive: 30, CleanStart: true}, "ws/"+v.String())
		})
	}
	for _, asked := range p.subprotocols() {
		require.Equal(t, []string{"mqtt"}, asked)
	}
	require.Len(t, p.subprotocols(), len(versions))
}

func TestWebSocketSubscribe(t *testing.T) {
	b := testbroker.Start(t)
	p := newWSProxy(t, "/custom", net.JoinHostPort(b.Host, b.PortString()), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan *Message, 1)
	c, err := Dial(ctx, &Config{Transport: WebSocket, WSPath: "/custom", Host: "127.0.0.1", Port: p.Port, Version: V5, KeepAlive: 30, CleanStart: true},
		func(m *Message) { got <- m })
	require.NoError(t, err)
	defer c.Disconnect(ctx)
	_, err = c.Subscribe(ctx, []Subscription{{Filter: "w/#", QoS: 1}})
	require.NoError(t, err)
	// A payload bigger than one WebSocket frame buffer.
	big := make([]byte, 70000)
	for i := range big {
		big[i] = byte(i)
	}
	require.NoError(t, b.Publish("w/big", big, false, 1))
	select {
	case m := <-got:
		require.Equal(t, "w/big", m.Topic)
		require.Equal(t, big, m.Payload)
	case <-ctx.Done():
		t.Fatal("no message over the WebSocket")
	}
}

func TestWebSocketTLS(t *testing.T) {
	b := testbroker.Start(t)
	ca, err := testcert.NewCA("ws CA")
	require.NoError(t, err)
	srv, err := ca.Server("localhost", "127.0.0.1")
	require.NoError(t, err)
	p := newWSProxy(t, "/mqtt", net.JoinHostPort(b.Host, b.PortString()), &tls.Config{Certificates: []tls.Certificate{srv.TLSCertificate()}})
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			roundTrip(t, b, &Config{Transport: WebSocket, Host: "localhost", Port: p.Port, Version: v, KeepAlive: 30, CleanStart: true,
				TLS: &tls.Config{RootCAs: ca.Pool()}}, "wss/"+v.String())
		})
	}
	t.Run("unknown CA", func(t *testing.T) {
		other, err := testcert.NewCA("other")
		require.NoError(t, err)
		_, err = Dial(context.Background(), &Config{Transport: WebSocket, Host: "localhost", Port: p.Port, Version: V5, KeepAlive: 30,
			TLS: &tls.Config{RootCAs: other.Pool()}}, nil)
		var te *TLSError
		require.ErrorAs(t, err, &te)
		require.Equal(t, TLSUnknownAuthority, te.Kind)
	})
}

func TestWebSocketErrors(t *testing.T) {
	b := testbroker.Start(t)
	p := newWSProxy(t, "/mqtt", net.JoinHostPort(b.Host, b.PortString()), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, err := Dial(ctx, &Config{Transport: WebSocket, WSPath: "/nope", Host: "127.0.0.1", Port: p.Port, Version: V5, KeepAlive: 30}, nil)
	var he *HandshakeError
	require.ErrorAs(t, err, &he)
	require.Equal(t, "404 Not Found", he.Status)
	require.Contains(t, he.URL, "/nope")

	// An MQTT listener does not speak HTTP.
	_, err = Dial(ctx, &Config{Transport: WebSocket, Host: "127.0.0.1", Port: dropper(t), Version: V5, KeepAlive: 30}, nil)
	require.ErrorAs(t, err, &he)
	require.Empty(t, he.Status)

	_, err = Dial(ctx, &Config{Transport: WebSocket, Host: "127.0.0.1", Port: silent(t), Version: V311, KeepAlive: 30, ConnectTimeout: 200 * time.Millisecond}, nil)
	var te *TimeoutError
	require.ErrorAs(t, err, &te)
	require.Equal(t, StageWebSocket, te.Stage)
}

func TestWSURL(t *testing.T) {
	require.Equal(t, "ws://h:8083/mqtt", (&Config{Host: "h", Port: 8083}).wsURL())
	require.Equal(t, "wss://h:8084/x/y", (&Config{Host: "h", Port: 8084, WSPath: "/x/y", TLS: &tls.Config{}}).wsURL())
	require.Equal(t, "ws://[::1]:80/mqtt", (&Config{Host: "::1", Port: 80}).wsURL())
}
