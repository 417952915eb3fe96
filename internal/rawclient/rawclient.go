// SPDX-License-Identifier: Apache-2.0

// Package rawclient speaks MQTT packet by packet over one connection, for
// tests that control packet IDs, properties and timing exactly and see every
// byte the broker sends (the broker's and the mosquitto.conf tests, which run
// the same checks against mqtt broker and mosquitto). internal/rawmqtt builds
// raw bytes instead, for input no encoder would produce.
package rawclient

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/mqttpk"
	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// Client speaks MQTT packet by packet, so that tests control packet IDs,
// properties and timing exactly and see every byte the broker sends.
type Client struct {
	t       testing.TB
	Conn    net.Conn
	r       *bufio.Reader
	version byte
}

// Dial opens a TCP connection to addr for protocol version 4 (3.1.1) or 5.
func Dial(t testing.TB, addr string, version byte) *Client {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	return New(t, conn, version)
}

// New speaks MQTT version over an open connection.
func New(t testing.TB, conn net.Conn, version byte) *Client {
	t.Cleanup(func() { conn.Close() })
	return &Client{t: t, Conn: conn, r: bufio.NewReader(conn), version: version}
}

// Send encodes and writes pk.
func (c *Client) Send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = c.version
	var buf bytes.Buffer
	err := mqttpk.Encode(&pk, &buf)
	require.NoError(c.t, err)
	_, err = c.Conn.Write(buf.Bytes())
	require.NoError(c.t, err)
}

// RecvRaw reads one packet and returns it with its encoded body (after the
// fixed header), or an error (io.EOF when the broker closed the connection).
func (c *Client) RecvRaw(timeout time.Duration) (packets.Packet, []byte, error) {
	var pk packets.Packet
	if err := c.Conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return pk, nil, err // no require: also used from helper goroutines
	}
	pk.ProtocolVersion = c.version
	hb, err := c.r.ReadByte()
	if err != nil {
		return pk, nil, err
	}
	if err := pk.FixedHeader.Decode(hb); err != nil {
		return pk, nil, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return pk, nil, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return pk, nil, err
	}
	err = mqttpk.Decode(&pk, body)
	return pk, body, err
}

// Recv reads one packet, failing the test on error or after 5 seconds.
func (c *Client) Recv() packets.Packet {
	c.t.Helper()
	pk, _, err := c.RecvRaw(5 * time.Second)
	require.NoError(c.t, err)
	return pk
}

// ExpectClosed waits for the broker to close the connection, skipping
// packets (e.g. a DISCONNECT), and returns the packets read before.
func (c *Client) ExpectClosed() []packets.Packet {
	c.t.Helper()
	var got []packets.Packet
	for {
		pk, _, err := c.RecvRaw(5 * time.Second)
		if err != nil {
			var ne net.Error
			require.False(c.t, errors.As(err, &ne) && ne.Timeout(), "connection still open after %d packets", len(got))
			require.False(c.t, errors.Is(err, os.ErrDeadlineExceeded))
			return got
		}
		got = append(got, pk)
	}
}

// ConnectPacket builds a CONNECT; user "" means no username.
func (c *Client) ConnectPacket(id, user, pass string) packets.Packet {
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Connect},
		Connect: packets.ConnectParams{
			ProtocolName:     []byte("MQTT"),
			Clean:            true,
			Keepalive:        30,
			ClientIdentifier: id,
		},
	}
	pk.Connect.ProtocolName = []byte("MQTT")
	if user != "" {
		pk.Connect.UsernameFlag = true
		pk.Connect.Username = []byte(user)
	}
	if pass != "" {
		pk.Connect.PasswordFlag = true
		pk.Connect.Password = []byte(pass)
	}
	return pk
}

// Connect sends CONNECT and returns the CONNACK reason code.
func (c *Client) Connect(id, user, pass string) byte {
	c.t.Helper()
	c.Send(c.ConnectPacket(id, user, pass))
	ack := c.Recv()
	require.Equal(c.t, packets.Connack, ack.FixedHeader.Type)
	return ack.ReasonCode
}

// MustConnect connects and requires success.
func (c *Client) MustConnect(id, user, pass string) {
	c.t.Helper()
	require.Equal(c.t, byte(0), c.Connect(id, user, pass))
}

// Subscribe subscribes to filters at qos and returns the SUBACK codes.
func (c *Client) Subscribe(id uint16, qos byte, filters ...string) []byte {
	c.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: qos})
	}
	c.Send(pk)
	ack := c.Recv()
	require.Equal(c.t, packets.Suback, ack.FixedHeader.Type)
	require.Equal(c.t, id, ack.PacketID)
	return ack.ReasonCodes
}

// Publish sends a PUBLISH.
func (c *Client) Publish(id uint16, qos byte, topic, payload string, retain bool) {
	c.t.Helper()
	c.Send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		PacketID:    id,
		TopicName:   topic,
		Payload:     []byte(payload),
	})
}

// Ack acknowledges a received QoS 1 or 2 PUBLISH (PUBACK, or PUBREC then
// PUBREL/PUBCOMP handled by the caller).
func (c *Client) Ack(pk packets.Packet) {
	c.t.Helper()
	switch pk.FixedHeader.Qos {
	case 1:
		c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	case 2:
		c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID})
	}
}

// Ping round-trips a PINGREQ: everything the broker sent before the
// PINGRESP is returned, which proves the broker processed earlier packets.
func (c *Client) Ping() []packets.Packet {
	c.t.Helper()
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	var got []packets.Packet
	for {
		pk := c.Recv()
		if pk.FixedHeader.Type == packets.Pingresp {
			return got
		}
		got = append(got, pk)
	}
}

// WaitFor polls cond until it holds, failing the test after 10 seconds.
func WaitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

// SendHex writes raw bytes given in hex (spaces allowed).
func (c *Client) SendHex(s string) {
	c.t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	require.NoError(c.t, err)
	_, err = c.Conn.Write(b)
	require.NoError(c.t, err)
}

// wire re-encodes a received packet whole: its fixed header, then body.
func wire(pk packets.Packet, body []byte) []byte {
	fh := pk.FixedHeader
	first := fh.Type<<4 | fh.Qos<<1
	if fh.Dup {
		first |= 8
	}
	if fh.Retain {
		first |= 1
	}
	return append(append([]byte{first}, rawmqtt.EncodeLength(len(body))...), body...)
}

// RecvHex reads one packet and returns it whole, fixed header included, as
// hex.
func (c *Client) RecvHex() string {
	c.t.Helper()
	pk, body, err := c.RecvRaw(5 * time.Second)
	require.NoError(c.t, err)
	return hex.EncodeToString(wire(pk, body))
}

// ClosedRaw waits for the broker to close the connection and returns the
// packets it sent before, each as its bytes.
func (c *Client) ClosedRaw() [][]byte {
	c.t.Helper()
	var got [][]byte
	for {
		pk, body, err := c.RecvRaw(5 * time.Second)
		if err != nil {
			var ne net.Error
			require.False(c.t, errors.As(err, &ne) && ne.Timeout(), "connection still open after %d packets", len(got))
			return got
		}
		got = append(got, wire(pk, body))
	}
}

// Suback sends pk and returns the SUBACK's reason codes.
func (c *Client) Suback(pk packets.Packet) []byte {
	c.t.Helper()
	c.Send(pk)
	ack := c.Recv()
	require.Equal(c.t, packets.Suback, ack.FixedHeader.Type)
	require.Equal(c.t, pk.PacketID, ack.PacketID)
	return ack.ReasonCodes
}

// Collect reads publishes until a ping's answer, acknowledging QoS 1.
// Deliveries may follow the PINGRESP: use it to check that nothing more
// came, not to wait for expected messages.
func (c *Client) Collect() []packets.Packet {
	c.t.Helper()
	var got []packets.Packet
	for _, pk := range c.Ping() {
		require.Equal(c.t, packets.Publish, pk.FixedHeader.Type)
		got = append(got, pk)
		if pk.FixedHeader.Qos == 1 {
			c.Ack(pk)
		}
	}
	return got
}
