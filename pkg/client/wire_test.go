// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bytes"
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
