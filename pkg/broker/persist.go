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
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/storage"
	"github.com/mochi-mqtt/server/v2/hooks/storage/bolt"
	"github.com/mochi-mqtt/server/v2/packets"
	"go.etcd.io/bbolt"
)

// boltStore is mochi's bolt storage hook with two repairs for restoring
// in-flight messages (mochi v2.7.9):
//
//   - the hook does not save a message's packet ID (only in the key), so
//     every restored message of a client had ID 0: they overwrote each
//     other in the session and the resend failed with "missing packet id",
//     disconnecting the client. The ID is read back from the key.
//   - acknowledgement states of the client's own QoS 2 flows (PUBREC) are
//     not restored: their messages were delivered when they arrived, and
//     the client's PUBREL is answered whether or not the state exists. The
//     broker's own PUBRELs awaiting PUBCOMP are.
//   - when a persistent session is resumed by a new connection, mochi
//     moves its queue to the new connection and "drops" it from the old
//     one, which deleted it from the store: killed after a reconnect, the
//     broker had lost every message still queued. A taken-over session's
//     messages stay in the store.
//
// It also stores each queued message's place in its client's queue
// (orderBook, durable.go) in the Sent field, which mochi writes but never
// reads back, so that a restored queue is resent in order.
type boltStore struct {
	*bolt.Hook
	order *orderBook
}

// OnQosPublish stores a queued message with its place in the queue.
func (h *boltStore) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	if pk.FixedHeader.Type == packets.Publish {
		sent = int64(h.order.assign(cl.ID, pk.PacketID))
	}
	h.Hook.OnQosPublish(cl, pk, sent, resends)
}

// OnQosDropped deletes a dropped message from the store, unless its
// session was taken over by a new connection.
func (h *boltStore) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if cl.IsTakenOver() {
		return
	}
	h.Hook.OnQosDropped(cl, pk)
}

// StoredInflightMessages implements mqtt.Hook.
func (h *boltStore) StoredInflightMessages() ([]storage.Message, error) {
	msgs, err := h.Hook.StoredInflightMessages()
	if err != nil {
		return nil, err
	}
	out := msgs[:0]
	for _, m := range msgs {
		// Messages queued for the client, and QoS 2 deliveries it has
		// acknowledged with PUBREC, whose PUBREL must be sent again
		// [MQTT-4.3.3-5]: without it the client keeps the packet ID as
		// "received" and takes the next message with that ID for a
		// duplicate.
		if m.FixedHeader.Type != packets.Publish && m.FixedHeader.Type != packets.Pubrel {
			continue
		}
		i := strings.LastIndexByte(m.ID, ':')
		id, err := strconv.ParseUint(m.ID[i+1:], 10, 16)
		if i < 0 || err != nil || id == 0 {
			continue // not a message this broker wrote
		}
		m.PacketID = uint16(id)
		if m.Sent > 0 {
			h.order.restore(m.Client, m.PacketID, uint64(m.Sent))
		}
		out = append(out, m)
	}
	return out, nil
}

// durableAcks makes an acknowledgement mean "routed and stored", as in
// mosquitto: mochi sends the PUBACK or PUBREC of a QoS 1/2 PUBLISH before
// it routes the message, and routing is when the message is queued for
// each subscriber and written to the store for each offline persistent
// session, so a crash right after the publisher's acknowledgement could
// lose it, and a publisher could see its acknowledgement before a
// subscriber in the same process saw the message. The hook holds the
// publisher's outgoing bytes from OnPublish to OnPublished (routing done).
type durableAcks struct {
	mqtt.HookBase
	held sync.Map // *mqtt.Client -> *asyncConn
}

// ID implements mqtt.Hook.
func (h *durableAcks) ID() string { return "mqttkit-durable-acks" }

// Provides implements mqtt.Hook.
func (h *durableAcks) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnPublished || b == mqtt.OnPacketProcessed || b == mqtt.OnDisconnect
}

// OnPublish holds the acknowledgement of a QoS 1/2 PUBLISH.
func (h *durableAcks) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline {
		return pk, nil
	}
	if ac := asyncConnOf(cl.Net.Conn); ac != nil {
		ac.hold()
		h.held.Store(cl, ac)
	}
	return pk, nil
}

// OnPublished releases it once the message is routed and stored.
func (h *durableAcks) OnPublished(cl *mqtt.Client, _ packets.Packet) { h.release(cl) }

// OnPacketProcessed releases a hold left by a PUBLISH that failed.
func (h *durableAcks) OnPacketProcessed(cl *mqtt.Client, _ packets.Packet, _ error) { h.release(cl) }

// OnDisconnect releases a hold of a client that went away.
func (h *durableAcks) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.release(cl) }

func (h *durableAcks) release(cl *mqtt.Client) {
	if v, ok := h.held.LoadAndDelete(cl); ok {
		v.(*asyncConn).release()
	}
}

// asyncConnOf finds the asyncConn under a client's connection wrappers.
func asyncConnOf(c net.Conn) *asyncConn {
	for c != nil {
		switch x := c.(type) {
		case *asyncConn:
			return x
		case *tls.Conn:
			c = x.NetConn()
		case *guardConn:
			c = x.Conn
		case *wireConn:
			c = x.Conn
		default:
			return nil
		}
	}
	return nil
}

// addPersistence opens DIR/mqtt.db with the bolt storage hook.
func addPersistence(srv *mqtt.Server, dir string, order *orderBook) (*boltStore, error) {
	store := &boltStore{Hook: new(bolt.Hook), order: order}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return store, fmt.Errorf("persistence: %w", err)
	}
	path := filepath.Join(dir, "mqtt.db")
	err := srv.AddHook(store, &bolt.Options{
		Path: path,
		// No fsync per write: what the broker has written survives a crash
		// of its process (kill -9, out of memory) at once, but an operating
		// system crash or power loss can lose the last seconds of writes.
		// Syncing every write costs about 3 ms per message here (two fsyncs
		// per bolt transaction), which caps a QoS 1 publisher at some 300
		// messages a second to a persistent session; mosquitto writes its
		// store only every autosave_interval (30 minutes by default).
		// docs/reliability.md says what is durable when.
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
