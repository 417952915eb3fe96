// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// The fault tests drive the broker with raw MQTT clients so that they know
// exactly which messages the broker acknowledged and can implement the
// receiving side of QoS 2 correctly across reconnects.

// endPayload marks the last message of a run; a publisher's messages
// arrive in order, so everything before it has arrived when it does.
const endPayload = "end"

// dialRetry connects, retrying while the broker is restarting.
func dialRetry(addr func() string, version byte, o rawmqtt.ConnectOptions, timeout time.Duration) (*rawmqtt.Conn, *rawmqtt.Packet, error) {
	deadline := time.Now().Add(timeout)
	for {
		c, err := rawmqtt.Dial(addr(), version)
		if err == nil {
			var ack *rawmqtt.Packet
			ack, err = c.Connect(o)
			if err == nil {
				return c, ack, nil
			}
			c.Close()
		}
		if time.Now().After(deadline) {
			return nil, nil, fmt.Errorf("connect to %s: %w", addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// reader delivers a connection's packets on a channel until it fails.
func reader(c *rawmqtt.Conn) (<-chan *rawmqtt.Packet, <-chan error) {
	pk := make(chan *rawmqtt.Packet, 256)
	fail := make(chan error, 1)
	go func() {
		for {
			p, err := c.Read(time.Hour)
			if err != nil {
				fail <- err
				return
			}
			pk <- p
		}
	}()
	return pk, fail
}

// publisher publishes numbered messages with a window of unacknowledged
// ones, reconnecting (with a clean session) when the connection fails. It
// never sends a message twice: a message whose acknowledgement was lost
// with the connection counts as "unknown" and may arrive at most once
// (QoS 2) or any number of times (QoS 1).
type publisher struct {
	addr    func() string
	id      string
	version byte
	qos     byte
	topic   string
	window  int

	acked      map[int]bool // PUBACK (QoS 1) or PUBREC (QoS 2) received
	unknown    map[int]bool // sent, connection lost before the acknowledgement
	refused    map[int]byte // acknowledged with a failure reason code (MQTT 5)
	reconnects int
}

func newPublisher(addr func() string, id string, version, qos byte, topic string) *publisher {
	return &publisher{addr: addr, id: id, version: version, qos: qos, topic: topic, window: 64,
		acked: map[int]bool{}, unknown: map[int]bool{}, refused: map[int]byte{}}
}

func payloadOf(seq int) []byte {
	if seq < 0 {
		return []byte(endPayload)
	}
	return []byte(fmt.Sprintf("%09d", seq))
}

// run publishes messages from to to-1, then the end marker (seq -1) when
// end is set. onAck runs after each acknowledgement with the number of
// acknowledged messages so far; it may restart the broker.
func (p *publisher) run(t *testing.T, from, to int, end bool, onAck func(int)) {
	t.Helper()
	next := from
	last := to
	if end {
		last++ // the marker
	}
	seqOf := func(i int) int {
		if i == to {
			return -1
		}
		return i
	}
	for next < last {
		c, _, err := dialRetry(p.addr, p.version, rawmqtt.ConnectOptions{ClientID: p.id, Clean: true, KeepAlive: 30}, 60*time.Second)
		if err != nil {
			t.Fatalf("publisher: %v", err)
		}
		pk, fail := reader(c)
		inflight := map[uint16]int{} // packet ID -> seq, awaiting PUBACK / PUBREC
		released := map[uint16]bool{}
		id := uint16(0)
		nextID := func() uint16 {
			for {
				id++
				if id == 0 {
					id = 1
				}
				if _, busy := inflight[id]; !busy && !released[id] {
					return id
				}
			}
		}
		lost := false
		for !lost {
			for next < last && len(inflight)+len(released) < p.window {
				pid := nextID()
				seq := seqOf(next)
				if err := c.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: p.version, Topic: []byte(p.topic), Payload: payloadOf(seq), QoS: p.qos, PacketID: pid})); err != nil {
					p.unknown[seq] = true
					next++
					lost = true
					break
				}
				inflight[pid] = seq
				next++
			}
			if lost {
				break
			}
			if next >= last && len(inflight) == 0 && len(released) == 0 {
				_ = c.Send(rawmqtt.Disconnect())
				c.Close()
				return
			}
			select {
			case <-fail:
				lost = true
			case a := <-pk:
				switch a.Type {
				case rawmqtt.PUBACK, rawmqtt.PUBREC:
					seq, ok := inflight[a.PacketID]
					if !ok {
						t.Fatalf("publisher: acknowledgement for unknown packet ID %d", a.PacketID)
					}
					delete(inflight, a.PacketID)
					if a.Reason >= 0x80 {
						p.refused[seq] = a.Reason
						continue
					}
					p.acked[seq] = true
					if a.Type == rawmqtt.PUBREC {
						released[a.PacketID] = true
						if err := c.Send(rawmqtt.Ack(rawmqtt.PUBREL, a.PacketID)); err != nil {
							lost = true
						}
					}
					if onAck != nil && seq >= 0 {
						onAck(len(p.acked))
					}
				case rawmqtt.PUBCOMP:
					delete(released, a.PacketID)
				case rawmqtt.DISCONNECT:
					lost = true
				}
			}
		}
		c.Close()
		for _, seq := range inflight {
			p.unknown[seq] = true
		}
		p.reconnects++
	}
}

// subscriber is a persistent-session subscriber that counts every message
// it is given and implements the QoS 2 receiver: a packet ID it
// acknowledged with PUBREC stays "received" until PUBREL, across
// reconnects, so a resent PUBLISH with that ID is not a new message.
type subscriber struct {
	addr    func() string
	id      string
	version byte
	qos     byte
	topic   string

	distinct atomic.Int64 // distinct messages so far, for other goroutines
	// complete, when set, tells whether every expected message arrived:
	// drain then goes on reading after the end marker until it has, or
	// until nothing arrives for a while (so that check can tell lost
	// messages from late ones).
	complete func() bool
	sawEnd   bool

	pendingRel map[uint16]string // QoS 2 packet IDs awaiting PUBREL -> payload
	reused     []string          // packet IDs the broker reused before PUBREL
	trace      map[int]string    // seq -> how it arrived (for failure reports)
	count      map[int]int       // seq -> deliveries
	first      []int             // seqs in order of first delivery
	total      int               // deliveries, duplicates included
	reconnects int
	present    []bool // session present flag of each reconnect
}

func newSubscriber(addr func() string, id string, version, qos byte, topic string) *subscriber {
	return &subscriber{addr: addr, id: id, version: version, qos: qos, topic: topic,
		pendingRel: map[uint16]string{}, count: map[int]int{}, trace: map[int]string{}}
}

func (s *subscriber) connectOptions() rawmqtt.ConnectOptions {
	o := rawmqtt.ConnectOptions{ClientID: s.id, KeepAlive: 30}
	if s.version == 5 {
		o.SessionExpiry = 3600
	}
	return o
}

// subscribe creates the persistent session and its subscription, then
// goes offline.
func (s *subscriber) subscribe(t *testing.T) {
	t.Helper()
	c, _, err := dialRetry(s.addr, s.version, s.connectOptions(), 30*time.Second)
	if err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	defer c.Close()
	if _, _, err := c.Subscribe(1, s.topic, s.qos); err != nil {
		t.Fatalf("subscriber: %v", err)
	}
	if err := c.Send(rawmqtt.Disconnect()); err != nil {
		t.Fatal(err)
	}
}

// drain connects (reconnecting when the connection fails) and reads until
// the end marker arrives. onMessage runs after each new message with the
// number of distinct messages so far; it may restart the broker. drain may
// run on its own goroutine (with a nil onMessage).
func (s *subscriber) drain(timeout time.Duration, onMessage func(int)) error {
	deadline := time.Now().Add(timeout)
	for {
		c, ack, err := dialRetry(s.addr, s.version, s.connectOptions(), 60*time.Second)
		if err != nil {
			return fmt.Errorf("subscriber: %w", err)
		}
		s.present = append(s.present, ack.SessionPresent)
		if !ack.SessionPresent {
			c.Close()
			return fmt.Errorf("subscriber: the broker lost the persistent session (connection %d, %d distinct messages so far)", len(s.present), len(s.count))
		}
		pk, fail := reader(c)
		done, err := s.read(c, pk, fail, deadline, onMessage)
		c.Close()
		if done {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("subscriber: no end marker after %s: %d distinct messages, %d deliveries (%v)", timeout, len(s.count), s.total, err)
		}
		s.reconnects++
	}
}

func (s *subscriber) read(c *rawmqtt.Conn, pk <-chan *rawmqtt.Packet, fail <-chan error, deadline time.Time, onMessage func(int)) (bool, error) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	const quiet = 5 * time.Second
	idle := time.NewTimer(quiet)
	defer idle.Stop()
	for {
		var p *rawmqtt.Packet
		select {
		case err := <-fail:
			return false, err
		case <-timer.C:
			return false, errors.New("deadline")
		case <-idle.C:
			if s.sawEnd {
				return true, nil // incomplete: check reports what is missing
			}
			idle.Reset(quiet)
			continue
		case p = <-pk:
		}
		idle.Reset(quiet)
		switch p.Type {
		case rawmqtt.PUBLISH:
			// Deliver, then acknowledge: a receiver that recorded the packet
			// ID must also have delivered the message, or a resend after a
			// failed acknowledgement would be taken for a duplicate.
			fresh := true
			ack := rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)
			if p.QoS == 2 {
				if was, ok := s.pendingRel[p.PacketID]; ok {
					fresh = false // resent before PUBREL: the same message [MQTT-4.3.3-9]
					if was != string(p.Payload) {
						s.reused = append(s.reused, fmt.Sprintf("id %d: %q then %q", p.PacketID, was, p.Payload))
					}
				}
				s.pendingRel[p.PacketID] = string(p.Payload)
				ack = rawmqtt.Ack(rawmqtt.PUBREC, p.PacketID)
			}
			end, seq := false, 0
			if fresh {
				s.total++
				if string(p.Payload) == endPayload {
					end = true
					s.sawEnd = true
				} else {
					n, err := strconv.Atoi(string(p.Payload))
					if err != nil {
						return false, fmt.Errorf("unexpected payload %q", p.Payload)
					}
					seq = n
					s.trace[seq] += fmt.Sprintf(" c%d/id%d/dup%v", s.reconnects, p.PacketID, p.Dup)
					if s.count[seq] == 0 {
						s.first = append(s.first, seq)
						s.distinct.Add(1)
					}
					s.count[seq]++
				}
			}
			if p.QoS > 0 {
				if err := c.Send(ack); err != nil {
					return false, err
				}
			}
			if !fresh {
				continue
			}
			if end {
				if s.complete == nil || s.complete() {
					return true, nil
				}
				continue
			}
			if onMessage != nil {
				onMessage(len(s.count))
			}
			if s.sawEnd && s.complete != nil && s.complete() {
				return true, nil
			}
		case rawmqtt.PUBREL:
			delete(s.pendingRel, p.PacketID)
			if err := c.Send(rawmqtt.Ack(rawmqtt.PUBCOMP, p.PacketID)); err != nil {
				return false, err
			}
		case rawmqtt.DISCONNECT:
			return false, fmt.Errorf("DISCONNECT reason %d", p.Reason)
		}
	}
}

// check compares what the subscriber got with what the publisher knows:
// every acknowledged message arrived (exactly once at QoS 2), no
// unacknowledged one arrived twice at QoS 2, nothing else arrived, and
// first deliveries are in publishing order.
func check(t *testing.T, p *publisher, s *subscriber) {
	t.Helper()
	var missing, dup, alien []int
	for seq := range p.acked {
		if seq < 0 {
			continue
		}
		n := s.count[seq]
		if n == 0 {
			missing = append(missing, seq)
		}
		if p.qos == 2 && n > 1 {
			dup = append(dup, seq)
		}
	}
	for seq, n := range s.count {
		if !p.acked[seq] && !p.unknown[seq] {
			alien = append(alien, seq)
		}
		if p.qos == 2 && p.unknown[seq] && n > 1 {
			dup = append(dup, seq)
		}
	}
	outOfOrder := 0
	firstBad := -1
	for i := 1; i < len(s.first); i++ {
		if s.first[i] < s.first[i-1] {
			if firstBad < 0 {
				firstBad = i
			}
			outOfOrder++
		}
	}
	t.Logf("published %d acknowledged, %d unknown, %d refused, %d publisher reconnects; received %d distinct, %d deliveries, %d subscriber reconnects (session present: %v)",
		len(p.acked), len(p.unknown), len(p.refused), p.reconnects, len(s.count), s.total, s.reconnects, s.present)
	if len(s.reused) > 0 {
		t.Errorf("QoS 2: the broker reused %d packet IDs before their PUBREL, e.g. %v", len(s.reused), s.reused[:min(len(s.reused), 5)])
	}
	if len(p.refused) > 0 {
		t.Errorf("the broker refused %d messages (first codes: %v)", len(p.refused), firstN(p.refused, 5))
	}
	if len(missing) > 0 {
		t.Errorf("%d acknowledged messages lost, e.g. %v", len(missing), head(missing, 10))
		m := missing[0]
		for seq := max(0, m-6); seq <= m+6; seq++ {
			t.Logf("  %d:%s", seq, s.trace[seq])
		}
	}
	if len(dup) > 0 {
		t.Errorf("QoS 2: %d messages delivered more than once, e.g. %v", len(dup), head(dup, 10))
	}
	if len(alien) > 0 {
		t.Errorf("%d messages that were never published arrived, e.g. %v", len(alien), head(alien, 10))
	}
	if outOfOrder > 0 {
		t.Errorf("%d messages out of publishing order, first at position %d: %v", outOfOrder, firstBad, s.first[max(0, firstBad-3):min(len(s.first), firstBad+3)])
	}
	for i, present := range s.present {
		if !present {
			t.Errorf("reconnect %d of the subscriber found no session", i)
		}
	}
}

func head(v []int, n int) []int {
	slices.Sort(v)
	if len(v) > n {
		return v[:n]
	}
	return v
}

func firstN(m map[int]byte, n int) map[int]byte {
	out := map[int]byte{}
	for k, v := range m {
		if len(out) == n {
			break
		}
		out[k] = v
	}
	return out
}

func rawConnect(id string) rawmqtt.ConnectOptions {
	return rawmqtt.ConnectOptions{ClientID: id, Clean: true, KeepAlive: 30}
}

// publishOne publishes one message on c and waits for the end of its QoS
// flow; an acknowledgement with a failure reason code is an error.
func publishOne(c *rawmqtt.Conn, version byte, topic, payload string, qos byte, retain bool) error {
	if err := c.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: version, Topic: []byte(topic), Payload: []byte(payload), QoS: qos, Retain: retain, PacketID: 1})); err != nil {
		return err
	}
	want := map[byte]byte{1: rawmqtt.PUBACK, 2: rawmqtt.PUBREC}[qos]
	for want != 0 {
		p, err := c.Read(30 * time.Second)
		if err != nil {
			return err
		}
		if p.Type != want || p.PacketID != 1 {
			continue
		}
		if p.Reason >= 0x80 {
			return fmt.Errorf("publish %q refused: reason %d", topic, p.Reason)
		}
		switch p.Type {
		case rawmqtt.PUBREC:
			if err := c.Send(rawmqtt.Ack(rawmqtt.PUBREL, 1)); err != nil {
				return err
			}
			want = rawmqtt.PUBCOMP
		default:
			want = 0
		}
	}
	return nil
}
