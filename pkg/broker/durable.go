// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"weak"

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
//   - Lost or late during a takeover: when a persistent session
//     reconnects, mochi copies the old connection's queue to the new one
//     and only then registers the new one, so a message routed meanwhile
//     (or by a publisher that looked the session up just before) is
//     queued on the old connection and never sent (or, with persistence,
//     comes back out of order at the next restart). The hook moves each
//     such message to the new connection as it is queued (see late), so
//     that it is in the new connection's queue before the same publisher
//     can route its next message.
//   - Topic lost after a reconnect: a message queued for an MQTT 5
//     client that allows topic aliases was stored without its topic once
//     an alias stood for it, and resent so to the new connection, which
//     knows no alias. The broker sends no aliases (see OnConnect).
//   - Session stuck on a message too large for the client: mochi queues
//     a message larger than an MQTT 5 client's Maximum Packet Size, and
//     its resend after a reconnect failed on it and closed the
//     connection, every time. The hook discards it (see dropOversized).
//   - QoS 2 delivered twice, or lost, after a reconnect: a message routed
//     to a resumed session before mochi lists the queue to resend goes
//     out with the resend and again from the connection's outbound
//     queue. A client that released its packet ID in between took the
//     second copy for a new message, and when mochi had given the ID to a
//     newer message, took that one for a duplicate. The hook holds the
//     client's acknowledgements until the second copy is out (see
//     awaitEchoes).
type deliveryHook struct {
	mqtt.HookBase
	srv   *mqtt.Server
	order *orderBook
	// persist stores a session's in-flight packet, unpersist deletes it
	// (nil without persistence).
	persist, unpersist func(cl *mqtt.Client, pk packets.Packet)
	// mayRead is the ACL read check (securityHook.OnACLCheck; nil: none).
	mayRead func(cl *mqtt.Client, topic string, write bool) bool

	mu        sync.Mutex
	resend    map[*mqtt.Client]*resendBurst
	resending atomic.Int32    // len(resend), read without the lock
	heirs     map[string]heir // client ID -> its session's last takeover
	// echo holds, per connection, the messages its resend burst sent that
	// its outbound queue has yet to send again (see awaitEchoes).
	echo    map[*mqtt.Client]*echoSet
	echoing atomic.Int32 // len(echo), read without the lock
}

// echoSet is what a connection's outbound queue has yet to send again.
type echoSet struct {
	m    map[uint16]packets.Packet
	done chan struct{} // closed when m is empty
}

// heir records that connection to took over the session of connection
// from: messages that still reach from belong to to. Weak pointers: the
// record keeps neither connection alive.
type heir struct{ from, to weak.Pointer[mqtt.Client] }

// resendBurst is a resumed session's queue being resent in order. It lasts
// from OnSessionEstablish to OnSessionEstablished, which mochi calls right
// after its resend loop.
//
// The messages for the client fall in two kinds. The session's queue, as
// mochi copied it from the old connection, and messages that reached the
// old connection later (which late moves over) are sent by the resend
// only. Messages mochi routes to the new connection are also in its
// outbound queue, which waits until the burst is over and then sends them
// in the order they were routed, their number order for each publisher.
// The burst sends in number order: mochi's resend, then
// OnSessionEstablished sends what is left of the first kind; what is left
// of the second is the outbound queue's.
type resendBurst struct {
	mu      sync.Mutex
	started bool                      // the CONNACK is encoded, mochi resends next
	present bool                      // the session was resumed (CONNACK session present)
	closed  bool                      // OnSessionEstablished took what was left
	queue   []packets.Packet          // in number order, once mochi resends (takeQueue)
	members map[uint16]bool           // packet IDs in queue
	next    int                       // queue[:next] is sent
	old     *mqtt.Client              // the connection whose session is taken over
	pending []packets.Packet          // reached old before the CONNACK, moved by startResend
	only    map[uint16]packets.Packet // sent by the resend only (the first kind)
	own     map[uint16]bool           // packets OnSessionEstablished writes itself
	echo    map[uint16]packets.Packet // sent, and also in the outbound queue
	done    chan struct{}             // closed when the burst is over
	once    sync.Once
}

func (r *resendBurst) finish() { r.once.Do(func() { close(r.done) }) }

func newDeliveryHook(srv *mqtt.Server, order *orderBook) *deliveryHook {
	return &deliveryHook{srv: srv, order: order, resend: map[*mqtt.Client]*resendBurst{}, heirs: map[string]heir{},
		echo: map[*mqtt.Client]*echoSet{}}
}

// ID implements mqtt.Hook.
func (h *deliveryHook) ID() string { return "mqttkit-delivery" }

// Provides implements mqtt.Hook.
func (h *deliveryHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnQosPublish, mqtt.OnQosComplete, mqtt.OnQosDropped, mqtt.OnSessionEstablish,
		mqtt.OnSessionEstablished, mqtt.OnPacketEncode, mqtt.OnPacketSent, mqtt.OnDisconnect, mqtt.OnClientExpired:
		return true
	}
	return false
}

// OnConnect turns off topic aliases from the broker to the client, as
// mosquitto has them. mochi gives a queued message the alias its topic has
// on the client's connection and stores it without the topic, also when
// that connection is gone: a resumed session's resend, on a new connection
// that knows no alias, carried none (and so at every reconnect).
func (h *deliveryHook) OnConnect(cl *mqtt.Client, _ packets.Packet) error {
	cl.Properties.Props.TopicAliasMaximum = 0
	return nil
}

// OnQosPublish numbers a message queued for cl (a resend keeps its
// number). A message queued on a connection whose session was taken over
// is moved to the new connection.
func (h *deliveryHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	h.order.assign(cl.ID, pk.PacketID)
	if cl.IsTakenOver() {
		h.late(cl, pk)
	}
}

// OnQosComplete forgets the number of an acknowledged message.
func (h *deliveryHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	h.order.forget(cl.ID, pk.PacketID)
}

// OnQosDropped forgets the number of a dropped message, unless the
// session is being taken over by a new connection, which keeps it: mochi
// clears the old connection's queue right after copying it to the new
// one, and the resend burst notes what it copied.
func (h *deliveryHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if !cl.IsTakenOver() {
		h.order.forget(cl.ID, pk.PacketID)
		return
	}
	if pk.FixedHeader.Type != packets.Publish {
		return
	}
	if _, r := h.burstOf(cl); r != nil {
		r.mu.Lock()
		if !r.started {
			r.only[pk.PacketID] = pk
		}
		r.mu.Unlock()
	}
}

// burstOf finds the resend burst of the connection taking over old's
// session.
func (h *deliveryHook) burstOf(old *mqtt.Client) (*mqtt.Client, *resendBurst) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c, r := range h.resend {
		r.mu.Lock()
		match := r.old == old
		r.mu.Unlock()
		if match {
			return c, r
		}
	}
	return nil, nil
}

// OnClientExpired forgets an expired session's numbers.
func (h *deliveryHook) OnClientExpired(cl *mqtt.Client) {
	h.order.forgetClient(cl.ID)
	h.forgetHeir(cl)
}

// OnSessionEstablish runs before mochi looks for the client's session:
// from now until its queue is resent, nothing else is written to the
// client.
func (h *deliveryHook) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	h.mu.Lock()
	if pk.Connect.Clean { // clean session or clean start: no queue to resend
		delete(h.heirs, cl.ID) // and an old session's messages are not ours
		h.mu.Unlock()
		return
	}
	var failed []*mqtt.Client
	var bursts []*resendBurst
	for c, r := range h.resend { // connections that failed during CONNACK
		if c.Closed() {
			delete(h.resend, c)
			h.resending.Store(int32(len(h.resend)))
			r.finish()
			failed, bursts = append(failed, c), append(bursts, r)
		}
	}
	r := &resendBurst{done: make(chan struct{}), only: map[uint16]packets.Packet{}, echo: map[uint16]packets.Packet{}}
	h.resend[cl] = r
	h.resending.Store(int32(len(h.resend)))
	h.mu.Unlock()
	for i, c := range failed {
		h.orphan(c, bursts[i])
	}
	if old, ok := h.srv.Clients.Get(cl.ID); ok && old != cl {
		r.mu.Lock()
		r.old = old
		r.mu.Unlock()
		// Messages queued on old during the takeover get IDs from old's
		// counter, just past the IDs in its queue (or far from them); start
		// cl's IDs 1024 past the highest one in use so that both can be
		// kept (move renumbers a late message if they still meet). A
		// session with an empty queue starts again from 1, as mosquitto's
		// do: a late message that meets an ID of cl is renumbered.
		top := 0
		for _, p := range old.State.Inflight.GetAll(false) {
			top = max(top, int(p.PacketID))
		}
		target := uint32((top+1024-1)%65535 + 1)
		for i := 0; top > 0 && i < 65535; i++ {
			id, err := cl.NextPacketID()
			if err != nil || id == target {
				break
			}
		}
	}
}

// late handles message pk, queued on connection old after its session was
// taken over. Before the new connection's CONNACK it is kept for
// startResend; then it is moved to the new connection at once, and sent
// with the resend burst or, once the burst has been put together, right
// away (it then waits for the burst to end, in OnPacketEncode). Either
// way it is in the new connection's queue before its publisher routes its
// next message, so it goes out before that one. A session taken over by a
// clean one is gone: the message stays where it is.
func (h *deliveryHook) late(old *mqtt.Client, pk packets.Packet) {
	cl, r := h.burstOf(old)
	if r == nil {
		h.mu.Lock()
		if hr, ok := h.heirs[old.ID]; ok && hr.from == weak.Make(old) {
			cl = hr.to.Value()
		}
		h.mu.Unlock()
	}
	if r != nil {
		r.mu.Lock()
		switch {
		case !r.started:
			r.pending = append(r.pending, pk)
			r.mu.Unlock()
			return
		case !r.present:
			r.mu.Unlock()
			return
		case !r.closed:
			p, ok := h.move(cl, old, pk)
			if ok {
				r.only[p.PacketID] = p
				if r.queue != nil && !r.members[p.PacketID] {
					r.members[p.PacketID] = true
					r.queue = append(r.queue, p)
					h.order.sort(cl.ID, r.queue[r.next:])
				}
			}
			r.mu.Unlock()
			if ok && cl.IsTakenOver() {
				h.late(cl, p) // cl lost the session meanwhile: on to its heir
			}
			return
		}
		r.mu.Unlock()
	}
	if cl == nil {
		return
	}
	if p, ok := h.move(cl, old, pk); ok {
		if cl.IsTakenOver() {
			h.late(cl, p)
		} else if !cl.Closed() {
			// From the publisher's goroutine: not held for the window.
			h.order.markSent(cl.ID, p.PacketID)
			_ = cl.WritePacket(p)
		}
	}
}

// orphan handles the burst r of connection c when c lost its connection
// before its CONNACK went out (taken over at once by yet another
// connection, say): startResend never ran for it, and the messages that
// reached the connection c took the session from (r.old) meanwhile were
// kept for nothing, and lost. They go to c's session now, and on from
// there if c has been taken over in turn; later ones follow them (late).
func (h *deliveryHook) orphan(c *mqtt.Client, r *resendBurst) {
	r.mu.Lock()
	old := r.old
	if r.started || old == nil {
		r.mu.Unlock()
		return
	}
	// Present unless mochi dropped old's session (clean 3.1.1 session).
	r.started, r.closed = true, true
	r.present = !old.Properties.Clean || old.Properties.ProtocolVersion >= 5
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	if !r.present {
		return
	}
	for _, p := range pending {
		if q, ok := h.move(c, old, p); ok && c.IsTakenOver() {
			h.late(c, q)
		}
	}
}

// move moves message p from old's queue to cl's and returns it as queued
// there; false if cl has it already or cannot take it.
func (h *deliveryHook) move(cl, old *mqtt.Client, p packets.Packet) (packets.Packet, bool) {
	from := p.PacketID
	if q, taken := cl.State.Inflight.Get(p.PacketID); taken {
		if samePublish(p, q) {
			old.State.Inflight.Delete(from)
			return p, false // copied by mochi
		}
		// Both connections gave the ID to a message: the late one gets a
		// new ID (it may then go out after newer messages; it is not lost).
		id, err := cl.NextPacketID()
		if err != nil {
			return p, false // all IDs in use: the session is full
		}
		p.PacketID = uint16(id)
		h.order.assign(cl.ID, p.PacketID)
		if h.persist != nil {
			h.persist(cl, p)
		}
	}
	p.FixedHeader.Dup = false
	cl.State.Inflight.Set(p)
	old.State.Inflight.Delete(from)
	return p, true
}

// markSent records that message p, which the resend burst is sending, is
// in flight: a message mochi held back for flow control (Expiry -1, not in
// the outbound queue) would otherwise stay queued and be sent again, under
// a new packet ID, after the next acknowledgement (only sessions restored
// from an older store hold such messages now: flowHook turns mochi's flow
// control off).
// It reports whether p was held back. mochi's resend sends the whole
// queue, whatever the client's Receive Maximum.
func markSent(cl *mqtt.Client, p packets.Packet) bool {
	q, ok := cl.State.Inflight.Get(p.PacketID)
	if !ok || q.Expiry >= 0 || !samePublish(p, q) {
		return false
	}
	q.Expiry = 0
	cl.State.Inflight.Set(q)
	return true
}

// samePublish reports whether two queued PUBLISH packets are one message.
func samePublish(a, b packets.Packet) bool {
	return b.FixedHeader.Type == packets.Publish && a.TopicName == b.TopicName &&
		a.Created == b.Created && a.Origin == b.Origin && bytes.Equal(a.Payload, b.Payload)
}

// OnSessionEstablished ends the resend: mochi calls it right after its
// resend loop. What is left of the queue that only the resend sends goes
// out now, in order, before anything from the outbound queue.
func (h *deliveryHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	h.mu.Lock()
	r := h.resend[cl]
	h.mu.Unlock()
	if r == nil {
		return
	}
	var left []packets.Packet
	r.mu.Lock()
	r.closed = true
	if r.started && r.present {
		if r.queue == nil { // mochi found nothing to resend
			h.takeQueue(cl, r)
		}
		r.own = map[uint16]bool{}
		for _, p := range r.queue[r.next:] {
			// Not what mochi routed to cl: that is in cl's outbound
			// queue, and may not be numbered yet.
			if q, ok := r.only[p.PacketID]; ok && samePublish(p, q) {
				left = append(left, p)
				r.own[p.PacketID] = true
			}
		}
		r.next = len(r.queue)
	}
	r.mu.Unlock()
	for _, p := range left {
		if markSent(cl, p) {
			p.Expiry = 0
		}
		// Part of the resend: sent now, whatever the window (flowHook;
		// the client's acknowledgements are read only after this).
		h.order.markSent(cl.ID, p.PacketID)
		_ = cl.WritePacket(p)
	}
	h.endResend(cl)
	h.awaitEchoes(cl)
}

// OnDisconnect gives up a resend in progress.
func (h *deliveryHook) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	h.endResend(cl)
	h.dropEchoes(cl)
	if expire && !cl.IsTakenOver() {
		h.order.forgetClient(cl.ID)
		h.forgetHeir(cl)
	}
}

func (h *deliveryHook) forgetHeir(cl *mqtt.Client) {
	h.mu.Lock()
	if hr, ok := h.heirs[cl.ID]; ok && hr.to == weak.Make(cl) {
		delete(h.heirs, cl.ID)
	}
	h.mu.Unlock()
}

func (h *deliveryHook) endResend(cl *mqtt.Client) {
	h.mu.Lock()
	r := h.resend[cl]
	delete(h.resend, cl)
	h.resending.Store(int32(len(h.resend)))
	if r != nil && !cl.Closed() {
		r.mu.Lock()
		if len(r.echo) > 0 {
			h.echo[cl] = &echoSet{m: r.echo, done: make(chan struct{})}
			h.echoing.Store(int32(len(h.echo)))
		}
		r.echo = nil
		r.mu.Unlock()
	}
	h.mu.Unlock()
	if r != nil {
		r.finish()
	}
}

// echoTimeout bounds how long awaitEchoes waits for a connection's
// outbound queue (it normally takes milliseconds).
const echoTimeout = 5 * time.Second

// awaitEchoes returns once cl's outbound queue has sent the messages that
// its resend burst sent already. mochi calls OnSessionEstablished right
// before it starts reading the client's packets, acknowledgements
// included, so none is handled until then.
//
// A message mochi routes to a resumed session before it lists the queue
// to resend is in the resend and in the outbound queue, which waits
// behind the burst and can hold a thousand messages by then. Were the
// client's acknowledgements handled meanwhile, a QoS 2 client could
// receive the burst's copy, release its packet ID (PUBREC, PUBREL) and
// then take the outbound queue's copy for a new message: delivered twice
// [MQTT-4.3.3]. And once mochi gave that packet ID to a newer message, the
// client would take the newer one for a duplicate of the first: lost.
// Sent before the PUBREL, the second copy is a duplicate the client
// recognises by its packet ID.
func (h *deliveryHook) awaitEchoes(cl *mqtt.Client) {
	h.mu.Lock()
	e := h.echo[cl]
	if e != nil {
		// A message mochi held back for flow control (Expiry -1, set just
		// after OnQosPublish) is not in the outbound queue; the burst sent
		// it (see markSent).
		for id, p := range e.m {
			if markSent(cl, p) {
				delete(e.m, id)
			}
		}
		if len(e.m) == 0 {
			h.dropEchoesLocked(cl)
		}
	}
	h.mu.Unlock()
	if e == nil {
		return
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(echoTimeout)
	for {
		select {
		case <-e.done:
			return
		case now := <-tick.C:
			if cl.Closed() || now.After(deadline) {
				h.dropEchoes(cl)
				return
			}
		}
	}
}

// OnPacketSent notes that the outbound queue sent a message again (see
// awaitEchoes). It is that very message, not a newer one with the same
// packet ID, when the payload is the same: mochi copies it for each
// delivery, and the session and the outbound queue share the copy.
func (h *deliveryHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	if pk.FixedHeader.Type == packets.Publish && pk.FixedHeader.Qos > 0 {
		h.order.markSent(cl.ID, pk.PacketID)
	}
	if h.echoing.Load() == 0 || pk.FixedHeader.Type != packets.Publish || pk.FixedHeader.Dup || len(pk.Payload) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.echo[cl]
	if e == nil {
		return
	}
	if q, ok := e.m[pk.PacketID]; ok && &q.Payload[0] == &pk.Payload[0] {
		delete(e.m, pk.PacketID)
		if len(e.m) == 0 {
			h.dropEchoesLocked(cl)
		}
	}
}

func (h *deliveryHook) dropEchoes(cl *mqtt.Client) {
	h.mu.Lock()
	h.dropEchoesLocked(cl)
	h.mu.Unlock()
}

func (h *deliveryHook) dropEchoesLocked(cl *mqtt.Client) {
	if e := h.echo[cl]; e != nil {
		delete(h.echo, cl)
		h.echoing.Store(int32(len(h.echo)))
		close(e.done)
	}
}

// OnPacketEncode orders a resumed session's resent queue (see
// deliveryHook): mochi resends the queue in its own order, marking each
// PUBLISH as a duplicate; each is replaced by the next one in queue order.
// Any other PUBLISH waits until the burst is over.
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
	// No burst anywhere: the common case, without the lock. A burst is
	// registered (OnSessionEstablish) before its CONNACK is encoded and
	// before mochi lists the connection as a client anyone can write to.
	if h.resending.Load() == 0 {
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
	if r.started && !r.closed && pk.FixedHeader.Dup { // mochi's resend loop
		if r.queue == nil {
			h.takeQueue(cl, r)
		}
		if !r.members[pk.PacketID] {
			r.members[pk.PacketID] = true
			q := pk // shares the payload with the session's entry (see OnPacketSent)
			q.FixedHeader.Dup = false
			r.queue = append(r.queue, q)
			h.order.sort(cl.ID, r.queue[r.next:])
		}
		if r.next == len(r.queue) {
			r.mu.Unlock()
			return pk
		}
		e := r.queue[r.next]
		held := markSent(cl, e)
		if q, ok := r.only[e.PacketID]; (!ok || !samePublish(e, q)) && len(e.Payload) > 0 && !held {
			r.echo[e.PacketID] = e // routed to cl: in its outbound queue too
		}
		out := e.Copy(true)
		r.next++
		r.mu.Unlock()
		// What WritePacket did to pk before calling the hooks.
		// DUP only if it was sent before: a message queued while the
		// client was offline (or held back for flow control) goes out
		// for the first time [MQTT-3.3.1-1].
		out.FixedHeader.Dup = h.order.wasSent(cl.ID, e.PacketID)
		out.ProtocolVersion = pk.ProtocolVersion
		out.Mods = pk.Mods
		if out.Expiry > 0 {
			out.Properties.MessageExpiryInterval = uint32(max(out.Expiry-time.Now().Unix(), 1))
		}
		return noExpiry(out)
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

// startResend runs as the CONNACK is encoded, after mochi moved the
// session to cl and before it resends the session's queue: messages that
// reached the old connection join the queue.
func (h *deliveryHook) startResend(cl *mqtt.Client, r *resendBurst, present bool) {
	if present {
		h.dropOversized(cl)
		h.dropUnreadable(cl)
	}
	r.mu.Lock()
	old := r.old
	r.mu.Unlock()
	if old != nil {
		// old's own burst, if old lost its connection before its CONNACK:
		// what it kept comes here through old (pending, next).
		h.mu.Lock()
		prev := h.resend[old]
		h.mu.Unlock()
		if prev != nil {
			h.orphan(old, prev)
		}
	}
	var gone []packets.Packet // moved, but cl lost the session meanwhile
	r.mu.Lock()
	r.started, r.present = true, present
	r.members = map[uint16]bool{}
	if present && old != nil {
		for _, p := range r.pending {
			if q, ok := h.move(cl, old, p); ok { // mochi resends them with the rest
				r.only[q.PacketID] = q
				gone = append(gone, q)
			}
		}
	}
	r.pending = nil
	r.mu.Unlock()
	if cl.IsTakenOver() {
		for _, q := range gone {
			h.late(cl, q)
		}
	}
	if present && old != nil {
		h.mu.Lock()
		h.heirs[cl.ID] = heir{from: weak.Make(old), to: weak.Make(cl)}
		h.mu.Unlock()
	}
}

// dropOversized discards the queued messages too large for the client's
// Maximum Packet Size, as MQTT requires [MQTT-3.1.2-25]: mochi queues them
// like any other, cannot send them, and its resend of a resumed session
// stopped at the first one and closed the connection, at every reconnect
// (the session never got anything again). It runs before mochi lists the
// queue to resend.
func (h *deliveryHook) dropOversized(cl *mqtt.Client) {
	limit := cl.Properties.Props.MaximumPacketSize
	if limit == 0 {
		return
	}
	for _, p := range cl.State.Inflight.GetAll(false) {
		if p.FixedHeader.Type != packets.Publish {
			continue
		}
		// As WritePacket and OnPacketEncode would send it.
		q := p
		q.ProtocolVersion = cl.Properties.ProtocolVersion
		q.Mods = packets.Mods{MaxSize: limit, AllowResponseInfo: true,
			DisallowProblemInfo: cl.Properties.Props.RequestProblemInfoFlag && cl.Properties.Props.RequestProblemInfo == 0}
		q.FixedHeader.Dup = true
		if q.Expiry > 0 {
			q.Properties.MessageExpiryInterval = uint32(max(q.Expiry-time.Now().Unix(), 1))
		}
		q = noExpiry(q)
		var buf bytes.Buffer
		if err := q.PublishEncode(&buf); err == nil && uint32(buf.Len()) <= limit {
			continue
		}
		if cl.State.Inflight.Delete(p.PacketID) {
			atomic.AddInt64(&h.srv.Info.Inflight, -1)
			h.order.forget(cl.ID, p.PacketID)
			if h.unpersist != nil {
				h.unpersist(cl, p)
			}
		}
	}
}

// dropUnreadable discards the queued messages of a resumed session that
// the client may no longer read (an ACL reloaded on SIGHUP took the right
// away while they were queued), as mosquitto does: mochi checks the ACL
// when it queues a message and resends the queue without a check. It
// runs before mochi lists the queue to resend. A PUBREL (the client has
// the message already) is kept.
func (h *deliveryHook) dropUnreadable(cl *mqtt.Client) {
	if h.mayRead == nil {
		return
	}
	for _, p := range cl.State.Inflight.GetAll(false) {
		if p.FixedHeader.Type != packets.Publish || h.mayRead(cl, p.TopicName, false) {
			continue
		}
		if cl.State.Inflight.Delete(p.PacketID) {
			atomic.AddInt64(&h.srv.Info.Inflight, -1)
			h.order.forget(cl.ID, p.PacketID)
			if h.unpersist != nil {
				h.unpersist(cl, p)
			}
			h.srv.Log.Debug("queued message not delivered: the client may no longer read its topic",
				"client", cl.ID, "topic", p.TopicName)
		}
	}
}

// takeQueue takes the queue mochi is resending, in queue order. It runs as
// the first resent packet is encoded, just after mochi listed the queue:
// it holds what mochi resends and maybe newer messages, which sort last.
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
// that order, and notes which of them have been sent (written to the
// client's connection) at least once: only those go out with DUP when
// they are sent again [MQTT-3.3.1-1], and how many are in flight (sent,
// not acknowledged: flowHook's window). It is the one numbering of a
// client's queue. With
// persistence the numbers are stored with the messages (boltStore) and
// read back at start.
type orderBook struct {
	mu      sync.Mutex
	last    uint64
	clients map[string]*clientOrder
}

// clientOrder is the order of one client's queue.
type clientOrder struct {
	byID map[uint16]queued
	sent int // entries sent: in flight
}

// queued is a message's place in its client's queue.
type queued struct {
	n    uint64
	sent bool // written to the client at least once
}

func newOrderBook() *orderBook {
	return &orderBook{clients: map[string]*clientOrder{}}
}

// of returns client's order, made if new (o.mu held).
func (o *orderBook) of(client string) *clientOrder {
	c := o.clients[client]
	if c == nil {
		c = &clientOrder{byID: map[uint16]queued{}}
		o.clients[client] = c
	}
	return c
}

// assign returns the number of a queued message, numbering it if new.
func (o *orderBook) assign(client string, id uint16) uint64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.of(client)
	if e, ok := c.byID[id]; ok {
		return e.n
	}
	o.last++
	c.byID[id] = queued{n: o.last}
	return o.last
}

// restore records a number read back from the store. Whether the message
// was sent before the restart is not stored: it counts as sent, so that a
// message that may have reached the client comes with DUP.
func (o *orderBook) restore(client string, id uint16, n uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.of(client)
	if e, ok := c.byID[id]; !ok || !e.sent {
		c.sent++
	}
	c.byID[id] = queued{n: n, sent: true}
	o.last = max(o.last, n)
}

// number returns the number of a queued message, if it has one.
func (o *orderBook) number(client string, id uint16) (uint64, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c := o.clients[client]; c != nil {
		e, ok := c.byID[id]
		return e.n, ok
	}
	return 0, false
}

// markSent notes that a queued message was written to its client.
func (o *orderBook) markSent(client string, id uint16) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c := o.clients[client]; c != nil {
		if e, ok := c.byID[id]; ok && !e.sent {
			e.sent = true
			c.byID[id] = e
			c.sent++
		}
	}
}

// wasSent reports whether a queued message was written to its client
// before; a message the book does not know counts as sent.
func (o *orderBook) wasSent(client string, id uint16) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c := o.clients[client]; c != nil {
		if e, ok := c.byID[id]; ok {
			return e.sent
		}
	}
	return true
}

// inFlight returns how many of the client's queued messages were sent
// and are not acknowledged yet.
func (o *orderBook) inFlight(client string) int {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c := o.clients[client]; c != nil {
		return c.sent
	}
	return 0
}

func (o *orderBook) forget(client string, id uint16) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if c := o.clients[client]; c != nil {
		if e, ok := c.byID[id]; ok {
			delete(c.byID, id)
			if e.sent {
				c.sent--
			}
		}
		if len(c.byID) == 0 {
			delete(o.clients, client)
		}
	}
}

func (o *orderBook) forgetClient(client string) {
	o.mu.Lock()
	delete(o.clients, client)
	o.mu.Unlock()
}

// sort orders a client's messages by number; unnumbered ones (queued by
// code that bypasses the hooks) go last, by creation time.
func (o *orderBook) sort(client string, q []packets.Packet) {
	o.mu.Lock()
	var m map[uint16]queued
	if c := o.clients[client]; c != nil {
		m = c.byID
	}
	key := make(map[uint16]uint64, len(q))
	for _, p := range q {
		if e, ok := m[p.PacketID]; ok {
			key[p.PacketID] = e.n
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
