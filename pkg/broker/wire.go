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

// Packet validation is owned here, below mochi (docs/design/wire.md).
//
// mochi decodes each packet on the connection's goroutine with nothing
// above it to recover a panic, and its decoders are not safe on every
// input: SubscribeDecode indexes past the end of a short MQTT 5 SUBSCRIBE
// (82 06 12 34 00 00 01 70), and one such packet from any client took the
// whole process down. mochi also ends a connection on a packet it cannot
// decode without the DISCONNECT 0x81 Malformed Packet that MQTT 5 asks
// for (mosquitto sends it).
//
// wireConn sits between the socket stack and mochi. It frames the byte
// stream into packets and hands mochi a packet only once the whole packet
// has arrived and has been checked: the fixed header, then a trial decode
// with mochi's own decoder, the same one mochi runs next, under recover
// (except for an MQTT 3.1/3.1.1 PUBLISH, which checkPublish covers whole).
// A packet that fails is never handed to mochi: an MQTT 5 client gets
// DISCONNECT 0x81, the broker logs one line and counts it, and mochi sees
// the read fail, so that it ends the connection its normal way (the will
// is published, the client leaves mochi's client table, hooks run).
//
// connListener additionally recovers any panic on a connection's
// goroutine (recoverConn): defence in depth for code we do not control.

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
// packets (see the comment at the top of this file).
type wireConn struct {
	net.Conn
	g     *wireGuard
	in    *connReader
	entry *connEntry // nil once the CONNECT is read

	version byte         // protocol version from the CONNECT; 0 before it
	aliases topicAliases // inbound topic aliases set (validate.go)
	client  string       // client id from the CONNECT, for log lines
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
	if c.g.maxPacket > 0 && remaining+1 > c.g.maxPacket {
		c.pass = remaining // mochi refuses it from the fixed header
		if c.version >= 5 {
			// mochi closes without a word; mosquitto sends DISCONNECT
			// 0x95 Packet too large (max_packet_size) [MQTT-3.2.2-15].
			_, _ = c.Conn.Write(disconnectTooLarge)
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
	if fh.Type == packets.Connect && c.version == 0 {
		if perr := checkConnect(body); perr != nil {
			return perr
		}
		v, id, will, hasWill := connectVersion(body)
		c.version, c.client = v, strings.Clone(id) // id points into c.buf, which the next packet overwrites
		if hasWill && topicLevels(will) > maxTopicLevels {
			// As mosquitto: the connection is closed without CONNACK.
			// The rest of the will topic is checked by the CONNECT hooks.
			return malformedf("will topic with more than %d levels", maxTopicLevels+1)
		}
		return nil // the rest of the CONNECT is mochi's and the hooks'
	}
	if c.version == 0 {
		return nil // not a CONNECT first: mochi refuses it
	}
	var perr *packetError
	switch fh.Type {
	case packets.Publish:
		perr = checkPublish(c.hdr[0]&0x0f, body, c.version, &c.aliases)
	case packets.Subscribe:
		perr = checkSubscribe(body, c.version)
	case packets.Unsubscribe:
		perr = checkUnsubscribe(body, c.version)
	default:
		perr = checkAckProps(fh.Type, body, c.version)
	}
	if perr != nil {
		return perr
	}
	if fh.Type == packets.Publish && c.version < 5 {
		// checkPublish has checked all of an MQTT 3.1/3.1.1 PUBLISH that
		// mochi's decoder reads (topic length and UTF-8, packet
		// identifier; FuzzPublishCheck holds it to that), so the most
		// frequent packet is decoded once, by mochi, not twice.
		return nil
	}
	if _, why := trialDecode(fh, body, c.version); why != "" {
		return &packetError{code: rcMalformed, why: why}
	}
	return nil
}

// connectVersion reads the protocol level (without mosquitto's bridge
// bit, 0x80), client id and will topic of a CONNECT body; level 0 when it
// is not one mochi can decode (mochi refuses it).
func connectVersion(body []byte) (v byte, id string, will []byte, hasWill bool) {
	if len(body) < 2 {
		return 0, "", nil, false
	}
	n := int(body[0])<<8 | int(body[1])
	if len(body) < 2+n+1 {
		return 0, "", nil, false
	}
	v = body[2+n] &^ 0x80
	if v < 3 || v > 5 {
		return 0, "", nil, false
	}
	pk, why := trialDecode(packets.FixedHeader{Type: packets.Connect, Remaining: len(body)}, body, v)
	if why != "" {
		return 0, "", nil, false
	}
	return v, pk.Connect.ClientIdentifier, []byte(pk.Connect.WillTopic), pk.Connect.WillFlag
}

// trialDecode runs mochi's decoder for the packet type, as mochi's
// Client.ReadPacket does, and reports why it failed or panicked, or "".
func trialDecode(fh packets.FixedHeader, body []byte, version byte) (pk packets.Packet, why string) {
	defer func() {
		if r := recover(); r != nil {
			why = fmt.Sprintf("decoder panic: %v", r)
		}
	}()
	pk = packets.Packet{FixedHeader: fh, ProtocolVersion: version}
	switch fh.Type {
	case packets.Connack, packets.Suback, packets.Unsuback, packets.Pingresp, 0:
		// Only servers send these [MQTT-2.1.2].
		return pk, fmt.Sprintf("packet type %d is not sent by clients", fh.Type)
	case packets.Pingreq:
		if len(body) != 0 {
			return pk, "PINGREQ with a body"
		}
	}
	err := mqttpk.Decode(&pk, body)
	if fh.Type == packets.Auth && version < 5 {
		return pk, "AUTH before MQTT 5"
	}
	if err != nil {
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

// disconnectTooLarge is DISCONNECT 0x95 Packet too large without
// properties, as mosquitto sends it.
var disconnectTooLarge = []byte{packets.Disconnect << 4, 1, packets.ErrPacketTooLarge.Code}

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

// recoverConn ends a connection whose goroutine panicked (any panic that
// got past wireConn's checks): one log line with the stack, a count, and
// the clean-up that mochi's attachClient skips when it is unwound by a
// panic: the client is stopped, its will published, and a session that
// ends with the connection leaves mochi's client table. Server-wide state
// mochi guards with its own deferred calls (connected-client count,
// listener wait group) is already restored when this runs.
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
		expire := (cl.Properties.ProtocolVersion == 5 && cl.Properties.Props.SessionExpiryInterval == 0) ||
			(cl.Properties.ProtocolVersion < 5 && cl.Properties.Clean)
		if expire {
			cl.ClearInflights()
			srv.UnsubscribeClient(cl)
			srv.Clients.Delete(cl.ID)
		}
		return
	}
}

// logConnError logs why a connection ended, at the default level when it
// ended before its session began for a reason mosquitto logs by default
// too: a bad initial packet ("Client <unknown> disconnected due to
// protocol error."), a failed TLS handshake (OpenSSL's error), no CONNECT
// within the connect timeout ("has exceeded timeout"). A client that
// hangs up before sending anything, a connection refused with a CONNACK
// (logged by the hooks), a malformed packet (logged by wireConn) and every
// end after the session began (logged as "client disconnected") are
// debug lines.
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
