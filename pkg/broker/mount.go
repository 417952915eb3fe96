// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"strings"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// mount_point, as mosquitto: the clients of a listener with a mount
// point live under that prefix. Their PUBLISH topics, will topics and
// SUBSCRIBE/UNSUBSCRIBE filters get it prepended as they arrive
// (connectHook.OnPacketRead, mountInbound), so that the ACL, retained
// messages and every other client see the whole topic; the PUBLISHes
// sent to them have it taken off again (mountHook). mochi has no such
// notion.

// mountInbound prepends mount to the topic of a PUBLISH (one that only
// uses a topic alias keeps its empty topic: the alias was set with the
// prefixed one) and to the filters of a SUBSCRIBE or UNSUBSCRIBE; for a
// shared subscription, to the filter after $share/GROUP/.
func mountInbound(mount string, pk *packets.Packet) {
	switch pk.FixedHeader.Type {
	case packets.Publish:
		if pk.TopicName != "" {
			pk.TopicName = mount + pk.TopicName
		}
	case packets.Subscribe, packets.Unsubscribe:
		for i := range pk.Filters {
			pk.Filters[i].Filter = mountFilter(mount, pk.Filters[i].Filter)
		}
	}
}

// mountFilter prepends mount to a filter, after $share/GROUP/ for a
// shared one.
func mountFilter(mount, filter string) string {
	if strings.HasPrefix(filter, "$share/") {
		// $share/GROUP/FILTER
		if i := strings.IndexByte(filter[len("$share/"):], '/'); i >= 0 {
			cut := len("$share/") + i + 1
			return filter[:cut] + mount + filter[cut:]
		}
	}
	return mount + filter
}

// mountHook takes the mount point off the topics of PUBLISHes sent to the
// clients of listeners with one. It is added after every other hook, so
// that it changes only what is written, not what the delivery hooks
// compare (durable.go keeps and matches the packets it sends).
type mountHook struct {
	mqtt.HookBase
	mounts map[string]string // mount point by listener ID
}

// ID implements mqtt.Hook.
func (h *mountHook) ID() string { return "mqttkit-mount" }

// Provides implements mqtt.Hook.
func (h *mountHook) Provides(b byte) bool { return b == mqtt.OnPacketEncode }

// OnPacketEncode strips the client's mount point from a PUBLISH topic. A
// topic without it (which no subscription of the client can match, as
// every one has it) goes out as it is.
func (h *mountHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Publish {
		return pk
	}
	if mount, ok := h.mounts[cl.Net.Listener]; ok && len(pk.TopicName) > len(mount) && strings.HasPrefix(pk.TopicName, mount) {
		pk.TopicName = pk.TopicName[len(mount):]
	}
	return pk
}
