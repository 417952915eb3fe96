// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// maxPublishOverhead is the most a PUBLISH can hold besides its payload:
// the fixed header (5 bytes), the longest topic (2 + 65,535), a packet ID
// (2) and up to 64 KiB of MQTT 5 properties.
const maxPublishOverhead = 5 + 2 + 65535 + 2 + 64<<10

// effectiveMaxPacket is the Maximum Packet Size for max_packet_size and
// message_size_limit (0: none) together: the smaller limit. The one of a
// message_size_limit is the largest PUBLISH whose payload fits it. mochi
// refuses a longer packet from its fixed header, before it allocates and
// reads the body (up to 256 MiB a client could announce), and disconnects
// the client (MQTT 5: DISCONNECT 0x95); a PUBLISH that fits but whose
// payload is over the limit is read and dropped as mosquitto does, the
// connection stays. As mosquitto, the CONNACK advertises only
// max_packet_size.
func effectiveMaxPacket(maxPacket, sizeLimit int) uint32 {
	var limit uint32
	if sizeLimit > 0 {
		limit = uint32(min(sizeLimit+maxPublishOverhead, 268435455+5))
	}
	if maxPacket > 0 && (limit == 0 || uint32(maxPacket) < limit) {
		limit = uint32(maxPacket)
	}
	return limit
}

// limitsHook enforces message_size_limit and logs client connections the
// way mosquitto does at its default log level (without usernames).
type limitsHook struct {
	mqtt.HookBase
	log       *slog.Logger
	sizeLimit int
	maxPacket uint32 // Maximum Packet Size enforced (effectiveMaxPacket)
	advertise uint32 // Maximum Packet Size advertised to MQTT 5 clients (max_packet_size; 0: none)
	noRetain  bool   // retain_available false

	oversize atomic.Int64 // messages dropped for message_size_limit
}

// ID implements mqtt.Hook.
func (h *limitsHook) ID() string { return "mqttkit-limits" }

// Provides implements mqtt.Hook.
func (h *limitsHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnSessionEstablished, mqtt.OnDisconnect:
		return true
	case mqtt.OnPacketEncode:
		return h.advertise > 0 || h.noRetain
	}
	return false
}

// OnPacketEncode tells MQTT 5 clients the Maximum Packet Size of
// max_packet_size and that retained messages are not available in the
// CONNACK (mochi enforces the size and ignores retain flags without
// saying so) [MQTT-3.2.2-15] [MQTT-3.2.2-13].
func (h *limitsHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == packets.CodeSuccess.Code && cl.Properties.ProtocolVersion >= 5 {
		pk.Properties.MaximumPacketSize = h.advertise
		if h.noRetain {
			pk.Properties.RetainAvailable, pk.Properties.RetainAvailableFlag = 0, true
		}
	}
	return pk
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
	if errors.Is(err, packets.ErrPacketTooLarge) {
		h.oversize.Add(1)
		h.log.Warn("client sent a packet larger than the maximum packet size (max_packet_size, or message_size_limit + PUBLISH overhead), disconnecting",
			"client", cl.ID, "remote", cl.Net.Remote, "max_bytes", h.maxPacket)
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
	if h.noRetain && pk.FixedHeader.Retain && !cl.Net.Inline {
		return pk, h.retainRefused(cl)
	}
	if h.sizeLimit <= 0 || len(pk.Payload) <= h.sizeLimit || cl.Net.Inline {
		return pk, nil
	}
	h.oversize.Add(1)
	h.log.Info("message dropped: payload larger than message_size_limit", "client", cl.ID, "topic", pk.TopicName,
		"bytes", len(pk.Payload), "limit", h.sizeLimit)
	return pk, refusePublish(cl, pk, packets.ErrPacketTooLarge)
}

// retainRefused ends the connection of a client that sent a retained
// PUBLISH while retain_available is false, as mosquitto does: MQTT 5
// clients get DISCONNECT 0x9A Retain not supported [MQTT-3.3.1-16]; the
// message is not published.
func (h *limitsHook) retainRefused(cl *mqtt.Client) error {
	h.log.Info("client sent a retained message but retain_available is false, disconnecting", "client", cl.ID, "remote", cl.Net.Remote)
	if cl.Properties.ProtocolVersion >= 5 {
		// One write of the whole packet, without properties, as mosquitto
		// sends it (mochi's encoder adds an empty property length).
		_, _ = cl.Net.Conn.Write([]byte{packets.Disconnect << 4, 1, packets.ErrRetainNotSupported.Code})
	}
	cl.Stop(packets.ErrRetainNotSupported)
	return packets.ErrRejectPacket
}

// refusePublish answers a refused PUBLISH like mosquitto and returns the
// error for mochi: MQTT 5 QoS 1/2 get PUBACK/PUBREC with code and, as
// from mosquitto, no reason string; MQTT 3.1.1 QoS 1/2 are acknowledged
// normally and dropped; QoS 0 is dropped.
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
	}
	if err := cl.WritePacket(ack); err != nil {
		return err
	}
	return packets.ErrRejectPacket
}

// maxLogValue bounds the bytes of one string value in a log line.
const maxLogValue = 256

// boundedLog is a log handler that shortens long string and error values
// (a client id can be 65,535 bytes, a topic too) to maxLogValue bytes and
// says how long they were, as mosquitto bounds its log lines. Each
// connection logs its client id a few times: unbounded, one client could
// write megabytes of log, and a broker whose stderr is a pipe nobody
// empties fast enough stalled on the write (mosquitto's
// 01-connect-575314.py, which reads the broker's -v output only at the
// end).
type boundedLog struct{ h slog.Handler }

// newBoundedLogger wraps log's handler in a boundedLog.
func newBoundedLogger(log *slog.Logger) *slog.Logger {
	if _, ok := log.Handler().(boundedLog); ok {
		return log
	}
	return slog.New(boundedLog{h: log.Handler()})
}

func (b boundedLog) Enabled(ctx context.Context, l slog.Level) bool { return b.h.Enabled(ctx, l) }

func (b boundedLog) WithAttrs(as []slog.Attr) slog.Handler {
	out := make([]slog.Attr, len(as))
	for i, a := range as {
		out[i] = boundAttr(a)
	}
	return boundedLog{h: b.h.WithAttrs(out)}
}

func (b boundedLog) WithGroup(name string) slog.Handler { return boundedLog{h: b.h.WithGroup(name)} }

func (b boundedLog) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, boundString(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(boundAttr(a))
		return true
	})
	return b.h.Handle(ctx, out)
}

// boundAttr returns a with a long string or error value shortened.
func boundAttr(a slog.Attr) slog.Attr {
	switch a.Value.Kind() {
	case slog.KindString:
		if s := a.Value.String(); len(s) > maxLogValue {
			return slog.String(a.Key, boundString(s))
		}
	case slog.KindAny:
		if err, ok := a.Value.Any().(error); ok {
			if s := err.Error(); len(s) > maxLogValue {
				return slog.String(a.Key, boundString(s))
			}
		}
	case slog.KindGroup:
		as := a.Value.Group()
		out := make([]slog.Attr, len(as))
		for i, g := range as {
			out[i] = boundAttr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	}
	return a
}

// boundString shortens s to maxLogValue bytes (on a rune boundary) and
// appends its length.
func boundString(s string) string {
	if len(s) <= maxLogValue {
		return s
	}
	cut := maxLogValue
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s…(%d bytes)", s[:cut], len(s))
}
