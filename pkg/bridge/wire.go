// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttkit/mqttkit/internal/mqttpk"
)

// conn is one MQTT client connection of a bridge, local or remote. The
// bridge needs exact control over what it sends and when it acknowledges
// (a message is acknowledged on one side only once the other side
// acknowledged it, and packet identifiers follow mosquitto's), which the
// client libraries do not give; mochi's packets package encodes and
// decodes the packets.
type conn struct {
	c       net.Conn
	r       *bufio.Reader
	version byte // 3, 4 or 5 (without mosquitto's bridge bit)
	// maxIn bounds the packets read (0: the MQTT maximum).
	maxIn int

	wmu sync.Mutex
	buf bytes.Buffer
}

func newConn(c net.Conn, version byte) *conn {
	return &conn{c: c, r: bufio.NewReaderSize(c, 4096), version: version}
}

// varintLen is the size of n as an MQTT variable byte integer.
func varintLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16384:
		return 2
	case n < 2097152:
		return 3
	}
	return 4
}

// write encodes and sends pk. pk.ProtocolVersion is set to the
// connection's version unless it is a CONNECT (which carries the wire
// version, bridge bit included).
func (c *conn) write(pk *packets.Packet) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if pk.FixedHeader.Type != packets.Connect {
		pk.ProtocolVersion = c.version
	}
	c.buf.Reset()
	switch pk.FixedHeader.Type {
	case packets.Pubrel, packets.Subscribe, packets.Unsubscribe:
		pk.FixedHeader.Qos = 1 // their fixed header flags are 0010
	}
	err := mqttpk.Encode(pk, &c.buf)
	if err != nil {
		return err
	}
	_ = c.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	_, err = c.c.Write(c.buf.Bytes())
	return err
}

// writeTimeout bounds one write: a peer that stops reading for this long
// is treated as gone (the bridge reconnects).
const writeTimeout = 60 * time.Second

// read reads and decodes the next packet.
func (c *conn) read() (*packets.Packet, error) {
	first, err := c.r.ReadByte()
	if err != nil {
		return nil, err
	}
	pk := &packets.Packet{ProtocolVersion: c.version}
	if err := pk.FixedHeader.Decode(first); err != nil {
		return nil, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return nil, err
	}
	pk.FixedHeader.Remaining = n
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, err
	}
	// A PUBLISH above bridge_max_packet_size is decoded (for its packet
	// id) and marked Ignore: acknowledged and dropped.
	pk.Ignore = c.maxIn > 0 && 1+varintLen(n)+n > c.maxIn && pk.FixedHeader.Type == packets.Publish
	switch pk.FixedHeader.Type {
	case packets.Connect, packets.Subscribe, packets.Unsubscribe, packets.Auth:
		// Packets a server does not send (mosquitto answers a PINGREQ
		// from the remote, so that one is taken).
		err = fmt.Errorf("unexpected packet type %d", pk.FixedHeader.Type)
	default:
		err = mqttpk.Decode(pk, body)
	}
	if err != nil {
		return nil, err
	}
	return pk, nil
}

func (c *conn) close() error { return c.c.Close() }

// ids hands out packet identifiers the way mosquitto does: one counter per
// connection that goes on across reconnects, skipping identifiers still in
// use.
type ids struct {
	last  uint16
	inUse map[uint16]bool
}

func (m *ids) next() uint16 {
	if m.inUse == nil {
		m.inUse = map[uint16]bool{}
	}
	for range 65536 {
		m.last++
		if m.last == 0 {
			m.last = 1
		}
		if !m.inUse[m.last] {
			m.inUse[m.last] = true
			return m.last
		}
	}
	return 0 // all 65535 in use: cannot happen with receive maximum in force
}

func (m *ids) free(id uint16) { delete(m.inUse, id) }

func (m *ids) reset() { m.inUse = nil }
