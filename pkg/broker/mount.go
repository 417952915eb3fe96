// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"strings"

	"github.com/mochi-mqtt/server/v2/packets"
)

// mount_point, as mosquitto: the clients of a listener with a mount
// point live under that prefix. Their PUBLISH topics, will topics and
// SUBSCRIBE/UNSUBSCRIBE filters get it prepended as they arrive
// (connectHook.OnPacketRead, mountInbound), so that the ACL, retained
// messages and every other client see the whole topic; the engine takes
// it off the PUBLISHes it sends them (engine.send). mochi has no such
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
