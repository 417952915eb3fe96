// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"errors"
	"log/slog"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// fixesHook renames the packet IDs of inbound flows (mochi issue 545:
// one ID space per client for both directions, so a client's PUBLISH,
// SUBSCRIBE or UNSUBSCRIBE reusing the ID of an outstanding delivery
// deleted it or was refused; MQTT keeps the spaces apart [MQTT-2.2.1]),
// keeps a client's QoS 2 flows across restarts, and refuses PUBLISHes
// to $SYS. Each has a test in fixes_test.go that fails without it
// (docs/design/broker.md, "mochi behaviours replaced").
type fixesHook struct {
	mqtt.HookBase
	server *mqtt.Server
	log    *slog.Logger
	engine *engine // its sessions hold the renaming (session.in)
	// bridgeState publishes a bridge's state notification (bridgestate.go).
	bridgeState func(topic string, payload []byte, retain bool, qos byte) error

	// store keeps the clients' QoS 2 flows across restarts (nil: no
	// persistence).
	store inboundStore
}

// idMap renames one client's inbound packet IDs.
type idMap struct {
	mu       sync.Mutex
	internal map[uint16]uint16 // client's ID -> ID used inside mochi
	client   map[uint16]uint16 // ID used inside mochi -> client's ID
	acks     map[uint16]uint16 // SUBSCRIBE/UNSUBSCRIBE: ID inside mochi -> client's ID
	nextIn   uint16            // where inboundID looks next, downwards (0: not started)
}

// inboundID picks the identifier under which mochi sees an inbound flow
// of cl (m.mu held): one that no other inbound flow uses, counting down
// from the top of the ID space. The broker's own deliveries use the lower
// half (maxOutID, engine.go), numbered 1, 2, 3 ... as mosquitto's.
func (m *idMap) inboundID(cl *mqtt.Client) (uint16, bool) {
	for range 65535 - maxOutID {
		if m.nextIn <= maxOutID {
			m.nextIn = 65535
		}
		id := m.nextIn
		m.nextIn--
		_, in := m.client[id]
		_, sub := m.acks[id]
		if _, out := cl.State.Inflight.Get(id); !in && !sub && !out {
			return id, true
		}
	}
	return 0, false
}

func newFixesHook(server *mqtt.Server, log *slog.Logger, e *engine) *fixesHook {
	return &fixesHook{server: server, log: log, engine: e}
}

// ID implements mqtt.Hook.
func (h *fixesHook) ID() string { return "mqttkit-fixes" }

// Provides implements mqtt.Hook.
func (h *fixesHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPacketRead, mqtt.OnPacketEncode:
		return true
	}
	return false
}

// idsOf returns the renaming of a client's session, which ends with it
// (engine.end); made if new when create is true.
func (h *fixesHook) idsOf(clientID string, create bool) *idMap {
	if create {
		return &h.engine.sessionOf(clientID).in
	}
	if s := h.engine.lookupSession(clientID); s != nil {
		return &s.in
	}
	return nil
}

// errSysPublish ends a client that publishes to $SYS.
var errSysPublish = errors.New("client published to $SYS")

// OnPacketRead renames the packet IDs of inbound QoS 1/2 flows, and
// disconnects a client that publishes to $SYS: mochi would drop the
// message without a word, and without the PUBACK a QoS 1 publisher waits
// for ever.
func (h *fixesHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type == packets.Publish && !cl.Net.Inline && bridgeStateTopic(pk.TopicName) && h.bridgeState != nil {
		return h.acceptBridgeState(cl, pk)
	}
	if pk.FixedHeader.Type == packets.Publish && !cl.Net.Inline && len(pk.TopicName) >= 4 && strings.EqualFold(pk.TopicName[:4], "$SYS") {
		h.log.Warn("client published to $SYS, disconnecting", "client", cl.ID, "remote", cl.Net.Remote, "topic", pk.TopicName)
		if cl.Properties.ProtocolVersion >= 5 {
			_ = h.server.DisconnectClient(cl, packets.ErrNotAuthorized)
		} else {
			cl.Stop(errSysPublish) // MQTT 3.1.1 has no server DISCONNECT
		}
		return pk, errSysPublish
	}
	switch {
	case pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0:
		m := h.idsOf(cl.ID, true)
		m.mu.Lock()
		defer m.mu.Unlock()
		if id, ok := m.internal[pk.PacketID]; ok {
			pk.PacketID = id // a retransmission of a flow in progress
			return pk, nil
		}
		id, ok := m.inboundID(cl)
		if !ok {
			return pk, nil // all identifiers in use: mochi will refuse it
		}
		m.internal[pk.PacketID] = id
		m.client[id] = pk.PacketID
		pk.PacketID = id
	case pk.FixedHeader.Type == packets.Subscribe || pk.FixedHeader.Type == packets.Unsubscribe:
		// mochi refuses a SUBSCRIBE or UNSUBSCRIBE (0x91, 3.1.1: 0x80
		// "failure") whose identifier the broker uses for a delivery, as
		// happens when a resumed session re-subscribes while its stored
		// messages are being re-sent. Give it one the broker does not use.
		m := h.idsOf(cl.ID, true)
		m.mu.Lock()
		defer m.mu.Unlock()
		id, ok := m.inboundID(cl)
		if !ok {
			return pk, nil
		}
		m.acks[id] = pk.PacketID
		pk.PacketID = id
	case pk.FixedHeader.Type == packets.Pubrel:
		if m := h.idsOf(cl.ID, false); m != nil {
			m.mu.Lock()
			if id, ok := m.internal[pk.PacketID]; ok {
				pk.PacketID = id
			}
			m.mu.Unlock()
		}
	}
	return pk, nil
}

// OnPacketEncode renames acknowledgements of inbound flows back to the
// client's packet IDs.
func (h *fixesHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Puback, packets.Pubrec, packets.Pubcomp:
	case packets.Suback, packets.Unsuback:
		if m := h.idsOf(cl.ID, false); m != nil {
			m.mu.Lock()
			if c, ok := m.acks[pk.PacketID]; ok {
				delete(m.acks, pk.PacketID)
				pk.PacketID = c
			}
			m.mu.Unlock()
		}
		return pk
	default:
		return pk
	}
	if pk.FixedHeader.Type == packets.Pubrec && pk.ReasonCode == packets.ErrPacketIdentifierInUse.Code {
		// mochi's answer to a QoS 2 PUBLISH resent before its PUBREL: the
		// message is known (and not delivered again); a plain PUBREC lets
		// the client go on with the flow [MQTT-4.3.3-9].
		pk.ReasonCode, pk.Properties.ReasonString = packets.CodeSuccess.Code, ""
	}
	if m := h.idsOf(cl.ID, false); m != nil {
		m.mu.Lock()
		if c, ok := m.client[pk.PacketID]; ok {
			// PUBACK ends a QoS 1 flow, PUBCOMP a QoS 2 flow, and so does a
			// PUBREC with an error code.
			end := pk.FixedHeader.Type != packets.Pubrec || pk.ReasonCode >= packets.ErrUnspecifiedError.Code
			if end {
				delete(m.client, pk.PacketID)
				delete(m.internal, c)
			}
			if h.store != nil && pk.FixedHeader.Type != packets.Puback && persistent(cl) {
				// The client's QoS 2 flow: stored before the PUBREC goes
				// out, deleted as the PUBCOMP does (see restoreInbound).
				if end {
					h.store.inboundDone(cl.ID, c)
				} else {
					h.store.inbound(cl.ID, c)
				}
			}
			pk.PacketID = c
		}
		m.mu.Unlock()
	}
	return pk
}

// inboundStore keeps the state of the clients' QoS 2 flows: PUBREC sent,
// PUBREL not received, by the client's packet ID.
type inboundStore interface {
	inbound(client string, id uint16)
	inboundDone(client string, id uint16)
}

// restoreInbound puts back, after a restart, a QoS 2 flow of cl that was
// acknowledged with PUBREC and not released: the same PUBLISH resent
// (DUP) is then answered with a PUBREC and not delivered again, and its
// PUBREL completes the flow, as if the broker had not stopped.
func (h *fixesHook) restoreInbound(cl *mqtt.Client, id uint16) {
	m := h.idsOf(cl.ID, true)
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.internal[id]; ok {
		return
	}
	in, ok := m.inboundID(cl)
	if !ok {
		return
	}
	m.internal[id], m.client[in] = in, id
	cl.State.Inflight.Set(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: in})
}
