// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"sort"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// deliveryHook repairs defects of mochi v2.7.9 that break MQTT's delivery
// guarantees; each has a test in pkg/broker or internal/faults that fails
// without it. (Acknowledged before stored is durableAcks, persist.go.)
//
//   - Out of order after a reconnect: mochi resends a resumed session's
//     queued messages sorted by the low 16 bits of their creation second,
//     with an unstable sort: messages from the same second go out in
//     random order, and so do messages 2^16 seconds apart. MQTT requires
//     the order in which the broker received them [MQTT-4.6.0-6]. The hook
//     numbers every message queued for a client (orderBook; with
//     persistence the number is stored with the message), and when mochi
//     resends the queue it replaces each packet, as it is encoded, with
//     the next one in that order. Messages for the client that arrive
//     while the queue is being resent wait until it has been.
//   - QoS 2 release state not stored: once a subscriber has answered a
//     QoS 2 delivery with PUBREC, mochi replaces the message with a PUBREL
//     in the session but does not tell the storage hook, so a restarted
//     broker sent the PUBLISH again instead of the PUBREL, and a client
//     that had already processed the PUBREL took it for a new message
//     [MQTT-4.3.3-5]. The hook stores the PUBREL as it is sent.
//   - Lost during a takeover: when a persistent session reconnects, mochi
//     copies the old connection's queue to the new one and only then
//     registers the new one, so a message published in between is queued
//     on the old connection and never sent (or, with persistence, comes
//     back out of order at the next restart). The hook moves such
//     messages to the new connection (see takeover).
type deliveryHook struct {
	mqtt.HookBase
	srv   *mqtt.Server
	order *orderBook
	// persist stores a session's in-flight packet (nil without persistence).
	persist func(cl *mqtt.Client, pk packets.Packet)

	mu     sync.Mutex
	resend map[*mqtt.Client]*resendBurst
}

// resendBurst is a resumed session's queue being resent in order. It lasts
// from OnSessionEstablish to OnSessionEstablished, which mochi calls right
// after its resend loop.
type resendBurst struct {
	mu      sync.Mutex
	started bool             // the CONNACK is encoded, mochi resends next
	queue   []packets.Packet // in the order they were queued
	members map[uint16]bool
	next    int
	old     *mqtt.Client     // the connection whose session is taken over
	dropped []packets.Packet // what mochi cleared from old after copying its queue
	own     map[uint16]bool  // packets OnSessionEstablished writes itself
	done    chan struct{}    // closed when the burst is over
	once    sync.Once
}

func (r *resendBurst) finish() { r.once.Do(func() { close(r.done) }) }

func newDeliveryHook(srv *mqtt.Server, order *orderBook) *deliveryHook {
	return &deliveryHook{srv: srv, order: order, resend: map[*mqtt.Client]*resendBurst{}}
}

// ID implements mqtt.Hook.
func (h *deliveryHook) ID() string { return "mqttkit-delivery" }

// Provides implements mqtt.Hook.
func (h *deliveryHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnPacketEncode, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// OnQosPublish numbers a message queued for cl (a resend keeps its number).
func (h *deliveryHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type == packets.Publish {
		h.order.assign(cl.ID, pk.PacketID)
	}
}

// OnQosComplete forgets the number of an acknowledged message.
func (h *deliveryHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.order.forget(cl.ID, pk.PacketID)
}

// OnQosDropped forgets the number of a dropped message, unless the
// session is being taken over by a new connection, which keeps it.
func (h *deliveryHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if !cl.IsTakenOver() {
		h.order.forget(cl.ID, pk.PacketID)
		return
	}
	// mochi clears the old connection's queue after copying it to the new
	// one: a message queued in between would be lost. Keep it for takeover.
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.resend {
		if r.old == cl {
			r.mu.Lock()
			r.dropped = append(r.dropped, pk)
			r.mu.Unlock()
			return
		}
	}
}

// OnClientExpired forgets an expired session's numbers.
func (h *deliveryHook) OnClientExpired(cl *mqtt.Client) { h.order.forgetClient(cl.ID) }

// OnSessionEstablish runs before mochi looks for the client's session:
// from now until its queue is resent, nothing else is written to the
// client.
func (h *deliveryHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.Clean {
		return // clean session or clean start: no queue to resend
	}
	h.mu.Lock()
	for c, r := range h.resend { // connections that failed during CONNACK
		if c.Closed() {
			delete(h.resend, c)
			r.finish()
		}
	}
	r := &resendBurst{done: make(chan struct{})}
	h.resend[cl] = r
	h.mu.Unlock()
	if old, ok := h.srv.Clients.Get(cl.ID); ok && old != cl {
		r.old = old
		// Messages queued on old during the takeover get IDs from old's
		// counter, just past the IDs in its queue (or far from them); start
		// cl's IDs 1024 past the highest one in use so that both can be
		// kept (takeover renumbers a late message if they still meet).
		top := 0
		for _, p := range old.State.Inflight.GetAll(false) {
			top = max(top, int(p.PacketID))
		}
		target := uint32((top+1024-1)%65535 + 1)
		for range 65535 {
			id, err := cl.NextPacketID()
			if err != nil || id == target {
				break
			}
		}
	}
}

// OnSessionEstablished ends the resend: mochi calls it right after its
// resend loop. Messages that reached the old connection since the CONNACK
// are sent now, before any newer one.
func (h *deliveryHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	r := h.resend[cl]
	h.mu.Unlock()
	if r != nil && r.old != nil && r.started {
		r.mu.Lock()
		dropped := r.dropped
		r.dropped = nil
		r.mu.Unlock()
		late := h.takeover(cl, r.old, dropped)
		r.mu.Lock()
		r.own = map[uint16]bool{}
		for _, p := range late {
			r.own[p.PacketID] = true
		}
		r.mu.Unlock()
		for _, p := range late {
			_ = cl.WritePacket(p)
		}
	}
	h.endResend(cl)
}

// takeover moves the messages queued on old (whose session cl took over)
// since mochi copied its queue to cl, and returns them in queue order.
// dropped is what mochi cleared from old, which includes the copied queue.
func (h *deliveryHook) takeover(cl, old *mqtt.Client, dropped []packets.Packet) []packets.Packet {
	var moved []packets.Packet
	take := func(p packets.Packet) {
		if p.FixedHeader.Type != packets.Publish {
			return
		}
		if q, taken := cl.State.Inflight.Get(p.PacketID); taken {
			if samePublish(p, q) {
				return // copied by mochi
			}
			// Both connections gave the ID to a message: the late one
			// gets a new ID (it may then go out after newer messages; it
			// is not lost).
			id, err := cl.NextPacketID()
			if err != nil {
				return // all IDs in use: the session is full
			}
			p.PacketID = uint16(id)
			h.order.assign(cl.ID, p.PacketID)
			if h.persist != nil {
				h.persist(cl, p)
			}
		}
		cl.State.Inflight.Set(p)
		moved = append(moved, p)
	}
	for _, p := range dropped {
		take(p)
	}
	for _, p := range old.State.Inflight.GetAll(false) {
		if p.FixedHeader.Type == packets.Publish {
			old.State.Inflight.Delete(p.PacketID)
			take(p)
		}
	}
	h.order.sort(cl.ID, moved)
	return moved
}

// samePublish reports whether two queued PUBLISH packets are one message.
func samePublish(a, b packets.Packet) bool {
	return b.FixedHeader.Type == packets.Publish && a.TopicName == b.TopicName &&
		a.Created == b.Created && a.Origin == b.Origin && bytes.Equal(a.Payload, b.Payload)
}

// OnDisconnect gives up a resend in progress.
func (h *deliveryHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.endResend(cl)
	if expire && !cl.IsTakenOver() {
		h.order.forgetClient(cl.ID)
	}
}

func (h *deliveryHook) endResend(cl *mqtt.Client) {
	h.mu.Lock()
	r := h.resend[cl]
	delete(h.resend, cl)
	h.mu.Unlock()
	if r != nil {
		r.finish()
	}
}

// OnPacketEncode orders a resumed session's resent queue (see
// deliveryHook): mochi resends the queue in its own order, marking each
// PUBLISH as a duplicate; each is replaced by the next one in queue order.
// A message queued after the CONNACK that mochi resends too is put in its
// place in the queue. Any other PUBLISH waits until the burst is over.
func (h *deliveryHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	switch pk.FixedHeader.Type {
	case packets.Connack, packets.Publish:
	case packets.Pubrel:
		// The broker's own QoS 2 delivery, acknowledged by the client.
		if h.persist != nil && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
			h.persist(cl, pk)
		}
		return pk
	default:
		return pk
	}
	h.mu.Lock()
	r := h.resend[cl]
	h.mu.Unlock()
	if r == nil {
		return pk
	}
	if pk.FixedHeader.Type == packets.Connack {
		h.startResend(cl, r, pk.SessionPresent)
		return pk
	}
	r.mu.Lock()
	if r.started && pk.FixedHeader.Dup { // mochi's resend loop
		if r.queue == nil {
			h.takeQueue(cl, r)
		}
		if !r.members[pk.PacketID] {
			r.members[pk.PacketID] = true
			r.queue = append(r.queue, pk.Copy(true))
			h.order.sort(cl.ID, r.queue[r.next:])
		}
		if r.next == len(r.queue) {
			r.mu.Unlock()
			return pk
		}
		out := r.queue[r.next].Copy(true)
		r.next++
		r.mu.Unlock()
		// What WritePacket did to pk before calling the hooks.
		out.FixedHeader.Dup = true // [MQTT-3.3.1-1]
		out.ProtocolVersion = pk.ProtocolVersion
		out.Mods = pk.Mods
		if out.Expiry > 0 {
			out.Properties.MessageExpiryInterval = uint32(max(out.Expiry-time.Now().Unix(), 1))
		}
		return out
	}
	if r.own[pk.PacketID] { // written by OnSessionEstablished
		r.mu.Unlock()
		return pk
	}
	r.mu.Unlock()
	wait := time.NewTicker(100 * time.Millisecond)
	defer wait.Stop()
	for {
		select {
		case <-r.done:
			return pk
		case <-wait.C:
			if cl.Closed() {
				return pk
			}
		}
	}
}

// startResend runs as the CONNACK is encoded, before mochi resends the
// session's queue: messages queued on the old connection join it.
func (h *deliveryHook) startResend(cl *mqtt.Client, r *resendBurst, present bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.started = true
	r.members = map[uint16]bool{}
	if !present {
		r.old = nil
		return
	}
	if r.old != nil {
		h.takeover(cl, r.old, r.dropped) // mochi resends them with the rest
		r.dropped = nil
	}
}

// takeQueue takes the queue mochi is resending, in queue order. It runs as
// the first resent packet is encoded, just after mochi listed the queue:
// it holds what mochi resends and maybe newer messages, which sort last
// and are left to mochi's normal delivery.
func (h *deliveryHook) takeQueue(cl *mqtt.Client, r *resendBurst) {
	r.queue = []packets.Packet{}
	for _, p := range cl.State.Inflight.GetAll(false) {
		if p.FixedHeader.Type == packets.Publish {
			r.queue = append(r.queue, p)
			r.members[p.PacketID] = true
		}
	}
	h.order.sort(cl.ID, r.queue)
}

// orderBook numbers the QoS 1 and 2 messages queued for each client in the
// order the broker queued them, so that a resumed session gets them in
// that order. With persistence the numbers are stored with the messages
// (boltStore) and read back at start.
type orderBook struct {
	mu   sync.Mutex
	last uint64
	seq  map[string]map[uint16]uint64 // client ID -> packet ID -> number
}

func newOrderBook() *orderBook {
	return &orderBook{seq: map[string]map[uint16]uint64{}}
}

// assign returns the number of a queued message, numbering it if new.
func (o *orderBook) assign(client string, id uint16) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.seq[client]
	if m == nil {
		m = map[uint16]uint64{}
		o.seq[client] = m
	}
	if n, ok := m[id]; ok {
		return n
	}
	o.last++
	m[id] = o.last
	return o.last
}

// restore records a number read back from the store.
func (o *orderBook) restore(client string, id uint16, n uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	m := o.seq[client]
	if m == nil {
		m = map[uint16]uint64{}
		o.seq[client] = m
	}
	m[id] = n
	o.last = max(o.last, n)
}

// renumber moves a queued message's number to its new packet ID.
func (o *orderBook) renumber(client string, from, to uint16) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if m := o.seq[client]; m != nil {
		if n, ok := m[from]; ok {
			delete(m, from)
			m[to] = n
		}
	}
}

func (o *orderBook) forget(client string, id uint16) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if m := o.seq[client]; m != nil {
		delete(m, id)
		if len(m) == 0 {
			delete(o.seq, client)
		}
	}
}

func (o *orderBook) forgetClient(client string) {
	o.mu.Lock()
	delete(o.seq, client)
	o.mu.Unlock()
}

// sort orders a client's messages by number; unnumbered ones (queued by
// code that bypasses the hooks) go last, by creation time.
func (o *orderBook) sort(client string, q []packets.Packet) {
	o.mu.Lock()
	m := o.seq[client]
	key := make(map[uint16]uint64, len(q))
	for _, p := range q {
		if n, ok := m[p.PacketID]; ok {
			key[p.PacketID] = n
		}
	}
	o.mu.Unlock()
	sort.SliceStable(q, func(i, j int) bool {
		a, aok := key[q[i].PacketID]
		b, bok := key[q[j].PacketID]
		switch {
		case aok && bok:
			return a < b
		case aok != bok:
			return aok
		}
		return q[i].Created < q[j].Created
	})
}
