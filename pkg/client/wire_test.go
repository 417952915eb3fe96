// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bytes"
	"io"
	"runtime"
	"testing"

	p5 "github.com/eclipse/paho.golang/packets"
	p3 "github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/stretchr/testify/require"
)

func ptr[T any](v T) *T { return &v }

func TestVarint(t *testing.T) {
	for _, n := range []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152, 268435455} {
		b := appendVarint(nil, n)
		require.Len(t, b, varintLen(n), "n=%d", n)
		got, used, err := readVarint(b)
		require.NoError(t, err)
		require.Equal(t, n, got)
		require.Equal(t, len(b), used)
	}
	_, _, err := readVarint([]byte{0x80, 0x80, 0x80, 0x80, 0x01})
	require.ErrorIs(t, err, ErrProtocol)
	_, _, err = readVarint([]byte{0x80})
	require.ErrorIs(t, err, ErrProtocol)
}

// Our CONNECT must decode with paho.mqtt.golang's 3.1.1 codec.
func TestEncodeConnectV3(t *testing.T) {
	cfg := &Config{Version: V311, ClientID: "me", KeepAlive: 30, Username: "u", Password: "p", CleanStart: true,
		Will: &Message{Topic: "w/t", Payload: []byte("gone"), QoS: 1, Retain: true}}
	cp, err := p3.ReadPacket(bytes.NewReader(encodeConnect(cfg)))
	require.NoError(t, err)
	c := cp.(*p3.ConnectPacket)
	require.Equal(t, "MQTT", c.ProtocolName)
	require.EqualValues(t, 4, c.ProtocolVersion)
	require.Equal(t, "me", c.ClientIdentifier)
	require.EqualValues(t, 30, c.Keepalive)
	require.True(t, c.CleanSession)
	require.True(t, c.UsernameFlag)
	require.Equal(t, "u", c.Username)
	require.Equal(t, []byte("p"), c.Password)
	require.True(t, c.WillFlag)
	require.True(t, c.WillRetain)
	require.EqualValues(t, 1, c.WillQos)
	require.Equal(t, "w/t", c.WillTopic)
	require.Equal(t, []byte("gone"), c.WillMessage)

	cfg = &Config{Version: V31, ClientID: "x", KeepAlive: 60}
	cp, err = p3.ReadPacket(bytes.NewReader(encodeConnect(cfg)))
	require.NoError(t, err)
	require.Equal(t, "MQIsdp", cp.(*p3.ConnectPacket).ProtocolName)
	require.False(t, cp.(*p3.ConnectPacket).UsernameFlag)
}

// Our MQTT 5 CONNECT, with every property, must decode with paho.golang's codec.
func TestEncodeConnectV5(t *testing.T) {
	cfg := &Config{Version: V5, ClientID: "c5", KeepAlive: 10, Username: "u", PasswordSet: true,
		SessionExpiry: ptr(uint32(3600)),
		ConnectProps: &ConnectProperties{ReceiveMaximum: ptr(uint16(7)), TopicAliasMaximum: ptr(uint16(3)),
			MaximumPacketSize: ptr(uint32(1000)), RequestProblemInfo: ptr(false), RequestRespInfo: ptr(true),
			WillDelayInterval: ptr(uint32(5)), AuthMethod: "m", AuthData: []byte{1, 2},
			User: []UserProperty{{"a", "1"}, {"a", "2"}}},
		Will: &Message{Topic: "w", Payload: []byte("bye"), Props: &Properties{ContentType: "text/plain",
			MessageExpiry: ptr(uint32(9)), PayloadFormat: ptr(byte(1)), ResponseTopic: "r", CorrelationData: []byte("cd"),
			User: []UserProperty{{"k", "v"}}}},
	}
	cp, err := p5.ReadPacket(bytes.NewReader(encodeConnect(cfg)))
	require.NoError(t, err)
	c := cp.Content.(*p5.Connect)
	require.EqualValues(t, 5, c.ProtocolVersion)
	require.Equal(t, "c5", c.ClientID)
	require.True(t, c.PasswordFlag)
	require.Empty(t, c.Password)
	p := c.Properties
	require.EqualValues(t, 3600, *p.SessionExpiryInterval)
	require.EqualValues(t, 7, *p.ReceiveMaximum)
	require.EqualValues(t, 3, *p.TopicAliasMaximum)
	require.EqualValues(t, 1000, *p.MaximumPacketSize)
	require.EqualValues(t, 0, *p.RequestProblemInfo)
	require.EqualValues(t, 1, *p.RequestResponseInfo)
	require.Equal(t, "m", p.AuthMethod)
	require.Equal(t, []byte{1, 2}, p.AuthData)
	require.Equal(t, []p5.User{{Key: "a", Value: "1"}, {Key: "a", Value: "2"}}, p.User)
	require.True(t, c.WillFlag)
	require.Equal(t, "w", c.WillTopic)
	require.Equal(t, []byte("bye"), c.WillMessage)
	wp := c.WillProperties
	require.EqualValues(t, 5, *wp.WillDelayInterval)
	require.Equal(t, "text/plain", wp.ContentType)
	require.EqualValues(t, 9, *wp.MessageExpiry)
	require.EqualValues(t, 1, *wp.PayloadFormat)
	require.Equal(t, "r", wp.ResponseTopic)
	require.Equal(t, []byte("cd"), wp.CorrelationData)
	require.Equal(t, []p5.User{{Key: "k", Value: "v"}}, wp.User)
}

func TestEncodePublish(t *testing.T) {
	props := appendPublishProps(nil, &Properties{ContentType: "ct", TopicAlias: ptr(uint16(2)), User: []UserProperty{{"x", "y"}}})
	b := appendPublish(nil, true, "a/b", 42, 1, true, true, props, []byte("hello"))
	require.Len(t, b, publishSize(3, len(props), 5, 1, true))
	cp, err := p5.ReadPacket(bytes.NewReader(b))
	require.NoError(t, err)
	pub := cp.Content.(*p5.Publish)
	require.Equal(t, "a/b", pub.Topic)
	require.EqualValues(t, 42, pub.PacketID)
	require.EqualValues(t, 1, pub.QoS)
	require.True(t, pub.Retain)
	require.True(t, pub.Duplicate)
	require.Equal(t, "ct", pub.Properties.ContentType)
	require.EqualValues(t, 2, *pub.Properties.TopicAlias)
	require.Equal(t, []byte("hello"), pub.Payload)

	b = appendPublish(nil, false, "t", 0, 0, false, false, nil, make([]byte, 200))
	require.Len(t, b, publishSize(1, 0, 200, 0, false))
	cp3, err := p3.ReadPacket(bytes.NewReader(b))
	require.NoError(t, err)
	require.Equal(t, "t", cp3.(*p3.PublishPacket).TopicName)
	require.Len(t, cp3.(*p3.PublishPacket).Payload, 200)
}

func TestEncodeDisconnect(t *testing.T) {
	require.Equal(t, []byte{0xe0, 0}, encodeDisconnect(V311, 0, &DisconnectProperties{ReasonString: "x"}))
	require.Equal(t, []byte{0xe0, 1, 0}, encodeDisconnect(V5, 0, nil))
	b := encodeDisconnect(V5, 0, &DisconnectProperties{SessionExpiry: ptr(uint32(10)), ReasonString: "done",
		ServerReference: "other", User: []UserProperty{{"k", "v"}}})
	cp, err := p5.ReadPacket(bytes.NewReader(b))
	require.NoError(t, err)
	d := cp.Content.(*p5.Disconnect)
	require.EqualValues(t, 10, *d.Properties.SessionExpiryInterval)
	require.Equal(t, "done", d.Properties.ReasonString)
	require.Equal(t, "other", d.Properties.ServerReference)
	require.Equal(t, []p5.User{{Key: "k", Value: "v"}}, d.Properties.User)
}

func TestDecodeAck(t *testing.T) {
	a, err := decodeAck(false, []byte{0, 7})
	require.NoError(t, err)
	require.Equal(t, ackInfo{pid: 7}, a)
	var buf bytes.Buffer
	pa := &p5.Puback{PacketID: 9, ReasonCode: 0x87, Properties: &p5.Properties{ReasonString: "nope"}}
	_, err = pa.WriteTo(&buf)
	require.NoError(t, err)
	pr := newPacketReader(&buf)
	first, body, err := pr.read()
	require.NoError(t, err)
	require.EqualValues(t, pktPuback, first>>4)
	a, err = decodeAck(true, body)
	require.NoError(t, err)
	require.Equal(t, ackInfo{pid: 9, reason: 0x87, text: "nope"}, a)
	_, err = decodeAck(true, []byte{1})
	require.ErrorIs(t, err, ErrProtocol)
}

// allocated returns how many bytes the process allocated while f ran.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// header returns a fixed header announcing a body of n bytes.
func header(first byte, n int) []byte { return appendVarint([]byte{first}, n) }

// The packet reader must not trust the remaining length: a packet over
// the limit is refused before its body is read, and memory grows with
// the bytes that arrive, not with the bytes announced.
func TestPacketReaderLimits(t *testing.T) {
	bigPublish := appendPublish(nil, false, "a/b", 7, 1, false, false, nil, bytes.Repeat([]byte("x"), 3<<20))
	for _, tc := range []struct {
		name  string
		limit int
		in    []byte
		err   string // "" means the packet is read
		body  []byte
	}{
		{name: "CONNACK of 256 MB", in: header(0x20, 268435455),
			err: "protocol error when communicating with broker: the broker sent a CONNACK packet of 268435460 bytes, over the client's limit of 1048576 bytes for that packet"},
		{name: "PUBACK just over 1 MiB", in: header(0x40, 1<<20-3),
			err: "the broker sent a PUBACK packet of 1048577 bytes, over the client's limit of 1048576 bytes"},
		{name: "DISCONNECT over the announced maximum", limit: 100, in: header(0xe0, 99),
			err: "the broker sent a DISCONNECT packet of 101 bytes, over the maximum packet size of 100 bytes the client announced"},
		{name: "PUBLISH over the announced maximum", limit: 1 << 20, in: bigPublish,
			err: "the broker sent a PUBLISH packet of 3145740 bytes, over the maximum packet size of 1048576 bytes the client announced"},
		{name: "at the announced maximum", limit: 5, in: []byte{0x40, 3, 0, 1, 0}, body: []byte{0, 1, 0}},
		{name: "large PUBLISH keeps topic and packet id", in: bigPublish, body: []byte{0, 3, 'a', '/', 'b', 0, 7}},
		{name: "QoS 0 PUBLISH keeps the topic", in: appendPublish(nil, false, "t", 0, 0, false, false, nil, []byte("payload")),
			body: []byte{0, 1, 't'}},
		{name: "PUBLISH shorter than its topic length", in: []byte{0x32, 3, 0, 9, 'a'}, body: []byte{0, 9, 'a'}},
		{name: "announced but not sent", limit: 64 << 20, in: append(header(0x40, 60<<20), 0, 1),
			err: "unexpected EOF"},
		{name: "PUBLISH payload not sent", in: append(header(0x32, 1000), 0, 1, 't', 0, 1),
			err: "unexpected EOF"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A PINGRESP after the packet shows the stream stays in step.
			pr := newPacketReader(bytes.NewReader(append(tc.in, 0xd0, 0)))
			pr.limit = tc.limit
			var (
				first byte
				body  []byte
				err   error
			)
			n := allocated(func() { first, body, err = pr.read() })
			require.Less(t, n, uint64(1<<20), "allocated %d bytes", n)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				if err != io.ErrUnexpectedEOF {
					require.ErrorIs(t, err, ErrProtocol)
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.in[0], first)
			require.Equal(t, tc.body, body)
			first, body, err = pr.read()
			require.NoError(t, err)
			require.EqualValues(t, pktPingresp, first>>4)
			require.Empty(t, body)
		})
	}
}

// The MQTT 5 Maximum Packet Size the client announces is the reader's
// limit; MQTT 3 announces none.
func TestIncomingLimit(t *testing.T) {
	require.Zero(t, incomingLimit(&Config{}))
	require.Zero(t, incomingLimit(&Config{Version: V5, ConnectProps: &ConnectProperties{}}))
	require.Equal(t, 500, incomingLimit(&Config{ConnectProps: &ConnectProperties{MaximumPacketSize: ptr(uint32(500))}}))
	require.Zero(t, incomingLimit(&Config{Version: V311, ConnectProps: &ConnectProperties{MaximumPacketSize: ptr(uint32(500))}}))
}
