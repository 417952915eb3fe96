// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"fmt"
	"unicode/utf8"

	"github.com/mochi-mqtt/server/v2/packets"
)

// This file checks client PUBLISH, SUBSCRIBE and UNSUBSCRIBE packets the
// way mosquitto 2.0 does (handle_publish.c, handle_subscribe.c,
// handle_unsubscribe.c, property_mosq.c), before mochi sees them
// (wire.go). Each failure names the MQTT 5 reason code mosquitto sends in
// its DISCONNECT: 0x81 Malformed Packet or 0x82 Protocol Error. The
// checks also bound the work one packet can cause: mochi's topic tree
// spent some 14 seconds on a SUBSCRIBE to 65,535 slashes, and mosquitto
// refuses topics and filters of more than maxTopicLevels levels.

// maxTopicLevels is mosquitto's TOPIC_HIERARCHY_LIMIT: a topic or filter
// may hold at most this many '/' (201 levels); one with more ends the
// connection (02-subpub-qos0-long-topic.py).
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
	v := int(r.b[r.off])<<8 | int(r.b[r.off+1])
	r.off += 2
	return v, true
}

func (r *reader) bytes() ([]byte, bool) {
	n, ok := r.u16()
	if !ok || r.left() < n {
		return nil, false
	}
	v := r.b[r.off : r.off+n]
	r.off += n
	return v, true
}

func (r *reader) varint() (int, bool) {
	v, used, ok := varint(r.b[r.off:])
	if ok {
		r.off += used
	}
	return v, ok
}

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
		switch c {
		case '+':
			if (i > 0 && f[i-1] != '/') || (i+1 < len(f) && f[i+1] != '/') {
				return false
			}
		case '#':
			if (i > 0 && f[i-1] != '/') || i+1 < len(f) {
				return false
			}
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

// MQTT 5 property identifiers and their types [MQTT-2.2.2].
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

// props are the MQTT 5 properties of a packet that the checks look at.
type props struct {
	seen          map[byte]bool
	payloadFormat int // -1: absent
	subID         int // -1: absent
	topicAlias    int // -1: absent
}

// readProps reads an MQTT 5 property list and checks it as mosquitto's
// property__read_all does: a bad encoding or an unknown identifier is
// malformed (0x81); a property the packet type may not carry, or one
// given twice (other than user properties), is a protocol error (0x82).
func readProps(r *reader, allowed ...byte) (props, *packetError) {
	p := props{payloadFormat: -1, subID: -1, topicAlias: -1}
	n, ok := r.varint()
	if !ok || r.left() < n {
		return p, malformedf("properties longer than the packet")
	}
	end := r.off + n
	pr := &reader{b: r.b[:end], off: r.off}
	r.off = end
	for pr.left() > 0 {
		id, ok := pr.varint()
		if !ok {
			return p, malformedf("bad property identifier")
		}
		if id >= len(propTypes) || propTypes[id] == 0 {
			return p, malformedf("unknown property 0x%02x", id)
		}
		var v int
		switch propTypes[id] {
		case propByte:
			if pr.left() < 1 {
				return p, malformedf("property 0x%02x past the end", id)
			}
			v = int(pr.b[pr.off])
			pr.off++
		case propU16:
			if v, ok = pr.u16(); !ok {
				return p, malformedf("property 0x%02x past the end", id)
			}
		case propU32:
			if pr.left() < 4 {
				return p, malformedf("property 0x%02x past the end", id)
			}
			pr.off += 4
		case propVarint:
			if v, ok = pr.varint(); !ok {
				return p, malformedf("property 0x%02x: bad variable byte integer", id)
			}
		case propString, propBinary:
			s, ok := pr.bytes()
			if !ok {
				return p, malformedf("property 0x%02x past the end", id)
			}
			if propTypes[id] == propString && !validUTF8(s) {
				return p, malformedf("property 0x%02x is not valid UTF-8", id)
			}
		case propPair:
			k, ok1 := pr.bytes()
			val, ok2 := pr.bytes()
			if !ok1 || !ok2 {
				return p, malformedf("user property past the end")
			}
			if !validUTF8(k) || !validUTF8(val) {
				return p, malformedf("user property is not valid UTF-8")
			}
		}
		b := byte(id)
		permitted := false
		for _, a := range allowed {
			permitted = permitted || a == b
		}
		if !permitted {
			return p, protocolf("property 0x%02x not allowed in this packet", id)
		}
		if b != 0x26 && p.seen[b] {
			return p, protocolf("property 0x%02x given twice", id)
		}
		if p.seen == nil {
			p.seen = map[byte]bool{}
		}
		p.seen[b] = true
		switch b {
		case 0x01:
			p.payloadFormat = v
		case 0x0b:
			p.subID = v
		case 0x23:
			p.topicAlias = v
		}
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
	if !ok {
		return malformedf("PUBLISH topic past the end of the packet")
	}
	if !validUTF8(topic) {
		return malformedf("PUBLISH topic is not valid UTF-8")
	}
	if len(topic) == 0 && version < 5 {
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
		if p.payloadFormat > 1 {
			return protocolf("payload format indicator %d", p.payloadFormat)
		}
		if a := p.topicAlias; a >= 0 {
			if a == 0 || a > topicAliasMaximum {
				return &packetError{code: rcTopicAliasInvalid, why: fmt.Sprintf("topic alias %d (maximum %d)", a, topicAliasMaximum)}
			}
			switch {
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

// checkSubscribe checks a SUBSCRIBE body: a packet identifier, MQTT 5
// properties, then filters each followed by its options byte
// [MQTT-3.8.3]. Every failure is malformed for mosquitto (it turns
// property protocol errors into malformed packets here). mochi's decoder
// reads past the end of an MQTT 5 SUBSCRIBE whose last filter lacks its
// options byte: this check is what keeps it from ever seeing one.
func checkSubscribe(body []byte, version byte) *packetError {
	r := &reader{b: body}
	id, ok := r.u16()
	if !ok {
		return malformedf("SUBSCRIBE without a packet identifier")
	}
	if id == 0 {
		return malformedf("SUBSCRIBE with packet identifier 0")
	}
	if version >= 5 {
		p, perr := readProps(r, 0x0b, 0x26)
		if perr != nil {
			return malformedf("SUBSCRIBE properties: %s", perr.why)
		}
		if p.subID == 0 {
			return malformedf("SUBSCRIBE with subscription identifier 0")
		}
	}
	if r.left() == 0 {
		return malformedf("SUBSCRIBE without a filter")
	}
	for r.left() > 0 {
		f, ok := r.bytes()
		if !ok {
			return malformedf("SUBSCRIBE filter past the end of the packet")
		}
		if r.left() == 0 {
			return malformedf("SUBSCRIBE filter without its subscription options")
		}
		opts := r.b[r.off]
		r.off++
		switch {
		case len(f) == 0:
			return malformedf("empty SUBSCRIBE filter")
		case !validUTF8(f):
			return malformedf("SUBSCRIBE filter is not valid UTF-8")
		case !validWireFilter(f):
			return malformedf("invalid SUBSCRIBE filter (wildcard placement or more than %d levels)", maxTopicLevels+1)
		case opts&3 == 3:
			return malformedf("SUBSCRIBE with QoS 3")
		case version < 5 && opts&0xfc != 0:
			return malformedf("SUBSCRIBE options 0x%02x: reserved bits set", opts)
		case version >= 5 && opts&0xc0 != 0:
			return malformedf("SUBSCRIBE options 0x%02x: reserved bits set", opts)
		case version >= 5 && opts>>4&3 == 3:
			return malformedf("SUBSCRIBE with retain handling 3")
		}
	}
	return nil
}

// checkUnsubscribe checks an UNSUBSCRIBE body; every failure is malformed
// for mosquitto.
func checkUnsubscribe(body []byte, version byte) *packetError {
	r := &reader{b: body}
	id, ok := r.u16()
	if !ok {
		return malformedf("UNSUBSCRIBE without a packet identifier")
	}
	if id == 0 {
		return malformedf("UNSUBSCRIBE with packet identifier 0")
	}
	if version >= 5 {
		if _, perr := readProps(r, 0x26); perr != nil {
			return malformedf("UNSUBSCRIBE properties: %s", perr.why)
		}
	}
	if r.left() == 0 {
		return malformedf("UNSUBSCRIBE without a filter")
	}
	for r.left() > 0 {
		f, ok := r.bytes()
		switch {
		case !ok:
			return malformedf("UNSUBSCRIBE filter past the end of the packet")
		case len(f) == 0:
			return malformedf("empty UNSUBSCRIBE filter")
		case !validUTF8(f):
			return malformedf("UNSUBSCRIBE filter is not valid UTF-8")
		case !validWireFilter(f):
			return malformedf("invalid UNSUBSCRIBE filter (wildcard placement or more than %d levels)", maxTopicLevels+1)
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
	if version < 5 {
		return nil
	}
	var r *reader
	var allowed []byte
	switch typ {
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		if len(body) <= 3 {
			return nil
		}
		r, allowed = &reader{b: body, off: 3}, []byte{0x1f, 0x26}
	case packets.Disconnect:
		if len(body) <= 1 {
			return nil
		}
		r, allowed = &reader{b: body, off: 1}, []byte{0x11, 0x1c, 0x1f, 0x26}
	default:
		return nil
	}
	if _, perr := readProps(r, allowed...); perr != nil && perr.code == rcProtocolError {
		return perr
	}
	return nil
}

// checkConnect checks a CONNECT the way mosquitto's handle__connect does
// before it answers: a failure closes the connection without CONNACK.
// mochi accepted a client id or username that is not mosquitto's UTF-8
// (control characters, U+0000, surrogates), will QoS or retain without a
// will, will QoS 3, an MQTT 3.1.1 password without username
// [MQTT-3.1.2-22] and bytes after the payload; it refused a protocol name
// it does not know, and the reserved flag, with a CONNACK. An MQTT 3.1
// CONNECT may have the reserved flag set (mosquitto ignores it there), and
// an unknown protocol level is left to mochi, which refuses it with
// CONNACK 1 (connectHook).
func checkConnect(body []byte) *packetError {
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
		return nil // unsupported protocol level: CONNACK 1
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
	if !ok {
		return malformedf("CONNECT without a client id")
	}
	if !validUTF8(id) {
		return malformedf("CONNECT client id is not valid UTF-8")
	}
	if will {
		if v >= 5 {
			if _, perr := readProps(r, 0x01, 0x02, 0x03, 0x08, 0x09, 0x18, 0x26); perr != nil {
				return perr
			}
		}
		if _, ok := r.bytes(); !ok { // the topic: connectHook checks it
			return malformedf("CONNECT will topic past the end of the packet")
		}
		if _, ok := r.bytes(); !ok {
			return malformedf("CONNECT will payload past the end of the packet")
		}
	}
	if user {
		u, ok := r.bytes()
		if !ok {
			return malformedf("CONNECT username past the end of the packet")
		}
		if !validUTF8(u) {
			return malformedf("CONNECT username is not valid UTF-8")
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
	return nil
}
