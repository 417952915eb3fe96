// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/stretchr/testify/require"
)

// "#" also stands for the parent level [MQTT-4.7.1-2]: a new subscription
// to "foo/bar/baz/#" gets the message retained on "foo/bar/baz"
// (parentRetain, retained.go; mosquitto's 03-pattern-matching.py).
func TestRetainedParentLevel(t *testing.T) {
	for _, tc := range []struct{ filter, topic string }{
		{"foo/bar/baz/#", "foo/bar/baz"},
		{"foo/+/baz/#", "foo/bar/baz"},
		{"foo/#", "foo"},
		{"foo/+/baz/#", "foo//baz"},
		// Not at the parent level: mochi finds these itself, once.
		{"foo/#", "foo/bar/baz"},
		{"+/#", "foo/bar/baz"},
	} {
		filter := tc.filter
		t.Run(filter+" "+tc.topic, func(t *testing.T) {
			b := start(t, Config{AllowAnonymous: true, PersistenceDir: t.TempDir()})
			p := rawclient.Dial(t, b.Addr(), 4)
			p.MustConnect("pub", "", "")
			p.Publish(0, 0, tc.topic, "retained", true)
			p.Ping()

			c := rawclient.Dial(t, b.Addr(), 5)
			pk := c.ConnectPacket("sub", "", "")
			pk.Connect.Clean = false
			pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 300, true
			c.Send(pk)
			require.Equal(t, byte(0), c.Recv().ReasonCode)
			// Two filters: the SUBACK has two codes, not three.
			require.Equal(t, []byte{1, 1}, c.Subscribe(1, 1, filter, "other"))
			got := c.Recv()
			require.Equal(t, tc.topic, got.TopicName)
			require.Equal(t, "retained", string(got.Payload))
			require.True(t, got.FixedHeader.Retain)
			require.Equal(t, byte(0), got.FixedHeader.Qos, "sent at the message's QoS")
			require.Empty(t, c.Collect(), "sent once")

			// The parent subscription mochi needed is gone, from the
			// session and the store: the client has what it asked for.
			cl, ok := b.srv.Clients.Get("sub")
			require.True(t, ok)
			var filters []string
			for f := range cl.State.Subscriptions.GetAll() {
				filters = append(filters, f)
			}
			require.ElementsMatch(t, []string{filter, "other"}, filters)
			stored, err := b.store.StoredSubscriptions()
			require.NoError(t, err)
			filters = filters[:0]
			for _, s := range stored {
				if s.Client == "sub" {
					filters = append(filters, s.Filter)
				}
			}
			require.ElementsMatch(t, []string{filter, "other"}, filters)

			// Live messages on the parent still arrive once; after the
			// UNSUBSCRIBE none do.
			p.Publish(0, 0, tc.topic, "live", false)
			require.Equal(t, "live", string(c.Recv().Payload))
			require.Empty(t, c.Collect())
			c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 2,
				Filters: packets.Subscriptions{{Filter: filter}}})
			require.Equal(t, packets.Unsuback, c.Recv().FixedHeader.Type)
			p.Publish(0, 0, tc.topic, "gone", false)
			p.Ping()
			require.Empty(t, c.Collect())
		})
	}
}

// A filter whose parent level has no retained message, a shared one and
// Retain Handling 2 get nothing more.
func TestRetainedParentLevelNotSent(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	p := rawclient.Dial(t, b.Addr(), 4)
	p.MustConnect("pub", "", "")
	p.Publish(0, 0, "a/b", "retained", true)
	p.Ping()
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("sub", "", "")
	require.Equal(t, []byte{0, 0}, c.Suback(subscribePacket(1,
		packets.Subscription{Filter: "a/b/#", RetainHandling: 2},
		packets.Subscription{Filter: "$share/g/a/b/#"})))
	require.Equal(t, []byte{0}, c.Subscribe(2, 0, "x/#"))
	require.Empty(t, c.Collect())
}
