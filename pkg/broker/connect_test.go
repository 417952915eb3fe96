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
	"github.com/stretchr/testify/require"
)

// CONNECT and CONNACK as mosquitto 2.0 handles them (connect.go), checked
// byte for byte where mosquitto's own test suite does.

// sendHex writes raw bytes given in hex (spaces allowed).
func (c *rawClient) sendHex(s string) {
	c.t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(c.t, err)
	_, err = c.conn.Write(b)
	require.NoError(c.t, err)
}

// recvBytes reads one packet and returns it whole, fixed header included,
// as hex.
func (c *rawClient) recvBytes() string {
	c.t.Helper()
	pk, body, err := c.recvRaw(5 * time.Second)
	require.NoError(c.t, err)
	var h []byte
	h = append(h, byte(pk.FixedHeader.Type)<<4|flagBits(pk.FixedHeader))
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		h = append(h, b)
		if n == 0 {
			break
		}
	}
	return hex.EncodeToString(append(h, body...))
}

func flagBits(fh packets.FixedHeader) byte {
	var b byte
	if fh.Dup {
		b |= 8
	}
	b |= fh.Qos << 1
	if fh.Retain {
		b |= 1
	}
	return b
}

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
			c := dialRaw(t, b.Addr(), 5)
			c.sendHex(connectV5Hex)
			require.Equal(t, hexOf(tc.want), c.recvBytes())
		})
	}
}

func TestConnackV5PropertiesInMosquittoOrder(t *testing.T) {
	// An assigned client id and message_size_limit's Maximum Packet Size
	// come with the defaults: mosquitto writes Topic Alias Maximum,
	// Assigned Client Identifier, Maximum Packet Size, Receive Maximum.
	b := start(t, Config{AllowAnonymous: true, MaxInflight: 20, MaxQueued: 1000})
	c := dialRaw(t, b.Addr(), 5)
	c.sendHex("10 0d 0004 4d515454 05 02 003c 00 0000")
	got := c.recvBytes()
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
	sub := dialRaw(t, b.Addr(), 5)
	sub.mustConnect("sub", "", "")
	require.Equal(t, []byte{0}, sub.subscribe(1, 0, "ta/#"))
	p := dialRaw(t, b.Addr(), 5)
	p.mustConnect("pub", "", "")
	for _, alias := range []uint16{1, 10} {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "ta/x", Payload: []byte{'a'}}
		pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = alias, true
		p.send(pk)
		require.Equal(t, "ta/x", sub.recv().TopicName)
	}
	// Beyond the advertised 10: DISCONNECT 0x94 Topic alias invalid.
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: "ta/x", Payload: []byte{'a'}}
	pk.Properties.TopicAlias, pk.Properties.TopicAliasFlag = 11, true
	p.send(pk)
	// Without a reason string, as mosquitto (mochi added one).
	require.Equal(t, "e00194", p.recvBytes())
	require.Empty(t, p.expectClosed())
}

func TestConnackRefusedV5HasNoProperties(t *testing.T) {
	pw := passwordFile(t, map[string]string{"user": "secret"})
	b := start(t, Config{PasswordFile: pw})
	c := dialRaw(t, b.Addr(), 5)
	// user "user", password "wrong"
	c.sendHex("10 1d 0004 4d515454 05 c2 003c 00 0003 696431 0004 75736572 0005 77726f6e67")
	require.Equal(t, hexOf("20 03 00 87 00"), c.recvBytes())
}

func TestConnackMQTT31HasNoSessionPresent(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	// MQTT 3.1 (MQIsdp, 3), clean session off, client "p31".
	const connect31 = "10 11 0006 4d5149736470 03 00 003c 0003 703331"
	c := dialRaw(t, b.Addr(), 4)
	c.sendHex(connect31)
	require.Equal(t, "20020000", c.recvBytes())
	c.conn.Close()
	waitOffline(t, b.srv, "p31")
	c = dialRaw(t, b.Addr(), 4)
	c.sendHex(connect31)
	require.Equal(t, "20020000", c.recvBytes(), "MQTT 3.1 has no session present flag")
	// MQTT 3.1.1 has it.
	const connect311 = "10 0f 0004 4d515454 04 00 003c 0003 703331"
	c.conn.Close()
	waitOffline(t, b.srv, "p31")
	c = dialRaw(t, b.Addr(), 4)
	c.sendHex(connect311)
	require.Equal(t, "20020100", c.recvBytes())
}

// TestConnectMQTT31WithoutClientID: MQTT 3.1 requires a client id; a
// CONNECT without one is refused with 2, as by mosquitto (mochi makes one
// up), also where other clients get an assigned one.
func TestConnectMQTT31WithoutClientID(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	c := dialRaw(t, b.Addr(), 3)
	pk := c.connectPacket("", "", "")
	pk.Connect.ProtocolName = []byte("MQIsdp")
	c.send(pk)
	ack := c.recv()
	require.Equal(t, packets.Connack, ack.FixedHeader.Type)
	require.Equal(t, packets.Err3ClientIdentifierNotValid.Code, ack.ReasonCode)
	c = dialRaw(t, b.Addr(), 4)
	require.Equal(t, byte(0), c.connect("", "", ""))
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
			c := dialRaw(t, b.Addr(), 4)
			c.sendHex(tc.connect)
			require.Empty(t, c.expectClosed(), "closed without CONNACK, as mosquitto")
		})
	}
}

func TestConnectEmptyWillPayload(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(string('0'+v), func(t *testing.T) {
			b := start(t, Config{AllowAnonymous: true})
			sub := dialRaw(t, b.Addr(), v)
			sub.mustConnect("sub", "", "")
			require.Equal(t, []byte{0}, sub.subscribe(1, 0, "will/null"))
			w := dialRaw(t, b.Addr(), v)
			pk := w.connectPacket("w", "", "")
			pk.Connect.WillFlag, pk.Connect.WillTopic = true, "will/null"
			w.send(pk)
			require.Equal(t, byte(0), w.recv().ReasonCode, "a zero-length will payload is valid [MQTT-3.1.3-10]")
			w.conn.Close()
			got := sub.recv()
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
		c := dialRaw(t, b.Addr(), tc.v)
		pk := c.connectPacket("w", "", "")
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, "w", []byte("AB")
		c.send(pk)
		ack := c.recv()
		require.Equal(t, tc.want, ack.ReasonCode)
		require.Empty(t, c.expectClosed())

		c = dialRaw(t, b.Addr(), tc.v)
		pk.Connect.WillPayload = []byte("A")
		c.send(pk)
		require.Equal(t, byte(0), c.recv().ReasonCode, "a will within the limit")
	}
}

func TestConnectBridgeProtocolVersion(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	for _, tc := range []struct{ name, connect string }{
		{"3.1 bridge", "10 14 0006 4d5149736470 83 02 003c 0006 627269646765"},
		{"3.1.1 bridge", "10 12 0004 4d515454 84 02 003c 0006 627269646765"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, b.Addr(), 4)
			c.sendHex(tc.connect)
			require.Equal(t, "20020000", c.recvBytes())
			// SUBSCRIBE loop/test QoS 0, then PUBLISH to it: a bridge
			// does not get its own messages back.
			c.sendHex("82 0e 0001 0009 6c6f6f702f74657374 00")
			require.Equal(t, "9003000100", c.recvBytes())
			c.sendHex("30 12 0009 6c6f6f702f74657374 6d657373616765")
			require.Empty(t, c.ping(), "the bridge's own message came back")
			// Another client's message reaches it.
			o := dialRaw(t, b.Addr(), 4)
			o.mustConnect("other", "", "")
			o.publish(0, 0, "loop/test", "x", false)
			require.Equal(t, "x", string(c.recv().Payload))
		})
	}
}

func TestConnectAuthenticationMethodRefused(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	c := dialRaw(t, b.Addr(), 5)
	// properties: Authentication Method "basic"
	c.sendHex("10 18 0004 4d515454 05 02 000a 08 15 0005 6261736963 0003 696431")
	require.Equal(t, hexOf("20 03 00 8c 00"), c.recvBytes())
	require.Empty(t, c.expectClosed())
}

func TestConnectEmptyPassword(t *testing.T) {
	pw := passwordFile(t, map[string]string{"user": "secret"})
	b := start(t, Config{PasswordFile: pw})
	for _, tc := range []struct {
		v    byte
		want byte
	}{{4, 5}, {5, 0x87}} {
		c := dialRaw(t, b.Addr(), tc.v)
		pk := c.connectPacket("e", "user", "")
		pk.Connect.PasswordFlag = true // with a zero-length password
		c.send(pk)
		require.Equal(t, tc.want, c.recv().ReasonCode)
	}
}

func TestConnectAssignedClientID(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	id := regexp.MustCompile(`^auto-[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$`)

	c := dialRaw(t, b.Addr(), 5)
	c.send(c.connectPacket("", "", ""))
	ack := c.recv()
	require.Equal(t, byte(0), ack.ReasonCode)
	require.Regexp(t, id, ack.Properties.AssignedClientID)
	waitFor(t, func() bool { _, ok := b.srv.Clients.Get(ack.Properties.AssignedClientID); return ok })

	// MQTT 3.1.1 with clean session: an id, not told to the client.
	c = dialRaw(t, b.Addr(), 4)
	c.sendHex("10 0c 0004 4d515454 04 02 003c 0000")
	require.Equal(t, "20020000", c.recvBytes())
	var ids []string
	for _, cl := range b.srv.Clients.GetAll() {
		if id.MatchString(cl.ID) {
			ids = append(ids, cl.ID)
		}
	}
	require.Len(t, ids, 2)

	// MQTT 3.1.1 without clean session, and MQTT 3.1: refused with 2.
	c = dialRaw(t, b.Addr(), 4)
	c.sendHex("10 0c 0004 4d515454 04 00 003c 0000")
	require.Equal(t, "20020002", c.recvBytes())
	c = dialRaw(t, b.Addr(), 4)
	c.sendHex("10 0e 0006 4d5149736470 03 02 003c 0000")
	require.Equal(t, "20020002", c.recvBytes())
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
			sub := dialRaw(t, b.Addr(), tc.v)
			sub.mustConnect("helper", "", "")
			require.Equal(t, []byte{0}, sub.subscribe(1, 0, "will/test"))

			connect := func(clean bool, will bool) *rawClient {
				c := dialRaw(t, b.Addr(), tc.v)
				pk := c.connectPacket("taken", "", "")
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
				c.send(pk)
				require.Equal(t, byte(0), c.recv().ReasonCode)
				return c
			}
			old := connect(tc.oldClean, true)
			nw := connect(tc.nClean, false)
			if tc.v == 5 {
				pk, body, err := old.recvRaw(5 * time.Second)
				require.NoError(t, err)
				require.Equal(t, packets.Disconnect, pk.FixedHeader.Type)
				require.Equal(t, []byte{0x8e}, body, "mosquitto sends DISCONNECT 0x8E alone: no reason string, no property length")
			}
			// The old connection is gone, its will published or not, once
			// mochi counts it out (after its will and OnDisconnect).
			waitFor(t, func() bool { return atomic.LoadInt64(&b.srv.Info.ClientsConnected) == 2 })
			nw.publish(0, 0, "will/test", "ready", false)
			got := []string{string(sub.recv().Payload)}
			if got[0] == "LWT" {
				got = append(got, string(sub.recv().Payload))
			}
			got = append(got, payloads(sub.collect())...)
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
	w := dialRaw(t, b.Addr(), 5)
	w.mustConnect("will-watch", "", "")
	require.Equal(t, []byte{0}, w.subscribe(1, 0, "wills/#"))
	c := dialRaw(t, b.Addr(), 5)
	conn := c.connectPacket("delayed", "", "")
	conn.Connect.WillFlag, conn.Connect.WillTopic, conn.Connect.WillPayload = true, "wills/delayed", []byte("gone")
	conn.Connect.WillProperties.WillDelayInterval = 1
	conn.Properties.SessionExpiryInterval, conn.Properties.SessionExpiryIntervalFlag = 60, true
	c.send(conn)
	require.Equal(t, byte(0), c.recv().ReasonCode)
	c.conn.Close()
	pk, body, err := w.recvRaw(10 * time.Second)
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
	old := dialRaw(t, b.Addr(), 5)
	pk := old.connectPacket("ending", "", "")
	pk.Connect.Clean = false // Session Expiry 0 (absent): ends with the connection
	old.send(pk)
	require.Equal(t, byte(0), old.recv().ReasonCode)
	require.Equal(t, []byte{0}, old.subscribe(1, 0, "ending/x"))

	nw := dialRaw(t, b.Addr(), 5)
	pk = nw.connectPacket("ending", "", "")
	pk.Connect.Clean = false
	pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 60, true
	nw.send(pk)
	ack := nw.recv()
	require.Equal(t, byte(0), ack.ReasonCode)
	require.False(t, ack.SessionPresent, "the old session ended with its connection")
	d, body, err := old.recvRaw(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, packets.Disconnect, d.FixedHeader.Type)
	require.Equal(t, []byte{0x8e}, body)

	p := dialRaw(t, b.Addr(), 5)
	p.mustConnect("pub", "", "")
	p.publish(0, 0, "ending/x", "x", false)
	p.ping()
	require.Empty(t, nw.collect(), "the old session's subscription came along")
}
