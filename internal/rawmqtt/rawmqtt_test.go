// SPDX-License-Identifier: Apache-2.0

package rawmqtt

import (
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestEncodeLength(t *testing.T) {
	for n, want := range map[int][]byte{
		0:            {0x00},
		127:          {0x7f},
		128:          {0x80, 0x01},
		16383:        {0xff, 0x7f},
		16384:        {0x80, 0x80, 0x01},
		MaxRemaining: {0xff, 0xff, 0xff, 0x7f},
	} {
		require.Equal(t, want, EncodeLength(n), "%d", n)
	}
}

// readBack writes b on one end of a pipe and decodes it on the other.
func readBack(t *testing.T, version byte, b []byte) *Packet {
	t.Helper()
	a, z := net.Pipe()
	defer a.Close()
	defer z.Close()
	go func() { _, _ = a.Write(b) }()
	p, err := NewConn(z, version).Read(time.Second)
	require.NoError(t, err)
	return p
}

func TestRoundTrip(t *testing.T) {
	for _, v := range []byte{4, 5} {
		p := readBack(t, v, Publish(PublishOptions{Version: v, Topic: []byte("a/b"), Payload: []byte("hi"), QoS: 2, Retain: true, Dup: true, PacketID: 7}))
		require.Equal(t, PUBLISH, p.Type)
		require.Equal(t, "a/b", p.Topic)
		require.Equal(t, []byte("hi"), p.Payload)
		require.Equal(t, byte(2), p.QoS)
		require.Equal(t, uint16(7), p.PacketID)
		require.True(t, p.Retain)
		require.True(t, p.Dup)

		p = readBack(t, v, Publish(PublishOptions{Version: v, Topic: []byte("t"), Payload: []byte("x")}))
		require.Equal(t, byte(0), p.QoS)
		require.Equal(t, uint16(0), p.PacketID)
		require.Equal(t, []byte("x"), p.Payload)

		for _, typ := range []byte{PUBACK, PUBREC, PUBREL, PUBCOMP} {
			p = readBack(t, v, Ack(typ, 513))
			require.Equal(t, typ, p.Type)
			require.Equal(t, uint16(513), p.PacketID)
		}
	}
	p := readBack(t, 4, Fixed(SUBACK<<4, []byte{0, 9, 1}))
	require.Equal(t, uint16(9), p.PacketID)
	require.Equal(t, []byte{1}, p.Granted)
	p = readBack(t, 5, Fixed(SUBACK<<4, []byte{0, 9, 0, 0x80}))
	require.Equal(t, []byte{0x80}, p.Granted)
	p = readBack(t, 5, Fixed(CONNACK<<4, []byte{1, 0x86, 0}))
	require.True(t, p.SessionPresent)
	require.Equal(t, byte(0x86), p.Reason)
}

func TestConnectEncoding(t *testing.T) {
	b := Connect(ConnectOptions{Version: 5, ClientID: "id", Clean: true, KeepAlive: 30, Username: "u", Password: "p", SessionExpiry: 60})
	want := []byte{0x10, 26,
		0, 4, 'M', 'Q', 'T', 'T', 5, 0xc2, 0, 30,
		5, 0x11, 0, 0, 0, 60,
		0, 2, 'i', 'd', 0, 1, 'u', 0, 1, 'p'}
	require.Equal(t, want, b)
	b = Connect(ConnectOptions{ClientID: "i", WillTopic: "w", WillPayload: []byte("x"), WillQoS: 3})
	require.Equal(t, byte(0x04|0x18), b[9], "will flag and QoS bits")
}

func TestReadMalformed(t *testing.T) {
	a, z := net.Pipe()
	defer a.Close()
	defer z.Close()
	go func() { _, _ = a.Write([]byte{0x30, 0xff, 0xff, 0xff, 0xff}) }()
	_, err := NewConn(z, 4).Read(time.Second)
	require.ErrorIs(t, err, ErrMalformed)
}
