// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/testutil"
)

// gateEstablished holds OnSessionEstablished of one client ID until
// released: the hooks before the engine (the connect log) run there,
// after mochi sent the CONNACK.
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
// while the hooks before the engine are still in OnSessionEstablished.
// (The router before the engine cached a route that named the old, closed
// connection until its own OnSessionEstablished and dropped them; the
// engine queues them in the session, which outlives connections.)
func TestRouterResumedSessionAfterConnack(t *testing.T) {
	srv := mqtt.New(&mqtt.Options{Logger: slog.New(slog.DiscardHandler), InlineClient: true})
	gate := &gateEstablished{id: "s", armed: make(chan struct{}), entered: make(chan struct{}), release: make(chan struct{})}
	require.NoError(t, srv.AddHook(new(allowAll), nil))
	require.NoError(t, srv.AddHook(gate, nil))
	e := newEngine(srv, slog.New(slog.DiscardHandler), Config{})
	e.mayRead = func(*mqtt.Client, string, bool) bool { return true }
	require.NoError(t, srv.AddHook(e, nil))
	addr := serveOn(t, srv, "t", Listener{Address: "127.0.0.1:0"})
	require.NoError(t, srv.Serve())
	t.Cleanup(func() { close(gate.release); srv.Close() })

	connect := func() *rawclient.Client {
		c := rawclient.Dial(t, addr, 4)
		pk := c.ConnectPacket("s", "", "")
		pk.Connect.Clean = false
		c.Send(pk)
		require.Equal(t, packets.Connack, c.Recv().FixedHeader.Type)
		return c
	}
	s := connect()
	require.Equal(t, []byte{0}, s.Subscribe(1, 0, "r/#"))
	pub := rawclient.Dial(t, addr, 4)
	pub.MustConnect("p", "", "")
	pub.Publish(0, 0, "r/1", "1", false)
	require.Empty(t, pub.Ping())
	require.Equal(t, "1", string(s.Recv().Payload)) // the route is cached

	s.Conn.Close()
	waitOffline(t, srv, "s")
	close(gate.armed)
	s = connect() // CONNACK received, session present
	<-gate.entered
	pub.Publish(0, 0, "r/1", "2", false)
	require.Empty(t, pub.Ping()) // routed
	gate.release <- struct{}{}
	pk, _, err := s.RecvRaw(5 * time.Second)
	require.NoError(t, err, "QoS 0 message published after the CONNACK of a resumed session was lost")
	require.Equal(t, "2", string(pk.Payload))
}

// TestQoS0FanInLargeMessagesNoCut: many publishers of large QoS 0
// messages to one subscriber that reads, late. waitRoom let every
// publisher through while less than half of MaxPendingBytes was pending,
// so a dozen of them writing 1 MiB each at the same moment took the queue
// past MaxPendingBytes and the subscriber was cut as a slow consumer,
// before it had a chance to read (or as soon as it read and they were all
// woken together).
func TestQoS0FanInLargeMessagesNoCut(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SlowConsumerTimeout: time.Hour})
	sub := rawclient.Dial(t, b.Addr(), 4)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "big/#"))

	const pubs, n, size = 12, 4, 1 << 20
	done := make(chan error, pubs)
	for p := range pubs {
		c := rawclient.Dial(t, b.Addr(), 4)
		c.MustConnect(fmt.Sprintf("p%d", p), "", "")
		go func() {
			var buf bytes.Buffer
			for i := range n {
				buf.Reset()
				pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: fmt.Sprintf("big/%d", p),
					Payload: floodPayload(i, size), ProtocolVersion: 4}
				if err := pk.PublishEncode(&buf); err != nil {
					done <- err
					return
				}
				if _, err := c.Conn.Write(buf.Bytes()); err != nil {
					done <- fmt.Errorf("publisher %d, message %d: %w", p, i, err)
					return
				}
			}
			done <- nil
		}()
	}
	// The subscriber reads nothing until the publishers wait for it.
	rawclient.WaitFor(t, func() bool { return b.waits.Load() > 0 || b.slowCut.Load() > 0 })
	require.Zero(t, b.slowCut.Load(), "cut before it read")
	next := make([]int, pubs)
	for range pubs * n {
		pk, _, err := sub.RecvRaw(10 * time.Second)
		require.NoError(t, err, "slow consumer cuts: %d", b.slowCut.Load())
		var p int
		_, err = fmt.Sscanf(pk.TopicName, "big/%d", &p)
		require.NoError(t, err)
		seq, _, _ := strings.Cut(string(pk.Payload[:16]), " ")
		require.Equal(t, strconv.Itoa(next[p]), seq, "publisher %d", p)
		next[p]++
	}
	for range pubs {
		require.NoError(t, <-done)
	}
	require.Zero(t, b.slowCut.Load(), "the subscriber, which reads, was cut")
}

// TestRouterMaximumPacketSize: a QoS 0 message larger than an MQTT 5
// subscriber's Maximum Packet Size is not sent to it [MQTT-3.1.2-24], with
// a log line (mochi's path logged it too); the next one that fits is.
func TestRouterMaximumPacketSize(t *testing.T) {
	logs := &testutil.Buffer{}
	b := start(t, Config{AllowAnonymous: true, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	sub := rawclient.Dial(t, b.Addr(), 5)
	pk := sub.ConnectPacket("small", "", "")
	pk.Properties.MaximumPacketSize = 200
	sub.Send(pk)
	require.Equal(t, byte(0), sub.Recv().ReasonCode)
	require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "m/#"))
	pub := rawclient.Dial(t, b.Addr(), 5)
	pub.MustConnect("pub", "", "")
	pub.Publish(0, 0, "m/1", strings.Repeat("x", 300), false)
	pub.Publish(0, 0, "m/1", "fits", false)
	require.Empty(t, pub.Ping())
	got := sub.Ping()
	require.Len(t, got, 1)
	require.Equal(t, "fits", string(got[0].Payload))
	require.Contains(t, logs.String(), "client=small")
	require.Contains(t, logs.String(), "packet too large")
}

// TestRouterForwardsProperties: a QoS 0 message keeps its MQTT 5
// properties on the way to an MQTT 5 subscriber [MQTT-3.3.2-4]
// [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-20], with
// the message expiry counted down, and reaches an MQTT 3.1.1 subscriber
// without them.
func TestRouterForwardsProperties(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	v5 := rawclient.Dial(t, b.Addr(), 5)
	v5.MustConnect("v5", "", "")
	require.Equal(t, []byte{0}, v5.Subscribe(1, 0, "p/#"))
	v3 := rawclient.Dial(t, b.Addr(), 4)
	v3.MustConnect("v3", "", "")
	require.Equal(t, []byte{0}, v3.Subscribe(1, 0, "p/#"))
	pub := rawclient.Dial(t, b.Addr(), 5)
	pub.MustConnect("pub", "", "")
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "p/1", Payload: []byte("{}")}
	pk.Properties = packets.Properties{
		PayloadFormat: 1, PayloadFormatFlag: true, MessageExpiryInterval: 3600,
		ContentType: "application/json", ResponseTopic: "reply/1", CorrelationData: []byte{1, 2},
		User: []packets.UserProperty{{Key: "k", Val: "v"}, {Key: "k", Val: "w"}},
	}
	pk.Mods.AllowResponseInfo = true // the test client's encoder leaves the response topic out otherwise
	pub.Send(pk)
	require.Empty(t, pub.Ping())

	got := v5.Ping()
	require.Len(t, got, 1)
	p := got[0].Properties
	require.Equal(t, "{}", string(got[0].Payload))
	require.True(t, p.PayloadFormatFlag)
	require.Equal(t, byte(1), p.PayloadFormat)
	require.InDelta(t, 3600, p.MessageExpiryInterval, 2)
	require.Equal(t, "application/json", p.ContentType)
	require.Equal(t, "reply/1", p.ResponseTopic)
	require.Equal(t, []byte{1, 2}, p.CorrelationData)
	require.Equal(t, pk.Properties.User, p.User)
	require.False(t, got[0].FixedHeader.Retain)
	require.Empty(t, p.SubscriptionIdentifier)

	got = v3.Ping()
	require.Len(t, got, 1)
	require.Equal(t, "{}", string(got[0].Payload))
	require.Equal(t, "p/1", got[0].TopicName)
}

// TestRouterACLReadAfterReload: the router checks read access on every
// delivery, not once per cached route: after an ACL reload (SIGHUP) a
// subscriber of a cached route gets what the new rules allow it to read,
// and nothing else. $SYS topics do not match a leading wildcard.
func TestRouterACLReadAfterReload(t *testing.T) {
	acl := writeFile(t, "acl", "topic readwrite x/#\ntopic write in/#\npattern read in/%c/#\n")
	b := start(t, Config{AllowAnonymous: true, ACLFile: acl, SysInterval: -1})
	sub := rawclient.Dial(t, b.Addr(), 4)
	sub.MustConnect("s", "", "")
	// Subscribing to # is allowed (some topics under it are readable).
	require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "#"))
	pub := rawclient.Dial(t, b.Addr(), 4)
	pub.MustConnect("p", "", "")
	send := func(topic, payload string) {
		pub.Publish(0, 0, topic, payload, false)
		require.Empty(t, pub.Ping())
	}
	got := func() []string {
		var out []string
		for _, pk := range sub.Ping() {
			out = append(out, pk.TopicName+"="+string(pk.Payload))
		}
		return out
	}
	send("x/1", "1")
	send("in/s/1", "2")
	send("in/other/1", "3")
	require.Equal(t, []string{"x/1=1", "in/s/1=2"}, got())

	// The routes are cached; the rules change.
	require.NoError(t, os.WriteFile(acl, []byte("topic readwrite x/#\ntopic write in/#\npattern read in/other/#\n"), 0o600))
	require.NoError(t, b.Reload(SecurityConfig{AllowAnonymous: true, ACLFile: acl}))
	send("x/1", "4")
	send("in/s/1", "5")
	send("in/other/1", "6")
	require.Equal(t, []string{"x/1=4", "in/other/1=6"}, got())
	require.NoError(t, b.Publish("$SYS/test", []byte("7"), false, 0))
	require.Empty(t, got())
}

// TestRouterSharedAndOverlapping: a QoS 0 message reaches one member of a
// shared subscription group per message, and an MQTT 5 client with
// several matching subscriptions once, with all their identifiers
// [MQTT-3.3.4-3] [MQTT-3.3.4-4].
func TestRouterSharedAndOverlapping(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	subscribe := func(c *rawclient.Client, id uint16, filters ...packets.Subscription) {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id, Filters: filters}
		if filters[0].Identifier > 0 {
			pk.Properties.SubscriptionIdentifier = []int{filters[0].Identifier}
		}
		c.Send(pk)
		require.Equal(t, packets.Suback, c.Recv().FixedHeader.Type)
	}
	o := rawclient.Dial(t, b.Addr(), 5)
	o.MustConnect("o", "", "")
	subscribe(o, 1, packets.Subscription{Filter: "s/#", Identifier: 3})
	subscribe(o, 2, packets.Subscription{Filter: "s/+", Identifier: 1})
	subscribe(o, 3, packets.Subscription{Filter: "s/x"})
	m1 := rawclient.Dial(t, b.Addr(), 5)
	m1.MustConnect("m1", "", "")
	subscribe(m1, 1, packets.Subscription{Filter: "$share/g/s/#"})
	m2 := rawclient.Dial(t, b.Addr(), 5)
	m2.MustConnect("m2", "", "")
	subscribe(m2, 1, packets.Subscription{Filter: "$share/g/s/#"})

	pub := rawclient.Dial(t, b.Addr(), 5)
	pub.MustConnect("pub", "", "")
	const n = 20
	for i := range n {
		pub.Publish(0, 0, "s/x", strconv.Itoa(i), false)
	}
	require.Empty(t, pub.Ping())
	got := o.Ping()
	require.Len(t, got, n, "one copy per message for overlapping subscriptions")
	for _, pk := range got {
		require.Equal(t, []int{1, 3}, pk.Properties.SubscriptionIdentifier)
	}
	require.Len(t, append(m1.Ping(), m2.Ping()...), n, "one member of the group per message")
}
