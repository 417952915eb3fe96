// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// A persistent-session subscriber is offline while a publisher sends N
// messages; the broker (with --persistence) is killed with SIGKILL and
// restarted twice while they are published and once while the subscriber
// takes them. Every message the broker acknowledged reaches the
// subscriber: at least once at QoS 1, exactly once at QoS 2, in
// publishing order.
//
// N is 50,000 per QoS level, 100,000 in all (2,000 with -short): one
// session holds at most 65,535 unacknowledged messages, as each has a
// packet ID from the moment it is queued (docs/reliability.md).
func TestKill9PersistentSession(t *testing.T) {
	n := scale(50000, 2000)
	for _, tc := range []struct {
		qos     byte
		version byte // of the subscriber; the publisher speaks MQTT 5
	}{{1, 4}, {2, 5}} {
		t.Run(fmt.Sprintf("QoS %d", tc.qos), func(t *testing.T) {
			b := startPersistentBroker(t)
			topic := fmt.Sprintf("load/%d", tc.qos)
			sub := newSubscriber(b.Addr, "offline-subscriber", tc.version, tc.qos, topic)
			sub.subscribe(t)

			pub := newPublisher(b.Addr, "publisher", 5, tc.qos, topic)
			kills := []int{n / 3, 2 * n / 3}
			start := time.Now()
			pub.run(t, 0, n, true, func(acked int) {
				if len(kills) > 0 && acked >= kills[0] {
					kills = kills[1:]
					b.restart()
				}
			})
			t.Logf("published %d messages at QoS %d in %s", n, tc.qos, time.Since(start))
			if len(kills) > 0 {
				t.Fatalf("only %d of the planned broker kills happened", 2-len(kills))
			}

			sub.complete = func() bool {
				for seq := range pub.acked {
					if seq >= 0 && sub.count[seq] == 0 {
						return false
					}
				}
				return true
			}
			killAt := len(pub.acked) / 2
			start = time.Now()
			err := sub.drain(3*time.Minute, func(got int) {
				if killAt > 0 && got >= killAt {
					killAt = 0
					b.restart()
				}
			})
			t.Logf("received in %s", time.Since(start))
			check(t, pub, sub)
			if err != nil {
				t.Fatal(err)
			}
			if sub.reconnects == 0 {
				t.Error("the broker was not killed while the subscriber was taking its messages")
			}
		})
	}
}

// The broker is killed the moment it acknowledges a message, again and
// again: every acknowledged message must be in the offline subscriber's
// session after the restart. (mochi acknowledges before it stores; the
// window is short, hence the repetitions.)
func TestKill9RightAfterAck(t *testing.T) {
	trials := scale(40, 15)
	b := startPersistentBroker(t)
	sub := newSubscriber(b.Addr, "after-ack-subscriber", 5, 2, "after-ack")
	sub.subscribe(t)
	pub := newPublisher(b.Addr, "after-ack-publisher", 5, 1, "after-ack")
	for i := 0; i < trials; i++ {
		pub.qos = byte(1 + i%2)
		pub.window = 1
		pub.run(t, i, i+1, false, func(int) { b.restart() })
	}
	pub.run(t, trials, trials, true, nil) // the end marker
	sub.complete = func() bool { return len(sub.count) >= len(pub.acked)-1 }
	err := sub.drain(time.Minute, nil)
	check(t, pub, sub)
	if err != nil {
		t.Fatal(err)
	}
}

// A QoS 2 delivery the subscriber has acknowledged with PUBREC, whose
// PUBCOMP the broker has not received, survives a kill: after the restart
// the broker sends the PUBREL again [MQTT-4.3.3-5]. If it forgot, the
// subscriber would hold the packet ID as "received" and take the next
// message with that ID for a duplicate.
func TestKill9QoS2ReleaseState(t *testing.T) {
	b := startPersistentBroker(t)
	o := rawmqtt.ConnectOptions{ClientID: "release-subscriber", KeepAlive: 30, SessionExpiry: 3600}
	c, _, err := dialRetry(b.Addr, 5, o, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Subscribe(1, "release", 2); err != nil {
		t.Fatal(err)
	}
	p, _, err := dialRetry(b.Addr, 5, rawConnect("release-publisher"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := publishOne(p, 5, "release", "one", 2, false); err != nil {
		t.Fatal(err)
	}
	p.Close()
	msg := readType(t, c, rawmqtt.PUBLISH)
	if err := c.Send(rawmqtt.Ack(rawmqtt.PUBREC, msg.PacketID)); err != nil {
		t.Fatal(err)
	}
	rel := readType(t, c, rawmqtt.PUBREL)
	if rel.PacketID != msg.PacketID {
		t.Fatalf("PUBREL for %d, want %d", rel.PacketID, msg.PacketID)
	}
	// No PUBCOMP: the broker must keep the PUBREL state.
	c.Close()
	b.restart()

	c, ack, err := dialRetry(b.Addr, 5, o, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !ack.SessionPresent {
		t.Fatal("the session was lost")
	}
	got := readType(t, c, rawmqtt.PUBREL)
	if got.PacketID != msg.PacketID {
		t.Fatalf("after the restart PUBREL for %d, want %d", got.PacketID, msg.PacketID)
	}
	if err := c.Send(rawmqtt.Ack(rawmqtt.PUBCOMP, got.PacketID)); err != nil {
		t.Fatal(err)
	}
}

// readType reads packets until one of type typ, failing on anything but
// PUBLISH or PUBREL in between.
func readType(t *testing.T, c *rawmqtt.Conn, typ byte) *rawmqtt.Packet {
	t.Helper()
	for {
		p, err := c.Read(10 * time.Second)
		if err != nil {
			t.Fatalf("waiting for packet type %d: %v", typ, err)
		}
		if p.Type == typ {
			return p
		}
		t.Fatalf("got %s (dup %v) while waiting for packet type %d", p, p.Dup, typ)
	}
}
