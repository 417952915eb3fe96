// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// flowHook owns the flow of QoS 1 and 2 messages to each client: the
// in-flight window, the bound of its queue, the back-pressure on the
// publishers of a client that keeps up, and the drop decision for one
// that does not. mochi v2.7.9 has none of it: it writes every QoS 1/2
// message straight to an MQTT 3.1.1 client, however many are
// unacknowledged, and drops each message past its per-client limit with a
// log line per message: with mosquitto's default limits (20 in flight,
// 1,000 queued) a 20,000-message burst to a subscriber that was reading
// and acknowledging lost a third of the messages.
//
//   - Window: at most window messages are unacknowledged at a time
//     (max_inflight_messages; an MQTT 5 client's smaller Receive Maximum
//     wins). mochi hands every delivery to the client's write loop through
//     its outbound channel, in the order it routed them; the write loop
//     waits in OnPacketEncode, before it sends a message that was not
//     sent before, until the window has room. So the next ones wait in
//     order, in the channel (and in the session), and go out as
//     acknowledgements come in. mochi's own flow control (its send
//     quota, for MQTT 5 clients only) is off: it sent held-back messages
//     from the client's read loop, racing the write loop, in random
//     order.
//   - Back-pressure: before a client's QoS 1/2 PUBLISH is routed, its
//     read loop waits until every connected subscriber the message goes
//     to at QoS 1/2 holds fewer than wait messages (in flight plus
//     queued: max_inflight_messages + max_queued_messages, at most
//     maxWait, also when those set no bound): the publisher
//     is slowed down by TCP instead of its messages being dropped. A
//     subscriber that acknowledges nothing for Stall while a publisher
//     waits is disconnected as a slow consumer (one log line, counted);
//     its session keeps its messages.
//   - No deadlock: a read loop never waits for its own client, nor for a
//     client whose read loop is waiting itself (that one could be waiting
//     for this one's acknowledgements): the message is then queued past
//     the bound. Messages of the broker itself ($SYS, Broker.Publish,
//     wills) and retained messages sent after a SUBSCRIBE never wait
//     either.
//   - Drops: only for a session whose client is offline, once it holds
//     bound messages; the first drop of each such episode is logged (one
//     line: client, reason, setting), every drop counted
//     (mqtt_messages_dropped_total{reason="session_limit"}).
//
// It must come before retainGuard and durableAcks among the hooks with
// OnPublish: a read loop waiting here holds no lock and no bytes of its
// client. Its drop decision is another hook, flowDrops, which must come
// after the store and deliveryHook among those with OnQosPublish: they
// have numbered and stored the message it drops.
type flowHook struct {
	mqtt.HookBase
	srv *mqtt.Server
	log *slog.Logger
	// window is max_inflight_messages (0: the client's Receive Maximum
	// only); bound is the most messages held per offline session (0: no
	// bound); publishers wait for a connected client holding wait
	// messages (bound, at most maxWait).
	window, bound, wait int
	stall               time.Duration
	// targets returns the subscribers of a topic (router.lookup).
	targets func(topic string) []target
	// forget is told about a dropped message (its number in the queue
	// order, its copy in the store).
	forget func(cl *mqtt.Client, pk packets.Packet)
	// order is the queue order of each client (which messages are sent
	// and unacknowledged: in flight).
	order *orderBook

	mu    sync.Mutex
	flows map[string]*flow // client ID -> its flow

	dropped atomic.Int64 // messages dropped for offline sessions at their bound
	cut     atomic.Int64 // subscribers disconnected for not acknowledging
}

// flow is the flow state of one client (one session: it outlives a
// connection taken over by another).
type flow struct {
	mu       sync.Mutex
	window   int           // the connection's in-flight window (0: none)
	reserved int           // messages publishers were let through for and have not queued yet
	progress chan struct{} // closed at the next acknowledgement; nil: nobody waits
	dropping bool          // an episode of drops was logged and is not over

	waiting atomic.Bool // its read loop waits in OnPublish
	held    []*flow     // as a publisher: the reservations of the message being routed (mu)
}

// errNoAcks is the stop cause of a subscriber cut for not acknowledging.
var errNoAcks = errors.New("slow consumer: client acknowledges no messages")

func newFlowHook(srv *mqtt.Server, log *slog.Logger, order *orderBook, window, bound int, stall time.Duration) *flowHook {
	if stall <= 0 {
		stall = DefaultSlowConsumerTimeout
	}
	wait := bound
	if wait <= 0 || wait > maxWait {
		wait = maxWait
	}
	return &flowHook{srv: srv, log: log, order: order, window: window, bound: bound, wait: wait, stall: stall,
		flows: map[string]*flow{}, forget: func(*mqtt.Client, packets.Packet) {}}
}

// maxWait bounds the messages held for a connected client before its
// publishers wait, also when max_queued_messages sets no bound: they are
// in mochi's outbound channel for the client, which has
// MaximumClientWritesPending (8,192) slots and drops what does not fit.
const maxWait = 4096

// ID implements mqtt.Hook.
func (h *flowHook) ID() string { return "mqttkit-flow" }

// Provides implements mqtt.Hook.
func (h *flowHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnSessionEstablished, mqtt.OnPublish, mqtt.OnPublished, mqtt.OnPacketProcessed, mqtt.OnPacketEncode,
		mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

func (h *flowHook) flowOf(id string) *flow {
	h.mu.Lock()
	defer h.mu.Unlock()
	f := h.flows[id]
	if f == nil {
		f = new(flow)
		h.flows[id] = f
	}
	return f
}

// OnConnect sets the connection's window and turns mochi's flow control
// off (a zero Receive Maximum is mochi's "none"; it applies the value
// again to a session it hands over).
func (h *flowHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	n := int(cl.Properties.Props.ReceiveMaximum) // MQTT 5; 0: none
	if h.window > 0 && (n == 0 || h.window < n) {
		n = h.window
	}
	cl.Properties.Props.ReceiveMaximum = 0
	cl.State.Inflight.ResetSendQuota(0)
	f := h.flowOf(cl.ID)
	f.mu.Lock()
	f.window = n
	f.mu.Unlock()
	return nil
}

// OnPacketEncode holds a QoS 1/2 message that was not sent before until
// the client's window has room (see flowHook). The write loop waits here;
// messages sent again (DUP, a resumed session's resend) never wait.
func (h *flowHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Qos == 0 || pk.FixedHeader.Dup || cl.Net.Inline {
		return pk
	}
	f := h.flowOf(cl.ID)
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.window > 0 && !cl.Closed() && !h.order.wasSent(cl.ID, pk.PacketID) && h.order.inFlight(cl.ID) >= f.window {
		if f.progress == nil {
			f.progress = make(chan struct{})
		}
		ch := f.progress
		f.mu.Unlock()
		<-ch // an acknowledgement, or the client closed (OnDisconnect)
		f.mu.Lock()
	}
	return pk
}

// OnSessionEstablished ends a drop episode: the client is back.
func (h *flowHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	f := h.flowOf(cl.ID)
	f.mu.Lock()
	f.dropping = false
	f.mu.Unlock()
}

// OnPublish waits until the connected QoS 1/2 subscribers of the message
// have room for it (see flowHook), and reserves that room until the
// message is routed (OnPublished).
func (h *flowHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos == 0 || cl.Net.Inline || pk.Ignore {
		return pk, nil
	}
	self := h.flowOf(cl.ID)
	self.waiting.Store(true) // before looking at the others' (see flowHook)
	defer self.waiting.Store(false)
	for _, t := range h.targets(pk.TopicName) {
		if t.cl.ID == cl.ID || t.cl.Net.Inline || min(t.sub.Qos, pk.FixedHeader.Qos) == 0 {
			continue
		}
		if f := h.flowOf(t.cl.ID); h.reserve(t.cl, f) {
			self.mu.Lock()
			self.held = append(self.held, f)
			self.mu.Unlock()
		}
	}
	return pk, nil
}

// reserve waits until cl has room for one more message and reserves it;
// false when it reserved nothing (cl is offline, or waiting itself, or
// was cut for not acknowledging).
func (h *flowHook) reserve(cl *mqtt.Client, f *flow) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		if cl.Closed() || f.waiting.Load() {
			return false
		}
		if cl.State.Inflight.Len()+f.reserved < h.wait {
			f.reserved++
			return true
		}
		if f.progress == nil {
			f.progress = make(chan struct{})
		}
		ch := f.progress
		if timer == nil {
			timer = time.NewTimer(h.stall)
		} else {
			timer.Reset(h.stall)
		}
		f.mu.Unlock()
		select {
		case <-ch:
			f.mu.Lock()
		case <-timer.C:
			f.mu.Lock()
			if f.progress == ch { // no acknowledgement for h.stall
				h.cut.Add(1)
				h.log.Warn("disconnecting slow consumer: no acknowledgement while its queue is full; its session keeps the messages",
					"client", cl.ID, "remote", cl.Net.Remote, "in_flight_and_queued", cl.State.Inflight.Len(),
					"setting", fmt.Sprintf("max_queued_messages (%d held per client)", h.wait), "waited", h.stall)
				cl.Stop(errNoAcks)
				return false
			}
		}
	}
}

// wake tells the publishers waiting for cl's room to look again.
func (h *flowHook) wake(id string) {
	h.mu.Lock()
	f := h.flows[id]
	h.mu.Unlock()
	if f == nil {
		return
	}
	f.mu.Lock()
	if f.progress != nil {
		close(f.progress)
		f.progress = nil
	}
	f.mu.Unlock()
}

// OnPublished ends the reservations of a routed message.
func (h *flowHook) OnPublished(cl *mqtt.Client, _ packets.Packet) { h.release(cl) }

// OnPacketProcessed ends the reservations of a PUBLISH that failed.
func (h *flowHook) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type == packets.Publish {
		h.release(cl)
	}
}

func (h *flowHook) release(cl *mqtt.Client) {
	if cl.Net.Inline {
		return
	}
	h.mu.Lock()
	self := h.flows[cl.ID]
	h.mu.Unlock()
	if self == nil {
		return
	}
	self.mu.Lock()
	held := self.held
	self.held = nil
	self.mu.Unlock()
	for _, f := range held {
		f.mu.Lock()
		f.reserved--
		f.mu.Unlock()
	}
}

// flowDrops is the part of flowHook that must come after the store and
// deliveryHook: the drop decision, and the wake-up once an acknowledged
// message is off the books.
type flowDrops struct {
	mqtt.HookBase
	flow *flowHook
}

// ID implements mqtt.Hook.
func (d *flowDrops) ID() string { return "mqttkit-flow-drops" }

// Provides implements mqtt.Hook.
func (d *flowDrops) Provides(b byte) bool {
	return b == mqtt.OnQosPublish || b == mqtt.OnQosComplete || b == mqtt.OnQosDropped
}

// OnQosPublish drops a message queued for an offline session that holds
// bound messages already: the one drop decision for QoS 1/2.
func (d *flowDrops) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	d.flow.drop(cl, pk)
}

func (h *flowHook) drop(cl *mqtt.Client, pk packets.Packet) {
	if h.bound <= 0 || pk.FixedHeader.Type != packets.Publish || !cl.Closed() || cl.State.Inflight.Len() <= h.bound {
		return
	}
	if !cl.State.Inflight.Delete(pk.PacketID) {
		return
	}
	atomic.AddInt64(&h.srv.Info.Inflight, -1)
	atomic.AddInt64(&h.srv.Info.InflightDropped, 1)
	h.dropped.Add(1)
	h.forget(cl, pk)
	f := h.flowOf(cl.ID)
	f.mu.Lock()
	first := !f.dropping
	f.dropping = true
	f.mu.Unlock()
	if first {
		h.log.Warn("dropping messages for offline client: its session is full (logged once until it reconnects)",
			"client", cl.ID, "reason", "offline session full",
			"setting", fmt.Sprintf("max_queued_messages (%d held per client)", h.bound))
	}
}

// OnQosComplete wakes the publishers and the write loop waiting for room
// in cl's session (after deliveryHook took the message off the books).
func (d *flowDrops) OnQosComplete(cl *mqtt.Client, _ packets.Packet) { d.flow.wake(cl.ID) }

// OnQosDropped wakes them too.
func (d *flowDrops) OnQosDropped(cl *mqtt.Client, _ packets.Packet) { d.flow.wake(cl.ID) }

// OnDisconnect releases what the client held as a publisher, wakes the
// publishers waiting for it (they stop waiting: it is closed) and forgets
// a session that ends.
func (h *flowHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.release(cl)
	h.wake(cl.ID)
	if expire && !cl.IsTakenOver() {
		h.forgetClient(cl.ID)
	}
}

// OnClientExpired forgets an expired session.
func (h *flowHook) OnClientExpired(cl *mqtt.Client) { h.forgetClient(cl.ID) }

func (h *flowHook) forgetClient(id string) {
	h.mu.Lock()
	delete(h.flows, id)
	h.mu.Unlock()
}
