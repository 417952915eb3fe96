// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttkit/mqttkit/pkg/acl"
)

// engine is the broker's delivery engine: it owns every message the
// broker sends to a client, from the PUBLISH that passed every check to
// the client's acknowledgement; mochi keeps the packets, connections,
// subscriptions and handshakes (docs/design/broker.md).
type engine struct {
	mqtt.HookBase
	srv *mqtt.Server
	log *slog.Logger
	// mayRead is the ACL read check (securityHook.allowed).
	mayRead func(cl *mqtt.Client, topic string, write bool) bool
	// willKept reports a connection whose will is not published because
	// its session was taken over and goes on (connectHook.willKept).
	willKept func(cl *mqtt.Client) bool
	// unrouted notes an MQTT 5 QoS 1 PUBLISH of cl that no subscription
	// matches, for its PUBACK (connectHook.unrouted).
	unrouted func(cl *mqtt.Client)
	// willProps holds the will properties of an MQTT 5 connection's
	// CONNECT (*packets.Properties), from OnSessionEstablished to
	// OnDisconnect: mochi's Will has only the user properties.
	willProps sync.Map
	// store keeps the queues of persistent sessions (nil: no persistence).
	store  queueStore
	mounts map[string]string // mount_point by listener ID (mount.go)

	window    int  // max_inflight_messages (0: only the client's Receive Maximum)
	maxQueued int  // max_queued_messages (0: no bound)
	maxBytes  int  // max_queued_bytes (0: no bound)
	wait      int  // a connected client's queue length at which its publishers wait
	queueQoS0 bool // queue_qos0_messages
	upgrade   bool // upgrade_outgoing_qos
	stall     time.Duration
	retainOn  bool

	// retain serialises retained publishes with the scans of SUBSCRIBEs
	// (docs/design/broker.md, "The path").
	retain sync.RWMutex
	subs   sync.Map // *mqtt.Client -> *pendingSubscribe (OnSubscribe to OnPacketProcessed)
	wills  sync.Map // client ID -> *delayedWill

	mu       sync.Mutex
	sessions map[string]*session
	seq      atomic.Uint64 // the one numbering of queued messages

	gen    atomic.Uint64 // bumped when subscriptions or sessions change
	routes atomic.Pointer[sync.Map]
	cached atomic.Int64

	self *mqtt.Client // mochi's inline client, for inline handlers
	// now is the clock of message expiry (time.Now; tests replace it
	// before the broker starts).
	now func() time.Time

	cut atomic.Int64 // subscribers disconnected for not acknowledging
}

// queueStore keeps the queued messages of persistent sessions.
type queueStore interface {
	put(client string, m *message)
	del(client string, m *message)
	// released replaces a QoS 2 message acknowledged with PUBREC by the
	// PUBREL mochi now holds for it.
	released(cl *mqtt.Client, m *message)
}

// session is the delivery state of one client ID.
type session struct {
	id string
	mu sync.Mutex

	cl         *mqtt.Client // the current connection (or the offline client); nil: none yet
	live       bool         // cl is connected and its resend is done: pump may send
	persistent bool
	gone       bool // ended: nothing is added any more
	window     int  // in-flight window of cl (0: none)

	queue  []*message          // not sent yet, in order
	bytes  int                 // payload bytes in queue
	flight map[uint16]*message // sent, not acknowledged, by packet ID
	lastID uint16              // the last packet ID given out
	room   chan struct{}       // closed at the next progress; nil: nobody waits
	acks   uint64              // acknowledgements so far (progress of a stalled client)
	drops  bool                // a drop episode was logged and is not over
	busy   atomic.Bool         // its read loop waits in OnPublish (see waitRoom)
	in     idMap               // inbound packet ID renaming (fixes.go)
	// held: cl published a QoS 1/2 message it is subscribed to; nothing
	// is sent until its PUBACK or PUBREC is written (OnPacketProcessed).
	held *mqtt.Client
}

// message is one delivery: a message for one client.
type message struct {
	seq      uint64
	pk       packets.Packet // as sent: QoS, retain, subscription identifiers; PacketID once sent
	expires  time.Time      // zero: no message expiry
	size     int
	sent     bool // written to a connection at least once: DUP when sent again
	released bool // QoS 2: PUBREC received, mochi holds the PUBREL
	stored   bool
}

// errNoAcks is the stop cause of a subscriber cut for not acknowledging.
var errNoAcks = errors.New("slow consumer: client acknowledges no messages")

// maxWait bounds a connected client's queue before its publishers wait,
// also when max_queued_messages sets no bound.
const maxWait = 4096

// maxCached bounds the routes the engine remembers; past it the cache
// starts over.
const maxCached = 1 << 16

// noExpiryCap is the broker's maximum message expiry (68 years): in
// effect none, like mosquitto's (broker.go). A message without a Message
// Expiry Interval never expires [MQTT-3.3.2-5].
const noExpiryCap = 1 << 31

// maxOutID is the highest packet ID of the broker's deliveries; inbound
// flows are renamed to IDs above it (fixes.go), so the two never meet.
const maxOutID = 1<<15 - 1

func newEngine(srv *mqtt.Server, log *slog.Logger, cfg Config) *engine {
	e := &engine{srv: srv, log: log, sessions: map[string]*session{},
		window: max(cfg.MaxInflight, 0), maxQueued: max(cfg.MaxQueued, 0), maxBytes: max(cfg.MaxQueuedBytes, 0),
		queueQoS0: cfg.QueueQoS0Messages, upgrade: cfg.UpgradeOutgoingQoS, stall: cfg.SlowConsumerTimeout,
		retainOn: !cfg.DisableRetain, now: time.Now}
	if e.stall <= 0 {
		e.stall = DefaultSlowConsumerTimeout
	}
	e.wait = e.maxQueued
	if e.wait <= 0 || e.wait > maxWait {
		e.wait = maxWait
	}
	e.routes.Store(new(sync.Map))
	e.self, _ = srv.Clients.Get(mqtt.InlineClientId)
	return e
}

// ID implements mqtt.Hook.
func (e *engine) ID() string { return "mqttkit-engine" }

// Provides implements mqtt.Hook.
func (e *engine) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnSubscribe, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnPacketProcessed,
		mqtt.OnSessionEstablish, mqtt.OnSessionEstablished, mqtt.OnPacketEncode, mqtt.OnQosComplete,
		mqtt.OnQosDropped, mqtt.OnDisconnect, mqtt.OnClientExpired, mqtt.OnWill:
		return true
	}
	return false
}

// sessionOf returns the session of a client ID, made if new.
func (e *engine) sessionOf(id string) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.sessions[id]
	if s == nil {
		s = &session{id: id, flight: map[uint16]*message{},
			in: idMap{internal: map[uint16]uint16{}, client: map[uint16]uint16{}, acks: map[uint16]uint16{}}}
		if cl, ok := e.srv.Clients.Get(id); ok && !cl.Net.Inline { // restored, say
			s.cl, s.persistent = cl, persistent(cl)
		}
		e.sessions[id] = s
	}
	return s
}

// persistent reports whether cl's session outlives its connection.
func persistent(cl *mqtt.Client) bool {
	if cl.Properties.ProtocolVersion >= 5 {
		return cl.Properties.Props.SessionExpiryInterval > 0
	}
	return !cl.Properties.Clean
}

// targetSession returns the session of a subscriber, made if new; nil
// for a clean session that has ended but whose subscriptions mochi has
// not removed yet (a session made for it would never go).
func (e *engine) targetSession(id string) *session {
	if s := e.lookupSession(id); s != nil {
		return s
	}
	if cl, ok := e.srv.Clients.Get(id); !ok || cl.Net.Inline || (cl.Closed() && !persistent(cl)) {
		return nil
	}
	return e.sessionOf(id)
}

func (e *engine) lookupSession(id string) *session {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.sessions[id]
}

// --- routing -------------------------------------------------------------

// target is one subscriber of a topic and its subscription (all its
// matching filters merged).
type target struct {
	id  string
	s   *session
	sub packets.Subscription
	ids []int // subscription identifiers to send, sorted (shared, read only)
}

// route is the subscribers of one topic, as of generation gen.
type route struct {
	gen     uint64
	targets []target
	inline  []mqtt.InlineSubscription
}

// invalidate forgets the cached routes, after the change of the index.
func (e *engine) invalidate() {
	e.gen.Add(1)
	e.routes.Store(new(sync.Map))
	e.cached.Store(0)
}

// OnSubscribed forgets the cached routes.
func (e *engine) OnSubscribed(cl *mqtt.Client, _ packets.Packet, codes []byte) {
	e.invalidate()
	if p, ok := e.subs.Load(cl); ok {
		p.(*pendingSubscribe).codes = codes
	}
}

// OnUnsubscribed forgets the cached routes.
func (e *engine) OnUnsubscribed(*mqtt.Client, packets.Packet) { e.invalidate() }

// lookup returns the subscribers of topic, from the cache when current,
// with mochi's "+/#" miss repaired (parentLevel).
func (e *engine) lookup(topic string) *route {
	g := e.gen.Load()
	m := e.routes.Load()
	if v, ok := m.Load(topic); ok {
		if rt := v.(*route); rt.gen == g {
			return rt
		}
	}
	subs := e.srv.Topics.Subscribers(topic)
	shared := len(subs.Shared) > 0
	if shared {
		subs.SelectShared()
		subs.MergeSharedSelected()
	}
	e.parentLevel(topic, subs.Subscriptions)
	rt := &route{gen: g, targets: make([]target, 0, len(subs.Subscriptions))}
	for id, sub := range subs.Subscriptions {
		if s := e.targetSession(id); s != nil {
			rt.targets = append(rt.targets, target{id: id, s: s, sub: sub, ids: identifiers(sub)})
		}
	}
	rt.inline = slices.Collect(maps.Values(subs.InlineSubscriptions))
	if !shared { // a shared subscription's member is chosen per message
		if e.cached.Add(1) > maxCached {
			e.invalidate()
		} else {
			m.Store(topic, rt)
		}
	}
	return rt
}

// subscribed reports whether any subscription matches topic (inline
// handlers too when inline is true).
func (e *engine) subscribed(topic string, inline bool) bool {
	return e.lookup(topic).reaches(inline)
}

// reaches reports whether the route has a client's subscription (or an
// inline handler, when inline is true).
func (rt *route) reaches(inline bool) bool {
	return len(rt.targets) > 0 || (inline && len(rt.inline) > 0)
}

// parentLevel adds to subs the subscriptions mochi's index misses for
// topic: a filter "X/+/#" does not match the topic where its "#" begins
// ("foo/+/#" and "foo/bar"; "#" also stands for the parent level
// [MQTT-4.7.1-2]). They are among the subscribers of a level below.
func (e *engine) parentLevel(topic string, subs map[string]packets.Subscription) {
	below := e.srv.Topics.Subscribers(topic + "/\x00")
	for id, sub := range below.Subscriptions {
		missed := false
		for f := range sub.Identifiers {
			if strings.HasSuffix(f, "+/#") && acl.Match(f, topic) {
				missed = true
			}
		}
		if !missed {
			continue
		}
		cl, ok := e.srv.Clients.Get(id)
		if !ok {
			continue
		}
		// The client's own filters that match: merged as mochi merges.
		var merged packets.Subscription
		n := 0
		for f, s := range cl.State.Subscriptions.GetAll() {
			if mqtt.IsSharedFilter(f) || !acl.Match(f, topic) {
				continue
			}
			if n == 0 {
				merged = s
			}
			merged = merged.Merge(s)
			n++
		}
		if n > 0 {
			subs[id] = merged
		}
	}
}

// identifiers returns the subscription identifiers of sub to send,
// sorted, without mochi's 0 for a filter without one [MQTT-3.3.4-4].
func identifiers(sub packets.Subscription) []int {
	var ids []int
	for _, id := range sub.Identifiers {
		if id > 0 {
			ids = append(ids, id)
		}
	}
	if len(sub.Identifiers) == 0 && sub.Identifier > 0 {
		ids = append(ids, sub.Identifier)
	}
	sort.Ints(ids)
	return ids
}

// OnPublish routes a message that passed every check (it must be the
// last OnPublish hook) and tells mochi to route it no further.
func (e *engine) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.Ignore {
		return pk, nil
	}
	e.publish(cl, pk, cl.Net.Inline)
	return pk, packets.CodeSuccessIgnore
}

// publish retains and routes a message of cl; own: a message of the
// broker (inline, a will), which never waits for a subscriber.
func (e *engine) publish(cl *mqtt.Client, pk packets.Packet, own bool) {
	arrived := e.now()
	if pk.Created == 0 {
		pk.Created = time.Now().Unix()
	}
	var self *session
	if !own {
		if self = e.lookupSession(cl.ID); self != nil {
			self.busy.Store(true) // see waitRoom
			defer self.busy.Store(false)
		}
	}
	rt := e.lookup(pk.TopicName)
	retain := pk.FixedHeader.Retain && (e.retainOn || own && strings.HasPrefix(pk.TopicName, "$SYS/"))
	if retain {
		// Wait for room holding nothing; then store and route under the
		// retain lock, to the subscribers as of now, without waiting.
		for i := 0; i < len(rt.targets) && !own; i++ {
			if ac, n := e.waitRoom(&rt.targets[i], &pk, self); ac != nil {
				defer ac.unreserve(n) // until written
			}
		}
		e.retain.Lock()
		e.retainMessage(cl, pk)
		rt = e.lookup(pk.TopicName)
	}
	if !own && pk.FixedHeader.Qos == 1 && cl.Properties.ProtocolVersion >= 5 && e.unrouted != nil && !rt.reaches(true) {
		e.unrouted(cl) // its PUBACK says 0x10 No matching subscribers
	}
	for i := range rt.targets {
		t := &rt.targets[i]
		if t.sub.NoLocal && pk.Origin == t.id { // [MQTT-3.8.3-3]
			continue
		}
		if t.s == self && pk.FixedHeader.Qos > 0 {
			self.hold(cl)
		}
		var ac *asyncConn
		var n int
		if !own && !retain {
			ac, n = e.waitRoom(t, &pk, self)
		}
		if retain {
			e.sentLive(t.id, pk.TopicName)
		}
		t.s.add(e, e.outgoing(pk, t.sub, t.ids, false, arrived), own)
		if ac != nil {
			ac.unreserve(n) // reserved until written (see waitRoom)
		}
	}
	if retain {
		e.retain.Unlock()
	}
	for _, in := range rt.inline {
		in.Handler(e.self, in.Subscription, pk)
	}
}

// retainMessage stores a retained message in the index and the store;
// a $SYS value in the index only, as mosquitto does not persist $SYS
// (its removal, Broker.Start, reaches the store too).
func (e *engine) retainMessage(cl *mqtt.Client, pk packets.Packet) {
	out := pk.Copy(false)
	r := e.srv.Topics.RetainMessage(out)
	if st, ok := e.store.(*boltStore); ok && (len(pk.Payload) == 0 || !strings.HasPrefix(pk.TopicName, "$SYS/")) {
		st.Hook.OnRetainMessage(cl, pk, r)
	}
}

// outgoing makes the delivery of pk for one subscription (what mochi's
// publishToClient did; docs/design/broker.md, "Who decides"); arrived is
// when pk reached the broker.
func (e *engine) outgoing(pk packets.Packet, sub packets.Subscription, ids []int, retained bool, arrived time.Time) *message {
	out := pk // the payload is shared: never written to
	out.FixedHeader.Dup = false
	out.PacketID = 0
	out.Mods = packets.Mods{}
	if !retained && !sub.RetainAsPublished {
		out.FixedHeader.Retain = false // [MQTT-3.3.1-12]
	}
	out.Properties.SubscriptionIdentifier = ids // [MQTT-3.3.4-3]
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false
	qos := min(pk.FixedHeader.Qos, sub.Qos)
	if e.upgrade {
		qos = sub.Qos
	}
	out.FixedHeader.Qos = min(qos, e.srv.Options.Capabilities.MaximumQos)
	m := &message{seq: e.seq.Add(1), pk: out, size: len(out.Payload)}
	if pk.Expiry > 0 && pk.Properties.MessageExpiryInterval > 0 { // else noExpiryCap
		if retained { // it arrived a while ago: Expiry is when it expires
			m.expires = time.Unix(pk.Expiry, 0)
		} else {
			// mochi counts from the whole second of Created; the message
			// arrived now and expires this much later [MQTT-3.3.2-5].
			m.expires = arrived.Add(time.Duration(pk.Expiry-pk.Created) * time.Second)
		}
	}
	m.pk.Expiry = 0
	return m
}

// waitRoom makes a publisher wait while the connected subscriber t has
// no room for pk: a full queue, or (QoS 0 with nothing queued) too many
// bytes pending on its connection, whose room is then reserved until the
// caller unreserves it. Never for the publisher's own session, nor for
// one whose read loop waits itself (it may wait for this one's
// acknowledgements). A subscriber that acknowledges nothing for the
// stall timeout is cut; its session keeps the messages.
func (e *engine) waitRoom(t *target, pk *packets.Packet, self *session) (*asyncConn, int) {
	if t.sub.NoLocal && pk.Origin == t.id {
		return nil, 0
	}
	s := t.s
	if s == self {
		return nil, 0
	}
	qos := min(pk.FixedHeader.Qos, t.sub.Qos)
	s.mu.Lock()
	cl := s.cl
	if cl == nil || cl.Closed() {
		s.mu.Unlock()
		return nil, 0
	}
	if qos == 0 && len(s.queue) == 0 {
		s.mu.Unlock()
		if ac := asyncConnOf(cl.Net.Conn); ac != nil {
			n := len(pk.Payload) + len(pk.TopicName) + 64
			if ac.waitRoom(n) == nil {
				return ac, n
			}
		}
		return nil, 0
	}
	defer s.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	acks := s.acks
	for len(s.queue) >= e.wait && s.cl == cl && !cl.Closed() && !s.busy.Load() {
		if s.room == nil {
			s.room = make(chan struct{})
		}
		ch := s.room
		if timer == nil {
			timer = time.NewTimer(e.stall)
		}
		s.mu.Unlock()
		select {
		case <-ch:
			s.mu.Lock()
			if s.acks != acks {
				acks = s.acks
				timer.Reset(e.stall)
			}
		case <-timer.C:
			s.mu.Lock()
			if s.acks == acks && s.cl == cl && len(s.queue) >= e.wait {
				e.cut.Add(1)
				e.log.Warn("disconnecting slow consumer: no acknowledgement while its queue is full; its session keeps the messages",
					"client", s.id, "remote", cl.Net.Remote, "queued", len(s.queue), "in_flight", len(s.flight),
					"setting", fmt.Sprintf("max_queued_messages (%d queued per client)", e.wait), "waited", e.stall)
				cl.Stop(errNoAcks)
				return nil, 0
			}
			acks = s.acks
			timer.Reset(e.stall)
		}
	}
	return nil, 0
}

// hold keeps s from sending until cl's acknowledgement of the PUBLISH
// being processed is written (OnPacketProcessed releases it).
func (s *session) hold(cl *mqtt.Client) {
	s.mu.Lock()
	if s.cl == cl {
		s.held = cl
	}
	s.mu.Unlock()
}

// wake tells the publishers waiting for s to look again (s.mu held).
func (s *session) wake() {
	if s.room != nil {
		close(s.room)
		s.room = nil
	}
}

// --- the session queue ---------------------------------------------------

// online reports whether s has a connection that is open (s.mu held).
func (s *session) online() bool { return s.cl != nil && !s.cl.Closed() }

// add appends m to the session's queue and sends what the window allows.
// own (the broker's message, or retained for a SUBSCRIBE): a QoS 0 one
// is not sent to a connection without room.
func (s *session) add(e *engine, m *message, own bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.gone {
		return
	}
	qos := m.pk.FixedHeader.Qos
	if !s.online() {
		if s.cl == nil || (qos == 0 && !(e.queueQoS0 && s.persistent)) {
			return // QoS 0 is not queued for offline sessions (queue_qos0_messages)
		}
		if reason, setting := e.full(s, m); reason != "" {
			e.drop(s, reason, setting)
			return
		}
	}
	if qos == 0 && len(s.queue) == 0 && s.live && s.held == nil {
		if own {
			if ac := asyncConnOf(s.cl.Net.Conn); ac != nil {
				n := m.size + len(m.pk.TopicName) + 64
				if ok, err := ac.tryRoom(n); err != nil || !ok {
					if err == nil {
						atomic.AddInt64(&e.srv.Info.MessagesDropped, 1)
						e.log.Debug("qos 0 message dropped: client outbound queue full", "client", s.id, "topic", m.pk.TopicName)
					}
					return
				}
				defer ac.unreserve(n)
			}
		}
		e.send(s, s.cl, m)
		return
	}
	s.queue = append(s.queue, m)
	s.bytes += m.size
	if e.store != nil && s.persistent {
		m.stored = true
		e.store.put(s.id, m)
	}
	e.pump(s)
}

// full says why an offline session has no room for m ("" if it has),
// and the setting that bounds it (s.mu held).
func (e *engine) full(s *session, m *message) (reason, setting string) {
	if e.maxQueued > 0 && len(s.queue)+len(s.flight) >= e.window+e.maxQueued {
		return "offline session full", fmt.Sprintf("max_queued_messages (%d held per client)", e.window+e.maxQueued)
	}
	if e.maxBytes > 0 && s.bytes+m.size > e.maxBytes {
		return "offline session full (bytes)", fmt.Sprintf("max_queued_bytes (%d bytes queued per client)", e.maxBytes)
	}
	return "", ""
}

// drop counts a message not queued for an offline session; the first of
// an episode (until the client is back) is logged (s.mu held).
func (e *engine) drop(s *session, reason, setting string) {
	atomic.AddInt64(&e.srv.Info.InflightDropped, 1)
	if !s.drops {
		s.drops = true
		e.log.Warn("dropping messages for offline client: its session is full (logged once until it reconnects)",
			"client", s.id, "reason", reason, "setting", setting)
	}
}

// pump sends queued messages while the window has room (s.mu held).
func (e *engine) pump(s *session) {
	if !s.live || !s.online() || s.held != nil {
		return
	}
	cl := s.cl
	i := 0
	for ; i < len(s.queue); i++ {
		m := s.queue[i]
		if m.pk.FixedHeader.Qos > 0 && s.window > 0 && len(s.flight) >= s.window {
			break
		}
		s.queue[i] = nil
		s.bytes -= m.size
		if !e.send(s, cl, m) {
			s.queue[i] = m // no packet ID free: later
			s.bytes += m.size
			break
		}
	}
	if i > 0 {
		s.queue = s.queue[i:]
		if len(s.queue) == 0 {
			s.queue = nil
		}
		s.wake()
	}
}

// send writes m to cl, in flight if QoS 1/2 (s.mu held). It reports
// false when no packet ID is free.
func (e *engine) send(s *session, cl *mqtt.Client, m *message) bool {
	pk := m.pk
	if !m.expires.IsZero() {
		left := m.expires.Sub(e.now())
		if left <= 0 { // [MQTT-3.3.2-5]
			e.log.Debug("message expired before delivery", "client", s.id, "topic", pk.TopicName)
			e.discard(s, cl, m)
			return true
		}
		// What is left of it, in whole seconds rounded up [MQTT-3.3.2-6].
		pk.Properties.MessageExpiryInterval = uint32(min((left+time.Second-1)/time.Second, 1<<32-1))
	}
	if !e.mayRead(cl, pk.TopicName, false) {
		e.log.Debug("message not delivered: the client may not read its topic", "client", s.id, "topic", pk.TopicName)
		e.discard(s, cl, m)
		return true
	}
	if pk.FixedHeader.Qos > 0 {
		if pk.PacketID == 0 {
			id := s.nextID(cl)
			if id == 0 {
				return false
			}
			m.pk.PacketID, pk.PacketID = id, id
		}
		s.flight[pk.PacketID] = m
		pk.FixedHeader.Dup = m.sent // [MQTT-3.3.1-1]
		if cl.State.Inflight.Set(pk) {
			atomic.AddInt64(&e.srv.Info.Inflight, 1)
		}
		if m.stored && pk.FixedHeader.Qos == 2 && !m.sent {
			e.store.put(s.id, m) // with its packet ID
		}
	}
	if mount := e.mounts[cl.Net.Listener]; len(pk.TopicName) > len(mount) && strings.HasPrefix(pk.TopicName, mount) {
		pk.TopicName = pk.TopicName[len(mount):] // mount_point (mount.go)
	}
	m.sent = true
	err := cl.WritePacket(pk)
	if errors.Is(err, packets.ErrPacketTooLarge) { // [MQTT-3.1.2-25]
		e.log.Debug("message not delivered", "client", s.id, "topic", pk.TopicName, "error", err)
		e.discard(s, cl, m)
		return true
	}
	if pk.FixedHeader.Qos == 0 {
		e.forget(s, m)
	}
	return true
}

// discard ends a message, acknowledged or not sent after all (s.mu
// held). One not sent uses up a packet ID all the same (QoS 1/2), as in
// mosquitto, which numbers a message as it queues it (09-acl-change).
func (e *engine) discard(s *session, cl *mqtt.Client, m *message) {
	if m.pk.FixedHeader.Qos > 0 && m.pk.PacketID == 0 {
		s.nextID(cl)
	}
	if id := m.pk.PacketID; id != 0 && s.flight[id] == m {
		delete(s.flight, id)
		if cl.State.Inflight.Delete(id) {
			atomic.AddInt64(&e.srv.Info.Inflight, -1)
		}
		s.acks++
	}
	e.forget(s, m)
}

// nextID gives out the next free packet ID of a delivery to cl: 1, 2, 3
// ... as mosquitto's (s.mu held); 0 when all are in use.
func (s *session) nextID(cl *mqtt.Client) uint16 {
	for range maxOutID {
		s.lastID++
		if s.lastID > maxOutID {
			s.lastID = 1
		}
		if _, busy := s.flight[s.lastID]; busy {
			continue
		}
		if _, busy := cl.State.Inflight.Get(s.lastID); busy {
			continue
		}
		return s.lastID
	}
	return 0
}

// forget deletes a message that is done with from the store (s.mu held).
func (e *engine) forget(s *session, m *message) {
	if m.stored {
		m.stored = false
		e.store.del(s.id, m)
	}
}

// --- acknowledgements ----------------------------------------------------

// OnQosComplete frees the window slot of an acknowledged delivery
// (PUBACK, PUBCOMP) and sends the next.
func (e *engine) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	t := pk.FixedHeader.Type
	if t != packets.Puback && t != packets.Pubcomp {
		return
	}
	e.done(cl, pk.PacketID, func(m *message) bool {
		return (t == packets.Puback) == (m.pk.FixedHeader.Qos == 1)
	})
}

// OnQosDropped frees the slot of a delivery mochi gave up (a PUBREC
// with an error code, an expired in-flight message).
func (e *engine) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	e.done(cl, pk.PacketID, func(*message) bool { return !cl.IsTakenOver() })
}

func (e *engine) done(cl *mqtt.Client, id uint16, match func(*message) bool) {
	s := e.lookupSession(cl.ID)
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.flight[id]
	if s.cl != cl || m == nil || !match(m) {
		return
	}
	e.discard(s, cl, m) // mochi has deleted it from its in-flight set
	s.wake()
	e.pump(s)
}

// --- subscriptions: retained messages (docs/design/broker.md) -----------

// pendingSubscribe is a SUBSCRIBE between OnSubscribe and
// OnPacketProcessed.
type pendingSubscribe struct {
	filters []packets.Subscription // as the client sent them
	existed []bool
	codes   []byte
	live    map[string]bool // topics whose retained publish was routed to the client meanwhile (e.retain held)
}

// sentLive notes a retained message of topic routed to client id while
// a SUBSCRIBE of it is pending: its scan does not send it again.
func (e *engine) sentLive(id, topic string) {
	cl, _ := e.srv.Clients.Get(id)
	if v, ok := e.subs.Load(cl); ok {
		p := v.(*pendingSubscribe)
		if p.live == nil {
			p.live = map[string]bool{}
		}
		p.live[topic] = true
	}
}

// OnSubscribe takes the retained messages of the SUBSCRIBE over from
// mochi (Retain Handling 2 for mochi: it sends none) until its SUBACK is
// written (OnPacketProcessed).
func (e *engine) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	p := &pendingSubscribe{filters: slices.Clone(pk.Filters), existed: make([]bool, len(pk.Filters))}
	pk.Filters = slices.Clone(pk.Filters)
	for i := range pk.Filters {
		_, p.existed[i] = cl.State.Subscriptions.Get(pk.Filters[i].Filter)
		pk.Filters[i].RetainHandling = 2
	}
	e.subs.Store(cl, p)
	return pk
}

// OnPacketProcessed queues the retained messages of a SUBSCRIBE once its
// SUBACK is written.
func (e *engine) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, err error) {
	if pk.FixedHeader.Type == packets.Publish {
		e.release(cl)
		return
	}
	if pk.FixedHeader.Type != packets.Subscribe {
		return
	}
	e.retain.RLock()
	defer e.retain.RUnlock()
	v, ok := e.subs.LoadAndDelete(cl)
	if ok && err == nil {
		e.sendRetained(cl, v.(*pendingSubscribe))
	}
}

// release sends what a session held while mochi acknowledged its own
// client's PUBLISH (see session.held), now that the PUBACK or PUBREC is
// written.
func (e *engine) release(cl *mqtt.Client) {
	if cl.Net.Inline {
		return
	}
	s := e.lookupSession(cl.ID)
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.held == cl {
		s.held = nil
		e.pump(s)
	}
}

// sendRetained queues the retained messages a SUBSCRIBE asks for
// [MQTT-3.8.4-4]: none for a shared subscription, Retain Handling 1 only
// for a new subscription, 2 never [MQTT-3.3.1-10] [MQTT-3.3.1-11]. A
// filter "P/#" also gets P's own ("#" stands for the parent level too
// [MQTT-4.7.1-2]; mochi's scan looks only below P).
func (e *engine) sendRetained(cl *mqtt.Client, p *pendingSubscribe) {
	if e.srv.Topics.Retained.Len() == 0 {
		return
	}
	s := e.sessionOf(cl.ID)
	for i, sub := range p.filters {
		if i >= len(p.codes) || p.codes[i] >= packets.ErrUnspecifiedError.Code || mqtt.IsSharedFilter(sub.Filter) ||
			sub.RetainHandling == 2 || (sub.RetainHandling == 1 && p.existed[i]) {
			continue
		}
		msgs := e.srv.Topics.Messages(sub.Filter)
		if parent, ok := strings.CutSuffix(sub.Filter, "/#"); ok && parent != "" {
			for _, m := range e.srv.Topics.Messages(parent) {
				if !slices.ContainsFunc(msgs, func(q packets.Packet) bool { return q.TopicName == m.TopicName }) {
					msgs = append(msgs, m)
				}
			}
		}
		var ids []int
		if sub.Identifier > 0 {
			ids = []int{sub.Identifier}
		}
		for _, pk := range msgs {
			if (sub.NoLocal && pk.Origin == cl.ID) || p.live[pk.TopicName] {
				continue
			}
			m := e.outgoing(pk, sub, ids, true, time.Time{})
			if !m.expires.IsZero() && !m.expires.After(e.now()) {
				continue // expired while retained: it takes no packet ID
			}
			s.add(e, m, true)
		}
	}
}

// --- wills ---------------------------------------------------------------

// OnWill publishes a client's will as a message of the broker, now or
// once its Will Delay Interval has passed unless the session is resumed
// first [MQTT-3.1.3-9]; mochi gets an empty will.
func (e *engine) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if will.TopicName == "" {
		return will, nil
	}
	if e.willKept != nil && e.willKept(cl) {
		return mqtt.Will{}, nil // taken over by a connection that resumes the session
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: will.Retain, Qos: will.Qos},
		TopicName:   will.TopicName,
		Payload:     will.Payload,
		Properties:  packets.Properties{User: will.User},
		Origin:      cl.ID,
	}
	if p, ok := e.willProps.Load(cl); ok { // mochi's Will has only the user properties
		wp := p.(*packets.Properties)
		pk.Properties.PayloadFormat, pk.Properties.PayloadFormatFlag = wp.PayloadFormat, wp.PayloadFormatFlag
		pk.Properties.ContentType, pk.Properties.ResponseTopic = wp.ContentType, wp.ResponseTopic
		pk.Properties.CorrelationData = wp.CorrelationData
		pk.Properties.MessageExpiryInterval = wp.MessageExpiryInterval
	}
	published := func() { // the message expiry counts from here
		pk.Created = time.Now().Unix()
		if exp := pk.Properties.MessageExpiryInterval; exp > 0 {
			pk.Expiry = pk.Created + int64(exp)
		}
		e.publish(cl, pk, true)
	}
	if will.WillDelayInterval == 0 {
		published()
		return mqtt.Will{}, nil
	}
	w := new(delayedWill)
	w.Timer = time.AfterFunc(time.Duration(will.WillDelayInterval)*time.Second, func() {
		if e.wills.CompareAndDelete(cl.ID, w) {
			published()
		}
	})
	if old, ok := e.wills.Swap(cl.ID, w); ok {
		old.(*delayedWill).Stop()
	}
	return mqtt.Will{}, nil
}

// delayedWill is the timer of a delayed will.
type delayedWill struct{ *time.Timer }

// stop cancels the delayed wills (the broker is closing).
func (e *engine) stop() {
	e.wills.Range(func(id, w any) bool {
		w.(*delayedWill).Stop()
		e.wills.Delete(id)
		return true
	})
}

// --- sessions ------------------------------------------------------------

// OnSessionEstablish runs before mochi looks for the client's session:
// from now on the session's messages go to cl, once it is established.
// A clean start (or a clean old session) ends the queue. The broker
// sends no topic aliases (as mosquitto), and mochi's own flow control
// (its send quota) is off: the window is the engine's.
func (e *engine) OnSessionEstablish(cl *mqtt.Client, pk packets.Packet) {
	window := int(cl.Properties.Props.ReceiveMaximum) // MQTT 5; 0: none
	if e.window > 0 && (window == 0 || e.window < window) {
		window = e.window
	}
	cl.Properties.Props.ReceiveMaximum = 0
	cl.State.Inflight.ResetSendQuota(0)
	cl.Properties.Props.TopicAliasMaximum = 0
	if w, ok := e.wills.LoadAndDelete(cl.ID); ok {
		w.(*delayedWill).Stop() // [MQTT-3.1.3-9]
	}
	s := e.sessionOf(cl.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if pk.Connect.Clean || !s.persistent {
		e.clear(s)
	}
	s.cl, s.live, s.window, s.drops, s.held = cl, false, window, false, nil
	s.persistent = persistent(cl)
	s.wake() // publishers waiting for the old connection
	e.invalidate()
}

// OnPacketEncode takes the engine's messages out of the in-flight set
// mochi copied from the old connection as the CONNACK goes out, before
// mochi resends them (OnSessionEstablished does, in order); and it notes
// (and stores) a QoS 2 delivery released as mochi's PUBREL goes out.
func (e *engine) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type == packets.Pubrel && pk.ReasonCode < packets.ErrUnspecifiedError.Code {
		e.released(cl, pk.PacketID)
		return pk
	}
	if pk.FixedHeader.Type != packets.Connack || pk.ReasonCode >= packets.ErrUnspecifiedError.Code {
		return pk
	}
	for _, p := range cl.State.Inflight.GetAll(false) {
		if p.FixedHeader.Type == packets.Publish && p.PacketID <= maxOutID {
			cl.State.Inflight.Delete(p.PacketID)
		}
	}
	return pk
}

// released marks the QoS 2 delivery id to cl released (PUBREC received).
func (e *engine) released(cl *mqtt.Client, id uint16) {
	s := e.lookupSession(cl.ID)
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.flight[id]; m != nil && s.cl == cl && m.pk.FixedHeader.Qos == 2 && !m.released {
		m.released = true
		if m.stored {
			m.stored = false
			e.store.released(cl, m)
		}
	}
}

// OnSessionEstablished resends the session's messages in flight, in
// order and with DUP, then goes on with its queue. mochi calls it before
// it reads the client's first packet.
func (e *engine) OnSessionEstablished(cl *mqtt.Client, pk packets.Packet) {
	if pk.Connect.WillFlag && cl.Properties.ProtocolVersion >= 5 {
		wp := pk.Connect.WillProperties
		e.willProps.Store(cl, &wp)
	}
	s := e.sessionOf(cl.ID)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cl != cl {
		return
	}
	s.live = true
	resend := make([]*message, 0, len(s.flight))
	for _, m := range s.flight {
		if !m.released {
			resend = append(resend, m)
		}
	}
	sort.Slice(resend, func(i, j int) bool { return resend[i].seq < resend[j].seq })
	for _, m := range resend {
		if !cl.Closed() {
			e.send(s, cl, m) // in flight already: whatever the window
		}
	}
	e.pump(s)
}

// OnDisconnect: the session goes offline, or ends with a clean session.
func (e *engine) OnDisconnect(cl *mqtt.Client, _ error, expire bool) {
	e.willProps.Delete(cl) // mochi sends the will, if at all, before OnDisconnect
	e.subs.Delete(cl)      // a SUBSCRIBE cut short
	s := e.lookupSession(cl.ID)
	if s == nil {
		return
	}
	s.mu.Lock()
	if s.cl != cl {
		s.mu.Unlock()
		return
	}
	s.live = false
	s.wake()
	end := expire && !cl.IsTakenOver()
	s.mu.Unlock()
	if end {
		e.end(s)
	}
}

// OnClientExpired ends an expired session, and its subscriptions: mochi
// v2.7.9 deletes an expired client but leaves its subscriptions in the
// topic index, where a new clean session of the same client ID would get
// their messages [MQTT-3.1.2-4].
func (e *engine) OnClientExpired(cl *mqtt.Client) {
	if cur, ok := e.srv.Clients.Get(cl.ID); ok && cur == cl && !cl.IsTakenOver() {
		e.srv.UnsubscribeClient(cl)
	}
	if s := e.lookupSession(cl.ID); s != nil {
		e.end(s)
	}
}

// end removes a session and its stored messages.
func (e *engine) end(s *session) {
	e.mu.Lock()
	if e.sessions[s.id] == s {
		delete(e.sessions, s.id)
	}
	e.mu.Unlock()
	s.mu.Lock()
	e.clear(s)
	s.gone = true
	s.wake()
	s.mu.Unlock()
	e.invalidate()
}

// clear empties a session's queue and flight; a new session numbers its
// deliveries from 1 again (s.mu held).
func (e *engine) clear(s *session) {
	s.lastID = 0
	for _, m := range s.queue {
		e.forget(s, m)
	}
	for _, m := range s.flight {
		e.forget(s, m)
	}
	s.queue, s.bytes, s.flight = nil, 0, map[uint16]*message{}
}

// restore puts messages read back from the store into their sessions'
// queues, in their order; those sent before count as sent (DUP, and the
// same packet ID for QoS 2). It runs before the broker serves.
func (e *engine) restore(client string, msgs []*message) {
	cl, ok := e.srv.Clients.Get(client)
	if !ok {
		for _, m := range msgs {
			e.store.del(client, m)
		}
		return
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].seq < msgs[j].seq })
	s := e.sessionOf(client)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cl, s.persistent = cl, true
	for _, m := range msgs {
		if last := e.seq.Load(); m.seq > last {
			e.seq.Store(m.seq)
		}
		if id := m.pk.PacketID; id != 0 && id <= maxOutID && s.flight[id] == nil {
			m.sent = true
			s.flight[id] = m
			continue
		}
		m.pk.PacketID = 0
		s.queue = append(s.queue, m)
		s.bytes += m.size
	}
}
