// SPDX-License-Identifier: Apache-2.0

package client

// A small MQTT 3.1, 3.1.1 and 5 codec for the publishing pipeline
// (stream.go). The pipeline owns its connection so that it can batch
// writes, keep a window of QoS 1/2 messages in flight and resend them on a
// new connection; the paho libraries hide all three. Only the packets a
// publisher needs are here: CONNECT/CONNACK, PUBLISH and its
// acknowledgements, PINGREQ/PINGRESP and DISCONNECT.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"
)

// MQTT control packet types (high nibble of the first byte).
const (
	pktConnect     = 1
	pktConnack     = 2
	pktPublish     = 3
	pktPuback      = 4
	pktPubrec      = 5
	pktPubrel      = 6
	pktPubcomp     = 7
	pktSubscribe   = 8
	pktSuback      = 9
	pktUnsubscribe = 10
	pktUnsuback    = 11
	pktPingreq     = 12
	pktPingresp    = 13
	pktDisconnect  = 14
	pktAuth        = 15
)

// MQTT 5 property identifiers used here [MQTT-2.2.2.2].
const (
	propPayloadFormat       = 0x01
	propMessageExpiry       = 0x02
	propContentType         = 0x03
	propResponseTopic       = 0x08
	propCorrelationData     = 0x09
	propSubscriptionID      = 0x0B
	propSessionExpiry       = 0x11
	propAssignedClientID    = 0x12
	propServerKeepAlive     = 0x13
	propAuthMethod          = 0x15
	propAuthData            = 0x16
	propRequestProblemInfo  = 0x17
	propWillDelay           = 0x18
	propRequestResponseInfo = 0x19
	propResponseInfo        = 0x1A
	propServerReference     = 0x1C
	propReasonString        = 0x1F
	propReceiveMaximum      = 0x21
	propTopicAliasMaximum   = 0x22
	propTopicAlias          = 0x23
	propMaximumQoS          = 0x24
	propRetainAvailable     = 0x25
	propUser                = 0x26
	propMaximumPacketSize   = 0x27
	propWildcardAvailable   = 0x28
	propSubIDAvailable      = 0x29
	propSharedAvailable     = 0x2A
)

// MaxPacketSize is the largest packet MQTT can frame (remaining length 268435455).
const MaxPacketSize = 268435455 + 5

// ErrProtocol is a packet from the broker that breaks the protocol.
var ErrProtocol = errors.New("protocol error when communicating with broker")

// --- encoding ---------------------------------------------------------

func appendUint16(b []byte, v uint16) []byte { return append(b, byte(v>>8), byte(v)) }
func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(b []byte, s string) []byte {
	b = appendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendBinary(b []byte, s []byte) []byte {
	b = appendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func appendVarint(b []byte, v int) []byte {
	for {
		d := byte(v % 128)
		v /= 128
		if v > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if v == 0 {
			return b
		}
	}
}

func varintLen(v int) int {
	switch {
	case v < 128:
		return 1
	case v < 16384:
		return 2
	case v < 2097152:
		return 3
	}
	return 4
}

// appendPacket appends a fixed header and body.
func appendPacket(b []byte, first byte, body []byte) []byte {
	b = append(b, first)
	b = appendVarint(b, len(body))
	return append(b, body...)
}

// appendPublishProps encodes the PUBLISH/will properties of p (without the
// length prefix). Will delay is added by the caller for wills.
func appendPublishProps(b []byte, p *Properties) []byte {
	if p == nil {
		return b
	}
	if p.PayloadFormat != nil {
		b = append(b, propPayloadFormat, *p.PayloadFormat)
	}
	if p.MessageExpiry != nil {
		b = appendUint32(append(b, propMessageExpiry), *p.MessageExpiry)
	}
	if p.ContentType != "" {
		b = appendString(append(b, propContentType), p.ContentType)
	}
	if p.ResponseTopic != "" {
		b = appendString(append(b, propResponseTopic), p.ResponseTopic)
	}
	if p.CorrelationData != nil {
		b = appendBinary(append(b, propCorrelationData), p.CorrelationData)
	}
	if p.TopicAlias != nil {
		b = appendUint16(append(b, propTopicAlias), *p.TopicAlias)
	}
	return appendUserProps(b, p.User)
}

func appendUserProps(b []byte, u []UserProperty) []byte {
	for _, kv := range u {
		b = appendString(append(b, propUser), kv.Key)
		b = appendString(b, kv.Value)
	}
	return b
}

// encodeConnect builds the CONNECT packet for cfg.
func encodeConnect(cfg *Config) []byte {
	v := cfg.version()
	body := make([]byte, 0, 64)
	if v == V31 {
		body = appendString(body, "MQIsdp")
	} else {
		body = appendString(body, "MQTT")
	}
	body = append(body, byte(v))
	var flags byte
	if cfg.CleanStart {
		flags |= 0x02
	}
	if w := cfg.Will; w != nil {
		flags |= 0x04 | w.QoS<<3
		if w.Retain {
			flags |= 0x20
		}
	}
	if cfg.Username != "" {
		flags |= 0x80
	}
	if cfg.Password != "" || cfg.PasswordSet {
		flags |= 0x40
	}
	body = append(body, flags)
	body = appendUint16(body, cfg.KeepAlive)
	if v == V5 {
		var props []byte
		if cfg.SessionExpiry != nil {
			props = appendUint32(append(props, propSessionExpiry), *cfg.SessionExpiry)
		}
		if p := cfg.ConnectProps; p != nil {
			if p.ReceiveMaximum != nil {
				props = appendUint16(append(props, propReceiveMaximum), *p.ReceiveMaximum)
			}
			if p.MaximumPacketSize != nil {
				props = appendUint32(append(props, propMaximumPacketSize), *p.MaximumPacketSize)
			}
			if p.TopicAliasMaximum != nil {
				props = appendUint16(append(props, propTopicAliasMaximum), *p.TopicAliasMaximum)
			}
			if p.RequestRespInfo != nil {
				props = append(props, propRequestResponseInfo, boolByte(*p.RequestRespInfo))
			}
			if p.RequestProblemInfo != nil {
				props = append(props, propRequestProblemInfo, boolByte(*p.RequestProblemInfo))
			}
			if p.AuthMethod != "" {
				props = appendString(append(props, propAuthMethod), p.AuthMethod)
			}
			if p.AuthData != nil {
				props = appendBinary(append(props, propAuthData), p.AuthData)
			}
			props = appendUserProps(props, p.User)
		}
		body = appendVarint(body, len(props))
		body = append(body, props...)
	}
	body = appendString(body, cfg.ClientID)
	if w := cfg.Will; w != nil {
		if v == V5 {
			var wp []byte
			if cfg.ConnectProps != nil && cfg.ConnectProps.WillDelayInterval != nil {
				wp = appendUint32(append(wp, propWillDelay), *cfg.ConnectProps.WillDelayInterval)
			}
			wp = appendPublishProps(wp, w.Props)
			body = appendVarint(body, len(wp))
			body = append(body, wp...)
		}
		body = appendString(body, w.Topic)
		body = appendBinary(body, w.Payload)
	}
	if cfg.Username != "" {
		body = appendString(body, cfg.Username)
	}
	if cfg.Password != "" || cfg.PasswordSet {
		body = appendString(body, cfg.Password)
	}
	return appendPacket(nil, pktConnect<<4, body)
}

func boolByte(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// DisconnectProperties are the MQTT 5 properties of a DISCONNECT sent by the client.
type DisconnectProperties struct {
	SessionExpiry   *uint32
	ReasonString    string
	ServerReference string
	User            []UserProperty
}

func encodeDisconnect(v Version, reason byte, p *DisconnectProperties) []byte {
	if v != V5 {
		return []byte{pktDisconnect << 4, 0}
	}
	var props []byte
	if p != nil {
		if p.SessionExpiry != nil {
			props = appendUint32(append(props, propSessionExpiry), *p.SessionExpiry)
		}
		if p.ReasonString != "" {
			props = appendString(append(props, propReasonString), p.ReasonString)
		}
		if p.ServerReference != "" {
			props = appendString(append(props, propServerReference), p.ServerReference)
		}
		props = appendUserProps(props, p.User)
	}
	if len(props) == 0 {
		// The reason code could be left out, but some decoders (paho.golang's)
		// reject an empty MQTT 5 DISCONNECT.
		return []byte{pktDisconnect << 4, 1, reason}
	}
	body := []byte{reason}
	body = appendVarint(body, len(props))
	body = append(body, props...)
	return appendPacket(nil, pktDisconnect<<4, body)
}

// publishSize returns the size of the PUBLISH packet for the given parts.
func publishSize(topicLen, propsLen, payloadLen int, qos byte, v5 bool) int {
	rem := 2 + topicLen + payloadLen
	if qos > 0 {
		rem += 2
	}
	if v5 {
		rem += varintLen(propsLen) + propsLen
	}
	return 1 + varintLen(rem) + rem
}

// appendPublish appends a PUBLISH packet. props is the encoded property
// block (MQTT 5 only; ignored for 3.x).
func appendPublish(b []byte, v5 bool, topic string, pid uint16, qos byte, retain, dup bool, props, payload []byte) []byte {
	first := byte(pktPublish<<4) | qos<<1
	if retain {
		first |= 1
	}
	if dup {
		first |= 0x08
	}
	rem := 2 + len(topic) + len(payload)
	if qos > 0 {
		rem += 2
	}
	if v5 {
		rem += varintLen(len(props)) + len(props)
	}
	b = append(b, first)
	b = appendVarint(b, rem)
	b = appendString(b, topic)
	if qos > 0 {
		b = appendUint16(b, pid)
	}
	if v5 {
		b = appendVarint(b, len(props))
		b = append(b, props...)
	}
	return append(b, payload...)
}

// --- decoding ---------------------------------------------------------

// maxControlPacket is the largest packet other than PUBLISH that the
// client reads from a broker when it announced no Maximum Packet Size of
// its own. What a broker sends a publisher (CONNACK, PUBACK, PUBREC,
// PUBREL, PUBCOMP, PINGRESP, DISCONNECT, AUTH) is a few bytes plus
// properties such as a reason string or user properties: 1 MiB is far
// beyond any real one, and stops a broken or hostile broker from making
// the client allocate the 256 MB a remaining length can announce.
const maxControlPacket = 1 << 20

// packetReader reads whole packets from a connection.
type packetReader struct {
	r *bufio.Reader
	// limit is the Maximum Packet Size the client announced in CONNECT
	// (MQTT 5), 0 when it announced none. A broker must not send a larger
	// packet [MQTT-3.1.2-24].
	limit int
	buf   []byte
}

func newPacketReader(r io.Reader) *packetReader {
	return &packetReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// read returns the first byte and the body of the next packet. The body is
// valid until the next call. For a PUBLISH the body holds the variable
// header up to the packet identifier only (what the client needs to
// acknowledge it): the rest is read and dropped, so a large message costs
// no memory. A packet over the limit (see maxControlPacket and limit) is
// an error wrapping ErrProtocol, returned before its body is read.
func (pr *packetReader) read() (byte, []byte, error) {
	first, err := pr.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mult := 0, 1
	for i := 0; ; i++ {
		d, err := pr.r.ReadByte()
		if err != nil {
			return 0, nil, unexpectedEOF(err)
		}
		n += int(d&0x7f) * mult
		if d&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, fmt.Errorf("%w: malformed remaining length", ErrProtocol)
		}
		mult *= 128
	}
	typ := first >> 4
	if err := checkPacketSize(typ, 1+varintLen(n)+n, pr.limit); err != nil {
		return 0, nil, err
	}
	keep := n
	if typ == pktPublish {
		if keep, err = pr.publishHeaderLen(first, n); err != nil {
			return 0, nil, err
		}
	}
	body, err := pr.readBody(keep)
	if err != nil {
		return 0, nil, err
	}
	if _, err := pr.r.Discard(n - keep); err != nil {
		return 0, nil, unexpectedEOF(err)
	}
	return first, body, nil
}

// checkPacketSize refuses a packet of type typ and size bytes (fixed
// header included) from the broker: over limit, the Maximum Packet Size
// the client announced (0: none), or, without one, a packet other than
// PUBLISH over maxControlPacket.
func checkPacketSize(typ byte, size, limit int) error {
	switch {
	case limit > 0 && size > limit:
		return fmt.Errorf("%w: the broker sent a %s packet of %d bytes, over the maximum packet size of %d bytes the client announced",
			ErrProtocol, packetName(typ), size, limit)
	case limit == 0 && typ != pktPublish && size > maxControlPacket:
		return fmt.Errorf("%w: the broker sent a %s packet of %d bytes, over the client's limit of %d bytes for that packet",
			ErrProtocol, packetName(typ), size, maxControlPacket)
	}
	return nil
}

// publishHeaderLen returns how much of a PUBLISH body of n bytes to keep:
// the topic and, for QoS 1 and 2, the packet identifier.
func (pr *packetReader) publishHeaderLen(first byte, n int) (int, error) {
	if n < 2 {
		return n, nil
	}
	b, err := pr.r.Peek(2)
	if err != nil {
		return 0, unexpectedEOF(err)
	}
	keep := 2 + int(binary.BigEndian.Uint16(b))
	if first>>1&3 > 0 {
		keep += 2
	}
	return min(n, keep), nil
}

// readBody reads n bytes into pr.buf. The buffer grows with what arrives,
// not with what the header announced: a broker that announces a large
// packet and sends little costs little.
func (pr *packetReader) readBody(n int) ([]byte, error) {
	if n <= cap(pr.buf) {
		body := pr.buf[:n]
		if _, err := io.ReadFull(pr.r, body); err != nil {
			return nil, unexpectedEOF(err)
		}
		return body, nil
	}
	body := pr.buf[:0]
	for len(body) < n {
		step := min(n-len(body), max(len(body), 4<<10))
		body = slices.Grow(body, step)
		m, err := io.ReadFull(pr.r, body[len(body):len(body)+step])
		body = body[:len(body)+m]
		if err != nil {
			pr.buf = body[:0]
			return nil, unexpectedEOF(err)
		}
	}
	pr.buf = body
	return body, nil
}

// packetName names an MQTT control packet type for error messages.
func packetName(typ byte) string {
	names := [...]string{"reserved (0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
		"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}
	return names[typ&0x0f]
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// props is a decoded MQTT 5 property block (only what a publisher reads).
type props struct {
	reasonString      string
	receiveMaximum    *uint16
	maximumQoS        *byte
	retainAvailable   *byte
	maximumPacketSize *uint32
	topicAliasMaximum *uint16
	assignedClientID  string
	serverKeepAlive   *uint16
}

// readProps decodes a property block (length prefix included) from b and
// returns the rest.
func readProps(b []byte) (*props, []byte, error) {
	n, used, err := readVarint(b)
	if err != nil {
		return nil, nil, err
	}
	b = b[used:]
	if n > len(b) {
		return nil, nil, fmt.Errorf("%w: property length", ErrProtocol)
	}
	block, rest := b[:n], b[n:]
	p := &props{}
	for len(block) > 0 {
		id := block[0]
		block = block[1:]
		var v []byte
		switch id {
		case propPayloadFormat, propRequestProblemInfo, propRequestResponseInfo, propMaximumQoS,
			propRetainAvailable, propWildcardAvailable, propSubIDAvailable, propSharedAvailable:
			v, block, err = take(block, 1)
		case propServerKeepAlive, propReceiveMaximum, propTopicAliasMaximum, propTopicAlias:
			v, block, err = take(block, 2)
		case propMessageExpiry, propSessionExpiry, propWillDelay, propMaximumPacketSize:
			v, block, err = take(block, 4)
		case propSubscriptionID:
			var used int
			_, used, err = readVarint(block)
			if err == nil {
				block = block[used:]
			}
		case propContentType, propResponseTopic, propAssignedClientID, propAuthMethod,
			propResponseInfo, propServerReference, propReasonString, propCorrelationData, propAuthData:
			v, block, err = takeString(block)
		case propUser:
			if _, block, err = takeString(block); err == nil {
				_, block, err = takeString(block)
			}
		default:
			return nil, nil, fmt.Errorf("%w: unknown property 0x%02x", ErrProtocol, id)
		}
		if err != nil {
			return nil, nil, err
		}
		switch id {
		case propReasonString:
			p.reasonString = string(v)
		case propAssignedClientID:
			p.assignedClientID = string(v)
		case propReceiveMaximum:
			x := binary.BigEndian.Uint16(v)
			p.receiveMaximum = &x
		case propTopicAliasMaximum:
			x := binary.BigEndian.Uint16(v)
			p.topicAliasMaximum = &x
		case propServerKeepAlive:
			x := binary.BigEndian.Uint16(v)
			p.serverKeepAlive = &x
		case propMaximumQoS:
			x := v[0]
			p.maximumQoS = &x
		case propRetainAvailable:
			x := v[0]
			p.retainAvailable = &x
		case propMaximumPacketSize:
			x := binary.BigEndian.Uint32(v)
			p.maximumPacketSize = &x
		}
	}
	return p, rest, nil
}

func take(b []byte, n int) ([]byte, []byte, error) {
	if len(b) < n {
		return nil, nil, fmt.Errorf("%w: truncated property", ErrProtocol)
	}
	return b[:n], b[n:], nil
}

func takeString(b []byte) ([]byte, []byte, error) {
	if len(b) < 2 {
		return nil, nil, fmt.Errorf("%w: truncated string", ErrProtocol)
	}
	n := int(binary.BigEndian.Uint16(b))
	return take(b[2:], n)
}

func readVarint(b []byte) (int, int, error) {
	n, mult := 0, 1
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0, fmt.Errorf("%w: truncated variable byte integer", ErrProtocol)
		}
		n += int(b[i]&0x7f) * mult
		if b[i]&0x80 == 0 {
			return n, i + 1, nil
		}
		mult *= 128
	}
	return 0, 0, fmt.Errorf("%w: malformed variable byte integer", ErrProtocol)
}

// ackInfo is a decoded PUBACK, PUBREC, PUBREL or PUBCOMP.
type ackInfo struct {
	pid    uint16
	reason byte
	text   string
}

func decodeAck(v5 bool, body []byte) (ackInfo, error) {
	if len(body) < 2 {
		return ackInfo{}, fmt.Errorf("%w: short acknowledgement", ErrProtocol)
	}
	a := ackInfo{pid: binary.BigEndian.Uint16(body)}
	if v5 && len(body) > 2 {
		a.reason = body[2]
		if len(body) > 3 {
			p, _, err := readProps(body[3:])
			if err != nil {
				return a, err
			}
			a.text = p.reasonString
		}
	}
	return a, nil
}

// Session is what the broker said in CONNACK that limits a publisher.
type Session struct {
	Version           Version
	SessionPresent    bool
	ReceiveMaximum    uint16 // 65535 when the broker sent none
	MaximumQoS        byte   // 2 when the broker sent none
	RetainAvailable   bool
	MaximumPacketSize uint32 // 0: no limit announced
	TopicAliasMaximum uint16
	AssignedClientID  string
	KeepAlive         uint16 // server keep alive, or the one we asked for
}

// incomingLimit is the Maximum Packet Size cfg announces to the broker
// (MQTT 5 CONNECT property), 0 when it announces none.
func incomingLimit(cfg *Config) int {
	if cfg.version() != V5 || cfg.ConnectProps == nil || cfg.ConnectProps.MaximumPacketSize == nil {
		return 0
	}
	return int(*cfg.ConnectProps.MaximumPacketSize)
}

// handshake dials cfg's broker and runs CONNECT/CONNACK on the raw
// connection. A refusal is a *ConnectError.
func handshake(ctx context.Context, cfg *Config) (net.Conn, *packetReader, *Session, error) {
	conn, pr, sess, err := handshakeOnce(ctx, cfg)
	var ce *ConnectError
	if err != nil && cfg.version() == V5 && cfg.canFallback() && errors.As(err, &ce) && ce.Code == 132 {
		cfg.logger().Debug("broker refused MQTT 5, retrying with MQTT 3.1.1", "addr", cfg.Addr(), "error", ce.Error())
		c311 := *cfg
		c311.Version = V311
		return handshakeOnce(ctx, &c311)
	}
	return conn, pr, sess, err
}

// handshakeOnce connects and sends CONNECT with cfg's version.
func handshakeOnce(ctx context.Context, cfg *Config) (net.Conn, *packetReader, *Session, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout())
	defer cancel()
	log := cfg.logger()
	v := cfg.version()
	log.Debug("connecting", "addr", cfg.Addr(), "version", v.String(), "client_id", cfg.ClientID)
	conn, err := dialConn(ctx, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	fail := func(err error) (net.Conn, *packetReader, *Session, error) {
		conn.Close()
		var ce *ConnectError
		if errors.As(err, &ce) {
			return nil, nil, nil, err
		}
		// Timeouts, a broker that hung up (maybe a TLS port) or a TLS
		// alert: explained by connackErr.
		return nil, nil, nil, connackErr(ctx, cfg, conn, err)
	}
	if _, err := conn.Write(encodeConnect(cfg)); err != nil {
		return fail(err)
	}
	pr := newPacketReader(conn)
	pr.limit = incomingLimit(cfg)
	first, body, err := pr.read()
	if err != nil {
		return fail(err)
	}
	if first>>4 == pktAuth {
		return fail(errors.New("the broker asked for enhanced authentication, which is not supported"))
	}
	if first>>4 != pktConnack || len(body) < 2 {
		return fail(fmt.Errorf("%w: expected CONNACK", ErrProtocol))
	}
	s := &Session{Version: v, SessionPresent: body[0]&1 == 1, ReceiveMaximum: 65535, MaximumQoS: 2,
		RetainAvailable: true, KeepAlive: cfg.KeepAlive}
	if v != V5 {
		if body[1] != 0 {
			return fail(&ConnectError{Version: v, Code: body[1]})
		}
	} else {
		if len(body) == 2 {
			// A 3.x broker answering an MQTT 5 CONNECT.
			if body[1] != 0 {
				return fail(&ConnectError{Version: V5, Code: 132})
			}
			return fail(fmt.Errorf("%w: CONNACK without properties", ErrProtocol))
		}
		p, _, err := readProps(body[2:])
		if err != nil {
			return fail(err)
		}
		if body[1] >= 0x80 {
			return fail(&ConnectError{Version: V5, Code: body[1], Reason: p.reasonString})
		}
		if p.receiveMaximum != nil {
			s.ReceiveMaximum = *p.receiveMaximum
		}
		if p.maximumQoS != nil {
			s.MaximumQoS = *p.maximumQoS
		}
		if p.retainAvailable != nil {
			s.RetainAvailable = *p.retainAvailable == 1
		}
		if p.maximumPacketSize != nil {
			s.MaximumPacketSize = *p.maximumPacketSize
		}
		if p.topicAliasMaximum != nil {
			s.TopicAliasMaximum = *p.topicAliasMaximum
		}
		if p.serverKeepAlive != nil {
			s.KeepAlive = *p.serverKeepAlive
		}
		s.AssignedClientID = p.assignedClientID
		if s.AssignedClientID != "" {
			log.Debug("broker assigned client id", "client_id", s.AssignedClientID)
		}
	}
	if !stop() {
		return fail(ctx.Err())
	}
	log.Debug("connected", "addr", cfg.Addr(), "session_present", s.SessionPresent, "receive_maximum", s.ReceiveMaximum,
		"maximum_qos", s.MaximumQoS, "maximum_packet_size", s.MaximumPacketSize, "topic_alias_maximum", s.TopicAliasMaximum,
		"retain_available", s.RetainAvailable, "keepalive", s.KeepAlive)
	_ = conn.SetDeadline(time.Time{})
	return conn, pr, s, nil
}
