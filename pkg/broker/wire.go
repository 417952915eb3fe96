// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttkit/mqttkit/internal/mqttpk"
)

// Packet validation, below mochi: docs/design/wire.md.

// errMalformed is why a connection that sent a malformed packet ended.
var errMalformed = errors.New("malformed packet")

// wireStats are the wire layer's counters, shared by a broker's listeners.
type wireStats struct {
	malformed atomic.Int64 // connections ended for a malformed packet
	panics    atomic.Int64 // panics recovered on connection goroutines
}

// wireGuard is what every wireConn of a listener shares.
type wireGuard struct {
	log   *slog.Logger
	stats *wireStats
	// maxPacket is mochi's Maximum Packet Size (0: none): a longer packet
	// is handed to mochi by its fixed header alone, which refuses it
	// without reading the body.
	maxPacket int
}

// wrap returns c with packet validation for mochi; e (nil: none) is told
// when the CONNECT has been read.
func (g *wireGuard) wrap(c net.Conn, e *connEntry) *wireConn {
	return &wireConn{Conn: c, g: g, entry: e, in: newConnReader(c)}
}

// wireConn is a connection whose reads hand mochi only whole, checked
// packets.
type wireConn struct {
	net.Conn
	g     *wireGuard
	in    *connReader
	entry *connEntry // nil once the CONNECT is read

	version byte         // protocol version from the CONNECT; 0 before it
	aliases topicAliases // inbound topic aliases set (validate.go)
	client  string       // client id from the CONNECT, for log lines
	facts   connectFacts // for connectHook
	hdr     [5]byte
	out     []byte // checked bytes of the current packet's fixed header not handed out yet
	body    []byte // checked bytes of the current packet's body not handed out yet
	buf     []byte // body buffer of a packet longer than what was buffered, until it is handed out
	pass    int    // body bytes to pass through unread (a packet mochi refuses by size)
	err     error  // sticky read error
}

// Read hands out the next bytes of checked packets.
func (c *wireConn) Read(p []byte) (int, error) {
	if len(c.out) == 0 && len(c.body) == 0 && c.pass == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if err := c.next(); err != nil {
			c.err = err
			return 0, err
		}
	}
	if len(c.out) > 0 {
		n := copy(p, c.out)
		c.out = c.out[n:]
		return n, nil
	}
	if len(c.body) > 0 {
		n := copy(p, c.body)
		c.body = c.body[n:]
		return n, nil
	}
	if len(p) > c.pass {
		p = p[:c.pass]
	}
	n, err := c.in.Read(p)
	c.pass -= n
	return n, err
}

// Write writes p, one whole packet from mochi, as mosquitto writes that
// packet: a CONNACK with its properties in mosquitto's order
// (connackOrder), a DISCONNECT or PUBACK 0x10 without what mosquitto
// leaves out (compactWrite).
func (c *wireConn) Write(p []byte) (int, error) {
	if _, err := c.Conn.Write(compactWrite(connackOrder(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// next reads and checks the next packet.
func (c *wireConn) next() error {
	// The last packet's body is handed out: its buffer goes back before
	// the wait for the next one (not while a body is being gathered).
	putBuf(c.buf)
	c.buf = nil
	h, err := c.in.ReadByte()
	if err != nil {
		return err
	}
	c.hdr[0] = h
	n, remaining, mult := 1, 0, 1
	for {
		b, err := c.in.ReadByte()
		if err != nil {
			return err
		}
		c.hdr[n] = b
		n++
		remaining += int(b&0x7f) * mult
		mult *= 128
		if b&0x80 == 0 {
			break
		}
		if n == len(c.hdr) {
			return c.refuse(h>>4, rcMalformed, "remaining length longer than 4 bytes")
		}
	}
	c.out = c.hdr[:n]
	if c.version != 0 {
		if perr := checkType(h>>4, c.version); perr != nil {
			return c.refuse(h>>4, perr.code, perr.why)
		}
	}
	if c.version == 0 && h>>4 != packets.Connect {
		// Not a CONNECT first: mochi refuses it from the fixed header
		// [MQTT-3.1.0-1]; its body (01-bad-initial-packets.py sends
		// 100 MB after each such header) is never read.
		c.pass = remaining
		return nil
	}
	if c.version == 0 && remaining > MaxConnectSize {
		return fmt.Errorf("CONNECT of %d bytes exceeds the limit of %d bytes", remaining, MaxConnectSize)
	}
	if c.g.maxPacket > 0 && remaining+1 > c.g.maxPacket {
		c.pass = remaining // mochi refuses it from the fixed header
		if c.version >= 5 {
			// mochi closes without a word; mosquitto sends DISCONNECT
			// 0x95 Packet too large (max_packet_size) [MQTT-3.2.2-15].
			_, _ = c.Conn.Write([]byte{packets.Disconnect << 4, 1, packets.ErrPacketTooLarge.Code})
		}
		return nil
	}
	var fh packets.FixedHeader
	if err := fh.Decode(h); err != nil {
		return c.refuse(h>>4, rcMalformed, err.Error())
	}
	fh.Remaining = remaining
	var body []byte
	if remaining <= c.in.buffered() {
		body = c.in.take(remaining) // in place: most packets
	} else {
		if remaining <= bufSize {
			c.buf = getBuf()[:0]
		}
		body, err = readBody(c.in, c.buf, remaining)
		c.buf = body
		if err != nil {
			return err
		}
	}
	if c.version == 0 && c.entry != nil {
		c.entry.connected() // no longer waiting for its CONNECT
		c.entry = nil
	}
	if perr := c.check(fh, body); perr != nil {
		return c.refuse(fh.Type, perr.code, perr.why)
	}
	if fh.Type == packets.Disconnect && c.version >= 5 && remaining == 1 {
		// e0 01 RC: mochi reads the reason code only with a property
		// length, and took 0x04 Disconnect with Will Message for a
		// normal disconnect. Hand it the same packet with an empty one.
		body = append(body, 0)
		c.buf, c.hdr[1] = body, 2
	}
	c.body = body
	return nil
}

// connectFacts are the parts of a CONNECT that mochi rewrites or refuses
// before connectHook, which decides about them, sees them.
type connectFacts struct {
	bridge    bool // the protocol level had mosquitto's bridge bit (0x83, 0x84)
	emptyWill bool // the will payload was zero-length
}

// readBody reads n bytes into buf, growing it as the bytes arrive: a
// client announcing a long packet must send it before it is allocated.
func readBody(r io.Reader, buf []byte, n int) ([]byte, error) {
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grow := min(max(cap(buf), 4096), n-len(buf))
			buf = append(buf, make([]byte, grow)...)[:len(buf)]
		}
		m := min(cap(buf), n)
		k, err := io.ReadFull(r, buf[len(buf):m])
		buf = buf[:len(buf)+k]
		if err != nil {
			if errors.Is(err, io.ErrUnexpectedEOF) {
				err = io.EOF
			}
			return buf, err
		}
	}
	return buf, nil
}

// check reports why a packet is refused, or nil.
func (c *wireConn) check(fh packets.FixedHeader, body []byte) *packetError {
	if c.version == 0 { // the CONNECT: a packet of another type went to mochi from its fixed header
		return c.connect(fh, body)
	}
	var perr *packetError
	switch fh.Type {
	case packets.Publish:
		perr = checkPublish(c.hdr[0]&0x0f, body, c.version, &c.aliases)
	case packets.Subscribe, packets.Unsubscribe:
		perr = checkFilters(fh.Type, body, c.version)
	default:
		perr = checkAckProps(fh.Type, body, c.version)
	}
	if perr != nil {
		return perr
	}
	if fh.Type == packets.Publish && c.version < 5 {
		// checkPublish has checked all of an MQTT 3.1/3.1.1 PUBLISH that
		// mochi's decoder reads (FuzzPublishCheck holds it to that): the
		// most frequent packet is decoded once, by mochi, not twice.
		return nil
	}
	if _, why := trialDecode(fh, body, c.version); why != "" {
		return &packetError{code: rcMalformed, why: why}
	}
	return nil
}

// trialDecode runs mochi's decoder for the packet type, as mochi's
// Client.ReadPacket does, and reports why it failed or panicked, or "".
// checkType has refused the types mochi must not decode.
func trialDecode(fh packets.FixedHeader, body []byte, version byte) (pk packets.Packet, why string) {
	defer func() {
		if r := recover(); r != nil {
			why = fmt.Sprintf("decoder panic: %v", r)
		}
	}()
	pk = packets.Packet{FixedHeader: fh, ProtocolVersion: version}
	if fh.Type == packets.Pingreq && len(body) != 0 {
		return pk, "PINGREQ with a body"
	}
	if err := mqttpk.Decode(&pk, body); err != nil {
		return pk, err.Error()
	}
	return pk, ""
}

// varint decodes an MQTT variable byte integer: value, bytes used, ok.
func varint(b []byte) (int, int, bool) {
	v, mult := 0, 1
	for i := 0; i < 4 && i < len(b); i++ {
		v += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return v, i + 1, true
		}
		mult *= 128
	}
	return 0, 0, false
}

// refuse ends the connection for a refused packet: DISCONNECT with code
// (0x81 Malformed Packet, 0x82 Protocol Error), without properties as
// mosquitto sends it, to an MQTT 5 client that is past its CONNECT
// [MQTT-4.13.1-1]; one log line; and the read error mochi ends the
// connection with.
func (c *wireConn) refuse(typ byte, code byte, why string) error {
	c.g.stats.malformed.Add(1)
	name, ok := packets.PacketNames[typ]
	if !ok {
		name = fmt.Sprintf("packet type %d", typ)
	}
	attrs := []any{"remote", c.RemoteAddr().String(), "packet", name, "reason", why}
	if c.client != "" {
		attrs = append([]any{"client", c.client}, attrs...)
	}
	msg := "client sent a malformed packet, disconnecting"
	if code == rcProtocolError {
		msg = "client sent a packet that violates the protocol, disconnecting"
	}
	c.g.log.Warn(msg, attrs...)
	if c.version >= 5 && typ != packets.Connect {
		_, _ = c.Conn.Write([]byte{packets.Disconnect << 4, 1, code})
	}
	return fmt.Errorf("%w: %s: %s", errMalformed, name, why)
}

// recoverConn ends a connection whose goroutine panicked: a log line with
// the stack, a count, and the clean-up mochi's attachClient skips when a
// panic unwinds it (docs/design/wire.md, "The decision", 3).
func recoverConn(srv *mqtt.Server, log *slog.Logger, stats *wireStats, conn net.Conn, r any) {
	stats.panics.Add(1)
	log.Error("connection goroutine panicked; connection closed, broker continues",
		"remote", conn.RemoteAddr().String(), "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
	_ = conn.Close()
	if srv == nil {
		return
	}
	for _, cl := range srv.Clients.GetAll() {
		if cl.Net.Conn != conn {
			continue
		}
		cl.Stop(fmt.Errorf("connection goroutine panicked: %v", r))
		if cur, ok := srv.Clients.Get(cl.ID); !ok || cur != cl || cl.IsTakenOver() {
			return
		}
		if atomic.LoadUint32(&cl.Properties.Will.Flag) == 1 {
			w := cl.Properties.Will
			atomic.StoreUint32(&cl.Properties.Will.Flag, 0)
			_ = srv.Publish(w.TopicName, w.Payload, w.Retain, w.Qos)
		}
		if sessionEnds(cl) {
			cl.ClearInflights()
			srv.UnsubscribeClient(cl)
			srv.Clients.Delete(cl.ID)
		}
		return
	}
}

// logConnError logs why a connection ended, at the default level when it
// ended before its session began for a reason mosquitto logs by default
// too (a bad initial packet, a failed TLS handshake, no CONNECT in time);
// other ends are logged elsewhere or are debug lines (docs/design/wire.md,
// "Closing").
func logConnError(log *slog.Logger, remote string, err error) {
	// mochi wraps everything that ends a connection before its CONNECT is
	// read so (server.go attachClient).
	pre := strings.HasPrefix(err.Error(), "read connection: ")
	var (
		rh tls.RecordHeaderError
		ae tls.AlertError
	)
	switch {
	case !pre, errors.Is(err, errMalformed), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		log.Debug("connection ended", "remote", remote, "error", err)
	case errors.As(err, &rh), errors.As(err, &ae), strings.Contains(err.Error(), "tls: "):
		log.Warn("TLS handshake failed, disconnecting", "remote", remote, "reason", strings.TrimPrefix(err.Error(), "read connection: "))
	case errors.Is(err, os.ErrDeadlineExceeded):
		log.Info("client sent no CONNECT in time, disconnecting", "remote", remote)
	default:
		log.Warn("bad initial packet, disconnecting", "remote", remote, "reason", strings.TrimPrefix(err.Error(), "read connection: "))
	}
}
