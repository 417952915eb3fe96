// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/testutil"
)

// connectPersistent connects id with a persistent session (MQTT 3.1.1
// clean session 0, MQTT 5 session expiry 600 s).
func connectPersistent(t *testing.T, addr string, version byte, id string) *rawclient.Client {
	t.Helper()
	c := rawclient.Dial(t, addr, version)
	pk := c.ConnectPacket(id, "", "")
	pk.Connect.Clean = false
	if version == 5 {
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 600, true
	}
	c.Send(pk)
	ack := c.Recv()
	require.Equal(t, packets.Connack, ack.FixedHeader.Type)
	require.Equal(t, byte(0), ack.ReasonCode)
	return c
}

// goOffline disconnects c and waits until its session is offline.
func goOffline(t *testing.T, b *Broker, c *rawclient.Client, id string) {
	t.Helper()
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	c.Conn.Close()
	waitOffline(t, b.srv, id)
}

// A filter whose "+" level is followed by "#" matches a topic that ends
// where the "#" begins ("#" also stands for the parent level
// [MQTT-4.7.1-2]): mochi's index misses "foo/+/#" for "foo/bar" and "+/#"
// for "foo", and the message was lost without a word.
func TestEnginePlusHashParentLevel(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	sub := rawclient.Dial(t, b.Addr(), 4)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{1, 1}, sub.Subscribe(1, 1, "foo/+/#", "+/#"))
	other := rawclient.Dial(t, b.Addr(), 4)
	other.MustConnect("other", "", "")
	require.Equal(t, []byte{0}, other.Subscribe(1, 0, "foo/+/+"))
	pub := rawclient.Dial(t, b.Addr(), 4)
	pub.MustConnect("pub", "", "")
	for _, topic := range []string{"foo/bar", "foo", "foo/bar/baz"} {
		pub.Publish(0, 0, topic, topic, false)
	}
	require.Empty(t, pub.Ping())
	got := sub.Ping()
	require.Equal(t, []string{"foo/bar", "foo", "foo/bar/baz"}, payloads(got))
	require.Equal(t, []string{"foo/bar/baz"}, payloads(other.Ping()), "foo/+/+ matches only the three-level topic")
}

// The PUBACK of an MQTT 5 QoS 1 message says 0x10 No matching subscribers
// only when the engine routes it to nobody: a "foo/+/#" subscriber of
// "foo/bar" (which mochi's index misses) gets the message, so its
// publisher gets 0x00, and Broker.HasSubscriber agrees.
func TestEngineNoSubscribersAckAgreesWithRouting(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	sub := rawclient.Dial(t, b.Addr(), 5)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{1}, sub.Subscribe(1, 1, "foo/+/#"))
	pub := rawclient.Dial(t, b.Addr(), 5)
	pub.MustConnect("pub", "", "")
	pub.Publish(1, 1, "foo/bar", "x", false)
	require.Equal(t, byte(0), pub.Recv().ReasonCode, "delivered to foo/+/#")
	pub.Publish(2, 1, "nobody/here", "x", false)
	require.Equal(t, byte(0x10), pub.Recv().ReasonCode)
	require.True(t, b.HasSubscriber("foo/bar"))
	require.False(t, b.HasSubscriber("foo"), "foo/+/# needs a second level")
	require.False(t, b.HasSubscriber("nobody/here"))
}

// max_queued_bytes bounds the payload bytes queued for an offline
// session: past it messages are dropped, with one log line naming the
// setting, and the client gets the ones kept.
func TestEngineMaxQueuedBytes(t *testing.T) {
	logs := &testutil.Buffer{}
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1, MaxQueuedBytes: 100,
		Log: slog.New(slog.NewTextHandler(logs, nil))})
	c := connectPersistent(t, b.Addr(), 4, "bytes")
	require.Equal(t, []byte{1}, c.Subscribe(1, 1, "b"))
	goOffline(t, b, c, "bytes")
	for i := range 10 {
		require.NoError(t, b.Publish("b", fmt.Appendf(nil, "%02d%s", i, strings.Repeat("x", 28)), false, 1))
	}
	require.Equal(t, int64(7), atomic.LoadInt64(&b.srv.Info.InflightDropped), "30-byte messages: 3 fit in 100 bytes")
	require.Equal(t, 1, strings.Count(logs.String(), "dropping messages for offline client"), logs.String())
	require.Contains(t, logs.String(), "max_queued_bytes")

	c = connectPersistent(t, b.Addr(), 4, "bytes")
	var got []string
	for range 3 {
		pk := c.Recv()
		require.Equal(t, packets.Publish, pk.FixedHeader.Type)
		got = append(got, string(pk.Payload[:2]))
		c.Ack(pk)
	}
	require.Equal(t, []string{"00", "01", "02"}, got)
	require.Empty(t, c.Ping())
}

// queue_qos0_messages: a QoS 0 message is queued for an offline
// persistent session (mosquitto's option); without it, it is not.
func TestEngineQueueQoS0Messages(t *testing.T) {
	for _, queue := range []bool{false, true} {
		t.Run(fmt.Sprint(queue), func(t *testing.T) {
			b := start(t, Config{AllowAnonymous: true, SysInterval: -1, QueueQoS0Messages: queue})
			c := connectPersistent(t, b.Addr(), 4, "q0")
			require.Equal(t, []byte{0}, c.Subscribe(1, 0, "q"))
			goOffline(t, b, c, "q0")
			require.NoError(t, b.Publish("q", []byte("offline"), false, 0))
			c = connectPersistent(t, b.Addr(), 4, "q0")
			got := payloads(c.Ping())
			if queue {
				require.Equal(t, []string{"offline"}, got)
			} else {
				require.Empty(t, got)
			}
		})
	}
}

// upgrade_outgoing_qos: a message goes out at the subscription's QoS,
// not the lower of the two.
func TestEngineUpgradeOutgoingQoS(t *testing.T) {
	for _, upgrade := range []bool{false, true} {
		t.Run(fmt.Sprint(upgrade), func(t *testing.T) {
			b := start(t, Config{AllowAnonymous: true, SysInterval: -1, UpgradeOutgoingQoS: upgrade})
			sub := rawclient.Dial(t, b.Addr(), 4)
			sub.MustConnect("sub", "", "")
			require.Equal(t, []byte{2}, sub.Subscribe(1, 2, "u"))
			pub := rawclient.Dial(t, b.Addr(), 4)
			pub.MustConnect("pub", "", "")
			pub.Publish(0, 0, "u", "m", false)
			require.Empty(t, pub.Ping())
			pk := sub.Recv()
			require.Equal(t, "m", string(pk.Payload))
			if upgrade {
				require.Equal(t, byte(2), pk.FixedHeader.Qos)
				require.NotZero(t, pk.PacketID)
			} else {
				require.Equal(t, byte(0), pk.FixedHeader.Qos)
			}
		})
	}
}

// The ACL read check applies as a message is sent, also to one waiting in
// a connected client's queue (the in-flight window was full): once a
// reloaded ACL (SIGHUP) takes the right away, it is not delivered.
func TestEngineACLRecheckConnectedQueue(t *testing.T) {
	acl := writeFile(t, "acl", "topic readwrite w/#\n")
	cfg := Config{AllowAnonymous: true, ACLFile: acl, SysInterval: -1, MaxInflight: 1}
	b := start(t, cfg)
	sub := rawclient.Dial(t, b.Addr(), 4)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{1}, sub.Subscribe(1, 1, "w/#"))
	pub := rawclient.Dial(t, b.Addr(), 4)
	pub.MustConnect("pub", "", "")
	for i := range 3 {
		pub.Publish(uint16(i+1), 1, "w/x", fmt.Sprint(i), false)
	}
	for range 3 {
		require.Equal(t, packets.Puback, pub.Recv().FixedHeader.Type)
	}
	first := sub.Recv()
	require.Equal(t, "0", string(first.Payload))
	require.Empty(t, sub.Ping(), "window of 1: the others wait in the queue")

	require.NoError(t, os.WriteFile(acl, []byte("topic write w/#\n"), 0o600))
	require.NoError(t, b.Reload(cfg.Security()))
	sub.Ack(first)
	require.Empty(t, sub.Ping(), "queued messages the client may no longer read are not sent")
}

// QoS 2 exactly once across a broker restart when the publisher resends:
// the client's flow (PUBREC sent, PUBREL not received) is stored before
// the PUBREC goes out and restored, so the PUBLISH resent with DUP is
// acknowledged and not delivered again, and its PUBREL completes the
// flow.
func TestEngineInboundQoS2AcrossRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1, PersistenceDir: dir}
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			b := start(t, cfg)
			sub := connectPersistent(t, b.Addr(), 4, "q2sub")
			require.Equal(t, []byte{2}, sub.Subscribe(1, 2, "q2"))
			goOffline(t, b, sub, "q2sub")
			pub := connectPersistent(t, b.Addr(), v, "q2pub")
			publish := func(dup bool) {
				pub.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2, Dup: dup},
					PacketID: 5, TopicName: "q2", Payload: []byte("once")})
				ack := pub.Recv()
				require.Equal(t, packets.Pubrec, ack.FixedHeader.Type)
				require.Equal(t, uint16(5), ack.PacketID)
				require.Equal(t, packets.CodeSuccess.Code, ack.ReasonCode)
			}
			publish(false)
			require.NoError(t, b.Close()) // as good as kill -9 for the store: nothing is written at close

			b = start(t, cfg)
			pub = connectPersistent(t, b.Addr(), v, "q2pub")
			// mochi resends the PUBREC of the restored flow; then the resend.
			for _, pk := range pub.Ping() {
				require.Equal(t, packets.Pubrec, pk.FixedHeader.Type)
			}
			publish(true)
			pub.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 5})
			comp := pub.Recv()
			require.Equal(t, packets.Pubcomp, comp.FixedHeader.Type)
			require.Equal(t, packets.CodeSuccess.Code, comp.ReasonCode)

			sub = connectPersistent(t, b.Addr(), 4, "q2sub")
			got := sub.Recv()
			require.Equal(t, "once", string(got.Payload))
			sub.Ack(got)
			rel := sub.Recv()
			require.Equal(t, packets.Pubrel, rel.FixedHeader.Type)
			sub.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: rel.PacketID})
			require.Empty(t, sub.Ping(), "delivered once")
			require.NoError(t, b.Close())
		})
	}
}

// A delayed will is not sent when its session is resumed before the delay
// has passed [MQTT-3.1.3-9]: the engine's timer for it is stopped.
func TestEngineDelayedWillCancelledByResume(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	connect := func() *rawclient.Client {
		c := rawclient.Dial(t, b.Addr(), 5)
		conn := c.ConnectPacket("delayed", "", "")
		conn.Connect.Clean = false
		conn.Connect.WillFlag, conn.Connect.WillTopic, conn.Connect.WillPayload = true, "wills/delayed", []byte("gone")
		conn.Connect.WillProperties.WillDelayInterval = 3600
		conn.Properties.SessionExpiryInterval, conn.Properties.SessionExpiryIntervalFlag = 7200, true
		c.Send(conn)
		require.Equal(t, byte(0), c.Recv().ReasonCode)
		return c
	}
	c := connect()
	c.Conn.Close() // no DISCONNECT: the will is due, after its delay
	rawclient.WaitFor(t, func() bool { _, ok := b.engine.wills.Load("delayed"); return ok })
	c = connect()
	_, pending := b.engine.wills.Load("delayed")
	require.False(t, pending, "the resumed session's will is not sent")
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
}

// A client subscribed to the topic it publishes at QoS 1 or 2 gets its
// PUBACK or PUBREC before the delivery PUBLISH, as from mosquitto
// (02-subpub-qos2, 09-acl-change): the engine queues the message for the
// publisher's own session and sends it once mochi has written the
// acknowledgement.
func TestEngineOwnAckBeforeDelivery(t *testing.T) {
	for _, version := range []byte{4, 5} {
		for _, qos := range []byte{1, 2} {
			for _, retain := range []bool{false, true} {
				t.Run(fmt.Sprintf("v%d/qos%d/retain=%v", version, qos, retain), func(t *testing.T) {
					b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
					c := rawclient.Dial(t, b.Addr(), version)
					c.MustConnect("self", "", "")
					require.Equal(t, []byte{2}, c.Subscribe(1, 2, "loop"))
					c.Publish(7, qos, "loop", "m", retain)
					ack := c.Recv()
					want := packets.Puback
					if qos == 2 {
						want = packets.Pubrec
					}
					require.Equal(t, want, ack.FixedHeader.Type, "the publisher's acknowledgement comes first")
					require.Equal(t, uint16(7), ack.PacketID)
					pk := c.Recv()
					require.Equal(t, packets.Publish, pk.FixedHeader.Type)
					require.Equal(t, "m", string(pk.Payload))
					require.Equal(t, qos, pk.FixedHeader.Qos)
				})
			}
		}
	}
}

// A session that expires takes its subscriptions with it: mochi v2.7.9
// deletes an expired client without removing its subscriptions, so a
// new clean session of the same client ID got messages of filters it
// never subscribed to, and each publish to such a topic added an entry
// to the engine's sessions.
func TestEngineExpiredSessionSubscriptionsGone(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	c := rawclient.Dial(t, b.Addr(), 5)
	pk := c.ConnectPacket("exp", "", "")
	pk.Connect.Clean = false
	pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 1, true
	c.Send(pk)
	require.Equal(t, packets.Connack, c.Recv().FixedHeader.Type)
	require.Equal(t, []byte{1}, c.Subscribe(1, 1, "old/topic"))
	goOffline(t, b, c, "exp")
	rawclient.WaitFor(t, func() bool { _, ok := b.srv.Clients.Get("exp"); return !ok })

	pub := rawclient.Dial(t, b.Addr(), 5)
	pub.MustConnect("pub", "", "")
	pub.Publish(0, 0, "old/topic", "stale", false)
	require.Empty(t, pub.Ping())
	require.Nil(t, b.engine.lookupSession("exp"), "no session for an expired client")

	c = rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("exp", "", "")
	pub.Publish(0, 0, "old/topic", "stale", false)
	require.Empty(t, pub.Ping())
	require.Empty(t, c.Ping(), "a new session has no subscriptions")
	require.False(t, b.HasSubscriber("old/topic"))
}

// An MQTT 5 will keeps the will properties of its CONNECT [MQTT-3.1.3-9]
// (mochi's Will has only the user properties; the rest was lost), and its
// message expiry counts from its publication.
func TestEngineWillProperties(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	w := rawclient.Dial(t, b.Addr(), 5)
	w.MustConnect("will-watch", "", "")
	require.Equal(t, []byte{1}, w.Subscribe(1, 1, "wills/#"))

	c := rawclient.Dial(t, b.Addr(), 5)
	conn := c.ConnectPacket("dying", "", "")
	conn.Connect.WillFlag, conn.Connect.WillTopic, conn.Connect.WillPayload = true, "wills/dying", []byte("gone")
	conn.Connect.WillQos = 1
	wp := &conn.Connect.WillProperties
	wp.PayloadFormat, wp.PayloadFormatFlag = 1, true
	wp.ContentType, wp.ResponseTopic, wp.CorrelationData = "text/plain", "wills/answer", []byte{1, 2, 3}
	wp.MessageExpiryInterval = 600
	wp.User = []packets.UserProperty{{Key: "k", Val: "v"}}
	conn.Mods.AllowResponseInfo = true // the test client's encoder leaves the response topic out otherwise
	c.Send(conn)
	require.Equal(t, byte(0), c.Recv().ReasonCode)
	c.Conn.Close() // no DISCONNECT: the will goes out

	got := w.Recv()
	require.Equal(t, "wills/dying", got.TopicName)
	require.Equal(t, "gone", string(got.Payload))
	p := got.Properties
	require.True(t, p.PayloadFormatFlag)
	require.Equal(t, byte(1), p.PayloadFormat)
	require.Equal(t, "text/plain", p.ContentType)
	require.Equal(t, "wills/answer", p.ResponseTopic)
	require.Equal(t, []byte{1, 2, 3}, p.CorrelationData)
	require.Equal(t, []packets.UserProperty{{Key: "k", Val: "v"}}, p.User)
	require.InDelta(t, 600, p.MessageExpiryInterval, 2)
}

// A QoS 1/2 message that is not sent after all (the client may no longer
// read its topic, it expired) uses up its packet ID, as mosquitto numbers
// a message when it queues it (09-acl-change: the next delivery has ID
// 3, not 2).
func TestEngineDiscardedMessageUsesPacketID(t *testing.T) {
	acl := writeFile(t, "acl", "topic readwrite w/#\ntopic readwrite x/#\n")
	cfg := Config{AllowAnonymous: true, ACLFile: acl, SysInterval: -1}
	b := start(t, cfg)
	sub := connectPersistent(t, b.Addr(), 4, "sub")
	require.Equal(t, []byte{1, 1}, sub.Subscribe(1, 1, "w/#", "x/#"))
	goOffline(t, b, sub, "sub")
	pub := rawclient.Dial(t, b.Addr(), 4)
	pub.MustConnect("pub", "", "")
	for i, topic := range []string{"w/1", "x/2", "w/3"} {
		pub.Publish(uint16(i+1), 1, topic, topic, false)
		require.Equal(t, packets.Puback, pub.Recv().FixedHeader.Type)
	}
	require.NoError(t, os.WriteFile(acl, []byte("topic readwrite w/#\n"), 0o600))
	require.NoError(t, b.Reload(cfg.Security()))
	sub = connectPersistent(t, b.Addr(), 4, "sub")
	var got []string
	for _, pk := range sub.Ping() {
		got = append(got, fmt.Sprintf("%s:%d", pk.Payload, pk.PacketID))
	}
	require.Equal(t, []string{"w/1:1", "w/3:3"}, got)
}

// A retained message whose expiry has passed is not queued for a new
// subscription at all: it takes no packet ID, so the next retained
// message goes out with ID 1, as from mosquitto
// (02-subpub-qos1-message-expiry-retain). The engine's clock is moved on:
// no real waiting.
func TestEngineExpiredRetainedTakesNoPacketID(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1})
	require.NoError(t, err)
	clk := &fakeClock{}
	clk.ns.Store(time.Now().UnixNano())
	b.engine.now = clk.now
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })

	pub := rawclient.Dial(t, b.Addr(), 5)
	pub.MustConnect("pub", "", "")
	old := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: true}, PacketID: 1,
		TopicName: "kept/a", Payload: []byte("old")}
	old.Properties.MessageExpiryInterval = 1
	pub.Send(old)
	require.Equal(t, packets.Puback, pub.Recv().FixedHeader.Type)
	pub.Publish(2, 1, "kept/b", "new", true)
	require.Equal(t, packets.Puback, pub.Recv().FixedHeader.Type)

	clk.advance(10 * time.Second)
	sub := rawclient.Dial(t, b.Addr(), 5)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{1}, sub.Subscribe(1, 1, "kept/#"))
	got := sub.Recv()
	require.Equal(t, "kept/b", got.TopicName)
	require.Equal(t, uint16(1), got.PacketID, "the expired message took no packet ID")
	require.Empty(t, sub.Ping(), "the expired message is not sent")
}

// TestEnginePacketIDsContinueOnResume: a resumed session with nothing in
// flight goes on numbering its deliveries where it stopped, as mosquitto
// does (11-persistent-subscription-no-local); a clean start numbers from
// 1 again.
func TestEnginePacketIDsContinueOnResume(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	c := rawclient.Dial(t, b.Addr(), 4)
	pk := c.ConnectPacket("ids", "", "")
	pk.Connect.Clean = false
	c.Send(pk)
	require.Equal(t, byte(0), c.Recv().ReasonCode)
	require.Equal(t, []byte{1}, c.Subscribe(1, 1, "ids"))
	for want := uint16(1); want <= 2; want++ {
		require.NoError(t, b.Publish("ids", []byte("x"), false, 1))
		got := c.Recv()
		require.Equal(t, want, got.PacketID)
		c.Ack(got)
	}
	require.Empty(t, c.Ping())
	c.Conn.Close()
	waitOffline(t, b.srv, "ids")

	c = rawclient.Dial(t, b.Addr(), 4)
	c.Send(pk)
	require.True(t, c.Recv().SessionPresent)
	require.NoError(t, b.Publish("ids", []byte("x"), false, 1))
	got := c.Recv()
	require.Equal(t, uint16(3), got.PacketID)
	c.Ack(got)
	require.Empty(t, c.Ping())
	c.Conn.Close()
	waitOffline(t, b.srv, "ids")

	c = rawclient.Dial(t, b.Addr(), 4)
	pk.Connect.Clean = true
	c.Send(pk)
	require.False(t, c.Recv().SessionPresent)
	require.Equal(t, []byte{1}, c.Subscribe(1, 1, "ids"))
	require.NoError(t, b.Publish("ids", []byte("x"), false, 1))
	require.Equal(t, uint16(1), c.Recv().PacketID)
}
