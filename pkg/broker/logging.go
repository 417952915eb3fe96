// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"context"
	"fmt"
	"log/slog"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// mochiLog wraps the handler given to mochi (and to the broker's
// listeners, which mochi hands it). mochi logs its start-up chatter at
// Info and puts whole packets into some records: a second CONNECT, with
// its password, into "error processing packet". The wrapper demotes the
// chatter to Debug and replaces packets with a summary (type, topic,
// size) so that payloads and passwords never reach the log. (mochi's own
// listeners, which logged a refused connection as a Warn without a
// message, are not used: listener.go.)
type mochiLog struct{ h slog.Handler }

// newMochiLogger returns the logger to hand to mochi.
func newMochiLogger(log *slog.Logger) *slog.Logger {
	return slog.New(mochiLog{h: log.Handler()})
}

// chatter is what mochi logs that users need not see.
var chatter = map[string]bool{
	"added hook":                 true,
	"attached listener":          true,
	"mochi mqtt starting":        true,
	"mochi mqtt server started":  true,
	"gracefully stopping server": true,
	"mochi mqtt server stopped":  true,
	"stopping hook":              true,
	"system event loop started":  true,
	"system event loop halted":   true,
	// A keepalive under 5 seconds is legal MQTT.
	mqtt.ErrMinimumKeepalive.Error(): true,
	// An Error of the bolt store's first start: no saved $SYS info yet.
	"failed to get data": true,
}

func (m mochiLog) Enabled(ctx context.Context, l slog.Level) bool { return m.h.Enabled(ctx, l) }

func (m mochiLog) WithAttrs(as []slog.Attr) slog.Handler { return mochiLog{h: m.h.WithAttrs(as)} }

func (m mochiLog) WithGroup(name string) slog.Handler { return mochiLog{h: m.h.WithGroup(name)} }

func (m mochiLog) Handle(ctx context.Context, r slog.Record) error {
	level, msg := r.Level, r.Message
	if chatter[msg] {
		level = slog.LevelDebug
	}
	var attrs []slog.Attr
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "pk", "packet":
			attrs = append(attrs, slog.String(a.Key, packetSummary(a.Value.Any())))
		default:
			attrs = append(attrs, a)
		}
		return true
	})
	if !m.h.Enabled(ctx, level) {
		return nil
	}
	nr := slog.NewRecord(r.Time, level, msg, r.PC)
	nr.AddAttrs(attrs...)
	return m.h.Handle(ctx, nr)
}

// packetSummary describes a packet without its payload or credentials.
func packetSummary(v any) string {
	var pk packets.Packet
	switch p := v.(type) {
	case packets.Packet:
		pk = p
	case *packets.Packet:
		if p == nil {
			return "<nil>"
		}
		pk = *p
	default:
		return fmt.Sprintf("%T", v)
	}
	name, ok := packets.PacketNames[pk.FixedHeader.Type]
	if !ok {
		name = "packet"
	}
	if pk.FixedHeader.Type == packets.Publish {
		return fmt.Sprintf("%s topic=%q qos=%d id=%d bytes=%d", name, pk.TopicName, pk.FixedHeader.Qos, pk.PacketID, len(pk.Payload))
	}
	return fmt.Sprintf("%s id=%d", name, pk.PacketID)
}
