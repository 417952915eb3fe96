// SPDX-License-Identifier: Apache-2.0

package client

import (
	"context"
	"crypto/tls"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testbroker"
	"github.com/mqttkit/mqttkit/internal/testcert"
)

// The publishing stream (mqtt pub) shares the transport and the
// connection errors of Dial.

func TestStreamTransports(t *testing.T) {
	b := testbroker.Start(t)
	ca, err := testcert.NewCA("stream CA")
	require.NoError(t, err)
	srv, err := ca.Server("localhost")
	require.NoError(t, err)
	tlsPort := tlsFront(t, b, srv.TLSCertificate(), nil)
	ws := newWSProxy(t, "/mqtt", b.Host+":"+b.PortString(), nil)
	for name, cfg := range map[string]*Config{
		"tls": {Host: "localhost", Port: tlsPort, TLS: &tls.Config{RootCAs: ca.Pool()}},
		"ws":  {Transport: WebSocket, Host: "127.0.0.1", Port: ws.Port},
	} {
		for _, v := range versions {
			t.Run(name+"/"+v.String(), func(t *testing.T) {
				topic := "stream/" + name + "/" + v.String()
				require.NoError(t, b.Record(topic))
				c := *cfg
				c.Version, c.KeepAlive, c.CleanStart = v, 30, true
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				s, err := OpenStream(ctx, &c, StreamOptions{})
				require.NoError(t, err)
				require.NoError(t, s.Publish(ctx, &Message{Topic: topic, Payload: []byte("hello"), QoS: 1}))
				require.NoError(t, s.Close(ctx))
				waitFor(t, b, topic, "hello")
			})
		}
	}
}

func TestStreamConnectErrors(t *testing.T) {
	ca, err := testcert.NewCA("stream CA")
	require.NoError(t, err)
	other, err := testcert.NewCA("other")
	require.NoError(t, err)
	srv, err := ca.Server("localhost")
	require.NoError(t, err)
	b := testbroker.Start(t)
	tlsPort := tlsFront(t, b, srv.TLSCertificate(), nil)
	hole := silent(t)
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			ctx := context.Background()
			_, err := OpenStream(ctx, &Config{Host: "127.0.0.1", Port: hole, Version: v, KeepAlive: 30, ConnectTimeout: 200 * time.Millisecond}, StreamOptions{})
			var te *TimeoutError
			require.ErrorAs(t, err, &te)
			require.Equal(t, StageConnack, te.Stage)

			_, err = OpenStream(ctx, &Config{Host: "localhost", Port: tlsPort, Version: v, KeepAlive: 30, TLS: &tls.Config{RootCAs: other.Pool()}}, StreamOptions{})
			var tle *TLSError
			require.ErrorAs(t, err, &tle)
			require.Equal(t, TLSUnknownAuthority, tle.Kind)

			_, err = OpenStream(ctx, &Config{Host: "localhost", Port: tlsPort, Version: v, KeepAlive: 30, ConnectTimeout: 2 * time.Second}, StreamOptions{})
			var ce *ClosedError
			require.ErrorAs(t, err, &ce, "%v", err)
		})
	}
}

func TestStreamFallback311(t *testing.T) {
	f := newV3Only(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := OpenStream(ctx, &Config{Host: "127.0.0.1", Port: f.port, Version: V5, KeepAlive: 30, CleanStart: true, Fallback311: true}, StreamOptions{})
	require.NoError(t, err)
	require.Equal(t, V311, s.Session().Version)
	require.NoError(t, s.Close(ctx))
	require.Equal(t, []byte{5, 4}, f.seen())

	f = newV3Only(t)
	_, err = OpenStream(ctx, &Config{Host: "127.0.0.1", Port: f.port, Version: V5, KeepAlive: 30}, StreamOptions{})
	var ce *ConnectError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, byte(132), ce.Code)
}
