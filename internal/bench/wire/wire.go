// SPDX-License-Identifier: Apache-2.0

// Package wire is a minimal MQTT 3.1.1 client for the benchmark load
// generator. It speaks just enough of the protocol (CONNECT, PUBLISH at
// QoS 0/1/2 in both directions, SUBSCRIBE, DISCONNECT) to drive a broker
// hard without being the bottleneck: outgoing QoS 1/2 publishes are
// pipelined up to a window, writes are batched and flushed only when the
// sender would wait, and the reader acknowledges in batches.
//
// It is deliberately not pkg/client: the same small client drives both
// brokers, so broker comparisons do not depend on a full client library's
// overheads, and it cannot be slowed or broken by changes to the product.
package wire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Packet types (MQTT 3.1.1 section 2.2.1).
const (
	typeConnect     = 1
	typeConnack     = 2
	typePublish     = 3
	typePuback      = 4
	typePubrec      = 5
	typePubrel      = 6
	typePubcomp     = 7
	typeSubscribe   = 8
	typeSuback      = 9
	typePingresp    = 13
	typeDisconnect  = 14
	maxRemainingLen = 268435455
)

// ErrClosed is returned by operations on a closed connection.
var ErrClosed = errors.New("wire: connection closed")

// Handler receives one incoming application message. It runs on the
// connection's reader goroutine; topic and payload are only valid during
// the call.
type Handler func(topic, payload []byte, qos byte)

// Options configures a connection.
type Options struct {
	Addr      string        // host:port
	ClientID  string        // may be empty: the broker assigns one
	KeepAlive uint16        // seconds; 0 disables keep alive
	Window    int           // outgoing QoS 1/2 messages in flight; default 20, mosquitto's limit
	Timeout   time.Duration // dial plus CONNACK; default 10 s
	OnMessage Handler       // nil ignores incoming messages
}

// Conn is one connected client.
type Conn struct {
	nc        net.Conn
	r         *bufio.Reader
	onMessage Handler

	wmu    sync.Mutex
	w      *bufio.Writer
	nextID uint16

	window chan struct{}
	acked  atomic.Int64
	suback chan []byte

	done    chan struct{}
	exited  chan struct{} // closed when readLoop has returned
	errOnce sync.Once
	err     error
}

// ConnectPacket returns the bytes of a minimal MQTT 3.1.1 CONNECT with a
// clean session.
func ConnectPacket(clientID string, keepAlive uint16) []byte {
	var vh []byte
	vh = appendString(vh, "MQTT")
	vh = append(vh, 4, 0x02) // protocol level 3.1.1, clean session
	vh = binary.BigEndian.AppendUint16(vh, keepAlive)
	vh = appendString(vh, clientID)
	return appendPacket(nil, typeConnect<<4, vh)
}

// Dial connects, sends CONNECT and waits for a successful CONNACK.
func Dial(ctx context.Context, o Options) (*Conn, error) {
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = nc.SetDeadline(dl)
	}
	if _, err := nc.Write(ConnectPacket(o.ClientID, o.KeepAlive)); err != nil {
		nc.Close()
		return nil, err
	}
	r := bufio.NewReaderSize(nc, 64<<10)
	if err := ReadConnack(r); err != nil {
		nc.Close()
		return nil, err
	}
	_ = nc.SetDeadline(time.Time{})
	win := o.Window
	if win <= 0 {
		// mosquitto disconnects a client with more than max_inflight_messages
		// (20) incoming QoS 2 messages unacknowledged, even over 3.1.1.
		win = 20
	}
	if win > 65535 {
		win = 65535
	}
	c := &Conn{
		nc:        nc,
		r:         r,
		onMessage: o.OnMessage,
		w:         bufio.NewWriterSize(nc, 64<<10),
		window:    make(chan struct{}, win),
		suback:    make(chan []byte, 1),
		done:      make(chan struct{}),
		exited:    make(chan struct{}),
	}
	go c.readLoop()
	return c, nil
}

// ReadConnack reads one CONNACK and returns an error unless it accepts
// the connection.
func ReadConnack(r io.Reader) error {
	var b [4]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return fmt.Errorf("read CONNACK: %w", err)
	}
	if b[0]>>4 != typeConnack || b[1] != 2 {
		return fmt.Errorf("expected CONNACK, got packet bytes % x", b)
	}
	if b[3] != 0 {
		return fmt.Errorf("connection refused: CONNACK return code %d", b[3])
	}
	return nil
}

// Done is closed when the connection ends.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the connection ended, or nil while it is up.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Acked returns how many outgoing QoS 1/2 messages were acknowledged
// (PUBACK or PUBCOMP).
func (c *Conn) Acked() int64 { return c.acked.Load() }

func (c *Conn) fail(err error) {
	c.errOnce.Do(func() {
		c.err = err
		close(c.done)
		c.nc.Close()
	})
}

// Publish queues one PUBLISH. At QoS 1 and 2 it first takes a slot of the
// in-flight window, flushing and waiting when the window is full. It does
// not flush otherwise: call Flush when done (or after each message when
// latency matters).
func (c *Conn) Publish(ctx context.Context, topic string, payload []byte, qos byte) error {
	return c.publish(ctx, topic, payload, qos, false)
}

// PublishRetained is Publish with the retain flag set.
func (c *Conn) PublishRetained(ctx context.Context, topic string, payload []byte, qos byte) error {
	return c.publish(ctx, topic, payload, qos, true)
}

func (c *Conn) publish(ctx context.Context, topic string, payload []byte, qos byte, retain bool) error {
	if qos > 2 {
		return fmt.Errorf("wire: invalid QoS %d", qos)
	}
	if qos > 0 {
		select {
		case c.window <- struct{}{}:
		default:
			if err := c.Flush(); err != nil {
				return err
			}
			select {
			case c.window <- struct{}{}:
			case <-c.done:
				return c.closedErr()
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	select {
	case <-c.done:
		return c.closedErr()
	default:
	}
	rl := 2 + len(topic) + len(payload)
	if qos > 0 {
		rl += 2
	}
	if rl > maxRemainingLen {
		return fmt.Errorf("wire: message too large (%d bytes)", rl)
	}
	var hdr [5]byte
	hdr[0] = typePublish<<4 | qos<<1
	if retain {
		hdr[0] |= 1
	}
	n := 1 + putRemainingLength(hdr[1:], rl)
	_, _ = c.w.Write(hdr[:n])
	_, _ = c.w.Write([]byte{byte(len(topic) >> 8), byte(len(topic))})
	_, _ = c.w.WriteString(topic)
	if qos > 0 {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		_, _ = c.w.Write([]byte{byte(c.nextID >> 8), byte(c.nextID)})
	}
	if _, err := c.w.Write(payload); err != nil {
		c.fail(err)
		return err
	}
	return nil
}

// Flush writes buffered packets to the socket.
func (c *Conn) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.w.Flush(); err != nil {
		c.fail(err)
		return c.closedErr()
	}
	return nil
}

// WaitAcked flushes and waits until every outgoing QoS 1/2 message has
// been acknowledged.
func (c *Conn) WaitAcked(ctx context.Context) error {
	if err := c.Flush(); err != nil {
		return err
	}
	for i := 0; i < cap(c.window); i++ {
		select {
		case c.window <- struct{}{}:
		case <-c.done:
			return c.closedErr()
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for i := 0; i < cap(c.window); i++ {
		<-c.window
	}
	return nil
}

// Subscribe subscribes to filters at qos and returns the granted codes.
func (c *Conn) Subscribe(ctx context.Context, qos byte, filters ...string) ([]byte, error) {
	var body []byte
	body = binary.BigEndian.AppendUint16(body, 1) // one SUBSCRIBE at a time: fixed id
	for _, f := range filters {
		body = appendString(body, f)
		body = append(body, qos)
	}
	c.wmu.Lock()
	_, _ = c.w.Write(appendPacket(nil, typeSubscribe<<4|0x02, body))
	err := c.w.Flush()
	c.wmu.Unlock()
	if err != nil {
		c.fail(err)
		return nil, c.closedErr()
	}
	select {
	case codes := <-c.suback:
		for i, code := range codes {
			if code == 0x80 {
				return codes, fmt.Errorf("subscription to %q refused", filters[i])
			}
		}
		return codes, nil
	case <-c.done:
		return nil, c.closedErr()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Close sends DISCONNECT (best effort), closes the socket and waits until
// the reader goroutine has stopped, so no Handler call runs after it.
func (c *Conn) Close() error {
	// A writer blocked on a full socket holds the lock: then skip the
	// DISCONNECT, closing the socket unblocks it.
	if c.wmu.TryLock() {
		_ = c.nc.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.w.Write([]byte{typeDisconnect << 4, 0})
		_ = c.w.Flush()
		c.wmu.Unlock()
	}
	c.fail(ErrClosed)
	<-c.exited
	return nil
}

func (c *Conn) closedErr() error {
	<-c.done
	if c.err == nil {
		return ErrClosed
	}
	return c.err
}

// readLoop reads packets until the connection ends, answering the
// acknowledgement flows. Acknowledgements are flushed when no more input
// is buffered, so a burst is answered with one write.
func (c *Conn) readLoop() {
	defer close(c.exited)
	var buf []byte
	for {
		first, err := c.r.ReadByte()
		if err != nil {
			c.fail(err)
			return
		}
		rl, err := readRemainingLength(c.r)
		if err != nil {
			c.fail(err)
			return
		}
		if cap(buf) < rl {
			buf = make([]byte, rl)
		}
		buf = buf[:rl]
		if _, err := io.ReadFull(c.r, buf); err != nil {
			c.fail(err)
			return
		}
		if err := c.handle(first, buf); err != nil {
			c.fail(err)
			return
		}
		if c.r.Buffered() == 0 {
			c.wmu.Lock()
			var err error
			if c.w.Buffered() > 0 {
				err = c.w.Flush()
			}
			c.wmu.Unlock()
			if err != nil {
				c.fail(err)
				return
			}
		}
	}
}

func (c *Conn) handle(first byte, b []byte) error {
	switch first >> 4 {
	case typePublish:
		qos := (first >> 1) & 3
		if len(b) < 2 {
			return errors.New("wire: short PUBLISH")
		}
		tl := int(binary.BigEndian.Uint16(b))
		if len(b) < 2+tl {
			return errors.New("wire: short PUBLISH topic")
		}
		topic := b[2 : 2+tl]
		rest := b[2+tl:]
		var id uint16
		if qos > 0 {
			if len(rest) < 2 {
				return errors.New("wire: PUBLISH without packet id")
			}
			id = binary.BigEndian.Uint16(rest)
			rest = rest[2:]
		}
		if c.onMessage != nil {
			c.onMessage(topic, rest, qos)
		}
		switch qos {
		case 1:
			c.ack(typePuback<<4, id)
		case 2:
			c.ack(typePubrec<<4, id)
		}
	case typePuback, typePubcomp:
		c.acked.Add(1)
		select {
		case <-c.window:
		default:
			return errors.New("wire: acknowledgement for nothing in flight")
		}
	case typePubrec:
		if len(b) < 2 {
			return errors.New("wire: short PUBREC")
		}
		c.ack(typePubrel<<4|0x02, binary.BigEndian.Uint16(b))
	case typePubrel:
		if len(b) < 2 {
			return errors.New("wire: short PUBREL")
		}
		c.ack(typePubcomp<<4, binary.BigEndian.Uint16(b))
	case typeSuback:
		if len(b) < 2 {
			return errors.New("wire: short SUBACK")
		}
		codes := append([]byte(nil), b[2:]...)
		select {
		case c.suback <- codes:
		default:
		}
	case typePingresp:
	default:
		return fmt.Errorf("wire: unexpected packet type %d", first>>4)
	}
	return nil
}

func (c *Conn) ack(first byte, id uint16) {
	c.wmu.Lock()
	_, _ = c.w.Write([]byte{first, 2, byte(id >> 8), byte(id)})
	c.wmu.Unlock()
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendPacket(dst []byte, first byte, body []byte) []byte {
	var rl [4]byte
	n := putRemainingLength(rl[:], len(body))
	dst = append(dst, first)
	dst = append(dst, rl[:n]...)
	return append(dst, body...)
}

// putRemainingLength encodes n as MQTT's variable byte integer into b
// (at least 4 bytes) and returns how many bytes it used.
func putRemainingLength(b []byte, n int) int {
	i := 0
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b[i] = d
		i++
		if n == 0 {
			return i
		}
	}
}

func readRemainingLength(r io.ByteReader) (int, error) {
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		d, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		n += int(d&0x7f) * mult
		if d&0x80 == 0 {
			return n, nil
		}
		mult *= 128
	}
	return 0, errors.New("wire: malformed remaining length")
}
