// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
)

// boltStore is mochi's bolt storage hook (sessions, subscriptions,
// retained messages) plus the engine's queues (queueStore) and the
// clients' QoS 2 flows (inboundStore); docs/design/broker.md, "Persistence",
// gives the records and the repairs of mochi's hook.
type boltStore struct {
	*bolt.Hook
	engine *engine
	fixes  *fixesHook
}

// inboundClient is the stand-in client whose ID keys the state of a
// client's QoS 2 flow (fixesHook.restoreInbound).
func inboundClient(client string) *mqtt.Client { return &mqtt.Client{ID: client + "\x00in"} }

// inbound stores that a client's QoS 2 PUBLISH was acknowledged with
// PUBREC, under the client's packet ID.
func (h *boltStore) inbound(client string, id uint16) {
	h.Hook.OnQosPublish(inboundClient(client), packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec},
		PacketID: id, Created: time.Now().Unix()}, 0, 0)
}

// inboundDone deletes it once the flow is complete.
func (h *boltStore) inboundDone(client string, id uint16) {
	h.Hook.OnQosComplete(inboundClient(client), packets.Packet{PacketID: id})
}

// queueClient is the stand-in client whose ID keys a queued message.
func queueClient(client string, seq uint64) *mqtt.Client {
	return &mqtt.Client{ID: client + "\x00" + strconv.FormatUint(seq, 10)}
}

// put stores a queued message (again, once a QoS 2 one has its packet
// ID).
func (h *boltStore) put(client string, m *message) {
	pk := m.pk
	pk.PacketID = 0
	h.Hook.OnQosPublish(queueClient(client, m.seq), pk, int64(m.seq<<16|uint64(m.pk.PacketID)), 0)
}

// del deletes a queued message.
func (h *boltStore) del(client string, m *message) {
	h.Hook.OnQosComplete(queueClient(client, m.seq), packets.Packet{})
}

// released replaces a QoS 2 message by its PUBREL.
func (h *boltStore) released(cl *mqtt.Client, m *message) {
	h.Hook.OnQosPublish(cl, packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1},
		PacketID: m.pk.PacketID, Created: time.Now().Unix()}, 0, 0)
	h.del(cl.ID, m)
}

// OnQosPublish keeps nothing mochi reports: the engine stores what it
// queues and the PUBRELs (released).
func (h *boltStore) OnQosPublish(*mqtt.Client, packets.Packet, int64, int) {}

// OnQosComplete deletes a PUBREL once the client's PUBCOMP came.
func (h *boltStore) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if pk.FixedHeader.Type == packets.Pubcomp {
		h.Hook.OnQosComplete(cl, pk)
	}
}

// OnQosDropped deletes a PUBREL mochi gave up, unless its session was
// taken over by a new connection.
func (h *boltStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if !cl.IsTakenOver() {
		h.Hook.OnQosDropped(cl, pk)
	}
}

// StoredInflightMessages gives the queued messages to the engine and
// mochi the PUBRELs, with their packet IDs.
func (h *boltStore) StoredInflightMessages() ([]storage.Message, error) {
	msgs, err := h.Hook.StoredInflightMessages()
	if err != nil {
		return nil, err
	}
	queues := map[string][]*message{}
	out := msgs[:0]
	for _, m := range msgs {
		client, kind, ours := strings.Cut(m.Client, "\x00")
		id, err := strconv.ParseUint(m.ID[strings.LastIndexByte(m.ID, ':')+1:], 10, 16)
		switch {
		case ours && kind == "in":
			if cl, known := h.engine.srv.Clients.Get(client); known && err == nil && id != 0 {
				h.fixes.restoreInbound(cl, uint16(id))
			} else {
				h.inboundDone(client, uint16(id))
			}
		case ours:
			pk := m.ToPacket()
			pk.PacketID, pk.FixedHeader.Dup = uint16(m.Sent), false
			pk.Properties.PayloadFormatFlag = pk.Properties.PayloadFormat != 0
			q := &message{seq: uint64(m.Sent) >> 16, pk: pk, size: len(pk.Payload), stored: true}
			if exp := pk.Properties.MessageExpiryInterval; exp > 0 && pk.Created > 0 {
				q.expires = time.Unix(pk.Created+int64(exp), 0)
			}
			queues[client] = append(queues[client], q)
		case err == nil && id != 0 && m.FixedHeader.Type == packets.Pubrel:
			// A QoS 2 delivery the client has acknowledged with PUBREC:
			// the PUBREL must be sent again [MQTT-4.3.3-5].
			m.PacketID = uint16(id)
			out = append(out, m)
		}
	}
	for client, q := range queues {
		h.engine.restore(client, q)
	}
	return out, nil
}

// asyncConnOf finds the asyncConn under a client's connection wrappers.
func asyncConnOf(c net.Conn) *asyncConn {
	for c != nil {
		switch x := c.(type) {
		case *asyncConn:
			return x
		case *tls.Conn:
			c = x.NetConn()
		case *wireConn:
			c = x.Conn
		default:
			return nil
		}
	}
	return nil
}

// addPersistence opens DIR/mqtt.db with the bolt storage hook.
func addPersistence(srv *mqtt.Server, dir string, e *engine) (*boltStore, error) {
	store := &boltStore{Hook: new(bolt.Hook), engine: e}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return store, fmt.Errorf("persistence: %w", err)
	}
	path := filepath.Join(dir, "mqtt.db")
	err := srv.AddHook(store, &bolt.Options{
		Path: path,
		// No fsync per write: docs/reliability.md says why and what is
		// durable when.
		Options: &bbolt.Options{Timeout: time.Second, NoSync: true},
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return store, fmt.Errorf("persistence: %s is in use by another broker", path)
	}
	if err != nil {
		return store, fmt.Errorf("persistence: open %s: %w", path, err)
	}
	return store, nil
}
