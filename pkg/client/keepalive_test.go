// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bufio"
	"context"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// pingBroker is a fake MQTT 3.1.1 broker that accepts one CONNECT and
// reports each PINGREQ on pings; it answers them with PINGRESP when
// answer is set. closed is closed when the client's connection ends.
func pingBroker(t *testing.T, answer bool) (port int, pings, closed chan struct{}) {
	t.Helper()
	pings, closed = make(chan struct{}, 16), make(chan struct{})
	port = rawmqtt.Serve(t, 20*time.Second, func(c net.Conn) {
		defer close(closed)
		r := bufio.NewReader(c)
		if h, _, err := rawmqtt.ReadRaw(r); err != nil || h>>4 != 1 {
			return
		}
		_, _ = c.Write([]byte{0x20, 0x02, 0x00, 0x00})
		for {
			h, _, err := rawmqtt.ReadRaw(r)
			if err != nil {
				return
			}
			switch h >> 4 {
			case 12: // PINGREQ
				select {
				case pings <- struct{}{}:
				default:
				}
				if answer {
					_, _ = c.Write([]byte{0xd0, 0x00})
				}
			case 14: // DISCONNECT
				return
			}
		}
	})
	return port, pings, closed
}

// TestStreamKeepAlive checks the stream's keep-alive: an idle connection
// sends PINGREQ (at three quarters of the keep-alive interval) and stays
// up while the broker answers, and a connection whose broker does not
// answer within the interval is lost, with the reason.
func TestStreamKeepAlive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	port, pings, closed := pingBroker(t, true)
	s, err := OpenStream(ctx, &Config{Host: "127.0.0.1", Port: port, Version: V311, KeepAlive: 1, CleanStart: true}, StreamOptions{})
	require.NoError(t, err)
	for range 2 {
		select {
		case <-pings:
		case <-ctx.Done():
			t.Fatal("no PINGREQ on an idle connection")
		}
	}
	require.NoError(t, s.Close(ctx))
	<-closed

	port, pings, closed = pingBroker(t, false)
	s, err = OpenStream(ctx, &Config{Host: "127.0.0.1", Port: port, Version: V311, KeepAlive: 1, CleanStart: true}, StreamOptions{})
	require.NoError(t, err)
	select {
	case <-pings:
	case <-ctx.Done():
		t.Fatal("no PINGREQ on an idle connection")
	}
	select {
	case <-closed:
	case <-ctx.Done():
		t.Fatal("the connection stayed up without PINGRESP")
	}
	err = s.Close(ctx)
	var lost *ConnectionLostError
	require.ErrorAs(t, err, &lost)
	require.ErrorContains(t, err, "keepalive exceeded")
}

// TestStreamCloseBeforeKeepAlive checks that a stream closed before its
// first keep-alive check (a one-shot publish) closes at once: the pinger
// that was never started does not hold Close up.
func TestStreamCloseBeforeKeepAlive(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	port, _, closed := pingBroker(t, true)
	s, err := OpenStream(ctx, &Config{Host: "127.0.0.1", Port: port, Version: V311, KeepAlive: 3600, CleanStart: true}, StreamOptions{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- s.Close(ctx) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-ctx.Done():
		t.Fatal("Close waited for the keep-alive")
	}
	<-closed
}
