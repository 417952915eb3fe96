// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"fmt"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mosquitto 2.0's checks of the packets a client sends (handle_publish.c,
// handle_subscribe.c, handle_unsubscribe.c, handle_connect.c,
// property_mosq.c), run by wireConn before mochi sees a packet
// (docs/design/wire.md). Each failure names the MQTT 5 reason code of
// mosquitto's DISCONNECT: 0x81 Malformed Packet or 0x82 Protocol Error.

// maxTopicLevels is mosquitto's TOPIC_HIERARCHY_LIMIT: a topic or filter
// may hold at most this many '/' (201 levels); one with more ends the
// connection (02-subpub-qos0-long-topic.py). It also bounds the work of
// mochi's topic tree (a SUBSCRIBE to 65,535 slashes took it 14 seconds).
const maxTopicLevels = 200

// MQTT 5 reason codes the checks send.
const (
	rcMalformed         byte = 0x81
	rcProtocolError     byte = 0x82
	rcTopicAliasInvalid byte = 0x94
)

// packetError says why a packet is refused and which MQTT 5 reason code
// the DISCONNECT carries.
type packetError struct {
	code byte
	why  string
}

func malformedf(format string, a ...any) *packetError {
	return &packetError{code: rcMalformed, why: fmt.Sprintf(format, a...)}
}

func protocolf(format string, a ...any) *packetError {
	return &packetError{code: rcProtocolError, why: fmt.Sprintf(format, a...)}
}

// reader reads the fields of a packet body.
type reader struct {
	b   []byte
	off int
}

func (r *reader) left() int { return len(r.b) - r.off }

func (r *reader) u16() (int, bool) {
	if r.left() < 2 {
		return 0, false
	}
	r.off += 2
	return u16(r.b[r.off-2:]), true
}

func (r *reader) bytes() ([]byte, bool) {
	n, ok := r.u16()
	if !ok || r.left() < n {
		return nil, false
	}
	r.off += n
	return r.b[r.off-n : r.off], true
}

// u16 is the big-endian two-byte integer at the start of b.
func u16(b []byte) int { return int(b[0])<<8 | int(b[1]) }

// validUTF8 is mosquitto_validate_utf8: well-formed UTF-8 without
// U+0000, control characters (U+0001..U+001F, U+007F..U+009F) or
// non-characters (U+FDD0..U+FDEF, U+xFFFE, U+xFFFF), as mosquitto 2.0
// checks topics and strings [MQTT-1.5.4-1] [MQTT-1.5.4-2].
func validUTF8(b []byte) bool {
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 {
			return false
		}
		if r <= 0x1f || (r >= 0x7f && r <= 0x9f) || (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe {
			return false
		}
		b = b[n:]
	}
	return true
}

// topicLevels counts the '/' of a topic or filter.
func topicLevels(t []byte) int {
	n := 0
	for _, c := range t {
		if c == '/' {
			n++
		}
	}
	return n
}

// validWireFilter is mosquitto_sub_topic_check: '+' and '#' take a whole
// level, '#' only the last one; at most maxTopicLevels '/'.
func validWireFilter(f []byte) bool {
	for i, c := range f {
		if (c == '+' || c == '#') && ((i > 0 && f[i-1] != '/') || (i+1 < len(f) && (c == '#' || f[i+1] != '/'))) {
			return false
		}
	}
	return topicLevels(f) <= maxTopicLevels
}

// validWireTopic is mosquitto_pub_topic_check: no wildcards, at most
// maxTopicLevels '/'.
func validWireTopic(t []byte) bool {
	for _, c := range t {
		if c == '+' || c == '#' {
			return false
		}
	}
	return topicLevels(t) <= maxTopicLevels
}

// MQTT 5 property types [MQTT-2.2.2], by property identifier.
const (
	propByte = iota + 1
	propU16
	propU32
	propVarint
	propString
	propBinary
	propPair
)

var propTypes = [0x2b]byte{
	0x01: propByte, 0x02: propU32, 0x03: propString, 0x08: propString, 0x09: propBinary,
	0x0b: propVarint, 0x11: propU32, 0x12: propString, 0x13: propU16, 0x15: propString,
	0x16: propBinary, 0x17: propByte, 0x18: propU32, 0x19: propByte, 0x1a: propString,
	0x1c: propString, 0x1f: propString, 0x21: propU16, 0x22: propU16, 0x23: propU16,
	0x24: propByte, 0x25: propByte, 0x26: propPair, 0x27: propU32, 0x28: propByte,
	0x29: propByte, 0x2a: propByte,
}

// propSize is the encoded size of the property at the start of b
// (identifier included), or 0 when it is unknown or truncated.
func propSize(b []byte) int {
	if len(b) == 0 || int(b[0]) >= len(propTypes) {
		return 0
	}
	n := 0
	switch propTypes[b[0]] {
	case propByte:
		n = 2
	case propU16:
		n = 3
	case propU32:
		n = 5
	case propVarint:
		if _, used, ok := varint(b[1:]); ok {
			n = 1 + used
		}
	case propString, propBinary:
		if len(b) >= 3 {
			n = 3 + u16(b[1:])
		}
	case propPair:
		if len(b) >= 3 {
			if k := u16(b[1:]); len(b) >= 5+k {
				n = 5 + k + u16(b[3+k:])
			}
		}
	}
	if n > len(b) {
		return 0
	}
	return n
}

// props are the MQTT 5 properties of a packet, by identifier: whether
// each was given, and the value of the numeric ones.
type props struct {
	seen [len(propTypes)]bool
	val  [len(propTypes)]int
}

// readProps reads an MQTT 5 property list and checks it as mosquitto's
// property__read_all does: a bad encoding or an unknown identifier is
// malformed (0x81); a property the packet type may not carry, or one
// given twice (other than user properties), is a protocol error (0x82).
func readProps(r *reader, allowed ...byte) (props, *packetError) {
	var p props
	n, used, ok := varint(r.b[r.off:])
	if !ok || r.left()-used < n {
		return p, malformedf("properties longer than the packet")
	}
	b := r.b[r.off+used : r.off+used+n]
	r.off += used + n
	for len(b) > 0 {
		id, size := b[0], propSize(b)
		if size == 0 {
			return p, malformedf("property 0x%02x unknown or past the end", id)
		}
		v := b[1:size]
		switch propTypes[id] {
		case propByte:
			p.val[id] = int(v[0])
		case propU16:
			p.val[id] = u16(v)
		case propVarint:
			p.val[id], _, _ = varint(v)
		case propString:
			if !validUTF8(v[2:]) {
				return p, malformedf("property 0x%02x is not valid UTF-8", id)
			}
		case propPair:
			if k := u16(v); !validUTF8(v[2:2+k]) || !validUTF8(v[4+k:]) {
				return p, malformedf("user property is not valid UTF-8")
			}
		}
		if !slices.Contains(allowed, id) {
			return p, protocolf("property 0x%02x not allowed in this packet", id)
		}
		if id != 0x26 && p.seen[id] {
			return p, protocolf("property 0x%02x given twice", id)
		}
		p.seen[id] = true
		b = b[size:]
	}
	return p, nil
}

// topicAliases records which inbound topic aliases (1..topicAliasMaximum)
// an MQTT 5 client has set on its connection: bit n is alias n.
type topicAliases uint32

// checkPublish checks a client PUBLISH after its fixed header (mochi
// refuses QoS 3 and DUP with QoS 0 there, both malformed for mosquitto).
// aliases is the connection's topic alias state: a PUBLISH that sets an
// alias records it; one that uses an alias never set is a protocol error,
// as in mosquitto (mochi would publish it to the empty topic).
func checkPublish(flags byte, body []byte, version byte, aliases *topicAliases) *packetError {
	r := &reader{b: body}
	topic, ok := r.bytes()
	switch {
	case !ok:
		return malformedf("PUBLISH topic past the end of the packet")
	case !validUTF8(topic):
		return malformedf("PUBLISH topic is not valid UTF-8")
	case len(topic) == 0 && version < 5:
		return malformedf("PUBLISH without a topic")
	}
	if qos := flags >> 1 & 3; qos > 0 {
		id, ok := r.u16()
		if !ok {
			return malformedf("PUBLISH without its packet identifier")
		}
		if id == 0 {
			return protocolf("PUBLISH with packet identifier 0")
		}
	}
	if version >= 5 {
		p, perr := readProps(r, 0x01, 0x02, 0x03, 0x08, 0x09, 0x23, 0x26)
		if perr != nil {
			return perr
		}
		if p.val[0x01] > 1 {
			return protocolf("payload format indicator %d", p.val[0x01])
		}
		if a := p.val[0x23]; p.seen[0x23] {
			switch {
			case a == 0 || a > topicAliasMaximum:
				return &packetError{code: rcTopicAliasInvalid, why: fmt.Sprintf("topic alias %d (maximum %d)", a, topicAliasMaximum)}
			case len(topic) > 0:
				*aliases |= 1 << a
			case *aliases&(1<<a) == 0:
				return protocolf("topic alias %d used before it was set", a)
			}
		}
	}
	if !validWireTopic(topic) {
		return malformedf("PUBLISH topic with a wildcard or more than %d levels", maxTopicLevels+1)
	}
	return nil
}

// checkFilters checks a SUBSCRIBE or UNSUBSCRIBE body: a packet
// identifier, MQTT 5 properties, then filters, in a SUBSCRIBE each
// followed by its options byte [MQTT-3.8.3]. Every failure is malformed
// for mosquitto (it turns property protocol errors into malformed packets
// here). mochi's decoder reads past the end of an MQTT 5 SUBSCRIBE whose
// last filter lacks its options byte: this check keeps it from ever
// seeing one.
func checkFilters(typ byte, body []byte, version byte) *packetError {
	name, allowed := "UNSUBSCRIBE", []byte{0x26}
	if typ == packets.Subscribe {
		name, allowed = "SUBSCRIBE", []byte{0x0b, 0x26}
	}
	r := &reader{b: body}
	id, ok := r.u16()
	if !ok {
		return malformedf("%s without a packet identifier", name)
	}
	if id == 0 {
		return malformedf("%s with packet identifier 0", name)
	}
	if version >= 5 {
		p, perr := readProps(r, allowed...)
		if perr != nil {
			return malformedf("%s properties: %s", name, perr.why)
		}
		if p.seen[0x0b] && p.val[0x0b] == 0 {
			return malformedf("%s with subscription identifier 0", name)
		}
	}
	if r.left() == 0 {
		return malformedf("%s without a filter", name)
	}
	for r.left() > 0 {
		f, ok := r.bytes()
		switch {
		case !ok:
			return malformedf("%s filter past the end of the packet", name)
		case len(f) == 0:
			return malformedf("empty %s filter", name)
		case !validUTF8(f):
			return malformedf("%s filter is not valid UTF-8", name)
		case !validWireFilter(f):
			return malformedf("invalid %s filter (wildcard placement or more than %d levels)", name, maxTopicLevels+1)
		case typ != packets.Subscribe:
			continue
		case r.left() == 0:
			return malformedf("%s filter without its subscription options", name)
		}
		opts := r.b[r.off]
		r.off++
		switch {
		case opts&3 == 3:
			return malformedf("%s with QoS 3", name)
		case version < 5 && opts&0xfc != 0, version >= 5 && opts&0xc0 != 0:
			return malformedf("%s options 0x%02x: reserved bits set", name, opts)
		case version >= 5 && opts>>4&3 == 3:
			return malformedf("%s with retain handling 3", name)
		}
	}
	return nil
}

// checkType refuses, from its fixed header, a packet type a client may
// not send once connected, as mosquitto does (DISCONNECT 0x82 Protocol
// Error for MQTT 5): the types only servers send (CONNACK, SUBACK,
// UNSUBACK, PINGRESP) and reserved type 0, whatever their flags; and
// AUTH, since the broker accepts no authentication method in the
// CONNECT (connectHook) [MQTT-4.12.0-1]. Before MQTT 5, AUTH is reserved.
func checkType(typ byte, version byte) *packetError {
	switch typ {
	case packets.Reserved, packets.Connack, packets.Suback, packets.Unsuback, packets.Pingresp:
		return protocolf("packet type %d is sent by servers only", typ)
	case packets.Auth:
		if version >= 5 {
			return protocolf("AUTH without an authentication method in the CONNECT")
		}
		return malformedf("reserved packet type 15")
	}
	return nil
}

// checkAckProps checks the properties of an MQTT 5 PUBACK, PUBREC, PUBREL,
// PUBCOMP or DISCONNECT: a property those may not carry is a protocol
// error (0x82) for mosquitto; a bad encoding is left to the trial decode
// (malformed).
func checkAckProps(typ byte, body []byte, version byte) *packetError {
	off, allowed := 3, []byte{0x1f, 0x26}
	switch {
	case version < 5:
		return nil
	case typ == packets.Disconnect:
		off, allowed = 1, []byte{0x11, 0x1c, 0x1f, 0x26}
	case typ < packets.Puback || typ > packets.Pubcomp:
		return nil
	}
	if len(body) <= off {
		return nil
	}
	if _, perr := readProps(&reader{b: body, off: off}, allowed...); perr != nil && perr.code == rcProtocolError {
		return perr
	}
	return nil
}

// connect checks a CONNECT the way mosquitto's handle__connect does
// before it answers: a failure closes the connection without CONNACK.
// mochi accepted a client id or username that is not mosquitto's UTF-8
// (control characters, U+0000, surrogates), will QoS or retain without a
// will, will QoS 3, a will topic that is empty, holds a wildcard or more
// than maxTopicLevels levels, or starts with $CONTROL/ (mosquitto 2.0.20:
// its plugins' command topics), an MQTT 3.1.1 password without username
// [MQTT-3.1.2-22] and bytes after the payload; it refused a protocol name
// it does not know, and the reserved flag, with a CONNACK. An MQTT 3.1
// CONNECT may have the reserved flag set (mosquitto ignores it there).
// A CONNECT that passes sets the connection's protocol level (without
// mosquitto's bridge bit, 0x80) and client id, unless its level is
// unknown or mochi cannot decode it: mochi refuses it (an unknown level
// with CONNACK 1, connectHook).
func (c *wireConn) connect(fh packets.FixedHeader, body []byte) *packetError {
	r := &reader{b: body}
	name, ok := r.bytes()
	if !ok || r.left() < 4 {
		return malformedf("CONNECT shorter than its variable header")
	}
	v, flags := r.b[r.off]&^0x80, r.b[r.off+1]
	r.off += 4
	switch {
	case string(name) == "MQIsdp" && v == 3, string(name) == "MQTT" && (v == 4 || v == 5):
	case string(name) == "MQIsdp", string(name) == "MQTT":
		return nil
	default:
		return protocolf("CONNECT with protocol name %q", name)
	}
	will, willQoS, willRetain := flags&0x04 != 0, flags>>3&3, flags&0x20 != 0
	user, pass := flags&0x80 != 0, flags&0x40 != 0
	switch {
	case v >= 4 && flags&0x01 != 0:
		return malformedf("CONNECT with the reserved flag set")
	case !will && (willQoS != 0 || willRetain):
		return malformedf("CONNECT with will QoS or retain but no will [MQTT-3.1.2-11]")
	case willQoS == 3:
		return malformedf("CONNECT with will QoS 3")
	case v < 5 && pass && !user:
		return protocolf("CONNECT with a password but no username [MQTT-3.1.2-22]")
	}
	if v >= 5 {
		if _, perr := readProps(r, 0x11, 0x15, 0x16, 0x17, 0x19, 0x21, 0x22, 0x26, 0x27); perr != nil {
			return perr
		}
	}
	id, ok := r.bytes()
	if !ok || !validUTF8(id) {
		return malformedf("CONNECT client id past the end or not valid UTF-8")
	}
	if will {
		if v >= 5 {
			if _, perr := readProps(r, 0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26); perr != nil {
				return perr
			}
		}
		topic, ok := r.bytes()
		switch {
		case !ok || !validUTF8(topic):
			return malformedf("CONNECT will topic past the end or not valid UTF-8")
		case len(topic) == 0 || !validWireTopic(topic) || strings.HasPrefix(string(topic), "$CONTROL/"):
			return protocolf("CONNECT with will topic %q: empty, a wildcard, more than %d levels or $CONTROL/", topic, maxTopicLevels+1)
		}
		payload, ok := r.bytes()
		if !ok {
			return malformedf("CONNECT will payload past the end of the packet")
		}
		c.facts.emptyWill = len(payload) == 0
	}
	if user {
		if u, ok := r.bytes(); !ok || !validUTF8(u) {
			return malformedf("CONNECT username past the end or not valid UTF-8")
		}
	}
	if pass {
		if _, ok := r.bytes(); !ok {
			return malformedf("CONNECT password past the end of the packet")
		}
	}
	if r.left() != 0 {
		return malformedf("%d bytes after the CONNECT payload", r.left())
	}
	if _, why := trialDecode(fh, body, v); why == "" {
		c.version, c.client = v, string(id)
		c.facts.bridge = r.b[2+len(name)]&0x80 != 0 && v < 5
	}
	return nil
}
