// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/testutil"
)

// startFixed runs the broker, whose engine holds the fixes' state.
func startFixed(t *testing.T) (string, *mqtt.Server) {
	t.Helper()
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	return b.Addr(), b.srv
}

// allowAll lets every client in (tests of the fixes need no security).
type allowAll struct{ mqtt.HookBase }

func (*allowAll) ID() string { return "allow-all" }
func (*allowAll) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}
func (*allowAll) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }
func (*allowAll) OnACLCheck(*mqtt.Client, string, bool) bool              { return true }

// TestFixPacketIDCollision: the client publishes with the packet ID of a
// delivery the server has outstanding to it (mochi issue 545). The delivery
// must survive and be re-sent when the session resumes.
func TestFixPacketIDCollision(t *testing.T) {
	for _, inboundQoS := range []byte{1, 2} {
		t.Run(fmt.Sprintf("inbound QoS %d", inboundQoS), func(t *testing.T) {
			addr, srv := startFixed(t)
			c := rawclient.Dial(t, addr, 4)
			pk := c.ConnectPacket("collide", "", "")
			pk.Connect.Clean = false
			c.Send(pk)
			require.Equal(t, byte(0), c.Recv().ReasonCode)
			require.Equal(t, []byte{1}, c.Subscribe(1, 1, "in"))

			require.NoError(t, srv.Publish("in", []byte("server delivery"), false, 1))
			got := c.Recv()
			require.Equal(t, "server delivery", string(got.Payload))
			// Not acknowledged: the delivery is outstanding under got.PacketID.

			c.Publish(got.PacketID, inboundQoS, "out", "client publish", false)
			ack := c.Recv()
			require.Equal(t, got.PacketID, ack.PacketID)
			if inboundQoS == 1 {
				require.Equal(t, packets.Puback, ack.FixedHeader.Type)
			} else {
				require.Equal(t, packets.Pubrec, ack.FixedHeader.Type)
				c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: got.PacketID})
				comp := c.Recv()
				require.Equal(t, packets.Pubcomp, comp.FixedHeader.Type)
				require.Equal(t, got.PacketID, comp.PacketID)
			}
			c.Conn.Close()
			waitOffline(t, srv, "collide")

			// Resume: the unacknowledged delivery comes again.
			c = rawclient.Dial(t, addr, 4)
			c.Send(pk)
			ack = c.Recv()
			require.Equal(t, packets.Connack, ack.FixedHeader.Type)
			require.True(t, ack.SessionPresent)
			again := c.Recv()
			require.Equal(t, packets.Publish, again.FixedHeader.Type)
			require.Equal(t, "server delivery", string(again.Payload))
			require.Equal(t, got.PacketID, again.PacketID)
			require.True(t, again.FixedHeader.Dup)
			c.Ack(again)
			require.Empty(t, c.Ping())
		})
	}
}

// TestFixPacketIDRetransmission: a QoS 2 PUBLISH re-sent with DUP before
// PUBREL keeps its identity (the renaming is stable within a flow).
func TestFixPacketIDRetransmission(t *testing.T) {
	addr, srv := startFixed(t)
	got := make(chan string, 10)
	require.NoError(t, srv.Subscribe("q2/#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		got <- string(pk.Payload)
	}))
	c := rawclient.Dial(t, addr, 5)
	c.MustConnect("q2", "", "")
	c.Publish(7, 2, "q2/x", "once", false)
	rec := c.Recv()
	require.Equal(t, packets.Pubrec, rec.FixedHeader.Type)
	require.Equal(t, uint16(7), rec.PacketID)
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 7})
	comp := c.Recv()
	require.Equal(t, packets.Pubcomp, comp.FixedHeader.Type)
	require.Equal(t, uint16(7), comp.PacketID)
	require.Equal(t, byte(0), comp.ReasonCode)
	// The identifier is free again: a new flow with 7 works.
	c.Publish(7, 1, "q2/y", "again", false)
	ack := c.Recv()
	require.Equal(t, packets.Puback, ack.FixedHeader.Type)
	require.Equal(t, uint16(7), ack.PacketID)
	require.Equal(t, "once", recvString(t, got))
	require.Equal(t, "again", recvString(t, got))
	require.Empty(t, c.Ping())
	require.Empty(t, got)
}

func recvString(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("nothing received within 5s")
		return ""
	}
}

// TestFixPubackReasonCode: a successful QoS 1 PUBACK carries 0x00 and no
// copy of the PUBLISH's user properties (mochi's default sends 0x01 and
// echoes them; the broker sets NoInheritedPropertiesOnAck).
func TestFixPubackReasonCode(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	w := rawclient.Dial(t, b.Addr(), 5)
	w.MustConnect("pa-sub", "", "")
	require.Equal(t, []byte{0}, w.Subscribe(1, 0, "t"))
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("pa", "", "")
	for _, qos := range []byte{1, 2} {
		p := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos}, PacketID: uint16(qos), TopicName: "t", Payload: []byte("x")}
		p.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
		c.Send(p)
		ack, body, err := c.RecvRaw(5e9)
		require.NoError(t, err)
		require.Equal(t, byte(0), ack.ReasonCode)
		// Packet ID only: reason 0x00 with no properties may be omitted.
		require.Equal(t, []byte{0, qos}, body, "qos %d ack body", qos)
	}
}

// TestRequestProblemInformation: with Request Problem Information 0 no
// reason string or user property is sent on acknowledgements
// [MQTT-3.1.2-29]. mochi v2.7.9 honours this; the test guards it.
func TestRequestProblemInformation(t *testing.T) {
	acl := writeFile(t, "acl", "topic readwrite ok/#\n")
	s := startSecure(t, SecurityConfig{AllowAnonymous: true, ACLFile: acl})
	c := rawclient.Dial(t, s.addr, 5)
	pk := c.ConnectPacket("pi", "", "")
	pk.Properties.RequestProblemInfo = 0
	pk.Properties.RequestProblemInfoFlag = true
	c.Send(pk)
	require.Equal(t, byte(0), c.Recv().ReasonCode)

	c.Publish(1, 1, "denied", "x", false)
	ack, body, err := c.RecvRaw(5e9)
	require.NoError(t, err)
	require.Equal(t, byte(0x87), ack.ReasonCode)
	require.Equal(t, []byte{0, 1, 0x87}, body)

	c.Publish(2, 2, "denied", "x", false)
	_, body, err = c.RecvRaw(5e9)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 2, 0x87}, body)

	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 99})
	_, body, err = c.RecvRaw(5e9)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 99, 0x92}, body)

	// A refused subscription ($share with No Local is a protocol error).
	sub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 5, Filters: packets.Subscriptions{{Filter: "$share/g/x", NoLocal: true}}}
	sub.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
	c.Send(sub)
	_, body, err = c.RecvRaw(5e9)
	require.NoError(t, err)
	require.Equal(t, []byte{0, 5, 0, 0x82}, body)
}

// data race without retainGuard.
func TestFixRetainRace(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c := rawclient.Dial(t, b.Addr(), 4)
			c.MustConnect(fmt.Sprintf("pub%d", i), "", "")
			for j := range 50 {
				c.Publish(0, 0, fmt.Sprintf("r/%d/%d", i, j%5), "v", true)
			}
			c.Ping()
		}()
		go func() {
			defer wg.Done()
			c := rawclient.Dial(t, b.Addr(), 4)
			c.MustConnect(fmt.Sprintf("sub%d", i), "", "")
			for j := range 20 {
				c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: uint16(j + 1),
					Filters: packets.Subscriptions{{Filter: "r/+/#"}}})
			}
			c.Ping()
		}()
	}
	wg.Wait()
	for i := range 5 {
		require.NoError(t, b.Publish(fmt.Sprintf("r/x/%d", i), []byte("inline"), true, 0))
	}
}

// TestFixSubscribeIDCollision: a SUBSCRIBE whose packet ID the broker uses
// for an unacknowledged delivery was refused by mochi (0x91, 3.1.1 0x80),
// which happens when a resumed session re-subscribes while its stored
// messages are re-sent.
func TestFixSubscribeIDCollision(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			addr, srv := startFixed(t)
			c := rawclient.Dial(t, addr, v)
			c.MustConnect("resub", "", "")
			require.Equal(t, []byte{1}, c.Subscribe(1, 1, "in"))
			require.NoError(t, srv.Publish("in", []byte("outstanding"), false, 1))
			got := c.Recv()
			// Not acknowledged: the delivery holds got.PacketID.
			require.Equal(t, []byte{0}, c.Subscribe(got.PacketID, 0, "other"))
			c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: got.PacketID,
				Filters: packets.Subscriptions{{Filter: "other"}}})
			unsub := c.Recv()
			require.Equal(t, packets.Unsuback, unsub.FixedHeader.Type)
			require.Equal(t, got.PacketID, unsub.PacketID)
			if v == 5 {
				require.Equal(t, []byte{0}, unsub.ReasonCodes)
			}
			c.Ack(got)
			require.Empty(t, c.Ping())
		})
	}
}

// TestFixRetainedOnce: a retained PUBLISH racing with a SUBSCRIBE reaches
// the new subscriber once, live or as retained, never both.
func TestFixRetainedOnce(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	for i := range 30 {
		topic := fmt.Sprintf("once/%d", i)
		c := rawclient.Dial(t, b.Addr(), 5)
		c.MustConnect(fmt.Sprintf("once%d", i), "", "")
		c.Send(subscribePacket(1, packets.Subscription{Filter: topic}))
		require.NoError(t, b.Publish(topic, []byte("x"), true, 0))
		var n int
		for _, pk := range append([]packets.Packet{c.Recv(), c.Recv()}, c.Collect()...) {
			if pk.FixedHeader.Type == packets.Publish {
				n++
			}
		}
		require.Equal(t, 1, n, "round %d", i)
	}
}

// TestFixRetainedOnceDuringSubscribe: a retained message published while
// a SUBSCRIBE is between its registration and its SUBACK reaches the new
// subscriber once (routed live; the SUBSCRIBE's retained scan skips it),
// and its publisher does not wait for the SUBSCRIBE.
func TestFixRetainedOnceDuringSubscribe(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	h := &pauseSubscribed{at: make(chan struct{}), release: make(chan struct{})}
	require.NoError(t, b.srv.AddHook(h, nil))
	require.NoError(t, b.Start())
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("during", "", "")
	c.Send(subscribePacket(1, packets.Subscription{Filter: "during/#"}))
	select {
	case <-h.at:
	case <-time.After(10 * time.Second):
		t.Fatal("the SUBSCRIBE did not reach OnSubscribed")
	}
	require.NoError(t, b.Publish("during/x", []byte("x"), true, 0))
	close(h.release)
	var n int
	for _, pk := range append([]packets.Packet{c.Recv(), c.Recv()}, c.Collect()...) {
		if pk.FixedHeader.Type == packets.Publish {
			n++
		}
	}
	require.Equal(t, 1, n)
}

// pauseSubscribed holds a SUBSCRIBE after mochi registered it, before its
// SUBACK, until release is closed.
type pauseSubscribed struct {
	mqtt.HookBase
	at, release chan struct{}
}

func (h *pauseSubscribed) ID() string           { return "test-pause-subscribed" }
func (h *pauseSubscribed) Provides(b byte) bool { return b == mqtt.OnSubscribed }
func (h *pauseSubscribed) OnSubscribed(*mqtt.Client, packets.Packet, []byte) {
	h.at <- struct{}{}
	<-h.release
}

// TestFixSysPublish: publishing to $SYS disconnects the client (MQTT 5:
// DISCONNECT 0x87) with a log line; mochi dropped it silently, leaving a
// QoS 1 publisher waiting for its PUBACK.
func TestFixSysPublish(t *testing.T) {
	logs := &testutil.Buffer{}
	b := start(t, Config{AllowAnonymous: true, Log: slog.New(slog.NewTextHandler(logs, nil))})
	w := rawclient.Dial(t, b.Addr(), 5)
	w.MustConnect("watch", "", "")
	require.Equal(t, []byte{0}, w.Subscribe(1, 0, "$SYS/fake/#"))
	for _, v := range []byte{4, 5} {
		for _, qos := range []byte{0, 1} {
			c := rawclient.Dial(t, b.Addr(), v)
			c.MustConnect(fmt.Sprintf("sys%d%d", v, qos), "", "")
			c.Publish(1, qos, "$SYS/fake/x", "spoofed", false)
			got := c.ExpectClosed()
			if v == 5 {
				require.Len(t, got, 1)
				require.Equal(t, packets.Disconnect, got[0].FixedHeader.Type)
				require.Equal(t, byte(0x87), got[0].ReasonCode)
			} else {
				require.Empty(t, got)
			}
		}
	}
	require.Empty(t, w.Collect(), "a $SYS publish was delivered")
	require.Contains(t, logs.String(), `client published to $SYS, disconnecting`)
}
