// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"encoding/hex"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/stretchr/testify/require"
)

// CONNECT and CONNACK as mosquitto 2.0 handles them (connect.go), checked
// byte for byte where mosquitto's own test suite does.

// hexOf removes the spaces of a hex string.
func hexOf(s string) string { return strings.ReplaceAll(s, " ", "") }

// connectV5Hex is an MQTT 5 CONNECT of client "id1", clean, keep-alive 60,
// no properties.
const connectV5Hex = "10 10 0004 4d515454 05 02 003c 00 0003 696431"

func TestConnackV5Properties(t *testing.T) {
	for _, tc := range []struct {
		name     string
		inflight int
		want     string
	}{
		// mosquitto: Topic Alias Maximum 10, then Receive Maximum =
		// max_inflight_messages (default 20).
		{"default", 20, "20 09 00 00 06 22 000a 21 0014"},
		{"max_inflight_messages 1", 1, "20 09 00 00 06 22 000a 21 0001"},
		// 0 = unlimited: no Receive Maximum.
		{"unlimited", 0, "20 06 00 00 03 22 000a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := start(t, Config{AllowAnonymous: true, MaxInflight: tc.inflight, MaxQueued: 1000})
			c := rawclient.Dial(t, b.Addr(), 5)
			c.SendHex(connectV5Hex)
			require.Equal(t, hexOf(tc.want), c.RecvHex())
		})
	}
}

func TestConnackV5PropertiesInMosquittoOrder(t *testing.T) {
	// An assigned client id and message_size_limit's Maximum Packet Size
	// come with the defaults: mosquitto writes Topic Alias Maximum,
	// Assigned Client Identifier, Maximum Packet Size, Receive Maximum.
	b := start(t, Config{AllowAnonymous: true, MaxInflight: 20, MaxQueued: 1000})
	c := rawclient.Dial(t, b.Addr(), 5)
	c.SendHex("10 0d 0004 4d515454 05 02 003c 00 0000")
	got := c.RecvHex()
	// 20 len 00 00 proplen | 22 000a | 12 0029 "auto-" + 36 | 21 0014
	re := regexp.MustCompile(`^2035000032` + `22000a` + `120029` + hex.EncodeToString([]byte("auto-")) + `([0-9a-f]{72})` + `210014$`)
	require.Regexp(t, re, got)
}

func TestConnackOrder(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		// mochi's order: Assigned Client Identifier, Server Keep Alive,
		// Receive Maximum, Topic Alias Maximum, Maximum QoS, Retain
		// Available, Maximum Packet Size.
		{"20 1d 00 00 1a 12 0001 61 13 003c 21 0014 22 000a 24 01 25 00 27 0000001e 1f 0001 78",
			"20 1d 00 00 1a 13 003c 22 000a 12 0001 61 25 00 27 0000001e 21 0014 24 01 1f 0001 78"},
		// Nothing to reorder, MQTT 3.1.1, not a CONNACK, truncated, an
		// unknown property: unchanged.
		{"20 03 00 87 00", "20 03 00 87 00"},
		{"20 02 01 00", "20 02 01 00"},
		{"30 05 0001 61 00 00", "30 05 0001 61 00 00"},
		{"20 06 00 00 03 22 00", "20 06 00 00 03 22 00"},
		{"20 06 00 00 03 7f 0001", "20 06 00 00 03 7f 0001"},
		// User properties (string pairs) keep their place after the rest.
		{"20 10 00 00 0d 26 0001 6b 0001 76 21 0014 22 000a", "20 10 00 00 0d 22 000a 21 0014 26 0001 6b 0001 76"},
	} {
		in, err := hex.DecodeString(hexOf(tc.in))
		require.NoError(t, err)
		require.Equal(t, hexOf(tc.want), hex.EncodeToString(connackOrder(in)), tc.in)
	}
}

func TestCompactDisconnect(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"e0 02 8e 00", "e0 01 8e"},
		{"e0 02 00 00", "e0 01 00"},
		{"e0 01 81", "e0 01 81"},
		{"e0 05 8e 03 1f 00 00", "e0 05 8e 03 1f 00 00"}, // with properties
		{"e0 02 8e 00 d0 00", "e0 02 8e 00 d0 00"},       // not one packet
		{"40 02 00 01", "40 02 00 01"},
	} {
		in, err := hex.DecodeString(hexOf(tc.in))
		require.NoError(t, err)
		require.Equal(t, hexOf(tc.want), hex.EncodeToString(compactDisconnect(in)), tc.in)
	}
}

func TestConnectTopicAliasMaximum(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	sub := rawclient.Dial(t, b.Addr(), 5)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "ta/#"))
	p := rawclient.Dial(t, b.Addr(), 5)
	p.MustConnect("pub", "", "")
	for _, alias := range []uint16{1, 10} {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "ta/x", Payload: []byte{'a'}}
		pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = alias, true
		p.Send(pk)
		require.Equal(t, "ta/x", sub.Recv().TopicName)
	}
	// Beyond the advertised 10: DISCONNECT 0x94 Topic alias invalid.
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "ta/x", Payload: []byte{'a'}}
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 11, true
	p.Send(pk)
	// Without a reason string, as mosquitto (mochi added one).
	require.Equal(t, "e00194", p.RecvHex())
	require.Empty(t, p.ExpectClosed())
}

func TestConnackRefusedV5HasNoProperties(t *testing.T) {
	pw := passwordFile(t, map[string]string{"user": "secret"})
	b := start(t, Config{PasswordFile: pw})
	c := rawclient.Dial(t, b.Addr(), 5)
	// user "user", password "wrong"
	c.SendHex("10 1d 0004 4d515454 05 c2 003c 00 0003 696431 0004 75736572 0005 77726f6e67")
	require.Equal(t, hexOf("20 03 00 87 00"), c.RecvHex())
}

func TestConnackMQTT31HasNoSessionPresent(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	// MQTT 3.1 (MQIsdp, 3), clean session off, client "p31".
	const connect31 = "10 11 0006 4d5149736470 03 00 003c 0003 703331"
	c := rawclient.Dial(t, b.Addr(), 4)
	c.SendHex(connect31)
	require.Equal(t, "20020000", c.RecvHex())
	c.Conn.Close()
	waitOffline(t, b.srv, "p31")
	c = rawclient.Dial(t, b.Addr(), 4)
	c.SendHex(connect31)
	require.Equal(t, "20020000", c.RecvHex(), "MQTT 3.1 has no session present flag")
	// MQTT 3.1.1 has it.
	const connect311 = "10 0f 0004 4d515454 04 00 003c 0003 703331"
	c.Conn.Close()
	waitOffline(t, b.srv, "p31")
	c = rawclient.Dial(t, b.Addr(), 4)
	c.SendHex(connect311)
	require.Equal(t, "20020100", c.RecvHex())
}

// TestConnectMQTT31WithoutClientID: MQTT 3.1 requires a client id; a
// CONNECT without one is refused with 2, as by mosquitto (mochi makes one
// up), also where other clients get an assigned one.
func TestConnectMQTT31WithoutClientID(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	c := rawclient.Dial(t, b.Addr(), 3)
	pk := c.ConnectPacket("", "", "")
	pk.Connect.ProtocolName = []byte("MQIsdp")
	c.Send(pk)
	ack := c.Recv()
	require.Equal(t, packets.Connack, ack.FixedHeader.Type)
	require.Equal(t, packets.Err3ClientIdentifierNotValid.Code, ack.ReasonCode)
	c = rawclient.Dial(t, b.Addr(), 4)
	require.Equal(t, byte(0), c.Connect("", "", ""))
}

func TestConnectWillTopicInvalid(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	for _, tc := range []struct{ name, connect string }{
		// will flag, will topic "", payload "x"
		{"3.1.1 empty", "10 12 0004 4d515454 04 06 003c 0001 61 0000 0001 78"},
		{"5 empty", "10 14 0004 4d515454 05 06 003c 00 0001 61 00 0000 0001 78"},
		// will topic "a/#"
		{"3.1.1 wildcard", "10 15 0004 4d515454 04 06 003c 0001 61 0003 612f23 0001 78"},
		// will topic "$CONTROL/x" (mosquitto 2.0.20's 07-will-control.py)
		{"3.1.1 $CONTROL", "10 1c 0004 4d515454 04 06 003c 0001 61 000a 24434f4e54524f4c2f78 0001 78"},
		// will topic 0xff (not UTF-8)
		{"3.1.1 not utf-8", "10 13 0004 4d515454 04 06 003c 0001 61 0001 ff 0001 78"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawclient.Dial(t, b.Addr(), 4)
			c.SendHex(tc.connect)
			require.Empty(t, c.ExpectClosed(), "closed without CONNACK, as mosquitto")
		})
	}
}

func TestConnectEmptyWillPayload(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(string('0'+v), func(t *testing.T) {
			b := start(t, Config{AllowAnonymous: true})
			sub := rawclient.Dial(t, b.Addr(), v)
			sub.MustConnect("sub", "", "")
			require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "will/null"))
			w := rawclient.Dial(t, b.Addr(), v)
			pk := w.ConnectPacket("w", "", "")
			pk.Connect.WillFlag, pk.Connect.WillTopic = true, "will/null"
			w.Send(pk)
			require.Equal(t, byte(0), w.Recv().ReasonCode, "a zero-length will payload is valid [MQTT-3.1.3-10]")
			w.Conn.Close()
			got := sub.Recv()
			require.Equal(t, "will/null", got.TopicName)
			require.Empty(t, got.Payload)
		})
	}
}

func TestConnectWillOverMessageSizeLimit(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, MessageSizeLimit: 1})
	for _, tc := range []struct {
		v    byte
		want byte
	}{{4, 5}, {5, 0x95}} {
		c := rawclient.Dial(t, b.Addr(), tc.v)
		pk := c.ConnectPacket("w", "", "")
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, "w", []byte("AB")
		c.Send(pk)
		ack := c.Recv()
		require.Equal(t, tc.want, ack.ReasonCode)
		require.Empty(t, c.ExpectClosed())

		c = rawclient.Dial(t, b.Addr(), tc.v)
		pk.Connect.WillPayload = []byte("A")
		c.Send(pk)
		require.Equal(t, byte(0), c.Recv().ReasonCode, "a will within the limit")
	}
}

func TestConnectBridgeProtocolVersion(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	for _, tc := range []struct{ name, connect string }{
		{"3.1 bridge", "10 14 0006 4d5149736470 83 02 003c 0006 627269646765"},
		{"3.1.1 bridge", "10 12 0004 4d515454 84 02 003c 0006 627269646765"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := rawclient.Dial(t, b.Addr(), 4)
			c.SendHex(tc.connect)
			require.Equal(t, "20020000", c.RecvHex())
			// SUBSCRIBE loop/test QoS 0, then PUBLISH to it: a bridge
			// does not get its own messages back.
			c.SendHex("82 0e 0001 0009 6c6f6f702f74657374 00")
			require.Equal(t, "9003000100", c.RecvHex())
			c.SendHex("30 12 0009 6c6f6f702f74657374 6d657373616765")
			require.Empty(t, c.Ping(), "the bridge's own message came back")
			// Another client's message reaches it.
			o := rawclient.Dial(t, b.Addr(), 4)
			o.MustConnect("other", "", "")
			o.Publish(0, 0, "loop/test", "x", false)
			require.Equal(t, "x", string(c.Recv().Payload))
		})
	}
}

func TestConnectAuthenticationMethodRefused(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	c := rawclient.Dial(t, b.Addr(), 5)
	// properties: Authentication Method "basic"
	c.SendHex("10 18 0004 4d515454 05 02 000a 08 15 0005 6261736963 0003 696431")
	require.Equal(t, hexOf("20 03 00 8c 00"), c.RecvHex())
	require.Empty(t, c.ExpectClosed())
}

func TestConnectEmptyPassword(t *testing.T) {
	pw := passwordFile(t, map[string]string{"user": "secret"})
	b := start(t, Config{PasswordFile: pw})
	for _, tc := range []struct {
		v    byte
		want byte
	}{{4, 5}, {5, 0x87}} {
		c := rawclient.Dial(t, b.Addr(), tc.v)
		pk := c.ConnectPacket("e", "user", "")
		pk.Connect.PasswordFlag = true // with a zero-length password
		c.Send(pk)
		require.Equal(t, tc.want, c.Recv().ReasonCode)
	}
}

func TestConnectAssignedClientID(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	id := regexp.MustCompile(`^auto-[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$`)

	c := rawclient.Dial(t, b.Addr(), 5)
	c.Send(c.ConnectPacket("", "", ""))
	ack := c.Recv()
	require.Equal(t, byte(0), ack.ReasonCode)
	require.Regexp(t, id, ack.Properties.AssignedClientID)
	rawclient.WaitFor(t, func() bool { _, ok := b.srv.Clients.Get(ack.Properties.AssignedClientID); return ok })

	// MQTT 3.1.1 with clean session: an id, not told to the client.
	c = rawclient.Dial(t, b.Addr(), 4)
	c.SendHex("10 0c 0004 4d515454 04 02 003c 0000")
	require.Equal(t, "20020000", c.RecvHex())
	var ids []string
	for _, cl := range b.srv.Clients.GetAll() {
		if id.MatchString(cl.ID) {
			ids = append(ids, cl.ID)
		}
	}
	require.Len(t, ids, 2)

	// MQTT 3.1.1 without clean session, and MQTT 3.1: refused with 2.
	c = rawclient.Dial(t, b.Addr(), 4)
	c.SendHex("10 0c 0004 4d515454 04 00 003c 0000")
	require.Equal(t, "20020002", c.RecvHex())
	c = rawclient.Dial(t, b.Addr(), 4)
	c.SendHex("10 0e 0006 4d5149736470 03 02 003c 0000")
	require.Equal(t, "20020002", c.RecvHex())
}

func TestConnectTakeoverWill(t *testing.T) {
	// mosquitto publishes the old connection's will on a takeover only
	// when the old session ends or the new connection starts clean.
	for _, tc := range []struct {
		name             string
		v                byte
		oldClean, nClean bool
		will             bool
	}{
		{"3.1.1 both persistent", 4, false, false, false},
		{"3.1.1 old clean", 4, true, false, true},
		{"3.1.1 new clean", 4, false, true, true},
		{"5 both persistent", 5, false, false, false},
		{"5 old expires", 5, true, false, true},
		{"5 new clean start", 5, false, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := start(t, Config{AllowAnonymous: true})
			sub := rawclient.Dial(t, b.Addr(), tc.v)
			sub.MustConnect("helper", "", "")
			require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "will/test"))

			connect := func(clean bool, will bool) *rawclient.Client {
				c := rawclient.Dial(t, b.Addr(), tc.v)
				pk := c.ConnectPacket("taken", "", "")
				pk.Connect.Clean = clean
				if tc.v == 5 && !clean {
					pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 60, true
				}
				if tc.v == 5 && tc.oldClean && will {
					pk.Connect.Clean = false // expiry 0, not clean start: the session ends with the connection
				}
				if will {
					pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, "will/test", []byte("LWT")
				}
				c.Send(pk)
				require.Equal(t, byte(0), c.Recv().ReasonCode)
				return c
			}
			old := connect(tc.oldClean, true)
			nw := connect(tc.nClean, false)
			if tc.v == 5 {
				pk, body, err := old.RecvRaw(5 * time.Second)
				require.NoError(t, err)
				require.Equal(t, packets.Disconnect, pk.FixedHeader.Type)
				require.Equal(t, []byte{0x8e}, body, "mosquitto sends DISCONNECT 0x8E alone: no reason string, no property length")
			}
			// The old connection is gone, its will published or not, once
			// mochi counts it out (after its will and OnDisconnect).
			rawclient.WaitFor(t, func() bool { return atomic.LoadInt64(&b.srv.Info.ClientsConnected) == 2 })
			nw.Publish(0, 0, "will/test", "ready", false)
			got := []string{string(sub.Recv().Payload)}
			if got[0] == "LWT" {
				got = append(got, string(sub.Recv().Payload))
			}
			got = append(got, payloads(sub.Collect())...)
			if tc.will {
				require.Equal(t, []string{"LWT", "ready"}, got)
			} else {
				require.Equal(t, []string{"ready"}, got)
			}
		})
	}
}

// A delayed will carries no Message Expiry Interval (mochi's scheduling
// left one of 1 s on it; mosquitto's 07-will-delay.py).
func TestConnectDelayedWillNoExpiry(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	w := rawclient.Dial(t, b.Addr(), 5)
	w.MustConnect("will-watch", "", "")
	require.Equal(t, []byte{0}, w.Subscribe(1, 0, "wills/#"))
	c := rawclient.Dial(t, b.Addr(), 5)
	conn := c.ConnectPacket("delayed", "", "")
	conn.Connect.WillFlag, conn.Connect.WillTopic, conn.Connect.WillPayload = true, "wills/delayed", []byte("gone")
	conn.Connect.WillProperties.WillDelayInterval = 1
	conn.Properties.SessionExpiryInterval, conn.Properties.SessionExpiryIntervalFlag = 60, true
	c.Send(conn)
	require.Equal(t, byte(0), c.Recv().ReasonCode)
	c.Conn.Close()
	pk, body, err := w.RecvRaw(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "wills/delayed", pk.TopicName)
	// topic (2+13), property length 0, payload "gone"
	require.Equal(t, "000d77696c6c732f64656c61796564"+"00"+"676f6e65", hex.EncodeToString(body))
}

// A connection that takes over a client id whose session ends with its
// connection (MQTT 5 Session Expiry 0) starts a new session, as mosquitto
// (05-session-expiry-v5.py, 07-will-takeover.py); mochi handed the old
// one over.
func TestConnectTakeoverOfEndingSession(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	old := rawclient.Dial(t, b.Addr(), 5)
	pk := old.ConnectPacket("ending", "", "")
	pk.Connect.Clean = false // Session Expiry 0 (absent): ends with the connection
	old.Send(pk)
	require.Equal(t, byte(0), old.Recv().ReasonCode)
	require.Equal(t, []byte{0}, old.Subscribe(1, 0, "ending/x"))

	nw := rawclient.Dial(t, b.Addr(), 5)
	pk = nw.ConnectPacket("ending", "", "")
	pk.Connect.Clean = false
	pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 60, true
	nw.Send(pk)
	ack := nw.Recv()
	require.Equal(t, byte(0), ack.ReasonCode)
	require.False(t, ack.SessionPresent, "the old session ended with its connection")
	d, body, err := old.RecvRaw(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, packets.Disconnect, d.FixedHeader.Type)
	require.Equal(t, []byte{0x8e}, body)

	p := rawclient.Dial(t, b.Addr(), 5)
	p.MustConnect("pub", "", "")
	p.Publish(0, 0, "ending/x", "x", false)
	p.Ping()
	require.Empty(t, nw.Collect(), "the old session's subscription came along")
}
