// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// traceStream feeds a byte stream to a tracer in pieces of n bytes and
// returns the lines.
func traceStream(cfg *Config, sent, received []byte, n int) []string {
	var lines []string
	cfg.Trace = func(s string) { lines = append(lines, s) }
	c := newTraceConn(nil, cfg)
	feed := func(d *traceDir, b []byte, emit func(byte, []byte, int)) {
		for len(b) > 0 {
			k := min(n, len(b))
			d.feed(b[:k], emit)
			b = b[k:]
		}
	}
	feed(&c.out, sent, c.t.sending)
	feed(&c.in, received, c.t.received)
	return lines
}

func TestTraceLines(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 200000)
	for _, v := range []Version{V311, V5} {
		v5 := v == V5
		cfg := &Config{Version: v}
		var sent, received []byte
		sent = append(sent, encodeConnect(cfg)...)
		sent = appendPublish(sent, v5, "alerts", 1, 1, false, false, nil, []byte("smoke!"))
		sent = appendPublish(sent, v5, "big/t", 2, 2, true, true, nil, big)
		sent = appendPacket(sent, pktPubrel<<4|2, []byte{0, 2})
		sub := []byte{0, 3}
		if v5 {
			sub = append(sub, 0)
		}
		sub = append(append(sub, 0, 1, 'a', 1), 0, 3, 's', '/', 'b', 0x04|2)
		sent = appendPacket(sent, pktSubscribe<<4|2, sub)
		sent = appendPacket(sent, pktDisconnect<<4, nil)

		connack := []byte{0, 0}
		suback := []byte{0, 3}
		if v5 {
			// properties: assigned client identifier "auto-1"
			connack = append(connack, 9, propAssignedClientID, 0, 6, 'a', 'u', 't', 'o', '-', '1')
			suback = append(suback, 0)
		}
		suback = append(suback, 1, 0x87)
		received = appendPacket(received, pktConnack<<4, connack)
		received = appendPacket(received, pktPuback<<4, []byte{0, 1})
		received = appendPacket(received, pktPubrec<<4, []byte{0, 2})
		received = appendPacket(received, pktPubcomp<<4, []byte{0, 2})
		received = appendPacket(received, pktSuback<<4, suback)
		received = appendPublish(received, v5, "in/x", 7, 1, true, false, nil, []byte("hello"))
		received = appendPacket(received, pktDisconnect<<4, []byte{0x8e})

		id := "(null)"
		if v5 {
			id = "auto-1"
		}
		want := []string{
			"Client (null) sending CONNECT",
			"Client (null) sending PUBLISH (d0, q1, r0, m1, 'alerts', ... (6 bytes))",
			"Client (null) sending PUBLISH (d1, q2, r1, m2, 'big/t', ... (200000 bytes))",
			"Client (null) sending PUBREL (m2)",
			"Client (null) sending SUBSCRIBE (Mid: 3, Topic: a, QoS: 1, Options: 0x00)",
			"Client (null) sending SUBSCRIBE (Mid: 3, Topic: s/b, QoS: 2, Options: 0x04)",
			"Client (null) sending DISCONNECT",
			"Client " + id + " received CONNACK (0)",
			"Client " + id + " received PUBACK (Mid: 1, RC:0)",
			"Client " + id + " received PUBREC (Mid: 2)",
			"Client " + id + " received PUBCOMP (Mid: 2, RC:0)",
			"Client " + id + " received SUBACK",
			"Subscribed (mid: 3): 1, 135",
			"Client " + id + " received PUBLISH (d0, q1, r1, m7, 'in/x', ... (5 bytes))",
			"Received DISCONNECT (142)", // libmosquitto names no client here
		}
		for _, n := range []int{1, 3, 1000, 1 << 20} {
			require.Equal(t, want, traceStream(&Config{Version: v}, sent, received, n), "%s in pieces of %d bytes", v, n)
		}
	}
}

func TestTraceConnNamesTheClient(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var lines []string
	c := newTraceConn(a, &Config{Version: V311, ClientID: "me", Trace: func(s string) { lines = append(lines, s) }})
	go func() { _, _ = b.Read(make([]byte, 64)) }()
	_, err := c.Write(appendPacket(nil, pktPingreq<<4, nil))
	require.NoError(t, err)
	require.Equal(t, []string{"Client me sending PINGREQ"}, lines)
	require.False(t, strings.Contains(strings.Join(lines, ""), "password"))
}
