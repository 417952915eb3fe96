// SPDX-License-Identifier: Apache-2.0

package mosqconf

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/mqttpk"
)

// rawClient speaks MQTT packet by packet, so that tests control packet IDs,
// properties and timing exactly and see every byte the broker sends. It is
// a copy of pkg/broker's test helper (without ack), for the conf tests
// that run the same file on mqtt broker and on mosquitto.
type rawClient struct {
	t       testing.TB
	conn    net.Conn
	r       *bufio.Reader
	version byte
}

// dialRaw opens a TCP connection to addr for protocol version 4 (3.1.1) or 5.
func dialRaw(t testing.TB, addr string, version byte) *rawClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	return newRawClient(t, conn, version)
}

// newRawClient speaks MQTT version over an open connection.
func newRawClient(t testing.TB, conn net.Conn, version byte) *rawClient {
	t.Cleanup(func() { conn.Close() })
	return &rawClient{t: t, conn: conn, r: bufio.NewReader(conn), version: version}
}

// send encodes and writes pk.
func (c *rawClient) send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = c.version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	default:
		err = fmt.Errorf("rawClient cannot send packet type %d", pk.FixedHeader.Type)
	}
	require.NoError(c.t, err)
	_, err = c.conn.Write(buf.Bytes())
	require.NoError(c.t, err)
}

// recvRaw reads one packet and returns it with its encoded body (after the
// fixed header), or an error (io.EOF when the broker closed the connection).
func (c *rawClient) recvRaw(timeout time.Duration) (packets.Packet, []byte, error) {
	var pk packets.Packet
	if err := c.conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
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

// recv reads one packet, failing the test on error or after 5 seconds.
func (c *rawClient) recv() packets.Packet {
	c.t.Helper()
	pk, _, err := c.recvRaw(5 * time.Second)
	require.NoError(c.t, err)
	return pk
}

// expectClosed waits for the broker to close the connection, skipping
// packets (e.g. a DISCONNECT), and returns the packets read before.
func (c *rawClient) expectClosed() []packets.Packet {
	c.t.Helper()
	var got []packets.Packet
	for {
		pk, _, err := c.recvRaw(5 * time.Second)
		if err != nil {
			var ne net.Error
			require.False(c.t, errors.As(err, &ne) && ne.Timeout(), "connection still open after %d packets", len(got))
			require.False(c.t, errors.Is(err, os.ErrDeadlineExceeded))
			return got
		}
		got = append(got, pk)
	}
}

// connectPacket builds a CONNECT; user "" means no username.
func (c *rawClient) connectPacket(id, user, pass string) packets.Packet {
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

// connect sends CONNECT and returns the CONNACK reason code.
func (c *rawClient) connect(id, user, pass string) byte {
	c.t.Helper()
	c.send(c.connectPacket(id, user, pass))
	ack := c.recv()
	require.Equal(c.t, packets.Connack, ack.FixedHeader.Type)
	return ack.ReasonCode
}

// mustConnect connects and requires success.
func (c *rawClient) mustConnect(id, user, pass string) {
	c.t.Helper()
	require.Equal(c.t, byte(0), c.connect(id, user, pass))
}

// subscribe subscribes to filters at qos and returns the SUBACK codes.
func (c *rawClient) subscribe(id uint16, qos byte, filters ...string) []byte {
	c.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: id}
	for _, f := range filters {
		pk.Filters = append(pk.Filters, packets.Subscription{Filter: f, Qos: qos})
	}
	c.send(pk)
	ack := c.recv()
	require.Equal(c.t, packets.Suback, ack.FixedHeader.Type)
	require.Equal(c.t, id, ack.PacketID)
	return ack.ReasonCodes
}

// publish sends a PUBLISH.
func (c *rawClient) publish(id uint16, qos byte, topic, payload string, retain bool) {
	c.t.Helper()
	c.send(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain},
		PacketID:    id,
		TopicName:   topic,
		Payload:     []byte(payload),
	})
}

// ping round-trips a PINGREQ: everything the broker sent before the
// PINGRESP is returned, which proves the broker processed earlier packets.
func (c *rawClient) ping() []packets.Packet {
	c.t.Helper()
	c.send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
	var got []packets.Packet
	for {
		pk := c.recv()
		if pk.FixedHeader.Type == packets.Pingresp {
			return got
		}
		got = append(got, pk)
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
