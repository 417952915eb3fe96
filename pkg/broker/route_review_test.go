// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"log/slog"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"
)

// gateEstablished holds OnSessionEstablished of one client ID until
// released: the hooks before the router (the durable resend burst, the
// connect log) run there, after mochi sent the CONNACK.
type gateEstablished struct {
	mqtt.HookBase
	id      string
	armed   chan struct{} // closed: hold the next session of id
	entered chan struct{}
	release chan struct{}
}

func (*gateEstablished) ID() string           { return "gate-established" }
func (*gateEstablished) Provides(b byte) bool { return b == mqtt.OnSessionEstablished }
func (g *gateEstablished) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	select {
	case <-g.armed:
	default:
		return
	}
	if cl.ID == g.id {
		close(g.entered)
		<-g.release
	}
}

// TestRouterResumedSessionAfterConnack: a persistent session that
// reconnects gets the QoS 0 messages published after its CONNACK, also
// while the hooks before the router are still in OnSessionEstablished.
// The router's cached route named the old, closed connection until its own
// OnSessionEstablished and dropped them; mochi routes to the connection
// the client ID has when the message is published.
func TestRouterResumedSessionAfterConnack(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler), InlineClient: true})
	gate := &gateEstablished{id: "s", armed: make(chan struct{}), entered: make(chan struct{}), release: make(chan struct{})}
	require.NoError(t, srv.AddHook(new(allowAll), nil))
	require.NoError(t, srv.AddHook(gate, nil))
	require.NoError(t, srv.AddHook(newRouter(srv, func(*mqtt.Client, string, bool) bool { return true }), nil))
	addr := serveOn(t, srv, "t", Listener{Address: "127.0.0.1:0"})
	require.NoError(t, srv.Serve())
	t.Cleanup(func() { close(gate.release); srv.Close() })

	connect := func() *rawClient {
		c := dialRaw(t, addr, 4)
		pk := c.connectPacket("s", "", "")
		pk.Connect.Clean = false
		c.send(pk)
		require.Equal(t, packets.Connack, c.recv().FixedHeader.Type)
		return c
	}
	s := connect()
	require.Equal(t, []byte{0}, s.subscribe(1, 0, "r/#"))
	pub := dialRaw(t, addr, 4)
	pub.mustConnect("p", "", "")
	pub.publish(0, 0, "r/1", "1", false)
	require.Empty(t, pub.ping())
	require.Equal(t, "1", string(s.recv().Payload)) // the route is cached

	s.conn.Close()
	waitFor(t, func() bool { cl, ok := srv.Clients.Get("s"); return ok && cl.Closed() })
	close(gate.armed)
	s = connect() // CONNACK received, session present
	<-gate.entered
	pub.publish(0, 0, "r/1", "2", false)
	require.Empty(t, pub.ping()) // routed
	gate.release <- struct{}{}
	pk, _, err := s.recvRaw(5 * time.Second)
	require.NoError(t, err, "QoS 0 message published after the CONNACK of a resumed session was lost")
	require.Equal(t, "2", string(pk.Payload))
}
