// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// A resumed session gets its queued messages in the order they were
// queued, even when they were all queued within the same second (mochi
// sorts them by the second they were created, unstably).
func TestResumedSessionInOrder(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})

	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			o := rawmqtt.ConnectOptions{ClientID: fmt.Sprint("ordered-", v), KeepAlive: 30, SessionExpiry: 600}
			c, err := rawmqtt.Dial(b.Addr(), v)
			require.NoError(t, err)
			_, err = c.Connect(o)
			require.NoError(t, err)
			topic := fmt.Sprint("ordered/", v)
			_, _, err = c.Subscribe(1, topic, 2)
			require.NoError(t, err)
			require.NoError(t, c.Send(rawmqtt.Disconnect()))
			c.Close()

			const n = 300
			for i := 0; i < n; i++ {
				require.NoError(t, b.Publish(topic, []byte(strconv.Itoa(i)), false, byte(1+i%2)))
			}

			c, err = rawmqtt.Dial(b.Addr(), v)
			require.NoError(t, err)
			defer c.Close()
			ack, err := c.Connect(o)
			require.NoError(t, err)
			require.True(t, ack.SessionPresent)
			for i := 0; i < n; i++ {
				p, err := c.Read(10 * time.Second)
				require.NoError(t, err)
				require.Equal(t, rawmqtt.PUBLISH, p.Type)
				require.Equal(t, strconv.Itoa(i), string(p.Payload), "message %d of the resumed session", i)
				if p.QoS == 1 {
					require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)))
				} else {
					require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBREC, p.PacketID)))
				}
			}
		})
	}
}

// Messages published while a resumed session's queue is being resent come
// after the queue, in publishing order, and none is lost: also those that
// mochi queues on the old connection because their publisher looked the
// session up just before the new connection took it over (deliveryHook.late).
func TestResumedSessionNewMessagesAfterQueue(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	o := rawmqtt.ConnectOptions{ClientID: "busy", KeepAlive: 30}
	c, err := rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	_, err = c.Connect(o)
	require.NoError(t, err)
	_, _, err = c.Subscribe(1, "busy", 1)
	require.NoError(t, err)
	c.Close()
	waitOffline(t, b.srv, "busy")

	const queued, live = 200, 200
	for i := 0; i < queued; i++ {
		require.NoError(t, b.Publish("busy", []byte(strconv.Itoa(i)), false, 1))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := queued; i < queued+live; i++ {
			_ = b.Publish("busy", []byte(strconv.Itoa(i)), false, 1)
		}
	}()
	c, err = rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Connect(o)
	require.NoError(t, err)
	<-done
	last := -1
	seen := map[int]bool{}
	for len(seen) < queued+live {
		p, err := c.Read(10 * time.Second)
		if err != nil {
			var missing []int
			for i := 0; i < queued+live; i++ {
				if !seen[i] {
					missing = append(missing, i)
				}
			}
			t.Logf("missing %v", missing)
		}
		require.NoError(t, err, "got %d of %d", len(seen), queued+live)
		require.Equal(t, rawmqtt.PUBLISH, p.Type)
		require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)))
		i, err := strconv.Atoi(string(p.Payload))
		require.NoError(t, err)
		if seen[i] {
			continue // sent twice (queued and resent): allowed at QoS 1
		}
		require.Greater(t, i, last, "message %d after %d", i, last)
		last = i
		seen[i] = true
	}
}

// holdConnack holds a resumed session's CONNACK until at least n messages
// are queued in the session, as when the connection goroutine is slow
// while a publisher floods the session.
type holdConnack struct {
	mqtt.HookBase
	client string
	n      int
	e      *engine
}

func (h *holdConnack) ID() string { return "test-hold-connack" }

func (h *holdConnack) queued(id string) int {
	s := h.e.sessionOf(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) + len(s.flight)
}

func (h *holdConnack) Provides(b byte) bool { return b == mqtt.OnPacketEncode }

func (h *holdConnack) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Connack && pk.SessionPresent && cl.ID == h.client {
		deadline := time.Now().Add(10 * time.Second)
		for h.queued(cl.ID) < h.n && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	return pk
}

// A QoS 2 subscriber that completes each flow as fast as it can while its
// resumed session's queue is resent and more messages are published
// (some reach the old connection during the takeover and are moved) gets
// each message exactly once. The messages published before mochi lists
// the queue are resent with it and are in the connection's outbound queue
// too: the client must not be able to release their packet IDs before the
// second copy is sent (the old deliveryHook.awaitEchoes; the engine sends
// each message once, from the session's queue).
func TestResumedSessionQoS2ExactlyOnce(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	const queued, live = 200, 2000
	require.NoError(t, b.srv.AddHook(&holdConnack{client: "exact", n: queued + live/2, e: b.engine}, nil))
	require.NoError(t, b.Start())
	o := rawmqtt.ConnectOptions{ClientID: "exact", KeepAlive: 30}
	c, err := rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	_, err = c.Connect(o)
	require.NoError(t, err)
	_, _, err = c.Subscribe(1, "exact", 2)
	require.NoError(t, err)
	c.Close()
	waitOffline(t, b.srv, "exact")

	for i := 0; i < queued; i++ {
		require.NoError(t, b.Publish("exact", []byte(strconv.Itoa(i)), false, 2))
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := queued; i < queued+live; i++ {
			_ = b.Publish("exact", []byte(strconv.Itoa(i)), false, 2)
		}
		_ = b.Publish("exact", []byte("end"), false, 2)
	}()
	c, err = rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Connect(o)
	require.NoError(t, err)
	received := map[uint16]string{} // PUBREC sent, PUBREL not yet
	got := map[string]int{}
	for {
		p, err := c.Read(10 * time.Second)
		require.NoError(t, err, "got %d of %d", len(got), queued+live+1)
		switch p.Type {
		case rawmqtt.PUBLISH:
			if _, ok := received[p.PacketID]; !ok {
				received[p.PacketID] = string(p.Payload)
				got[string(p.Payload)]++
			}
			require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBREC, p.PacketID)))
		case rawmqtt.PUBREL:
			delete(received, p.PacketID)
			require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBCOMP, p.PacketID)))
		}
		if got["end"] > 0 && len(received) == 0 {
			break
		}
	}
	<-done
	for i := 0; i < queued+live; i++ {
		require.Equal(t, 1, got[strconv.Itoa(i)], "message %d delivered %d times", i, got[strconv.Itoa(i)])
	}
}

// connectV5 encodes an MQTT 5 CONNECT for a persistent session (expiry 600
// s) with the given Receive Maximum, Topic Alias Maximum and Maximum
// Packet Size (0: not sent).
func connectV5(id string, receiveMaximum, topicAliasMaximum uint16, maximumPacketSize uint32) []byte {
	body := append(rawmqtt.Str("MQTT"), 5, 0)
	body = binary.BigEndian.AppendUint16(body, 30)
	props := binary.BigEndian.AppendUint32([]byte{0x11}, 600)
	props = binary.BigEndian.AppendUint16(append(props, 0x21), receiveMaximum)
	props = binary.BigEndian.AppendUint16(append(props, 0x22), topicAliasMaximum)
	if maximumPacketSize > 0 {
		props = binary.BigEndian.AppendUint32(append(props, 0x27), maximumPacketSize)
	}
	body = append(body, rawmqtt.EncodeLength(len(props))...)
	body = append(body, props...)
	body = append(body, rawmqtt.Str(id)...)
	return rawmqtt.Fixed(rawmqtt.CONNECT<<4, body)
}

// An MQTT 5 session with more messages queued than its Receive Maximum
// allows in flight resumes: mochi resends the whole queue, messages held
// back for flow control (Expiry -1) included. Such a resend used to be
// swapped by fixesHook for another queued message, not marked DUP, which
// deliveryHook then made wait for the end of the resend burst it was part
// of: the connection hung. Each message arrives once, in order, and none
// comes again once the session is done.
func TestResumedSessionBeyondReceiveMaximum(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	const id, topic, rm, n = "held", "held", 5, 30
	c, err := rawmqtt.Dial(b.Addr(), 5)
	require.NoError(t, err)
	require.NoError(t, c.Send(connectV5(id, rm, 0, 0)))
	p, err := c.Read(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.CONNACK, p.Type)
	_, _, err = c.Subscribe(1, topic, 2)
	require.NoError(t, err)
	c.Close()
	waitOffline(t, b.srv, id)
	for i := 0; i < n; i++ {
		require.NoError(t, b.Publish(topic, []byte(strconv.Itoa(i)), false, byte(1+i%2)))
	}

	c, err = rawmqtt.Dial(b.Addr(), 5)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Send(connectV5(id, rm, 0, 0)))
	p, err = c.Read(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.CONNACK, p.Type)
	require.True(t, p.SessionPresent)
	received := map[uint16]bool{} // QoS 2: PUBREC sent, PUBREL not yet
	got := map[string]int{}
	next := 0
	pinged := false
	for {
		p, err := c.Read(10 * time.Second)
		require.NoError(t, err, "got %d of %d messages", next, n)
		switch p.Type {
		case rawmqtt.PUBLISH:
			if p.QoS == 1 {
				require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)))
			} else {
				require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBREC, p.PacketID)))
				if received[p.PacketID] {
					continue // a duplicate the client recognises
				}
				received[p.PacketID] = true
			}
			got[string(p.Payload)]++
			require.Equal(t, 1, got[string(p.Payload)], "message %s delivered twice", p.Payload)
			require.Equal(t, strconv.Itoa(next), string(p.Payload), "message %d of the resumed session", next)
			next++
		case rawmqtt.PUBREL:
			delete(received, p.PacketID)
			require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBCOMP, p.PacketID)))
		case rawmqtt.PINGRESP:
			// Everything the broker sends while it handles the
			// acknowledgements came before.
			require.Equal(t, n, next)
			require.Empty(t, received)
			return
		}
		if next == n && len(received) == 0 && !pinged {
			require.NoError(t, c.Send(rawmqtt.Pingreq()))
			pinged = true
		}
	}
}

// A message queued for an MQTT 5 session that allows topic aliases still
// has its topic when the session resumes. mochi gave the message the alias
// its topic had on the connection that was gone, and queued it without the
// topic: the resend carried an alias the new connection never set (a
// protocol error for the client, at every reconnect). Like mosquitto, the
// broker sends no topic aliases (deliveryHook.OnConnect).
func TestResumedSessionKeepsTopicNames(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	const id, topic = "aliased", "aliased/t"
	c, err := rawmqtt.Dial(b.Addr(), 5)
	require.NoError(t, err)
	require.NoError(t, c.Send(connectV5(id, 100, 10, 0)))
	p, err := c.Read(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.CONNACK, p.Type)
	_, _, err = c.Subscribe(1, topic, 1)
	require.NoError(t, err)
	for i := 0; i < 2; i++ {
		require.NoError(t, b.Publish(topic, []byte(strconv.Itoa(i)), false, 1))
		p, err := c.Read(10 * time.Second)
		require.NoError(t, err)
		require.Equal(t, rawmqtt.PUBLISH, p.Type)
		require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)))
	}
	c.Close()
	waitOffline(t, b.srv, id)
	require.NoError(t, b.Publish(topic, []byte("queued"), false, 1))

	c, err = rawmqtt.Dial(b.Addr(), 5)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.Send(connectV5(id, 100, 10, 0)))
	p, err = c.Read(10 * time.Second)
	require.NoError(t, err)
	require.True(t, p.SessionPresent)
	p, err = c.Read(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PUBLISH, p.Type)
	require.Equal(t, "queued", string(p.Payload))
	require.Equal(t, topic, p.Topic, "the resent message has no topic")
}

// A message too large for an MQTT 5 client's Maximum Packet Size is
// discarded [MQTT-3.1.2-25], also when it was queued while the client was
// offline. mochi queued it, and its resend after the reconnect failed on it
// and closed the connection, at every reconnect: the session never got
// anything again (deliveryHook.dropOversized).
func TestResumedSessionDropsOversizedMessages(t *testing.T) {
	dir := t.TempDir()
	const id, topic, limit = "small-only", "small-only", 200
	for run := 0; run < 2; run++ { // the second run restarts from the store
		b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true,
			SysInterval: -1, PersistenceDir: dir})
		require.NoError(t, err)
		require.NoError(t, b.Start())
		if run == 0 {
			c, err := rawmqtt.Dial(b.Addr(), 5)
			require.NoError(t, err)
			require.NoError(t, c.Send(connectV5(id, 100, 0, limit)))
			p, err := c.Read(10 * time.Second)
			require.NoError(t, err)
			require.Equal(t, rawmqtt.CONNACK, p.Type)
			_, _, err = c.Subscribe(1, topic, 1)
			require.NoError(t, err)
			c.Close()
			waitOffline(t, b.srv, id)
		}
		require.NoError(t, b.Publish(topic, bytes.Repeat([]byte("x"), 2*limit), false, 1))
		require.NoError(t, b.Publish(topic, []byte(fmt.Sprint("small ", run)), false, 1))
		if run == 0 {
			require.NoError(t, b.Close())
			continue
		}
		for round := 0; round < 2; round++ {
			c, err := rawmqtt.Dial(b.Addr(), 5)
			require.NoError(t, err)
			require.NoError(t, c.Send(connectV5(id, 100, 0, limit)))
			p, err := c.Read(10 * time.Second)
			require.NoError(t, err)
			require.True(t, p.SessionPresent)
			if round == 0 {
				for _, want := range []string{"small 0", "small 1"} {
					p, err = c.Read(10 * time.Second)
					require.NoError(t, err, "the resumed session got nothing")
					require.Equal(t, rawmqtt.PUBLISH, p.Type)
					require.Equal(t, want, string(p.Payload))
					require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)))
				}
			}
			// The session is usable: a PINGREQ is answered (and the
			// acknowledgements before it were handled).
			require.NoError(t, c.Send(rawmqtt.Pingreq()))
			p, err = c.Read(10 * time.Second)
			require.NoError(t, err)
			require.Equal(t, rawmqtt.PINGRESP, p.Type, "got %s", p)
			c.Close()
			waitOffline(t, b.srv, id)
		}
		stored, err := b.store.StoredInflightMessages()
		require.NoError(t, err)
		for _, m := range stored {
			require.NotEqual(t, id, m.Client, "a discarded message is still in the store: %d bytes", len(m.Payload))
		}
		require.NoError(t, b.Close())
	}
}

// lostBeforeConnack, once armed, acts while mochi takes a session over
// for a new connection (OnSessionEstablish, before its CONNACK): it
// publishes a message and then ends the new connection, as a third
// connection taking the session over at once would.
type lostBeforeConnack struct {
	mqtt.HookBase
	b      *Broker
	mu     sync.Mutex
	newest *mqtt.Client
	armed  bool
}

func (h *lostBeforeConnack) ID() string { return "test-lost-before-connack" }

func (h *lostBeforeConnack) Provides(b byte) bool { return b == mqtt.OnSessionEstablish }

func (h *lostBeforeConnack) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	h.newest = cl
	armed := h.armed
	h.armed = false
	h.mu.Unlock()
	if armed {
		_ = h.b.Publish("orphan", []byte("late"), false, 1)
		cl.Stop(nil)
	}
}

// A message that reaches the old connection while a persistent session is
// taken over is not lost when the new connection ends before its CONNACK:
// the next connection gets it (the old deliveryHook kept it for a CONNACK
// that never came; the engine's session outlives connections).
func TestResumedSessionAfterConnectionLostBeforeConnack(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	h := &lostBeforeConnack{b: b}
	require.NoError(t, b.srv.AddHook(h, nil))
	require.NoError(t, b.Start())
	o := rawmqtt.ConnectOptions{ClientID: "orphan", KeepAlive: 30}
	c, err := rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	_, err = c.Connect(o)
	require.NoError(t, err)
	_, _, err = c.Subscribe(1, "orphan", 1)
	require.NoError(t, err)
	c.Close()
	waitOffline(t, b.srv, "orphan")
	for i := 0; i < 3; i++ {
		require.NoError(t, b.Publish("orphan", []byte(strconv.Itoa(i)), false, 1))
	}

	h.mu.Lock()
	h.armed = true
	h.mu.Unlock()
	c, err = rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	_, err = c.Connect(o)
	require.Error(t, err, "the connection ends before its CONNACK")
	c.Close()
	// The client sees its connection closed before mochi is done with
	// it: wait until mochi registered it (the next connection takes it
	// over, not the first one).
	rawclient.WaitFor(t, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		cl, ok := b.srv.Clients.Get("orphan")
		return ok && cl == h.newest && cl.Closed()
	})

	c, err = rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	defer c.Close()
	ack, err := c.Connect(o)
	require.NoError(t, err)
	require.True(t, ack.SessionPresent)
	require.NoError(t, b.Publish("orphan", []byte("end"), false, 1))
	var got []string
	for len(got) == 0 || got[len(got)-1] != "end" {
		p, err := c.Read(10 * time.Second)
		require.NoError(t, err, "got %v", got)
		require.Equal(t, rawmqtt.PUBLISH, p.Type)
		got = append(got, string(p.Payload))
		require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)))
	}
	require.Equal(t, []string{"0", "1", "2", "late", "end"}, got)
}

// persistent_client_expiration: a persistent session whose client stays
// away longer is removed; an MQTT 5 client asking for more is told the
// maximum.
func TestPersistentClientExpiration(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, PersistentClientExpiration: time.Second})
	c := rawclient.Dial(t, b.Addr(), 4)
	pk := c.ConnectPacket("persist", "", "")
	pk.Connect.Clean = false
	c.Send(pk)
	require.Equal(t, byte(0), c.Recv().ReasonCode)
	require.Equal(t, []byte{1}, c.Subscribe(1, 1, "p/#"))
	c.Conn.Close()
	rawclient.WaitFor(t, func() bool { _, ok := b.srv.Clients.Get("persist"); return !ok })

	c = rawclient.Dial(t, b.Addr(), 5)
	pk = c.ConnectPacket("persist5", "", "")
	pk.Properties.SessionExpiryInterval, pk.Properties.SessionExpiryIntervalFlag = 3600, true
	c.Send(pk)
	ack := c.Recv()
	require.Equal(t, byte(0), ack.ReasonCode)
	require.Equal(t, uint32(1), ack.Properties.SessionExpiryInterval)
}
