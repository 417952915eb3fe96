// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/mqttkit/mqttkit/internal/rawclient"
)

// TestRetainedSubscribeRace: retained publishers and subscribers at the
// same time (the publishers go on until every SUBSCRIBE is acknowledged,
// then publish a last value). Each subscriber gets, per topic, the value
// retained when it subscribed or a later one first (none lost), then only
// later values (none twice, none older), up to the last one.
func TestRetainedSubscribeRace(t *testing.T) {
	const topics, last, subscribers = 6, 1 << 30, 16
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	var acked [topics]atomic.Int64 // latest value whose PUBACK arrived (0: none)
	var subscribed atomic.Int64    // SUBACKs received
	var pubs sync.WaitGroup
	for i := range topics {
		p := rawclient.Dial(t, b.Addr(), 4)
		p.MustConnect("rp"+strconv.Itoa(i), "", "")
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for v := 1; v <= last; v++ {
				if subscribed.Load() == subscribers {
					v = last
				}
				p.Publish(uint16(v%60000+1), 1, "rr/"+strconv.Itoa(i), strconv.Itoa(v), true)
				pk, _, err := p.RecvRaw(10 * time.Second)
				if err != nil || pk.FixedHeader.Type != packets.Puback {
					t.Errorf("publisher %d: %v %v", i, pk.FixedHeader.Type, err)
					return
				}
				acked[i].Store(int64(v))
			}
		}()
	}
	var subs sync.WaitGroup
	for n := range subscribers {
		c := rawclient.Dial(t, b.Addr(), 4)
		c.MustConnect("rs"+strconv.Itoa(n), "", "")
		subs.Add(1)
		go func() {
			defer subs.Done()
			var before [topics]int64
			for i := range topics {
				before[i] = acked[i].Load()
			}
			c.Send(subscribePacket(1, packets.Subscription{Filter: "rr/#", Qos: 1}))
			var got [topics]int64
			complete := 0
			for complete < topics {
				pk, _, err := c.RecvRaw(10 * time.Second)
				if err != nil {
					t.Errorf("subscriber %d: %v (got %v, before %v)", n, err, got, before)
					return
				}
				if pk.FixedHeader.Type == packets.Suback {
					subscribed.Add(1)
				}
				if pk.FixedHeader.Type != packets.Publish {
					continue
				}
				if pk.FixedHeader.Qos == 1 {
					c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: pk.PacketID})
				}
				i, _ := strconv.Atoi(pk.TopicName[len("rr/"):])
				v, _ := strconv.ParseInt(string(pk.Payload), 10, 64)
				switch {
				case got[i] == 0 && v < before[i]:
					t.Errorf("subscriber %d, topic %d: first %d, but %d was retained before the SUBSCRIBE", n, i, v, before[i])
				case v <= got[i]:
					t.Errorf("subscriber %d, topic %d: %d after %d (retain %v)", n, i, v, got[i], pk.FixedHeader.Retain)
				}
				got[i] = v
				if v == last {
					complete++
				}
			}
		}()
		time.Sleep(time.Duration(n) * time.Millisecond) // spread the SUBSCRIBEs over the publishing
	}
	pubs.Wait()
	subs.Wait()
}

// TestSysRetainedOnceDuringSubscribe: a $SYS value that changes while a
// SUBSCRIBE to it is between its registration and its SUBACK reaches the
// new subscriber once, as any retained message
// (TestFixRetainedOnceDuringSubscribe).
func TestSysRetainedOnceDuringSubscribe(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	h := &pauseSubscribed{at: make(chan struct{}), release: make(chan struct{})}
	if err := b.srv.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	sys := newSysPublisher(b, time.Hour) // not started: publish only
	sys.publish("$SYS/broker/test", "1")
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("sys-during", "", "")
	c.Send(subscribePacket(1, packets.Subscription{Filter: "$SYS/broker/test"}))
	select {
	case <-h.at:
	case <-time.After(10 * time.Second):
		t.Fatal("the SUBSCRIBE did not reach OnSubscribed")
	}
	sys.publish("$SYS/broker/test", "2")
	close(h.release)
	var got []string
	for _, pk := range append([]packets.Packet{c.Recv(), c.Recv()}, c.Collect()...) {
		if pk.FixedHeader.Type == packets.Publish {
			got = append(got, string(pk.Payload))
		}
	}
	if len(got) != 1 || got[0] != "2" {
		t.Fatalf("got %q, want the value 2 once", got)
	}
}
