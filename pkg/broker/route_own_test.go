// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock that moves only when told.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestAsyncConnTryRoom: the broker's own writers get room at once or not
// at all, by waitRoom's size rule, and never wait.
func TestAsyncConnTryRoom(t *testing.T) {
	c, _ := stalled(t, 1000) // soft: 500; what is written stays pending

	ok, err := c.tryRoom(2000)
	require.NoError(t, err)
	require.True(t, ok, "alone, a message larger than the limit still goes")
	c.unreserve(2000)

	ok, err = c.tryRoom(100)
	require.NoError(t, err)
	require.True(t, ok)
	_, err = c.Write(make([]byte, 100))
	require.NoError(t, err)
	c.unreserve(100)

	ok, err = c.tryRoom(400) // 100 pending + 400 = the soft limit
	require.NoError(t, err)
	require.True(t, ok)
	ok, err = c.tryRoom(1) // the 400 are still reserved
	require.NoError(t, err)
	require.False(t, ok, "past the soft limit: no room, at once")
	c.unreserve(400)
	ok, err = c.tryRoom(401)
	require.NoError(t, err)
	require.False(t, ok)

	require.NoError(t, c.Close())
	ok, err = c.tryRoom(1)
	require.ErrorIs(t, err, net.ErrClosed)
	require.False(t, ok)
}

// TestSysNeverWaitsForStuckSubscriber: a $SYS subscriber that reads
// nothing, with a full queue, does not hold up $SYS updates (they are
// dropped for it, counted) nor Close. The stall timeout is an hour: a $SYS
// publisher that waited for room would hold Close up for that long (the
// test's own timeout is the bound); Close returns without the stuck
// subscriber ever being cut.
func TestSysNeverWaitsForStuckSubscriber(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true,
		SlowConsumerTimeout: time.Hour, SysInterval: 20 * time.Millisecond})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = b.Close()
		}
	})

	stuck := rawclient.Dial(t, b.Addr(), 4)
	require.NoError(t, stuck.Conn.(*net.TCPConn).SetReadBuffer(8192))
	stuck.MustConnect("stuck", "", "")
	require.Equal(t, []byte{0, 0}, stuck.Subscribe(1, 0, "$SYS/#", "bp/#"))

	// Fill its queue: the flooding publisher ends up waiting for room.
	done := publishFlood(t, b.Addr(), "bp/x", 2048, 16<<10)
	rawclient.WaitFor(t, func() bool { return b.waits.Load() > 0 })
	// $SYS updates go on and, without room, are dropped for it.
	rawclient.WaitFor(t, func() bool { return atomic.LoadInt64(&b.srv.Info.MessagesDropped) > 0 })
	require.Positive(t, b.dropped(), "$SYS publish/messages/dropped counts them")
	cl, ok := b.srv.Clients.Get("stuck")
	require.True(t, ok)
	require.False(t, cl.Closed(), "the stuck subscriber is still connected")

	require.NoError(t, b.Close())
	closed = true
	require.Zero(t, b.slowCut.Load(), "Close waited for the stall timeout")
	<-done // the flooding publisher is disconnected by Close
}

// TestQoS0ExpiresWhileWaiting: a QoS 0 message whose MQTT 5 message expiry
// passes while its publisher waits for room in a subscriber's queue is not
// sent [MQTT-3.3.2-5]; one that has time left is sent with what is left
// [MQTT-3.3.2-6]. The engine's clock is replaced: no real waiting.
func TestQoS0ExpiresWhileWaiting(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true,
		SlowConsumerTimeout: time.Hour, SysInterval: -1})
	require.NoError(t, err)
	clk := &fakeClock{}
	clk.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	b.engine.now = clk.now
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })

	sub := rawclient.Dial(t, b.Addr(), 5)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "e/#"))
	cl, ok := b.srv.Clients.Get("sub")
	require.True(t, ok)
	ac := asyncConnOf(cl.Net.Conn)
	require.NotNil(t, ac)
	// The subscriber reads nothing until told; the broker's socket buffer
	// for it is small.
	require.NoError(t, ac.Conn.(*net.TCPConn).SetWriteBuffer(4096))

	// A first message blocks the socket writes; a second, pending behind
	// it, fills the queue past the soft limit (alone, each goes).
	big := rawclient.Dial(t, b.Addr(), 4)
	big.MustConnect("big", "", "")
	payload := string(bytes.Repeat([]byte{'x'}, MaxPendingBytes/2+1024))
	big.Publish(0, 0, "e/big", payload, false)
	require.Empty(t, big.Ping())
	rawclient.WaitFor(t, func() bool {
		ac.mu.Lock()
		defer ac.mu.Unlock()
		return len(ac.buf) == 0
	})
	big.Publish(0, 0, "e/big", payload, false)
	require.Empty(t, big.Ping())
	require.Zero(t, b.waits.Load())

	publishExpiring := func(id, topic string, expiry uint32) *rawclient.Client {
		p := rawclient.Dial(t, b.Addr(), 5)
		p.MustConnect(id, "", "")
		pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish}, TopicName: topic, Payload: []byte(topic)}
		pk.Properties.MessageExpiryInterval = expiry
		p.Send(pk)
		return p
	}
	p1 := publishExpiring("p1", "e/short", 1)
	rawclient.WaitFor(t, func() bool { return b.waits.Load() == 1 })
	publishExpiring("p2", "e/long", 10)
	rawclient.WaitFor(t, func() bool { return b.waits.Load() == 2 })

	clk.advance(3 * time.Second)
	// The subscriber reads from here on.
	require.NoError(t, ac.Conn.(*net.TCPConn).SetWriteBuffer(1<<20))
	require.Equal(t, "e/big", sub.Recv().TopicName)
	require.Equal(t, "e/big", sub.Recv().TopicName)
	p1.Publish(0, 0, "e/marker", "m", false)
	require.Empty(t, p1.Ping())

	var got []string
	for _, pk := range sub.Ping() {
		got = append(got, pk.TopicName)
		switch pk.TopicName {
		case "e/long":
			require.Equal(t, uint32(7), pk.Properties.MessageExpiryInterval, "10 s, of which 3 s waited")
		case "e/marker":
			require.Zero(t, pk.Properties.MessageExpiryInterval)
		}
	}
	require.Equal(t, []string{"e/long", "e/marker"}, got, "e/short expired while waiting")
}
