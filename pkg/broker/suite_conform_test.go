// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/testutil"
)

// Packet handling that mosquitto's own broker tests (test/broker, issue
// 15) check byte for byte, one test per behaviour.

// TestDisconnectWithWillShortForm: an MQTT 5 DISCONNECT with reason 0x04
// and no property length (e0 01 04, as mosquitto's clients send it)
// publishes the will (07-will-disconnect-with-will.py); mochi read the
// reason code only with a property length.
func TestDisconnectWithWillShortForm(t *testing.T) {
	for _, tc := range []struct {
		name, disconnect string
		will             bool
	}{
		{"e0 01 04", "e0 01 04", true},
		{"e0 02 04 00", "e0 02 04 00", true},
		{"e0 01 00", "e0 01 00", false},
		{"e0 00", "e0 00", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := start(t, Config{AllowAnonymous: true})
			sub := rawclient.Dial(t, b.Addr(), 5)
			sub.MustConnect("will-sub", "", "")
			require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "will/test"))

			w := rawclient.Dial(t, b.Addr(), 5)
			conn := w.ConnectPacket("will-helper", "", "")
			conn.Connect.WillFlag, conn.Connect.WillTopic, conn.Connect.WillPayload = true, "will/test", []byte("gone")
			w.Send(conn)
			require.Equal(t, byte(0), w.Recv().ReasonCode)
			w.SendHex(tc.disconnect)
			w.ExpectClosed()

			got := sub.Collect()
			if tc.will {
				if len(got) == 0 {
					got = []packets.Packet{sub.Recv()}
				}
				require.Equal(t, []string{"gone"}, payloads(got))
			} else {
				require.Empty(t, got)
			}
		})
	}
}

// TestTopicAliasNeverSet: an MQTT 5 PUBLISH that uses a topic alias the
// client never set is a protocol error (DISCONNECT 0x82, as mosquitto:
// 02-subpub-qos0-topic-alias-unknown.py); mochi published it to the empty
// topic. An alias above the advertised Topic Alias Maximum is 0x94. An
// alias set on one connection is not known on the next.
func TestTopicAliasNeverSet(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	// 30 len | 0000 topic "" | props 03: 23 0003 | "message"
	unknown := "30 0d 0000 03 230003 6d657373616765"
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("alias", "", "")
	c.SendHex(unknown)
	require.Equal(t, "e00182", c.RecvHex())
	c.ExpectClosed()

	c = rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("alias", "", "")
	// Alias 3 set with topic "a", then used alone: fine.
	c.SendHex("30 0a 0001 61 03 230003 6d7367")
	c.SendHex("30 09 0000 03 230003 6d7367")
	require.Empty(t, c.Ping())
	// Alias 11 > Topic Alias Maximum 10.
	c.SendHex("30 0a 0001 61 03 23000b 6d7367")
	require.Equal(t, "e00194", c.RecvHex())
	c.ExpectClosed()

	c = rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("alias", "", "")
	c.SendHex("30 09 0000 03 230003 6d7367")
	require.Equal(t, "e00182", c.RecvHex())
	c.ExpectClosed()
}

// TestMaximumQoS: maximum_qos limits one listener, as in mosquitto
// (13-malformed-publish-v5.py; the rest checked against mosquitto 2.0.11):
// the MQTT 5 CONNACK advertises Maximum QoS after Receive Maximum, a
// subscription is granted at most that QoS, a PUBLISH above it ends the
// connection (MQTT 5: DISCONNECT 0x9B; 3.1.1: closed) and a will above it
// is refused (MQTT 5: CONNACK 0x9B with Maximum QoS; 3.1.1: closed
// without CONNACK). Another listener is not limited.
func TestMaximumQoS(t *testing.T) {
	one := byte(1)
	b := start(t, Config{AllowAnonymous: true, MaxInflight: 20, Listeners: []Listener{
		{Address: "127.0.0.1:0", MaximumQoS: &one}, {Address: "127.0.0.1:0"}}})
	limited, free := b.Listeners()[0].Addr, b.Listeners()[1].Addr

	c := rawclient.Dial(t, limited, 5)
	c.SendHex(connectV5Hex)
	require.Equal(t, hexOf("20 0b 00 00 08 22 000a 21 0014 24 01"), c.RecvHex())
	require.Equal(t, []byte{1}, c.Subscribe(1, 2, "a/b"))
	c.Publish(1, 1, "a/b", "ok", false)
	for range 2 { // the PUBACK and the delivery, in either order
		pk := c.Recv()
		if pk.FixedHeader.Type == packets.Publish {
			require.Equal(t, byte(1), pk.FixedHeader.Qos)
			c.Ack(pk)
		}
	}
	c.Publish(2, 2, "a/b", "too high", false)
	require.Equal(t, "e0019b", c.RecvHex())
	c.ExpectClosed()

	c = rawclient.Dial(t, limited, 4)
	c.MustConnect("v4", "", "")
	require.Equal(t, []byte{1}, c.Subscribe(1, 2, "a/b"))
	c.Publish(2, 2, "a/b", "too high", false)
	require.Empty(t, c.ExpectClosed())

	for _, v := range []byte{4, 5} {
		w := rawclient.Dial(t, limited, v)
		conn := w.ConnectPacket("will", "", "")
		conn.Connect.WillFlag, conn.Connect.WillTopic, conn.Connect.WillPayload, conn.Connect.WillQos = true, "w", []byte("x"), 2
		w.Send(conn)
		if v == 5 {
			require.Equal(t, "2005009b022401", w.RecvHex())
		}
		require.Empty(t, w.ExpectClosed())
	}

	c = rawclient.Dial(t, free, 5)
	c.SendHex(connectV5Hex)
	require.Equal(t, hexOf("20 09 00 00 06 22 000a 21 0014"), c.RecvHex())
	require.Equal(t, []byte{2}, c.Subscribe(1, 2, "a/b"))
}

// TestLogValuesBounded: a 65,000-byte client id appears in the log
// shortened, with its length; mosquitto's 01-connect-575314.py stalled
// the broker on its stderr pipe with three such lines.
func TestLogValuesBounded(t *testing.T) {
	logs := &testutil.Buffer{}
	b := start(t, Config{AllowAnonymous: true, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	id := strings.Repeat("a", 65000)
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect(id, "", "")
	c.SendHex("e0 00")
	c.ExpectClosed()
	rawclient.WaitFor(t, func() bool { return strings.Contains(logs.String(), "client disconnected") })
	require.Contains(t, logs.String(), `client="`+strings.Repeat("a", maxLogValue)+`…(65000 bytes)"`)
	for _, line := range strings.Split(logs.String(), "\n") {
		require.Less(t, len(line), 4*maxLogValue, "line %.200s", line)
	}

	require.Equal(t, strings.Repeat("é", maxLogValue/2)+"…(514 bytes)", boundString(strings.Repeat("é", 257)))
	require.Equal(t, "short", boundString("short"))
}

// TestRefusedPublishAckHasNoReasonString: a PUBLISH refused for its size
// or by the ACL gets PUBACK/PUBREC with the reason code alone, as from
// mosquitto (02-subpub-qos1-oversize-payload.py compares the bytes).
func TestRefusedPublishAckHasNoReasonString(t *testing.T) {
	acl := writeFile(t, "acl", "topic readwrite a/#\n")
	b := start(t, Config{AllowAnonymous: true, MessageSizeLimit: 1, ACLFile: acl})
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("refused", "", "")
	c.Publish(2, 1, "a/b", "AB", false)
	require.Equal(t, "4003000295", c.RecvHex())
	c.Publish(3, 2, "a/b", "AB", false)
	require.Equal(t, "5003000395", c.RecvHex())
	c.Publish(4, 1, "secret", "A", false)
	require.Equal(t, "4003000487", c.RecvHex())
}

// TestPubackNoMatchingSubscribers: an MQTT 5 QoS 1 PUBLISH that no
// subscription matches gets PUBACK 0x10, written as mosquitto writes it
// (40 03 ID 10; 03-publish-qos1-no-subscribers-v5.py, 04-retain-qos1-qos0.py);
// the message is still retained. With a subscriber, or at QoS 2, or with
// MQTT 3.1.1, the acknowledgement is plain.
func TestPubackNoMatchingSubscribers(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("nosubs", "", "")
	c.Publish(1, 1, "no/subs", "x", false)
	require.Equal(t, "4003000110", c.RecvHex())
	c.Publish(2, 1, "no/subs", "kept", true)
	require.Equal(t, "4003000210", c.RecvHex())
	c.Publish(3, 2, "no/subs", "x", false)
	require.Equal(t, "50020003", c.RecvHex())

	s := rawclient.Dial(t, b.Addr(), 5)
	s.MustConnect("sub", "", "")
	s.Send(subscribePacket(1, packets.Subscription{Filter: "no/subs", Qos: 1}))
	for range 2 { // the SUBACK and the retained message, in either order
		got := s.Recv()
		if got.FixedHeader.Type == packets.Suback {
			continue
		}
		require.Equal(t, "kept", string(got.Payload))
		require.True(t, got.FixedHeader.Retain)
		s.Ack(got)
	}

	c.Publish(4, 1, "no/subs", "y", false)
	require.Equal(t, "40020004", c.RecvHex())
	s.Ack(s.Recv())
	require.Equal(t, []byte{1}, s.Subscribe(2, 1, "$share/g/shared"))
	c.Publish(5, 1, "shared", "z", false)
	require.Equal(t, "40020005", c.RecvHex())
	require.Equal(t, "z", string(s.Recv().Payload))

	v4 := rawclient.Dial(t, b.Addr(), 4)
	v4.MustConnect("v4", "", "")
	v4.Publish(6, 1, "none", "x", false)
	require.Equal(t, "40020006", v4.RecvHex())
}

func TestCompactWrite(t *testing.T) {
	ack := append([]byte{0x40, byte(2 + len(noSubscribersAck)), 0x12, 0x34}, noSubscribersAck...)
	require.Equal(t, []byte{0x40, 3, 0x12, 0x34, 0x10}, compactWrite(ack))
	other := append([]byte{}, ack...)
	other[len(other)-1] ^= 1
	require.Equal(t, other, compactWrite(other))
	require.Equal(t, []byte{0xe0, 1, 0x8e}, compactWrite([]byte{0xe0, 2, 0x8e, 0}))
	require.Equal(t, []byte{0x40, 2, 0, 1}, compactWrite([]byte{0x40, 2, 0, 1}))
}

// TestMountPoint: clients of a listener with mount_point publish and
// subscribe under it without knowing (10-listener-mount-point.py): their
// topics arrive prefixed for everyone else, and what they receive has the
// prefix taken off; retained messages, wills and shared subscriptions too.
func TestMountPoint(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, Listeners: []Listener{
		{Address: "127.0.0.1:0"}, {Address: "127.0.0.1:0", MountPoint: "mount/"}}})
	plain, mounted := b.Listeners()[0].Addr, b.Listeners()[1].Addr

	all := rawclient.Dial(t, plain, 4)
	all.MustConnect("all", "", "")
	require.Equal(t, []byte{0}, all.Subscribe(1, 0, "#"))
	for _, v := range []byte{4, 5} {
		m := rawclient.Dial(t, mounted, v)
		m.MustConnect(fmt.Sprintf("m%d", v), "", "")
		require.Equal(t, []byte{0}, m.Subscribe(1, 0, "#"))
		p := rawclient.Dial(t, mounted, v)
		p.MustConnect(fmt.Sprintf("p%d", v), "", "")
		p.Publish(0, 0, "test", "mount point", false)
		got := all.Recv()
		require.Equal(t, "mount/test", got.TopicName)
		got = m.Recv()
		require.Equal(t, "test", got.TopicName)
		require.Equal(t, "mount point", string(got.Payload))
		// Unsubscribing works on the same (prefixed) filter.
		m.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 2,
			Filters: packets.Subscriptions{{Filter: "#"}}})
		require.Equal(t, packets.Unsuback, m.Recv().FixedHeader.Type)
		p.Publish(0, 0, "test", "again", false)
		require.Equal(t, "again", string(all.Recv().Payload))
		require.Empty(t, m.Collect())
	}

	// A message from outside under the mount point reaches a mounted
	// subscriber without it; others do not reach it.
	m := rawclient.Dial(t, mounted, 5)
	m.MustConnect("m", "", "")
	require.Equal(t, []byte{0}, m.Subscribe(1, 0, "a/#"))
	require.Equal(t, []byte{0}, m.Subscribe(2, 0, "$share/g/s"))
	all.Publish(0, 0, "a/x", "outside", false)
	all.Publish(0, 0, "mount/a/x", "inside", false)
	all.Publish(0, 0, "mount/s", "shared", false)
	all.Publish(0, 0, "mount/r", "retained", true)
	got := []packets.Packet{m.Recv(), m.Recv()}
	require.Equal(t, []string{"inside", "shared"}, payloads(got))
	require.Equal(t, []string{"a/x", "s"}, []string{got[0].TopicName, got[1].TopicName})
	for range 4 {
		all.Recv() // its own messages
	}
	m.Send(subscribePacket(3, packets.Subscription{Filter: "r", Qos: 0}))
	for range 2 { // the SUBACK and the retained message, in either order
		if pk := m.Recv(); pk.FixedHeader.Type == packets.Publish {
			require.Equal(t, "r", pk.TopicName)
			require.Equal(t, "retained", string(pk.Payload))
		}
	}

	// The will of a mounted client is published under the mount point.
	w := rawclient.Dial(t, mounted, 4)
	conn := w.ConnectPacket("w", "", "")
	conn.Connect.WillFlag, conn.Connect.WillTopic, conn.Connect.WillPayload = true, "will", []byte("gone")
	w.Send(conn)
	require.Equal(t, byte(0), w.Recv().ReasonCode)
	w.Conn.Close()
	got1 := all.Recv()
	require.Equal(t, "mount/will", got1.TopicName)
}

// TestMountFilter: a shared subscription keeps its $share/NAME/ in front
// of the mount point (mosquitto.conf's mount_point is parsed in pkg/mosqconf).
func TestMountFilter(t *testing.T) {
	require.Equal(t, "$share/g/m/x/#", mountFilter("m/", "$share/g/x/#"))
	require.Equal(t, "m/$share", mountFilter("m/", "$share"))
	require.Equal(t, "m/$share/g", mountFilter("m/", "$share/g"))
}

// TestMaxConnectionsReconnectAtOnce: clients that close their
// connections and connect again at once get in, as with mosquitto
// (01-connect-max-connections.py): a connection beyond max_connections
// waits for a slot for a moment (limitGrace) before it is refused.
func TestMaxConnectionsReconnectAtOnce(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, Listeners: []Listener{{Address: "127.0.0.1:0", MaxConnections: 3}}})
	for round := range 3 {
		var cs []*rawclient.Client
		for i := range 3 {
			c := rawclient.Dial(t, b.Addr(), 5)
			c.MustConnect(fmt.Sprintf("c%d", i), "", "")
			cs = append(cs, c)
		}
		bad := rawclient.Dial(t, b.Addr(), 5)
		bad.Send(bad.ConnectPacket("bad", "", ""))
		require.Empty(t, bad.ExpectClosed(), "round %d", round)
		for _, c := range cs {
			c.Conn.Close()
		}
	}
}

// slowDisconnect holds mochi for one client in OnDisconnect (the window
// in which its connection is closed but its session not yet removed) or,
// with read set, before it handles the client's DISCONNECT (the window in
// which the client has gone but the broker does not know yet).
type slowDisconnect struct {
	mqtt.HookBase
	id   string
	read bool
}

func (h *slowDisconnect) ID() string { return "test-slow-disconnect" }
func (h *slowDisconnect) Provides(b byte) bool {
	return b == mqtt.OnDisconnect || (h.read && b == mqtt.OnPacketRead)
}
func (h *slowDisconnect) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	if cl.ID == h.id && !h.read {
		time.Sleep(300 * time.Millisecond)
	}
}
func (h *slowDisconnect) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.ID == h.id && pk.FixedHeader.Type == packets.Disconnect {
		time.Sleep(50 * time.Millisecond) // within takeoverGrace
	}
	return pk, nil
}

// TestSessionEndedByDisconnectNotResumed: a client that ends its session
// (DISCONNECT with Session Expiry 0) and reconnects at once gets a new
// session (05-session-expiry-v5.py), even while mochi is still removing
// the old one.
func TestSessionEndedByDisconnectNotResumed(t *testing.T) {
	for _, read := range []bool{false, true} {
		t.Run(fmt.Sprintf("slow read %v", read), func(t *testing.T) { testSessionEndedByDisconnect(t, read) })
	}
}

func testSessionEndedByDisconnect(t *testing.T, read bool) {
	b := start(t, Config{AllowAnonymous: true})
	require.NoError(t, b.srv.AddHook(&slowDisconnect{id: "expiry", read: read}, nil))
	connect := func(c *rawclient.Client) packets.Packet {
		pk := c.ConnectPacket("expiry", "", "")
		pk.Connect.Clean = false
		pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 60, true
		c.Send(pk)
		return c.Recv()
	}
	c := rawclient.Dial(t, b.Addr(), 5)
	require.False(t, connect(c).SessionPresent)
	// DISCONNECT with Session Expiry Interval 0.
	c.SendHex("e0 07 00 05 11 00000000")
	c.Conn.Close()
	c = rawclient.Dial(t, b.Addr(), 5)
	ack := connect(c)
	require.Equal(t, byte(0), ack.ReasonCode)
	require.False(t, ack.SessionPresent)
}

// TestConnectChecks: CONNECTs that mosquitto closes without a CONNACK
// (msg_sequence_test's CONNECT sequences), and the protocol levels it
// refuses with CONNACK 1.
func TestConnectChecks(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	for _, tc := range []struct{ name, connect, want string }{
		{"unknown protocol name", "10 0C 0003 4D5154 04 02 000A 0001 70", ""},
		{"reserved flag", "10 0D 0004 4D515454 04 01 000A 0001 70", ""},
		{"will QoS without will", "10 0D 0004 4D515454 04 0A 000A 0001 70", ""},
		{"will retain without will", "10 0D 0004 4D515454 04 22 000A 0001 70", ""},
		{"will QoS 3", "10 13 0004 4D515454 04 1E 000A 0001 70 0001 70 0001 70", ""},
		{"will topic U+0001", "10 17 0004 4D515454 04 06 000A 0001 70 0005 746F700170 0001 70", ""},
		{"client id U+009F", "10 11 0004 4D515454 04 02 000A 0005 746FC29F70", ""},
		{"client id U+0001 v5", "10 12 0004 4D515454 05 02 000A 00 0005 746F700170", ""},
		{"bytes after the payload", "10 10 0004 4D515454 04 02 000A 0001 70 0001 70", ""},
		{"username U+FFFF v5", "10 15 0004 4D515454 05 82 000A 00 0001 70 0005 746FEDBFBF", ""},
		{"password without username", "10 10 0004 4D515454 04 42 000A 0001 70 0001 70", ""},
		{"protocol level 6", "10 0D 0004 4D515454 06 00 000A 0001 70", "20020001"},
		{"MQIsdp level 2", "10 0F 0006 4D5149736470 02 00 000A 0001 70", "20020001"},
		// MQTT 3.1 with the reserved flag: mosquitto lets it in.
		{"MQTT 3.1 reserved flag", "10 0F 0006 4D5149736470 03 01 000A 0001 70", "20020000"},
		{"v5 password without username", "10 11 0004 4D515454 05 42 000A 00 0001 70 0001 70", "200600000322000a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawclient.Dial(t, b.Addr(), 4)
			c.SendHex(tc.connect)
			if tc.want == "" {
				require.Empty(t, c.ExpectClosed())
				return
			}
			require.Equal(t, tc.want, c.RecvHex())
		})
	}
}

// TestProtocolErrorsAfterConnect: packets an MQTT 5 client may not send
// get DISCONNECT 0x82 Protocol Error, as from mosquitto (msg_sequence_test):
// the types only servers send, whatever their flags, AUTH (the broker
// took no authentication method), and acknowledgements or a DISCONNECT
// with a property they may not carry.
func TestProtocolErrorsAfterConnect(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	for _, tc := range []struct{ name, packet string }{
		{"CONNACK", "20 02 00 00"},
		{"SUBACK", "90 03 0001 00"},
		{"UNSUBACK", "b0 02 0001"},
		{"PINGRESP", "d0 00"},
		{"PINGRESP with flags", "d1 00"},
		{"type 0", "00 00"},
		{"AUTH", "f0 00"},
		{"AUTH with flags", "f2 00"},
		{"PUBACK with payload format", "40 06 0001 00 02 0101"},
		{"PUBREL with topic alias", "62 07 0001 00 03 230001"},
		{"DISCONNECT with content type", "e0 06 00 04 03 0001 61"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawclient.Dial(t, b.Addr(), 5)
			c.MustConnect("proto", "", "")
			c.SendHex(tc.packet)
			require.Equal(t, "e00182", c.RecvHex())
			c.ExpectClosed()
		})
	}
	// A DISCONNECT with the properties it may carry is fine.
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("proto", "", "")
	c.SendHex("e0 0c 00 0a 1f 0002 6f6b 26 0000 0000")
	require.Empty(t, c.ExpectClosed())
}
