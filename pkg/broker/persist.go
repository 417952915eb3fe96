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
//     the client's PUBREL is answered whether or not the state exists.
type boltStore struct {
	*bolt.Hook
}

// StoredInflightMessages implements mqtt.Hook.
func (h boltStore) StoredInflightMessages() ([]storage.Message, error) {
	msgs, err := h.Hook.StoredInflightMessages()
	if err != nil {
		return nil, err
	}
	out := msgs[:0]
	for _, m := range msgs {
		if m.FixedHeader.Type != packets.Publish {
			continue
		}
		i := strings.LastIndexByte(m.ID, ':')
		id, err := strconv.ParseUint(m.ID[i+1:], 10, 16)
		if i < 0 || err != nil || id == 0 {
			continue // not a message this broker wrote
		}
		m.PacketID = uint16(id)
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
		default:
			return nil
		}
	}
	return nil
}

// addPersistence opens DIR/mqtt.db with the bolt storage hook.
func addPersistence(srv *mqtt.Server, dir string) (boltStore, error) {
	store := boltStore{new(bolt.Hook)}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return store, fmt.Errorf("persistence: %w", err)
	}
	path := filepath.Join(dir, "mqtt.db")
	err := srv.AddHook(store, &bolt.Options{
		Path:    path,
		Options: &bbolt.Options{Timeout: time.Second},
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return store, fmt.Errorf("persistence: %s is in use by another broker", path)
	}
	if err != nil {
		return store, fmt.Errorf("persistence: open %s: %w", path, err)
	}
	return store, nil
}
