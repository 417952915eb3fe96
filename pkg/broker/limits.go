// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"log/slog"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// limitsHook enforces message_size_limit and logs client connections the
// way mosquitto does at its default log level (without usernames).
type limitsHook struct {
	mqtt.HookBase
	log       *slog.Logger
	sizeLimit int

	oversize atomic.Int64 // messages dropped for message_size_limit
}

func newLimitsHook(log *slog.Logger, sizeLimit int) *limitsHook {
	return &limitsHook{log: log, sizeLimit: sizeLimit}
}

// ID implements mqtt.Hook.
func (h *limitsHook) ID() string { return "mqttkit-limits" }

// Provides implements mqtt.Hook.
func (h *limitsHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	}
	return false
}

// OnSessionEstablished logs a new client.
func (h *limitsHook) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	h.log.Info("client connected", "client", cl.ID, "remote", cl.Net.Remote, "listener", cl.Net.Listener,
		"protocol", cl.Properties.ProtocolVersion, "clean", pk.Connect.Clean, "keepalive", pk.Connect.Keepalive)
}

// OnDisconnect logs a client leaving.
func (h *limitsHook) OnDisconnect(cl *mqtt.Client, err error, expire bool) {
	attrs := []any{"client", cl.ID, "remote", cl.Net.Remote}
	if cause := cl.StopCause(); cause != nil && err == nil {
		err = cause
	}
	if err != nil {
		attrs = append(attrs, "reason", err.Error())
	}
	if !expire {
		attrs = append(attrs, "session", "kept")
	}
	h.log.Info("client disconnected", attrs...)
}

// OnPublish drops a PUBLISH whose payload exceeds message_size_limit, as
// mosquitto does: MQTT 5 QoS 1/2 get PUBACK/PUBREC 0x95 Packet too large,
// MQTT 3.1.1 is acknowledged normally.
func (h *limitsHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if h.sizeLimit <= 0 || len(pk.Payload) <= h.sizeLimit || cl.Net.Inline {
		return pk, nil
	}
	h.oversize.Add(1)
	h.log.Info("message dropped: payload larger than message_size_limit", "client", cl.ID, "topic", pk.TopicName,
		"bytes", len(pk.Payload), "limit", h.sizeLimit)
	return pk, refusePublish(cl, pk, packets.ErrPacketTooLarge)
}

// refusePublish answers a refused PUBLISH like mosquitto and returns the
// error for mochi: MQTT 5 QoS 1/2 get PUBACK/PUBREC with code; MQTT 3.1.1
// QoS 1/2 are acknowledged normally and dropped; QoS 0 is dropped.
func refusePublish(cl *mqtt.Client, pk packets.Packet, code packets.Code) error {
	switch {
	case pk.FixedHeader.Qos == 0:
		return packets.ErrRejectPacket
	case cl.Properties.ProtocolVersion < 5:
		return packets.CodeSuccessIgnore
	}
	ackType := byte(packets.Puback)
	if pk.FixedHeader.Qos == 2 {
		ackType = packets.Pubrec // mochi would answer QoS 2 with a PUBACK
	}
	ack := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: ackType},
		PacketID:    pk.PacketID,
		ReasonCode:  code.Code,
		Properties:  packets.Properties{ReasonString: code.Reason},
	}
	if err := cl.WritePacket(ack); err != nil {
		return err
	}
	return packets.ErrRejectPacket
}
