// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// readPublish reads packets until a PUBLISH and returns it; other packets
// (the acknowledgements of the client's own publishes) are skipped.
func readPublish(t *testing.T, c *rawmqtt.Conn) *rawmqtt.Packet {
	t.Helper()
	for {
		p, err := c.Read(10 * time.Second)
		require.NoError(t, err)
		if p.Type == rawmqtt.PUBLISH {
			return p
		}
	}
}

// The broker numbers its deliveries to a client 1, 2, 3 ... as mosquitto
// does: the client's own SUBSCRIBE and QoS 1/2 PUBLISH identifiers are
// another space [MQTT-2.2.1] and use up none of them (mosquitto's
// 02-subpub-qos1.py and 02-subpub-qos2.py check for 1).
func TestDeliveryPacketIDsStartAtOne(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			c, err := rawmqtt.Dial(b.Addr(), v)
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: fmt.Sprint("ids-", v), Clean: true, KeepAlive: 30})
			require.NoError(t, err)
			topic := fmt.Sprint("ids/", v)
			_, _, err = c.Subscribe(530, topic, 2)
			require.NoError(t, err)
			for i, qos := range []byte{1, 2, 1} {
				require.NoError(t, c.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: v, Topic: []byte(topic),
					Payload: []byte("m"), QoS: qos, PacketID: uint16(300 + i)})))
				p := readPublish(t, c)
				require.Equal(t, uint16(i+1), p.PacketID, "delivery %d", i+1)
				require.False(t, p.Dup, "a first delivery has DUP 0 [MQTT-3.3.1-1]")
				if qos == 1 {
					require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)))
				} else {
					require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBREC, p.PacketID)))
					for {
						q, err := c.Read(10 * time.Second)
						require.NoError(t, err)
						if q.Type == rawmqtt.PUBREC { // the broker's answer to the client's publish
							require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBREL, q.PacketID)))
							continue
						}
						if q.Type == rawmqtt.PUBREL && q.PacketID == p.PacketID {
							require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBCOMP, q.PacketID)))
							break
						}
					}
				}
			}
		})
	}
}

// A message queued while its client was offline goes out with DUP 0 when
// the client comes back: it was never sent [MQTT-3.3.1-1] (mosquitto's
// 05-clean-session-qos1.py). One that was sent and not acknowledged goes
// out again with DUP 1, under the same packet ID.
func TestDeliveryDupOnlyWhenSentBefore(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, Inline: true, SysInterval: -1})
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			o := rawmqtt.ConnectOptions{ClientID: fmt.Sprint("dup-", v), KeepAlive: 30, SessionExpiry: 600}
			topic := fmt.Sprint("dup/", v)
			c, err := rawmqtt.Dial(b.Addr(), v)
			require.NoError(t, err)
			_, err = c.Connect(o)
			require.NoError(t, err)
			_, _, err = c.Subscribe(109, topic, 1)
			require.NoError(t, err)
			require.NoError(t, b.Publish(topic, []byte("sent"), false, 1))
			sent := readPublish(t, c)
			require.Equal(t, uint16(1), sent.PacketID)
			require.False(t, sent.Dup)
			require.NoError(t, c.Send(rawmqtt.Disconnect())) // not acknowledged
			c.Close()
			waitOffline(t, b.srv, o.ClientID)

			require.NoError(t, b.Publish(topic, []byte("queued"), false, 1))

			c, err = rawmqtt.Dial(b.Addr(), v)
			require.NoError(t, err)
			defer c.Close()
			ack, err := c.Connect(o)
			require.NoError(t, err)
			require.True(t, ack.SessionPresent)
			again := readPublish(t, c)
			require.Equal(t, "sent", string(again.Payload))
			require.Equal(t, sent.PacketID, again.PacketID)
			require.True(t, again.Dup, "sent before: DUP 1")
			first := readPublish(t, c)
			require.Equal(t, "queued", string(first.Payload))
			require.Equal(t, uint16(2), first.PacketID)
			require.False(t, first.Dup, "queued while offline, never sent: DUP 0")
			require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, again.PacketID)))
			require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, first.PacketID)))
		})
	}
}
