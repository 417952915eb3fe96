// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"encoding/hex"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/internal/testutil"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// startWireBroker starts an anonymous broker on a random port and returns
// it with its log.
func startWireBroker(t *testing.T) (*Broker, *testutil.Buffer) {
	t.Helper()
	logs := new(testutil.Buffer)
	b, err := New(Config{
		Listeners:      []Listener{{Address: "127.0.0.1:0"}},
		AllowAnonymous: true,
		SysInterval:    -1,
		Log:            slog.New(slog.NewTextHandler(logs, nil)),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	return b, logs
}

// dialWire connects a raw client of version with a will on "will/<id>".
func dialWire(t *testing.T, addr string, version byte, id string) *rawmqtt.Conn {
	t.Helper()
	c, err := rawmqtt.Dial(addr, version)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: id, Clean: true, KeepAlive: 60,
		WillTopic: "will/" + id, WillPayload: []byte("gone")})
	require.NoError(t, err)
	return c
}

// roundTrip checks that the broker still serves: a subscriber receives
// what a publisher sends.
func roundTrip(t *testing.T, addr string) {
	t.Helper()
	sub := dialWire(t, addr, 5, "rt-sub")
	_, _, err := sub.Subscribe(1, "rt/topic", 1)
	require.NoError(t, err)
	pub := dialWire(t, addr, 4, "rt-pub")
	require.NoError(t, pub.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: 4, Topic: []byte("rt/topic"), Payload: []byte("alive")})))
	p, err := sub.Read(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PUBLISH, p.Type)
	require.Equal(t, "alive", string(p.Payload))
}

// sessions lists mochi's client table without the inline client.
func sessions(b *Broker) []string {
	var ids []string
	for id := range b.srv.Clients.GetAll() {
		if id != mqtt.InlineClientId {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestMalformedPacketsEndOnlyTheirConnection sends the MQTT 5 SUBSCRIBEs
// that panicked mochi's decoder and took the process down (issue 15), and
// other malformed packets: each gets DISCONNECT 0x81 (MQTT 5) or a plain
// close (3.1.1), is logged and counted, the client's will is published,
// its session leaves mochi's table, and the broker keeps serving.
func TestMalformedPacketsEndOnlyTheirConnection(t *testing.T) {
	b, logs := startWireBroker(t)
	watch := dialWire(t, b.Addr(), 5, "watch")
	_, _, err := watch.Subscribe(1, "will/#", 0)
	require.NoError(t, err)

	cases := []struct {
		name    string
		version byte
		packet  string // hex
	}{
		{"v5 SUBSCRIBE filter without options byte", 5, "8206123400000170"},
		{"v5 SUBSCRIBE empty filter without options byte", 5, "82051234000000"},
		{"v5 SUBSCRIBE properties past the end", 5, "8203123405"},
		{"v5 PUBLISH QoS 3", 5, "3605000161000000"},
		{"v5 PUBLISH invalid UTF-8 topic", 5, "30040002c328"},
		{"v5 remaining length of 5 bytes", 5, "3080808080"},
		{"v5 PUBACK without its packet identifier", 5, "400100"}, // a CONNACK from a client is 0x82 (TestProtocolErrorsAfterConnect)
		{"v3.1.1 SUBSCRIBE filter without QoS byte", 4, "820512340001" + "61"},
		{"v3.1.1 PUBLISH QoS 3", 4, "3605000161" + "0001"},
		{"v3.1.1 PINGREQ with a body", 4, "c00100"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "bad" + string(rune('a'+i))
			c := dialWire(t, b.Addr(), tc.version, id)
			raw, err := hex.DecodeString(tc.packet)
			require.NoError(t, err)
			require.NoError(t, c.Send(raw))
			got, err := c.WaitClosed(5 * time.Second)
			require.NoError(t, err)
			if tc.version == 5 {
				require.Len(t, got, 1, "packets before the close: %v", got)
				require.Equal(t, rawmqtt.DISCONNECT, got[0].Type)
				require.Equal(t, packets.ErrMalformedPacket.Code, got[0].Reason)
				require.Equal(t, []byte{0x81}, got[0].Body, "mosquitto sends the reason code without properties")
			} else {
				require.Empty(t, got, "MQTT 3.1.1 has no DISCONNECT from the server")
			}
			p, err := watch.Read(5 * time.Second)
			require.NoError(t, err, "the will of %s", id)
			require.Equal(t, "will/"+id, p.Topic)
			rawclient.WaitFor(t, func() bool { return !strings.Contains(strings.Join(sessions(b), " "), id) })
		})
	}
	require.Equal(t, int64(len(cases)), b.wire.malformed.Load())
	require.Zero(t, b.wire.panics.Load())
	require.Equal(t, len(cases), strings.Count(logs.String(), "client sent a malformed packet, disconnecting"))
	roundTrip(t, b.Addr())

	var out strings.Builder
	b.writeMetrics(&out)
	require.Contains(t, out.String(), "mqtt_malformed_packets_total 10\n")
}

// panicHook panics while mochi processes a SUBSCRIBE to "panic/now": a
// stand-in for any defect on a connection's goroutine that the packet
// checks do not catch.
type panicHook struct{ mqtt.HookBase }

func (panicHook) ID() string           { return "panic" }
func (panicHook) Provides(b byte) bool { return b == mqtt.OnSubscribe }
func (panicHook) OnSubscribe(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	for _, f := range pk.Filters {
		if f.Filter == "panic/now" {
			panic("test panic in a hook")
		}
	}
	return pk
}

// TestConnectionPanicIsRecovered: a panic on one connection's goroutine
// ends that connection only: logged, counted, the will published, the
// session gone from mochi's table; the broker keeps serving.
func TestConnectionPanicIsRecovered(t *testing.T) {
	b, logs := startWireBroker(t)
	require.NoError(t, b.srv.AddHook(new(panicHook), nil))
	watch := dialWire(t, b.Addr(), 5, "watch")
	_, _, err := watch.Subscribe(1, "will/#", 0)
	require.NoError(t, err)

	c := dialWire(t, b.Addr(), 5, "victim")
	require.NoError(t, c.Send(rawmqtt.Subscribe(5, 7, "panic/now", 0)))
	_, err = c.WaitClosed(5 * time.Second)
	require.NoError(t, err)

	p, err := watch.Read(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "will/victim", p.Topic)
	rawclient.WaitFor(t, func() bool { return !strings.Contains(strings.Join(sessions(b), " "), "victim") })
	require.Equal(t, int64(1), b.wire.panics.Load())
	require.Contains(t, logs.String(), "connection goroutine panicked")
	roundTrip(t, b.Addr())
}

// sendRefused sends raw on a fresh connection of version and returns what
// the broker sent before it closed the connection.
func sendRefused(t *testing.T, addr string, version byte, raw []byte) []*rawmqtt.Packet {
	t.Helper()
	c, err := rawmqtt.Dial(addr, version)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: "refused", Clean: true})
	require.NoError(t, err)
	require.NoError(t, c.Send(raw))
	got, err := c.WaitClosed(10 * time.Second)
	require.NoError(t, err, "the broker kept the connection")
	return got
}

// v5sub is an MQTT 5 SUBSCRIBE with packet id, properties and one filter.
func v5sub(id uint16, props []byte, filter string, opts byte) []byte {
	body := []byte{byte(id >> 8), byte(id)}
	body = append(body, rawmqtt.EncodeLength(len(props))...)
	body = append(body, props...)
	body = append(body, rawmqtt.Str(filter)...)
	return rawmqtt.Fixed(0x82, append(body, opts))
}

// v5unsub is an MQTT 5 UNSUBSCRIBE; first is the fixed header's first byte.
func v5unsub(first byte, id uint16, props []byte, filter string) []byte {
	body := []byte{byte(id >> 8), byte(id)}
	body = append(body, rawmqtt.EncodeLength(len(props))...)
	body = append(body, props...)
	return rawmqtt.Fixed(first, append(body, rawmqtt.Str(filter)...))
}

// v5pub is an MQTT 5 PUBLISH with QoS bits qos (packet id when > 0).
func v5pub(qos byte, id uint16, props []byte, topic string) []byte {
	body := rawmqtt.Str(topic)
	if qos > 0 {
		body = append(body, byte(id>>8), byte(id))
	}
	body = append(body, rawmqtt.EncodeLength(len(props))...)
	body = append(body, props...)
	return rawmqtt.Fixed(0x30|qos<<1, append(body, "payload"...))
}

// TestMosquittoMalformedV5 plays the packets of mosquitto's
// 13-malformed-{publish,subscribe,unsubscribe}-v5.py,
// 02-subscribe-invalid-utf8.py and 03-publish-invalid-utf8.py: each gets
// the DISCONNECT reason code mosquitto sends, without properties.
func TestMosquittoMalformedV5(t *testing.T) {
	b, _ := startWireBroker(t)
	sessionExpiry := []byte{0x11, 0, 0, 0, 0}
	subID0 := []byte{0x0b, 0}
	cases := []struct {
		name string
		raw  []byte
		code byte
	}{
		{"SUBSCRIBE mid == 0", v5sub(0, nil, "test/topic", 1), 0x81},
		{"SUBSCRIBE qos > 2", v5sub(1, nil, "test/topic", 3), 0x81},
		{"SUBSCRIBE retain handling = 0x30", v5sub(1, nil, "test/topic", 0x30), 0x81},
		{"SUBSCRIBE subscription options = 0xC0", v5sub(1, nil, "test/topic", 0xc0), 0x81},
		{"SUBSCRIBE command flags != 0x02", append([]byte{0x80}, v5sub(1, nil, "test/topic", 1)[1:]...), 0x81},
		{"SUBSCRIBE incorrect property", v5sub(1, sessionExpiry, "test/topic", 1), 0x81},
		{"SUBSCRIBE truncated, no mid", []byte{0x82, 0}, 0x81},
		{"SUBSCRIBE truncated, no properties", []byte{0x82, 2, 0, 1}, 0x81},
		{"SUBSCRIBE truncated, with properties field", []byte{0x82, 3, 0, 1, 0}, 0x81},
		{"SUBSCRIBE truncated, empty topic", []byte{0x82, 5, 0, 1, 0, 0, 0}, 0x81},
		{"SUBSCRIBE empty topic with qos", []byte{0x82, 6, 0, 1, 0, 0, 0, 1}, 0x81},
		{"SUBSCRIBE topic, no qos", []byte{0x82, 6, 0, 1, 0, 0, 1, 'a'}, 0x81},
		{"SUBSCRIBE second topic, no second qos", []byte{0x82, 10, 0, 1, 0, 0, 1, 'a', 0, 0, 1, 'b'}, 0x81},
		{"SUBSCRIBE bad topic", v5sub(1, nil, "#/test/topic", 1), 0x81},
		{"SUBSCRIBE subscription ID 0", v5sub(1, subID0, "test/topic", 1), 0x81},
		{"SUBSCRIBE invalid UTF-8", v5sub(1, nil, "invalid/utf\xf08", 0), 0x81},
		{"SUBSCRIBE 201 levels", v5sub(1, nil, strings.Repeat("/", 201), 0), 0x81},
		{"SUBSCRIBE 65535 slashes", v5sub(1, nil, strings.Repeat("/", 65535), 0), 0x81},
		{"UNSUBSCRIBE mid == 0", v5unsub(0xa2, 0, nil, "test/topic"), 0x81},
		{"UNSUBSCRIBE command flags != 0x02", v5unsub(0xa0, 1, nil, "test/topic"), 0x81},
		{"UNSUBSCRIBE incorrect property", v5unsub(0xa2, 1, sessionExpiry, "test/topic"), 0x81},
		{"UNSUBSCRIBE truncated, no mid", []byte{0xa2, 0}, 0x81},
		{"UNSUBSCRIBE truncated, no properties", []byte{0xa2, 2, 0, 1}, 0x81},
		{"UNSUBSCRIBE truncated, no topic", []byte{0xa2, 4, 0, 1, 0, 0}, 0x81},
		{"UNSUBSCRIBE truncated, empty topic", []byte{0xa2, 5, 0, 1, 0, 0, 0}, 0x81},
		{"UNSUBSCRIBE bad topic", v5unsub(0xa2, 1, nil, "#/test/topic"), 0x81},
		{"PUBLISH mid == 0", v5pub(1, 0, nil, "test/topic"), 0x82},
		{"PUBLISH qos > 2", v5pub(3, 1, nil, "test/topic"), 0x81},
		{"PUBLISH incorrect property", v5pub(1, 1, sessionExpiry, "test/topic"), 0x82},
		{"PUBLISH truncated, remaining length only", []byte{0x30, 0}, 0x81},
		{"PUBLISH truncated, empty topic", []byte{0x30, 2, 0, 0}, 0x81},
		{"PUBLISH truncated, topic, no properties", []byte{0x30, 3, 0, 1, 'a'}, 0x81},
		{"PUBLISH truncated, topic, no mid", []byte{0x32, 3, 0, 1, 'a'}, 0x81},
		{"PUBLISH truncated, topic, mid, no properties", []byte{0x32, 5, 0, 1, 'a', 0, 1}, 0x81},
		{"PUBLISH bad topic", v5pub(1, 1, nil, "#/test/topic"), 0x81},
		{"PUBLISH invalid UTF-8", v5pub(1, 1, nil, "invalid/utf\xf08"), 0x81},
		{"PUBLISH control character", v5pub(0, 0, nil, "a\x01b"), 0x81},
		{"PUBLISH 65535 slashes", v5pub(1, 1, nil, strings.Repeat("/", 65535)), 0x81},
		{"PUBLISH DUP with QoS 0", append([]byte{0x38}, v5pub(0, 0, nil, "a")[1:]...), 0x81},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := sendRefused(t, b.Addr(), 5, tc.raw)
			require.Len(t, got, 1, "packets before the close: %v", got)
			require.Equal(t, rawmqtt.DISCONNECT, got[0].Type)
			require.Equal(t, []byte{tc.code}, got[0].Body, "DISCONNECT reason, no properties")
		})
	}
	rawclient.WaitFor(t, func() bool { return len(sessions(b)) == 0 })
}

// TestTopicLevelLimit: a topic or filter may have 200 '/' as in
// mosquitto (02-subpub-qos0-long-topic.py); one with more ends an MQTT
// 3.1.1 connection without a SUBACK or PUBACK. A SUBSCRIBE to 65,535
// slashes kept mochi busy for some 14 seconds: it is refused before it
// reaches the topic tree, and the broker answers other clients meanwhile.
func TestTopicLevelLimit(t *testing.T) {
	b, _ := startWireBroker(t)
	c := dialWire(t, b.Addr(), 4, "levels")
	for _, topic := range []string{strings.Repeat("/", 200), strings.Repeat("abc/", 199) + "d"} {
		_, _, err := c.Subscribe(1, topic, 0)
		require.NoError(t, err, "%d levels", strings.Count(topic, "/")+1)
		require.NoError(t, c.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Topic: []byte(topic), Payload: []byte("m")})))
		p, err := c.Read(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, topic, p.Topic)
	}
	other := dialWire(t, b.Addr(), 4, "other")
	for _, topic := range []string{strings.Repeat("/", 201), strings.Repeat("abc/", 201) + "d", strings.Repeat("/", 65535)} {
		got := sendRefused(t, b.Addr(), 4, rawmqtt.Subscribe(4, 1, topic, 0))
		require.Empty(t, got, "SUBSCRIBE to %d levels", strings.Count(topic, "/")+1)
		got = sendRefused(t, b.Addr(), 4, rawmqtt.Publish(rawmqtt.PublishOptions{Topic: []byte(topic), QoS: 1, PacketID: 1}))
		require.Empty(t, got, "PUBLISH to %d levels", strings.Count(topic, "/")+1)
		require.NoError(t, other.Send(rawmqtt.Pingreq()))
		p, err := other.Read(5 * time.Second)
		require.NoError(t, err)
		require.Equal(t, rawmqtt.PINGRESP, p.Type)
	}
	require.Equal(t, int64(2), atomic.LoadInt64(&b.srv.Info.Subscriptions), "only the two valid subscriptions")
}

// TestWillTopicLevelLimit: a CONNECT whose will topic has more than 200
// levels is closed without CONNACK, as by mosquitto.
func TestWillTopicLevelLimit(t *testing.T) {
	b, _ := startWireBroker(t)
	for _, v := range []byte{4, 5} {
		c, err := rawmqtt.Dial(b.Addr(), v)
		require.NoError(t, err)
		require.NoError(t, c.Send(rawmqtt.Connect(rawmqtt.ConnectOptions{Version: v, ClientID: "deepwill", Clean: true,
			WillTopic: strings.Repeat("/", 201), WillPayload: []byte("x")})))
		got, err := c.WaitClosed(10 * time.Second)
		require.NoError(t, err)
		require.Empty(t, got, "MQTT %d: no CONNACK", v)
		_ = c.Close()
	}
	c := dialWire(t, b.Addr(), 4, "shallow") // a will on "will/shallow" is fine
	require.NoError(t, c.Send(rawmqtt.Pingreq()))
	p, err := c.Read(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PINGRESP, p.Type)
}

// TestReceiveMaximumDisconnectIsRead: a client that sends more QoS 2
// PUBLISHes than the broker's Receive Maximum, and keeps sending, reads
// the DISCONNECT 0x93 the broker sends before it closes the connection:
// the broker shuts its side down and drains what the client still sends
// before closing (asyncConn), so that no TCP reset destroys the
// DISCONNECT in the client's receive buffer (the client saw a broken
// pipe).
func TestReceiveMaximumDisconnectIsRead(t *testing.T) {
	b, _ := startWireBroker(t)
	c := rawclient.Dial(t, b.Addr(), 5)
	c.Send(c.ConnectPacket("greedy", "", ""))
	ack := c.Recv()
	require.Equal(t, packets.Connack, ack.FixedHeader.Type)
	max := int(b.srv.Options.Capabilities.ReceiveMaximum) // the quota mochi enforces
	require.Less(t, max, 60000)
	var burst bytes.Buffer
	for i := 1; i <= max+200; i++ {
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 2}, PacketID: uint16(i),
			TopicName: "greedy/t", Payload: bytes.Repeat([]byte("x"), 512), ProtocolVersion: 5}
		require.NoError(t, pk.PublishEncode(&burst))
	}
	go func() { _, _ = c.Conn.Write(burst.Bytes()) }() // the broker stops reading part of the way
	var reasons []byte
	for {
		pk, _, err := c.RecvRaw(10 * time.Second)
		if err != nil {
			require.NotContains(t, err.Error(), "reset", "the broker reset the connection")
			require.NotContains(t, err.Error(), "timeout")
			break
		}
		if pk.FixedHeader.Type == packets.Disconnect {
			reasons = append(reasons, pk.ReasonCode)
		}
	}
	require.Equal(t, []byte{packets.ErrReceiveMaximum.Code}, reasons)
}

// TestBadStartsAreLogged: what ends a connection before its session is
// logged at the default level, as mosquitto logs it by default: a first
// packet that is not a CONNECT, a TLS handshake that fails, no CONNECT
// within the connect timeout. A client that connects and hangs up at once
// (a port probe) is not.
func TestBadStartsAreLogged(t *testing.T) {
	s, err := tlsfiles.WriteSelfSigned(t.TempDir())
	require.NoError(t, err)
	logs := new(testutil.Buffer)
	b, err := New(Config{
		Listeners: []Listener{{Address: "127.0.0.1:0"},
			{Address: "127.0.0.1:0", TLS: &tlsfiles.Files{CertFile: s.CertFile, KeyFile: s.KeyFile}},
			{Address: "127.0.0.1:0", Protocol: "websockets", TLS: &tlsfiles.Files{CertFile: s.CertFile, KeyFile: s.KeyFile}}},
		AllowAnonymous: true, SysInterval: -1, ConnectTimeout: 200 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(logs, nil)), // Info: the default level
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	plain, secure, wss := b.Listeners()[0].Addr, b.Listeners()[1].Addr, b.Listeners()[2].Addr

	closedAfter := func(addr string, send []byte) {
		t.Helper()
		c, err := rawmqtt.Dial(addr, 4)
		require.NoError(t, err)
		defer c.Close()
		if send != nil {
			require.NoError(t, c.Send(send))
		}
		_, err = c.WaitClosed(10 * time.Second)
		require.NoError(t, err)
	}
	probe, err := net.Dial("tcp", plain)
	require.NoError(t, err)
	require.NoError(t, probe.Close())
	closedAfter(plain, rawmqtt.Publish(rawmqtt.PublishOptions{Topic: []byte("a"), Payload: []byte("x")}))
	closedAfter(secure, rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: "plain-on-tls", Clean: true}))
	closedAfter(wss, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	closedAfter(plain, nil)

	want := []string{
		`level=WARN msg="bad initial packet, disconnecting"`,
		`level=WARN msg="TLS handshake failed, disconnecting" remote=` + secure[:strings.LastIndex(secure, ":")],
		`level=WARN msg="TLS handshake failed, disconnecting" remote=127.0.0.1:`,
		`level=INFO msg="client sent no CONNECT in time, disconnecting"`,
	}
	rawclient.WaitFor(t, func() bool {
		for _, w := range want {
			if !strings.Contains(logs.String(), w) {
				return false
			}
		}
		return true
	})
	out := logs.String()
	require.Equal(t, 1, strings.Count(out, want[0]), out)
	require.Equal(t, 2, strings.Count(out, `msg="TLS handshake failed`), "mqtts and wss:\n%s", out)
	require.Equal(t, 1, strings.Count(out, want[3]), out)
	require.Equal(t, 4, strings.Count(out, "\n"), "one line each, nothing for the probe:\n%s", out)
}

// TestBadInitialPacketBodyNotRead: a first packet that is not a CONNECT is
// refused from its fixed header; the body it announces (here 243 MB, of
// which the client sends a little) is neither awaited nor buffered
// (mosquitto's 01-bad-initial-packets.py sends 100 MB after each).
func TestBadInitialPacketBodyNotRead(t *testing.T) {
	b, _ := startWireBroker(t)
	for typ := byte(2); typ <= 15; typ++ {
		c, err := rawmqtt.Dial(b.Addr(), 4)
		require.NoError(t, err)
		require.NoError(t, c.Send(append([]byte{typ << 4, 0x80, 0x80, 0x80, 't'}, bytes.Repeat([]byte{1}, 4096)...)))
		got, err := c.WaitClosed(5 * time.Second) // within the 10 s CONNECT deadline
		require.NoError(t, err, "packet type %d", typ)
		require.Empty(t, got)
		_ = c.Close()
	}
}

// TestLingerFreesConnectionSlot: the max_connections slot of a connection
// the broker closed is free as soon as the client sees the close, although
// the socket lingers (the client has not closed its side): a client that
// reconnects at once is accepted (mosquitto's 01-connect-max-connections.py).
func TestLingerFreesConnectionSlot(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0", MaxConnections: 1}}, AllowAnonymous: true, SysInterval: -1})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	for i := range 3 {
		c, err := rawmqtt.Dial(b.Addr(), 5)
		require.NoError(t, err)
		defer c.Close() // kept open: the broker's side lingers
		_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: "slot", Clean: true})
		require.NoError(t, err, "round %d: refused at max_connections", i)
		require.NoError(t, c.Send([]byte{0x82, 0})) // malformed: the broker closes
		_, err = c.WaitClosed(10 * time.Second)
		require.NoError(t, err)
	}
}
