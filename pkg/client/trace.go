// SPDX-License-Identifier: Apache-2.0

package client

import (
	"encoding/binary"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
)

// traceConn prints, through Config.Trace, one line per MQTT packet sent
// or received on the connection, in libmosquitto's debug wording
// (mosquitto_pub -d / mosquitto_sub -d), e.g.
//
//	Client (null) sending PUBLISH (d0, q1, r0, m1, 'alerts', ... (6 bytes))
//	Client (null) received PUBACK (Mid: 1, RC:0)
//	Subscribed (mid: 1): 0, 135
//
// It follows the packet boundaries in the bytes read and written, the
// same for both MQTT libraries and our own publishing pipeline. Payloads
// are never kept, only counted, and nothing about the password is shown.
type traceConn struct {
	net.Conn
	t       *tracer
	in, out traceDir
}

// tracer is the state shared by both directions: the client id as
// mosquitto prints it, learnt from the CONNACK when the broker assigns it.
type tracer struct {
	v5    bool
	print func(string)
	mu    sync.Mutex
	id    string
}

func newTraceConn(c net.Conn, cfg *Config) *traceConn {
	id := cfg.ClientID
	if id == "" {
		id = "(null)"
	}
	return &traceConn{Conn: c, t: &tracer{v5: cfg.version() == V5, print: cfg.Trace, id: id}}
}

func (c *traceConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.feed(p[:n], c.t.received)
	return n, err
}

// Write traces before writing, as libmosquitto does: the broker's answer
// may otherwise be read, and traced, first.
func (c *traceConn) Write(p []byte) (int, error) {
	c.out.feed(p, c.t.sending)
	return c.Conn.Write(p)
}

// CloseWrite shuts down the sending side when the connection can.
func (c *traceConn) CloseWrite() error { return closeWrite(c.Conn) }

// traceKeep is how much of a packet's body is kept for its line: enough
// for a PUBLISH's topic, packet identifier and property length.
const traceKeep = 2 + 65535 + 2 + 4

// traceDir follows the packets of one direction. Each direction is used
// by one goroutine at a time (the library's reader or writer).
type traceDir struct {
	buf    []byte // fixed header and body so far
	first  byte   // fixed header byte of a packet whose rest is skipped
	body   []byte // kept start of that packet's body
	rl     int    // its remaining length
	skip   int    // body bytes still to pass
	broken bool   // not MQTT framing: stop tracing
}

func (d *traceDir) feed(b []byte, emit func(first byte, body []byte, rl int)) {
	for len(b) > 0 && !d.broken {
		if d.skip > 0 {
			k := min(d.skip, len(b))
			d.skip -= k
			b = b[k:]
			if d.skip == 0 {
				emit(d.first, d.body, d.rl)
				d.body = nil
			}
			continue
		}
		d.buf = append(d.buf, b...)
		b = nil
		for len(d.buf) >= 2 {
			rl, n, err := readVarint(d.buf[1:])
			if err != nil {
				if len(d.buf) >= 5 {
					d.broken = true
				}
				break
			}
			total := 1 + n + rl
			if len(d.buf) >= total {
				emit(d.buf[0], d.buf[1+n:total], rl)
				d.buf = d.buf[total:]
				continue
			}
			if rl > traceKeep && len(d.buf) >= 1+n+traceKeep {
				d.first, d.rl = d.buf[0], rl
				d.body = append([]byte(nil), d.buf[1+n:1+n+traceKeep]...)
				d.skip = total - len(d.buf)
				d.buf = d.buf[:0]
			}
			break
		}
		if len(d.buf) == 0 {
			d.buf = nil // do not keep a large buffer
		}
	}
}

func (t *tracer) client() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.id
}

func (t *tracer) line(format string, a ...any) {
	t.print("Client " + t.client() + " " + fmt.Sprintf(format, a...))
}

// pid returns the packet identifier at the start of b.
func pid(b []byte) int {
	if len(b) < 2 {
		return 0
	}
	return int(binary.BigEndian.Uint16(b))
}

// skipProps drops an MQTT 5 property block (with its length) from b.
func skipProps(b []byte) []byte {
	n, used, err := readVarint(b)
	if err != nil || used+n > len(b) {
		return nil
	}
	return b[used+n:]
}

// idAndPayload splits the body of a SUBSCRIBE, UNSUBSCRIBE or SUBACK
// into its packet identifier and what follows the MQTT 5 properties.
func (t *tracer) idAndPayload(body []byte) (int, []byte) {
	rest := body[min(2, len(body)):]
	if t.v5 {
		rest = skipProps(rest)
	}
	return pid(body), rest
}

// publish describes a PUBLISH as libmosquitto does.
func (t *tracer) publish(first byte, body []byte, rl int) string {
	qos := first >> 1 & 3
	topic, rest, err := takeString(body)
	if err != nil {
		return "PUBLISH"
	}
	used := 2 + len(topic)
	mid := 0
	if qos > 0 {
		mid = pid(rest)
		rest = rest[min(2, len(rest)):]
		used += 2
	}
	if t.v5 {
		if n, k, err := readVarint(rest); err == nil {
			used += k + n
		}
	}
	return fmt.Sprintf("PUBLISH (d%d, q%d, r%d, m%d, '%s', ... (%d bytes))", first>>3&1, qos, first&1, mid, topic, max(rl-used, 0))
}

func (t *tracer) sending(first byte, body []byte, rl int) {
	switch first >> 4 {
	case pktConnect:
		t.line("sending CONNECT")
	case pktPublish:
		t.line("sending %s", t.publish(first, body, rl))
	case pktPuback:
		t.line("sending PUBACK (m%d, rc%d)", pid(body), reasonOf(body))
	case pktPubrec:
		t.line("sending PUBREC (m%d, rc%d)", pid(body), reasonOf(body))
	case pktPubrel:
		t.line("sending PUBREL (m%d)", pid(body))
	case pktPubcomp:
		t.line("sending PUBCOMP (m%d)", pid(body))
	case pktSubscribe:
		mid, rest := t.idAndPayload(body)
		for len(rest) > 0 {
			f, r, err := takeString(rest)
			if err != nil || len(r) < 1 {
				break
			}
			t.line("sending SUBSCRIBE (Mid: %d, Topic: %s, QoS: %d, Options: 0x%02x)", mid, f, r[0]&3, r[0]&^3)
			rest = r[1:]
		}
	case pktUnsubscribe:
		mid, rest := t.idAndPayload(body)
		for len(rest) > 0 {
			f, r, err := takeString(rest)
			if err != nil {
				break
			}
			t.line("sending UNSUBSCRIBE (Mid: %d, Topic: %s)", mid, f)
			rest = r
		}
	case pktPingreq:
		t.line("sending PINGREQ")
	case pktDisconnect:
		t.line("sending DISCONNECT")
	case pktAuth:
		t.line("sending AUTH")
	}
}

func (t *tracer) received(first byte, body []byte, rl int) {
	switch first >> 4 {
	case pktConnack:
		code := 0
		if len(body) >= 2 {
			code = int(body[1])
		}
		if t.v5 && len(body) > 2 {
			if p, _, err := readProps(body[2:]); err == nil && p.assignedClientID != "" {
				t.mu.Lock()
				t.id = p.assignedClientID
				t.mu.Unlock()
			}
		}
		t.line("received CONNACK (%d)", code)
	case pktPublish:
		t.line("received %s", t.publish(first, body, rl))
	case pktPuback:
		t.line("received PUBACK (Mid: %d, RC:%d)", pid(body), reasonOf(body))
	case pktPubrec:
		t.line("received PUBREC (Mid: %d)", pid(body))
	case pktPubrel:
		t.line("received PUBREL (Mid: %d)", pid(body))
	case pktPubcomp:
		t.line("received PUBCOMP (Mid: %d, RC:%d)", pid(body), reasonOf(body))
	case pktSuback:
		t.line("received SUBACK")
		mid, rest := t.idAndPayload(body)
		codes := make([]string, len(rest))
		for i, c := range rest {
			codes[i] = strconv.Itoa(int(c))
		}
		// mosquitto_sub's own line, printed by its SUBACK callback.
		t.print(fmt.Sprintf("Subscribed (mid: %d): %s", mid, strings.Join(codes, ", ")))
	case pktUnsuback:
		t.line("received UNSUBACK")
	case pktPingresp:
		t.line("received PINGRESP")
	case pktDisconnect:
		// libmosquitto's line has no "Client <id>" in front (2.0:
		// "Received DISCONNECT (%d)", handle__disconnect).
		t.print(fmt.Sprintf("Received DISCONNECT (%d)", reasonAt(body, 0)))
	case pktAuth:
		t.line("received AUTH")
	}
}

// reasonOf is the reason code of an MQTT 5 acknowledgement (0 when absent).
func reasonOf(body []byte) int { return reasonAt(body, 2) }

func reasonAt(body []byte, i int) int {
	if len(body) > i {
		return int(body[i])
	}
	return 0
}

// closeWrite shuts down the sending side of c when it can.
func closeWrite(c net.Conn) error {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
