// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// bridgeStateTopic reports mosquitto's one $SYS topic that clients may
// publish to: $SYS/broker/connection/NAME/state, where a mosquitto bridge
// (notifications true, the default) says whether it is connected ("1") or
// not ("0", its will).
func bridgeStateTopic(topic string) bool {
	rest, ok := strings.CutPrefix(topic, "$SYS/broker/connection/")
	if !ok {
		return false
	}
	name, ok := strings.CutSuffix(rest, "/state")
	return ok && name != "" && !strings.ContainsAny(name, "/+#")
}

// acceptBridgeState publishes a client's bridge state notification from
// the broker (mochi drops every PUBLISH to $SYS without an answer) and
// acknowledges it; mochi then drops the packet itself. A QoS 2 flow ends
// with mochi's PUBCOMP for an identifier it does not know.
func (h *fixesHook) acceptBridgeState(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if err := h.bridgeState(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, pk.FixedHeader.Qos); err != nil {
		h.log.Warn("bridge state notification not published", "client", cl.ID, "topic", pk.TopicName, "error", err)
	}
	switch pk.FixedHeader.Qos {
	case 1:
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
	case 2:
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: pk.PacketID})
	}
	return pk, nil
}
