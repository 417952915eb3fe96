// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"cmp"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// connectHook owns mosquitto 2.0's CONNECT and CONNACK policy where
// mochi's differs: docs/design/connect.md lists each decision.
type connectHook struct {
	mqtt.HookBase
	server *mqtt.Server
	log    *slog.Logger

	// receiveMax is the Receive Maximum advertised to MQTT 5 clients
	// (max_inflight_messages); 0 advertises none (no limit).
	receiveMax uint16
	// sizeLimit is message_size_limit: a larger will payload is refused;
	// 0 = no limit.
	sizeLimit int
	// maxQoS is maximum_qos by listener ID, for the listeners that have
	// one below 2; set before the broker starts.
	maxQoS map[string]byte
	// mounts is mount_point by listener ID (mount.go); set before the
	// broker starts.
	mounts map[string]string

	// noSubs holds a client while mochi processes its MQTT 5 QoS 1
	// PUBLISH that matched no subscription (unrouted, from the engine, to
	// OnPacketProcessed): the PUBACK mochi writes meanwhile, on the same
	// goroutine, is the one for it.
	noSubs sync.Map
	// keepWill holds a connection taken over by one that resumes its
	// session, until its will would be published (willKept).
	keepWill sync.Map
}

// takeoverGrace is how long a connection that takes over a client id
// waits for the old connection to end by itself first (its client's
// DISCONNECT or close may still be on the way through the broker), and
// takeoverWait how long it then waits for mochi to remove a session that
// ends with the old connection.
const (
	takeoverGrace = 100 * time.Millisecond
	takeoverWait  = 2 * time.Second
)

// topicAliasMaximum is the Topic Alias Maximum the broker accepts from
// clients and advertises, as mosquitto's max_topic_alias default.
const topicAliasMaximum = 10

func newConnectHook(server *mqtt.Server, log *slog.Logger, receiveMax uint16, sizeLimit int) *connectHook {
	return &connectHook{server: server, log: log, receiveMax: receiveMax, sizeLimit: sizeLimit}
}

// facts returns what wireConn read from cl's CONNECT that mochi changes or
// loses (none for the in-process listener's clients).
func facts(cl *mqtt.Client) connectFacts {
	if w, ok := cl.Net.Conn.(*wireConn); ok {
		return w.facts
	}
	return connectFacts{}
}

// ID implements mqtt.Hook.
func (h *connectHook) ID() string { return "mqttkit-connect" }

// Provides implements mqtt.Hook.
func (h *connectHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnConnect, mqtt.OnSessionEstablish, mqtt.OnPacketEncode, mqtt.OnDisconnect, mqtt.OnPacketProcessed:
		return true
	}
	return false
}

// willPlaceholder stands in for a zero-length will payload while mochi
// validates the CONNECT (it refuses an empty one); OnConnect restores it.
var willPlaceholder = []byte{0}

// OnPacketRead adjusts a CONNECT before mochi validates it: it strips
// mosquitto's bridge bit from the protocol version and lets a zero-length
// will payload and a zero-length password through (wireConn has checked
// the will topic).
func (h *connectHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	limit, limited := h.maxQoS[cl.Net.Listener]
	mount, mounted := h.mounts[cl.Net.Listener]
	if pk.FixedHeader.Type != packets.Connect {
		if pk.FixedHeader.Type == packets.Publish && limited && pk.FixedHeader.Qos > limit {
			return pk, h.qosRefused(cl, pk.FixedHeader.Qos, limit)
		}
		if mounted {
			mountInbound(mount, &pk)
		}
		bridge := pk.FixedHeader.Type == packets.Subscribe && facts(cl).bridge
		for i := range pk.Filters {
			if limited {
				pk.Filters[i].Qos = min(pk.Filters[i].Qos, limit)
			}
			if bridge {
				// mosquitto never sends a bridge its own messages back
				// (mochi refuses no local on a shared subscription), and
				// keeps the retain flag of what it sends to a bridge, so
				// that retained messages stay retained on the other side
				// (mochi keeps it for MQTT 3.1.1 clients only with
				// FwdRetainedFlag).
				pk.Filters[i].NoLocal = !mqtt.IsSharedFilter(pk.Filters[i].Filter)
				pk.Filters[i].RetainAsPublished = true
				pk.Filters[i].FwdRetainedFlag = true
			}
		}
		return pk, nil
	}
	if facts(cl).bridge {
		pk.ProtocolVersion &= 0x7f
	}
	if pk.Connect.WillFlag {
		if len(pk.Connect.WillPayload) == 0 {
			pk.Connect.WillPayload = willPlaceholder
		}
		if mounted {
			pk.Connect.WillTopic = mount + pk.Connect.WillTopic
		}
	}
	if pk.ProtocolVersion == 3 {
		pk.ReservedBit = 0 // mosquitto ignores the reserved flag of MQTT 3.1
	}
	if pk.Connect.PasswordFlag && len(pk.Connect.Password) == 0 {
		// A password that matches no user's: securityHook refuses a
		// username without password as not authorised.
		pk.Connect.PasswordFlag = false
	}
	return pk, nil
}

// errQoSNotSupported ends a connection that used a QoS above the
// listener's maximum_qos.
var errQoSNotSupported = fmt.Errorf("QoS above maximum_qos: %w", packets.ErrRejectPacket)

// qosRefused ends the connection of a client that sent a PUBLISH above
// its listener's maximum_qos, as mosquitto does: MQTT 5 clients get
// DISCONNECT 0x9B QoS not supported; the message is not published.
func (h *connectHook) qosRefused(cl *mqtt.Client, qos, limit byte) error {
	h.log.Info("client sent a PUBLISH above maximum_qos, disconnecting", "client", cl.ID, "remote", cl.Net.Remote,
		"qos", qos, "maximum_qos", limit)
	if cl.Properties.ProtocolVersion >= 5 {
		// One write of the whole packet, without properties, as mosquitto
		// sends it.
		_, _ = cl.Net.Conn.Write([]byte{packets.Disconnect << 4, 1, packets.ErrQosNotSupported.Code})
	}
	cl.Stop(packets.ErrQosNotSupported)
	return errQoSNotSupported
}

// OnConnect applies mosquitto's checks that follow the CONNECT's
// validation and precede authentication (the hook is added before
// securityHook), and assigns client identifiers.
func (h *connectHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	if facts(cl).emptyWill {
		cl.Properties.Will.Payload = []byte{}
	}
	v5 := cl.Properties.ProtocolVersion >= 5
	if limit, ok := h.maxQoS[cl.Net.Listener]; ok && pk.Connect.WillFlag && pk.Connect.WillQos > limit {
		h.log.Info("connection refused: will QoS above maximum_qos", "client", cl.ID, "remote", cl.Net.Remote,
			"qos", pk.Connect.WillQos, "maximum_qos", limit)
		if !v5 {
			return errQoSNotSupported // mosquitto closes without CONNACK
		}
		return refuseConnect(h.server, cl, packets.ErrQosNotSupported, packets.ErrQosNotSupported)
	}
	if pk.Connect.WillFlag && h.sizeLimit > 0 && len(cl.Properties.Will.Payload) > h.sizeLimit {
		h.log.Info("connection refused: will payload larger than message_size_limit", "client", cl.ID,
			"remote", cl.Net.Remote, "bytes", len(cl.Properties.Will.Payload), "limit", h.sizeLimit)
		return refuseConnect(h.server, cl, packets.Err3NotAuthorized, packets.ErrPacketTooLarge)
	}
	if v5 && pk.Properties.AuthenticationMethod != "" {
		h.log.Info("connection refused: unsupported authentication method", "client", cl.ID, "remote", cl.Net.Remote,
			"method", pk.Properties.AuthenticationMethod)
		return refuseConnect(h.server, cl, packets.ErrBadAuthenticationMethod, packets.ErrBadAuthenticationMethod)
	}
	return nil
}

// OnSessionEstablish decides, before mochi takes over an existing
// connection of the same client id, whether that connection's will is
// published: as mosquitto, only when its session ends with it or the new
// connection starts clean (mochi publishes it in every case: a client
// that reconnects after a network change, before the broker noticed, would
// announce its own death). A session that ends with the old connection is
// not handed over: the new connection waits until mochi has removed it.
func (h *connectHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	old, ok := h.server.Clients.Get(cl.ID)
	if !ok || old == cl || pk.Connect.Clean {
		return
	}
	// The old connection may still be handling what its client sent before
	// this CONNECT (a DISCONNECT, perhaps with Session Expiry 0, and a
	// close) on its own goroutine; mosquitto, with one thread, has handled
	// them by now (05-session-expiry-v5.py). No hook runs once mochi has
	// removed a session, hence the polling.
	waitUntil(takeoverGrace, old.Closed)
	closed := old.Closed() // first: it orders the reads after a DISCONNECT's Session Expiry change
	switch {
	case !sessionEnds(old):
		// Not by clearing old's will: mochi writes old.Properties.Will
		// itself when old ends normally, on old's goroutine (a data race).
		h.keepWill.Store(old, struct{}{})
		return
	case !closed && old.Properties.ProtocolVersion < 5:
		return
	case !closed:
		// End it first, as mosquitto does (DISCONNECT 0x8E, its will).
		_ = h.server.DisconnectClient(old, packets.ErrSessionTakenOver)
	}
	waitUntil(takeoverWait, func() bool {
		c, ok := h.server.Clients.Get(cl.ID)
		return !ok || c != old
	})
}

// waitUntil polls done every millisecond for up to d.
func waitUntil(d time.Duration, done func() bool) {
	for deadline := time.Now().Add(d); !done() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// sessionEnds reports whether cl's session ends with its connection (MQTT
// 5 Session Expiry 0, MQTT 3.1/3.1.1 clean session), as mochi decides it.
func sessionEnds(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion >= 5 {
		return cl.Properties.Props.SessionExpiryInterval == 0
	}
	return cl.Properties.Clean
}

// willKept reports (once) whether cl's will is not to be published: cl
// was taken over by a connection that resumes its session
// (OnSessionEstablish). The engine asks it before it publishes a will.
func (h *connectHook) willKept(cl *mqtt.Client) bool {
	_, ok := h.keepWill.LoadAndDelete(cl)
	return ok
}

// refuseConnect sends a refusing CONNACK, v3 to MQTT 3.1/3.1.1 clients
// and v5 to MQTT 5 ones, and returns the error that ends the connection.
func refuseConnect(srv *mqtt.Server, cl *mqtt.Client, v3, v5 packets.Code) error {
	code := v5
	if cl.Properties.ProtocolVersion < 5 {
		code = v3
	}
	if err := srv.SendConnack(cl, code, false, nil); err != nil {
		return fmt.Errorf("%w: send connack: %w", errRefused, err)
	}
	return errRefused
}

// OnDisconnect forgets cl.
func (h *connectHook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.noSubs.Delete(cl)
	h.keepWill.Delete(cl) // mochi sends the will, if at all, before OnDisconnect
}

// unrouted notes an MQTT 5 QoS 1 PUBLISH of cl that no subscription
// matches (the engine, which routes it, says so), for its PUBACK
// (OnPacketEncode). Subscriptions count whether or not the ACL lets their
// clients read the topic, as in mosquitto.
func (h *connectHook) unrouted(cl *mqtt.Client) { h.noSubs.Store(cl, struct{}{}) }

// OnPacketProcessed forgets the note of unrouted once mochi is done
// with the PUBLISH (it was refused without a PUBACK, say).
func (h *connectHook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos == 1 && cl.Properties.ProtocolVersion >= 5 {
		h.noSubs.Delete(cl)
	}
}

// noSubscribersReason is the reason string on a PUBACK 0x10 as mochi
// encodes it; compactWrite removes it.
const noSubscribersReason = "No matching subscribers"

// OnPacketEncode sets the CONNACK's flags and properties as mosquitto
// does; connackOrder puts the properties in mosquitto's order on the wire.
func (h *connectHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Publish && pk.Connect.WillProperties.WillDelayInterval > 0 {
		// A delayed will: mochi schedules it with the packet's expiry
		// time, which WritePacket then turns into a Message Expiry
		// Interval of 1 s the will never had.
		pk.Properties.MessageExpiryInterval = 0
		return pk
	}
	if pk.FixedHeader.Type == packets.Puback && cl.Properties.ProtocolVersion >= 5 {
		if _, ok := h.noSubs.LoadAndDelete(cl); ok && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			pk.ReasonCode = packets.CodeNoMatchingSubscribers.Code
			pk.Properties = packets.Properties{ReasonString: noSubscribersReason}
		}
		return pk
	}
	if pk.FixedHeader.Type == packets.Disconnect && pk.ReasonCode == packets.ErrSessionTakenOver.Code {
		pk.Properties.ReasonString = "" // mosquitto sends 0x8E alone; mochi adds "session takeover"
		return pk
	}
	if pk.FixedHeader.Type != packets.Connack {
		return pk
	}
	switch v := cl.Properties.ProtocolVersion; {
	case v < 3 || v > 5:
		// A protocol level mochi does not speak: refused in the form
		// every version understands, 1 Unacceptable protocol version, as
		// mosquitto does (mochi: 0x82 Protocol Error).
		pk.ReasonCode, pk.SessionPresent = packets.Err3UnsupportedProtocolVersion.Code, false
		return pk
	case v == 3:
		pk.SessionPresent = false // reserved in MQTT 3.1
		fallthrough
	case v < 5:
		if pk.ReasonCode == packets.ErrUnspecifiedError.Code {
			// mochi's refusal of an empty client id without clean
			// session, in a code MQTT 3.1.1 does not have.
			pk.ReasonCode = packets.Err3ClientIdentifierNotValid.Code
		}
		return pk
	}
	limit, limited := h.maxQoS[cl.Net.Listener]
	if pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		pk.Properties = packets.Properties{}
		limited = limited && pk.ReasonCode == packets.ErrQosNotSupported.Code // as mosquitto
	} else {
		pk.Properties.TopicAliasMaximum = topicAliasMaximum
		pk.Properties.ReceiveMaximum = h.receiveMax // 0: not sent
	}
	if limited {
		pk.Properties.MaximumQos, pk.Properties.MaximumQosFlag = limit, true
	}
	return pk
}

// connackOrder returns a CONNACK packet (fixed header included) with its
// MQTT 5 properties in the order mosquitto writes them; any other packet,
// or one it cannot parse, is returned as it is. mosquitto's test suite
// compares CONNACKs byte for byte, and mochi encodes properties in an
// order of its own.
func connackOrder(p []byte) []byte {
	if len(p) < 6 || p[0] != 0x20 || p[1]&0x80 != 0 || int(p[1]) != len(p)-2 {
		return p
	}
	// 20 len flags rc proplen props...; a v3 CONNACK has len 2.
	plen, n, ok := varint(p[4:])
	if !ok || 4+n+plen != len(p) {
		return p
	}
	var list [][]byte
	for props := p[4+n:]; len(props) > 0; {
		size := propSize(props)
		if size == 0 {
			return p
		}
		list = append(list, props[:size])
		props = props[size:]
	}
	slices.SortStableFunc(list, func(a, b []byte) int { return cmp.Compare(connackRank(a[0]), connackRank(b[0])) })
	out := append(make([]byte, 0, len(p)), p[:4+n]...)
	for _, b := range list {
		out = append(out, b...)
	}
	return out
}

// compactDisconnect returns a write that is exactly an MQTT 5 DISCONNECT
// with a reason code and no properties (mochi: e0 02 RC 00) as mosquitto
// writes it, without the property length (e0 01 RC), which MQTT 5 allows
// (3.14.2.2.1: absent means 0); any other write is returned as it is. mochi writes
// each packet whole, so a 4-byte write is one packet.
func compactDisconnect(p []byte) []byte {
	if len(p) == 4 && p[0] == 0xe0 && p[1] == 2 && p[3] == 0 {
		return []byte{0xe0, 1, p[2]}
	}
	return p
}

// noSubscribersAck is how mochi encodes PUBACK 0x10 with
// noSubscribersReason after the packet identifier.
var noSubscribersAck = append([]byte{packets.CodeNoMatchingSubscribers.Code, byte(3 + len(noSubscribersReason)), 0x1f, 0,
	byte(len(noSubscribersReason))}, noSubscribersReason...)

// compactWrite returns a write as mosquitto writes the packet: a
// DISCONNECT without properties without its property length
// (compactDisconnect), and a PUBACK 0x10 No matching subscribers
// (connectHook.OnPacketEncode) without its reason string (40 03 ID 10);
// any other write is returned as it is. mochi writes each packet whole,
// with one Write.
func compactWrite(p []byte) []byte {
	if len(p) == 4+len(noSubscribersAck) && p[0] == packets.Puback<<4 && int(p[1]) == len(p)-2 && bytes.Equal(p[4:], noSubscribersAck) {
		return []byte{p[0], 3, p[2], p[3], packets.CodeNoMatchingSubscribers.Code}
	}
	return compactDisconnect(p)
}

// connackRank is a CONNACK property's place in mosquitto's order
// (handle_connect.c, then send_connack.c): Server Keep Alive, Topic Alias
// Maximum, Assigned Client Identifier, Authentication Method and Data,
// Retain Available, Maximum Packet Size, Receive Maximum, Maximum QoS;
// others follow (-1 is the largest uint) in mochi's order.
func connackRank(id byte) uint {
	return uint(strings.IndexByte("\x13\x22\x12\x15\x16\x25\x27\x21\x24", id))
}
