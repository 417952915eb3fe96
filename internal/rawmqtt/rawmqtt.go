// SPDX-License-Identifier: Apache-2.0

// Package rawmqtt builds and reads MQTT 3.1.1 and 5 packets byte by byte,
// for tests that must control exactly what goes on the wire: hostile
// input, packet identifiers, acknowledgement timing and session state
// across broker restarts. It is a test helper, not a client: it does no
// retries, keeps no state and checks only what it needs to decode.
package rawmqtt

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Packet types (the high nibble of the first byte).
const (
	CONNECT     byte = 1
	CONNACK     byte = 2
	PUBLISH     byte = 3
	PUBACK      byte = 4
	PUBREC      byte = 5
	PUBREL      byte = 6
	PUBCOMP     byte = 7
	SUBSCRIBE   byte = 8
	SUBACK      byte = 9
	UNSUBSCRIBE byte = 10
	UNSUBACK    byte = 11
	PINGREQ     byte = 12
	PINGRESP    byte = 13
	DISCONNECT  byte = 14
	AUTH        byte = 15
)

// MaxRemaining is the largest remaining length MQTT can encode.
const MaxRemaining = 268435455

// EncodeLength returns the variable byte integer encoding of n.
func EncodeLength(n int) []byte {
	var out []byte
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			return out
		}
	}
}

// Fixed prepends a fixed header (first byte and remaining length) to body.
func Fixed(first byte, body []byte) []byte {
	out := append([]byte{first}, EncodeLength(len(body))...)
	return append(out, body...)
}

func str(s string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(s)))
	return append(b, s...)
}

func u16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

// Str encodes s as an MQTT length-prefixed string without checking it, so
// tests can send invalid UTF-8.
func Str(s string) []byte { return str(s) }

// ConnectOptions describes a CONNECT packet.
type ConnectOptions struct {
	Version   byte // 4 (3.1.1) or 5; 0 means 4
	ClientID  string
	Clean     bool
	KeepAlive uint16
	Username  string // sent when not empty
	Password  string // sent when Username is not empty
	// SessionExpiry is the MQTT 5 session expiry interval in seconds.
	SessionExpiry uint32
	// WillQoS, when WillTopic is set, is the will's QoS bits (tests may send 3).
	WillTopic   string
	WillPayload []byte
	WillQoS     byte
}

// Connect encodes a CONNECT packet.
func Connect(o ConnectOptions) []byte {
	v := o.Version
	if v == 0 {
		v = 4
	}
	var flags byte
	if o.Clean {
		flags |= 0x02
	}
	if o.WillTopic != "" {
		flags |= 0x04 | (o.WillQoS&3)<<3
	}
	if o.Username != "" {
		flags |= 0x80 | 0x40
	}
	body := append(str("MQTT"), v, flags)
	body = append(body, u16(o.KeepAlive)...)
	if v == 5 {
		var props []byte
		if o.SessionExpiry > 0 {
			props = append(props, 0x11)
			props = binary.BigEndian.AppendUint32(props, o.SessionExpiry)
		}
		body = append(body, EncodeLength(len(props))...)
		body = append(body, props...)
	}
	body = append(body, str(o.ClientID)...)
	if o.WillTopic != "" {
		if v == 5 {
			body = append(body, 0) // no will properties
		}
		body = append(body, str(o.WillTopic)...)
		body = append(body, u16(uint16(len(o.WillPayload)))...)
		body = append(body, o.WillPayload...)
	}
	if o.Username != "" {
		body = append(body, str(o.Username)...)
		body = append(body, str(o.Password)...)
	}
	return Fixed(CONNECT<<4, body)
}

// PublishOptions describes a PUBLISH packet.
type PublishOptions struct {
	Version  byte // 4 or 5; 0 means 4
	Topic    []byte
	Payload  []byte
	QoS      byte // the two QoS bits as sent; tests may send 3
	Retain   bool
	Dup      bool
	PacketID uint16 // sent when QoS > 0
}

// Publish encodes a PUBLISH packet. The topic is raw bytes so tests can send
// invalid UTF-8.
func Publish(o PublishOptions) []byte {
	first := PUBLISH<<4 | (o.QoS&3)<<1
	if o.Retain {
		first |= 1
	}
	if o.Dup {
		first |= 0x08
	}
	body := binary.BigEndian.AppendUint16(nil, uint16(len(o.Topic)))
	body = append(body, o.Topic...)
	if o.QoS > 0 {
		body = append(body, u16(o.PacketID)...)
	}
	if o.Version == 5 {
		body = append(body, 0)
	}
	body = append(body, o.Payload...)
	return Fixed(first, body)
}

// Subscribe encodes a SUBSCRIBE for one filter.
func Subscribe(version byte, id uint16, filter string, qos byte) []byte {
	body := u16(id)
	if version == 5 {
		body = append(body, 0)
	}
	body = append(body, str(filter)...)
	body = append(body, qos)
	return Fixed(SUBSCRIBE<<4|0x02, body)
}

// Ack encodes a PUBACK, PUBREC, PUBREL or PUBCOMP with reason Success.
func Ack(typ byte, id uint16) []byte {
	first := typ << 4
	if typ == PUBREL {
		first |= 0x02
	}
	return Fixed(first, u16(id))
}

// Pingreq encodes a PINGREQ.
func Pingreq() []byte { return []byte{PINGREQ << 4, 0} }

// Disconnect encodes a DISCONNECT with reason Success.
func Disconnect() []byte { return []byte{DISCONNECT << 4, 0} }

// Packet is a decoded packet, with the fields tests look at.
type Packet struct {
	Type  byte
	Flags byte
	Body  []byte // everything after the fixed header

	// PUBLISH
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	Dup     bool

	PacketID       uint16 // PUBLISH (QoS > 0), acknowledgements, SUBACK
	Reason         byte   // CONNACK return/reason code, ack reason (5), DISCONNECT reason
	SessionPresent bool   // CONNACK
	Granted        []byte // SUBACK codes
}

func (p *Packet) String() string {
	switch p.Type {
	case PUBLISH:
		return fmt.Sprintf("PUBLISH(q%d id=%d %q %d bytes)", p.QoS, p.PacketID, p.Topic, len(p.Payload))
	case CONNACK:
		return fmt.Sprintf("CONNACK(%d sp=%v)", p.Reason, p.SessionPresent)
	}
	return fmt.Sprintf("packet(type=%d id=%d reason=%d)", p.Type, p.PacketID, p.Reason)
}

// ErrMalformed is returned for a packet the reader cannot decode.
var ErrMalformed = errors.New("malformed packet")

// Conn is a raw MQTT connection.
type Conn struct {
	net.Conn
	Version byte
	r       *bufio.Reader
}

// Dial opens a TCP connection for protocol version (4 or 5).
func Dial(addr string, version byte) (*Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return NewConn(c, version), nil
}

// NewConn wraps an open connection.
func NewConn(c net.Conn, version byte) *Conn {
	if version == 0 {
		version = 4
	}
	return &Conn{Conn: c, Version: version, r: bufio.NewReaderSize(c, 64<<10)}
}

// Send writes raw bytes with a write deadline.
func (c *Conn) Send(b []byte) error {
	_ = c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Write(b)
	return err
}

// Read reads one packet, waiting at most timeout.
func (c *Conn) Read(timeout time.Duration) (*Packet, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	first, err := c.r.ReadByte()
	if err != nil {
		return nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		b, err := c.r.ReadByte()
		if err != nil {
			return nil, err
		}
		n += int(b&0x7f) * mult
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return nil, ErrMalformed
		}
		mult *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, err
	}
	return decode(c.Version, first, body)
}

// WaitClosed reads until the peer closes the connection or timeout passes;
// it returns the packets read and an error if the connection stayed open.
func (c *Conn) WaitClosed(timeout time.Duration) ([]*Packet, error) {
	deadline := time.Now().Add(timeout)
	var got []*Packet
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return got, fmt.Errorf("connection still open after %s (read %d packets)", timeout, len(got))
		}
		p, err := c.Read(left)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return got, fmt.Errorf("connection still open after %s (read %d packets)", timeout, len(got))
			}
			return got, nil // EOF, reset or malformed trailing bytes: closed
		}
		got = append(got, p)
	}
}

// Connect sends CONNECT and reads the CONNACK.
func (c *Conn) Connect(o ConnectOptions) (*Packet, error) {
	o.Version = c.Version
	if err := c.Send(Connect(o)); err != nil {
		return nil, err
	}
	p, err := c.Read(10 * time.Second)
	if err != nil {
		return nil, fmt.Errorf("read CONNACK: %w", err)
	}
	if p.Type != CONNACK {
		return p, fmt.Errorf("want CONNACK, got %s", p)
	}
	if p.Reason != 0 {
		return p, fmt.Errorf("connection refused: code %d", p.Reason)
	}
	return p, nil
}

// Subscribe sends SUBSCRIBE and reads the SUBACK, skipping other packets
// (a resumed session may deliver queued messages first); the skipped
// packets are returned.
func (c *Conn) Subscribe(id uint16, filter string, qos byte) (*Packet, []*Packet, error) {
	if err := c.Send(Subscribe(c.Version, id, filter, qos)); err != nil {
		return nil, nil, err
	}
	var skipped []*Packet
	for {
		p, err := c.Read(10 * time.Second)
		if err != nil {
			return nil, skipped, fmt.Errorf("read SUBACK: %w", err)
		}
		if p.Type == SUBACK && p.PacketID == id {
			if len(p.Granted) != 1 || p.Granted[0] >= 0x80 {
				return p, skipped, fmt.Errorf("subscription to %q refused: %v", filter, p.Granted)
			}
			return p, skipped, nil
		}
		skipped = append(skipped, p)
	}
}

func decode(version byte, first byte, body []byte) (*Packet, error) {
	p := &Packet{Type: first >> 4, Flags: first & 0x0f, Body: body}
	rd := func(i int) (byte, error) {
		if i >= len(body) {
			return 0, ErrMalformed
		}
		return body[i], nil
	}
	id := func(i int) (uint16, error) {
		if i+2 > len(body) {
			return 0, ErrMalformed
		}
		return binary.BigEndian.Uint16(body[i:]), nil
	}
	var err error
	switch p.Type {
	case CONNACK:
		var f byte
		if f, err = rd(0); err != nil {
			return nil, err
		}
		p.SessionPresent = f&1 == 1
		if p.Reason, err = rd(1); err != nil {
			return nil, err
		}
	case PUBLISH:
		p.QoS = (p.Flags >> 1) & 3
		p.Retain = p.Flags&1 == 1
		p.Dup = p.Flags&8 == 8
		tl, err := id(0)
		if err != nil {
			return nil, err
		}
		i := 2 + int(tl)
		if i > len(body) {
			return nil, ErrMalformed
		}
		p.Topic = string(body[2:i])
		if p.QoS > 0 {
			if p.PacketID, err = id(i); err != nil {
				return nil, err
			}
			i += 2
		}
		if version == 5 {
			n, w, err := varint(body[i:])
			if err != nil {
				return nil, err
			}
			i += w + n
			if i > len(body) {
				return nil, ErrMalformed
			}
		}
		p.Payload = body[i:]
	case PUBACK, PUBREC, PUBREL, PUBCOMP, UNSUBACK:
		if p.PacketID, err = id(0); err != nil {
			return nil, err
		}
		if version == 5 && len(body) > 2 && p.Type != UNSUBACK {
			p.Reason = body[2]
		}
	case SUBACK:
		if p.PacketID, err = id(0); err != nil {
			return nil, err
		}
		i := 2
		if version == 5 {
			n, w, err := varint(body[i:])
			if err != nil {
				return nil, err
			}
			i += w + n
			if i > len(body) {
				return nil, ErrMalformed
			}
		}
		p.Granted = body[i:]
	case DISCONNECT:
		if len(body) > 0 {
			p.Reason = body[0]
		}
	}
	return p, nil
}

func varint(b []byte) (n, width int, err error) {
	mult := 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, ErrMalformed
		}
		n += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return n, i + 1, nil
		}
		mult *= 128
	}
	return 0, 0, ErrMalformed
}
