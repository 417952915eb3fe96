// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"errors"
	"fmt"
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

// addPersistence opens DIR/mqtt.db with the bolt storage hook.
func addPersistence(srv *mqtt.Server, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("persistence: %w", err)
	}
	path := filepath.Join(dir, "mqtt.db")
	err := srv.AddHook(boltStore{new(bolt.Hook)}, &bolt.Options{
		Path:    path,
		Options: &bbolt.Options{Timeout: time.Second},
	})
	if errors.Is(err, bbolt.ErrTimeout) {
		return fmt.Errorf("persistence: %s is in use by another broker", path)
	}
	if err != nil {
		return fmt.Errorf("persistence: open %s: %w", path, err)
	}
	return nil
}
