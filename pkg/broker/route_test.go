// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/testutil"
)

// floodPayload is the payload of message seq: its number, then padding.
func floodPayload(seq, size int) []byte {
	b := []byte(strconv.Itoa(seq) + " ")
	return append(b, bytes.Repeat([]byte{'x'}, size-len(b))...)
}

// publishFlood publishes n QoS 0 messages of size bytes to topic from a
// new MQTT 3.1.1 connection, in a goroutine (the broker may hold it up);
// the returned channel gets the result.
func publishFlood(t *testing.T, addr, topic string, n, size int) <-chan error {
	t.Helper()
	p := rawclient.Dial(t, addr, 4)
	p.MustConnect("flooder", "", "")
	done := make(chan error, 1)
	go func() {
		var buf bytes.Buffer
		for i := 0; i < n; i++ {
			buf.Reset()
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic,
				Payload: floodPayload(i, size), ProtocolVersion: 4}
			if err := pk.PublishEncode(&buf); err != nil {
				done <- err
				return
			}
			if _, err := p.Conn.Write(buf.Bytes()); err != nil {
				done <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
		}
		done <- nil
	}()
	return done
}

// readFlood reads n messages and checks that they are 0..n-1 in order.
func readFlood(c *rawclient.Client, n int) error {
	for i := 0; i < n; i++ {
		pk, _, err := c.RecvRaw(10 * time.Second)
		if err != nil {
			return fmt.Errorf("message %d: %w", i, err)
		}
		if pk.FixedHeader.Type != packets.Publish {
			return fmt.Errorf("message %d: packet type %d", i, pk.FixedHeader.Type)
		}
		seq, _, _ := strings.Cut(string(pk.Payload[:min(len(pk.Payload), 16)]), " ")
		if seq != strconv.Itoa(i) {
			return fmt.Errorf("message %d: got %q", i, seq)
		}
	}
	return nil
}

// TestQoS0SlowSubscriberGetsEverything: a QoS 0 subscriber that reads
// more slowly than its publisher (here: not at all until the publisher
// has had to wait) receives every message, in order; the publisher is
// slowed down instead. mochi dropped QoS 0 messages once the subscriber's
// queue was full, and the broker cut the subscriber past 8 MiB pending.
func TestQoS0SlowSubscriberGetsEverything(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SlowConsumerTimeout: time.Hour})
	sub := rawclient.Dial(t, b.Addr(), 4)
	sub.MustConnect("slow", "", "")
	require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "bp/#"))

	// 32 MiB: more than the broker's queue and the kernel's buffers.
	const n, size = 2048, 16 << 10
	done := publishFlood(t, b.Addr(), "bp/x", n, size)
	rawclient.WaitFor(t, func() bool { return b.waits.Load() > 0 })
	require.NoError(t, readFlood(sub, n))
	require.NoError(t, <-done)
	require.Empty(t, sub.Ping(), "nothing after the flood")
	require.Zero(t, b.slowCut.Load(), "the slow subscriber was cut")
	require.Zero(t, atomic.LoadInt64(&b.srv.Info.MessagesDropped), "QoS 0 messages were dropped")
}

// TestQoS0StuckSubscriberIsCut: a subscriber that reads nothing holds its
// publishers up for the stall timeout at most; then it is disconnected,
// with a log line and a count, and a subscriber that reads gets every
// message.
func TestQoS0StuckSubscriberIsCut(t *testing.T) {
	logs := &testutil.Buffer{}
	b := start(t, Config{AllowAnonymous: true, SlowConsumerTimeout: 100 * time.Millisecond,
		Log: slog.New(slog.NewTextHandler(logs, nil))})
	stuck := rawclient.Dial(t, b.Addr(), 4)
	require.NoError(t, stuck.Conn.(*net.TCPConn).SetReadBuffer(8192))
	stuck.MustConnect("stuck", "", "")
	require.Equal(t, []byte{0}, stuck.Subscribe(1, 0, "bp/#"))
	good := rawclient.Dial(t, b.Addr(), 4)
	good.MustConnect("good", "", "")
	require.Equal(t, []byte{0}, good.Subscribe(1, 0, "bp/#"))

	const n, size = 2048, 16 << 10
	read := make(chan error, 1)
	go func() { read <- readFlood(good, n) }()
	done := publishFlood(t, b.Addr(), "bp/x", n, size)
	require.NoError(t, <-read)
	require.NoError(t, <-done)
	require.Empty(t, good.Ping())

	// The broker's side is closed (the kernel may still be sending the
	// stuck client what it had buffered, at the pace of its tiny window).
	rawclient.WaitFor(t, func() bool { cl, ok := b.srv.Clients.Get("stuck"); return !ok || cl.Closed() })
	require.Equal(t, int64(1), b.slowCut.Load())
	require.Contains(t, logs.String(), "disconnecting slow consumer")
	var metrics strings.Builder
	b.writeMetrics(&metrics)
	require.Contains(t, metrics.String(), "mqtt_slow_clients_disconnected_total 1\n")
}

// TestRouterFollowsSubscriptions: the router's cache of subscribers per
// topic follows subscribes, unsubscribes, reconnects and resumed sessions,
// and keeps MQTT 5 subscription identifiers and no-local.
func TestRouterFollowsSubscriptions(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	pub := rawclient.Dial(t, b.Addr(), 5)
	pub.MustConnect("pub", "", "")
	send := func(payload string) {
		pub.Publish(0, 0, "r/1", payload, false)
		require.Empty(t, pub.Ping()) // processed: routed before the PINGRESP
	}
	got := func(c *rawclient.Client) []string {
		var out []string
		for _, pk := range c.Ping() {
			out = append(out, string(pk.Payload))
		}
		return out
	}

	a := rawclient.Dial(t, b.Addr(), 5)
	a.MustConnect("a", "", "")
	sub := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 1,
		Filters: packets.Subscriptions{{Filter: "r/+", Identifier: 7}}}
	sub.Properties.SubscriptionIdentifier = []int{7}
	a.Send(sub)
	require.Equal(t, packets.Suback, a.Recv().FixedHeader.Type)
	send("1") // cached from here on
	pk := a.Recv()
	require.Equal(t, "1", string(pk.Payload))
	require.Equal(t, []int{7}, pk.Properties.SubscriptionIdentifier)

	c := rawclient.Dial(t, b.Addr(), 4)
	c.ConnectPacket("c", "", "")
	conn := c.ConnectPacket("c", "", "")
	conn.Connect.Clean = false
	c.Send(conn)
	require.Equal(t, byte(0), c.Recv().ReasonCode)
	require.Equal(t, []byte{0}, c.Subscribe(1, 0, "r/#"))
	send("2")
	require.Equal(t, []string{"2"}, got(a))
	require.Equal(t, []string{"2"}, got(c))

	// Unsubscribed: no more.
	a.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe, Qos: 1}, PacketID: 2,
		Filters: packets.Subscriptions{{Filter: "r/+"}}})
	require.Equal(t, packets.Unsuback, a.Recv().FixedHeader.Type)
	send("3")
	require.Empty(t, got(a))
	require.Equal(t, []string{"3"}, got(c))

	// A new clean connection with a's ID has no subscriptions.
	a.Conn.Close()
	a = rawclient.Dial(t, b.Addr(), 5)
	a.MustConnect("a", "", "")
	// c resumes its session on a new connection: its subscription stays.
	c.Conn.Close()
	c = rawclient.Dial(t, b.Addr(), 4)
	c.Send(conn)
	ack := c.Recv()
	require.True(t, ack.SessionPresent)
	send("4")
	require.Empty(t, got(a))
	require.Equal(t, []string{"4"}, got(c))

	// No local: a client's own messages do not come back.
	nl := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: 3,
		Filters: packets.Subscriptions{{Filter: "r/1", NoLocal: true}}}
	pub.Send(nl)
	require.Equal(t, packets.Suback, pub.Recv().FixedHeader.Type)
	send("5")
	require.Equal(t, []string{"5"}, got(c))
}

// TestRouterKeepsOrderAcrossQoS: QoS 0 messages, which the router writes
// directly, do not overtake a QoS 1 message of the same publisher that
// mochi queued before them.
func TestRouterKeepsOrderAcrossQoS(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true})
	sub := rawclient.Dial(t, b.Addr(), 4)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{1}, sub.Subscribe(1, 1, "o/#"))
	pub := rawclient.Dial(t, b.Addr(), 4)
	pub.MustConnect("pub", "", "")
	const n = 2000
	for i := 0; i < n; i++ {
		pub.Publish(uint16(i%1000+1), byte(i%2), "o/x", strconv.Itoa(i), false)
	}
	for i := 0; i < n; i++ {
		pk := sub.Recv()
		if pk.FixedHeader.Type == packets.Puback {
			i--
			continue
		}
		require.Equal(t, strconv.Itoa(i), string(pk.Payload))
		sub.Ack(pk)
	}
}
