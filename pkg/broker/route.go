// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"reflect"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// maxCached bounds the routes plus subscribers the router remembers
// (each subscriber about 150 bytes); past it the cache starts over.
const maxCached = 1 << 18

// orderWait bounds how long a QoS 0 delivery waits for the messages mochi
// has queued for the same client before it (see router.deliver); past it
// the message is written anyway: out of order rather than lost.
const orderWait = time.Second

// outboundQty locates mochi's ClientState.outboundQty, the number of
// packets in a client's outbound channel plus the one its write loop is
// writing (decremented after the write). mochi v2.7.9 exports no way to
// read it; TestMochiOutboundQty fails if a mochi upgrade removes it.
var outboundQty = func() (f struct {
	ok     bool
	offset uintptr
}) {
	sf, ok := reflect.TypeFor[mqtt.ClientState]().FieldByName("outboundQty")
	if ok && sf.Type.Kind() == reflect.Int32 {
		f.ok, f.offset = true, sf.Offset
	}
	return f
}()

// mochiQueued is the number of packets mochi has queued for cl and not yet
// written (0 when unknown).
func mochiQueued(cl *mqtt.Client) int32 {
	if !outboundQty.ok {
		return 0
	}
	return atomic.LoadInt32((*int32)(unsafe.Add(unsafe.Pointer(&cl.State), outboundQty.offset)))
}

// router delivers QoS 0 PUBLISHes itself instead of mochi, for two
// reasons:
//
//   - No silent loss. mochi hands each delivery to the subscriber's write
//     goroutine through a channel and drops the message when the channel
//     is full, which happens whenever publishers outpace that goroutine
//     (4 publishers and 1 subscriber on 2 cores lost 5-15% of the
//     messages). The router writes each delivery itself, on the
//     publisher's goroutine, after waiting for room in the subscriber's
//     queue (asyncConn.waitRoom): a subscriber that reads slowly slows its
//     publishers down, and only one that takes no data for the stall
//     timeout is disconnected, with a log line and a counter. The
//     broker's own messages ($SYS, Broker.Publish: the inline client)
//     never wait: a subscriber without room for one does not get it
//     (counted as dropped, with a debug log line), so a stuck subscriber
//     cannot hold up a $SYS update or, through it, the broker's shutdown.
//   - Speed. mochi looks the subscribers up in its topic tree for every
//     message, building three maps and copying every matching filter's
//     subscription map each time (a third of the broker's CPU time in the
//     fan-in benchmark). The router remembers the subscribers per topic
//     and forgets everything when a subscription or a session changes.
//
// Scope: QoS 0 messages that are not retained (retained messages and QoS
// 1/2 are routed by mochi: they have their own flow and ordering fixes,
// fixes.go and durable.go). Deliveries are written with the client's
// WritePacket, so mochi's encoding, size limit and hooks apply as before
// (the broker sends no outbound topic aliases at all, see
// deliveryHook.OnConnect; a publisher's inbound alias is cleared).
// Order: a delivery waits until what mochi queued for the same client
// earlier (a QoS 1 message of the same publisher, a retained message after
// a SUBSCRIBE) is written, so a subscriber gets one publisher's messages
// in the order they were published, whatever their QoS, as with
// mosquitto.
//
// The cache is correct because of where it is forgotten: mochi calls
// OnSubscribed and OnUnsubscribed after it changed the topic index and
// before it acknowledges (a message routed in between went to the old set
// of subscribers, which MQTT allows before the SUBACK or UNSUBACK), and
// OnSessionEstablished once a reconnecting client has taken its session
// over. A cached subscriber is the *mqtt.Client that was connected when
// the route was computed: once closed it receives nothing, as with mochi
// (QoS 0 is not queued for offline sessions). A new connection with the
// same client ID is in mochi's client table, and has its CONNACK, before
// its OnSessionEstablished: a cached subscriber found closed whose ID now
// names another connection makes the router route that message again,
// uncached, for that ID.
type router struct {
	mqtt.HookBase
	srv *mqtt.Server
	// mayRead is the ACL check for deliveries (securityHook.OnACLCheck).
	mayRead func(cl *mqtt.Client, topic string, write bool) bool

	gen   atomic.Uint64 // bumped when subscriptions or sessions change
	table atomic.Pointer[routeTable]
	once  sync.Once
	self  *mqtt.Client // mochi's inline client, for inline handlers

	// now is the clock of message expiry (time.Now; tests replace it
	// before the broker starts).
	now func() time.Time
	// dropped counts and logs one of the broker's own messages not
	// delivered to a subscriber without room (fixesHook.qos0Dropped).
	dropped func(cl *mqtt.Client, topic string)
}

// routeTable caches the subscribers per topic.
type routeTable struct {
	routes sync.Map // topic -> *route
	n      atomic.Int64
}

// route is the subscribers of one topic, as of generation gen.
type route struct {
	gen     uint64
	targets []target
	inline  []mqtt.InlineSubscription
}

// target is one subscriber and its subscription (all its matching
// filters merged, as mochi does).
type target struct {
	cl  *mqtt.Client
	sub packets.Subscription
	ids []int // subscription identifiers, sorted (shared, read only)
}

func newRouter(srv *mqtt.Server, mayRead func(*mqtt.Client, string, bool) bool) *router {
	r := &router{srv: srv, mayRead: mayRead, now: time.Now, dropped: func(*mqtt.Client, string) {}}
	r.table.Store(new(routeTable))
	return r
}

// ID implements mqtt.Hook.
func (r *router) ID() string { return "mqttkit-router" }

// Provides implements mqtt.Hook.
func (r *router) Provides(b byte) bool {
	switch b {
	case mqtt.OnPublish, mqtt.OnSubscribed, mqtt.OnUnsubscribed, mqtt.OnSessionEstablished:
		return true
	}
	return false
}

// invalidate forgets every cached route. It must run after the change
// to the topic index it is for.
func (r *router) invalidate() {
	r.gen.Add(1)
	r.table.Store(new(routeTable))
}

// OnSubscribed forgets the cached routes: the topic index has changed.
func (r *router) OnSubscribed(*mqtt.Client, packets.Packet, []byte) { r.invalidate() }

// OnUnsubscribed forgets the cached routes: the topic index has changed.
func (r *router) OnUnsubscribed(*mqtt.Client, packets.Packet) { r.invalidate() }

// OnSessionEstablished forgets the cached routes: a client ID may now
// belong to another connection.
func (r *router) OnSessionEstablished(*mqtt.Client, packets.Packet) { r.invalidate() }

// OnPublish delivers a QoS 0, non-retained message to its subscribers and
// tells mochi not to route it again (packets.CodeSuccessIgnore: mochi
// then skips its own routing and still calls OnPublished). It must be the
// last hook with OnPublish, after the ACL and size checks.
func (r *router) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Qos != 0 || pk.FixedHeader.Retain || pk.Ignore {
		return pk, nil
	}
	d := delivery{pk: pk, own: cl.Net.Inline}
	if pk.Properties.MessageExpiryInterval > 0 && pk.Expiry > pk.Created {
		// mochi's Expiry counts from the whole second of Created; the
		// message arrived now, it expires this much later [MQTT-3.3.2-5].
		d.expires = r.now().Add(time.Duration(pk.Expiry-pk.Created) * time.Second)
	}
	rt := r.lookup(pk.TopicName)
	if len(rt.inline) > 0 {
		r.once.Do(func() { r.self, _ = r.srv.Clients.Get(mqtt.InlineClientId) })
		for _, in := range rt.inline {
			in.Handler(r.self, in.Subscription, pk)
		}
	}
	var moved map[string]bool
	for i := range rt.targets {
		if r.deliver(&rt.targets[i], &d) {
			if moved == nil {
				moved = map[string]bool{}
			}
			moved[rt.targets[i].cl.ID] = true
		}
	}
	if moved != nil {
		// A cached subscriber's client ID belongs to a new connection
		// whose OnSessionEstablished has not run yet (it got its CONNACK):
		// route again for those, from the index and the client table.
		r.invalidate()
		rt = r.lookup(pk.TopicName)
		for i := range rt.targets {
			if moved[rt.targets[i].cl.ID] {
				r.deliver(&rt.targets[i], &d)
			}
		}
	}
	return pk, packets.CodeSuccessIgnore
}

// lookup returns the subscribers of topic, from the cache when it is
// current.
func (r *router) lookup(topic string) *route {
	g := r.gen.Load() // before reading the index: a change after it bumps gen
	t := r.table.Load()
	if v, ok := t.routes.Load(topic); ok {
		if rt := v.(*route); rt.gen == g {
			return rt
		}
	}
	subs := r.srv.Topics.Subscribers(topic)
	rt := &route{gen: g}
	// Shared subscriptions: a member is chosen per message, so not cached.
	shared := len(subs.Shared) > 0
	if shared {
		subs.SelectShared()
		subs.MergeSharedSelected()
	}
	rt.targets = make([]target, 0, len(subs.Subscriptions))
	for id, sub := range subs.Subscriptions {
		if c, ok := r.srv.Clients.Get(id); ok {
			rt.targets = append(rt.targets, target{cl: c, sub: sub, ids: identifiers(sub)})
		}
	}
	for _, in := range subs.InlineSubscriptions {
		rt.inline = append(rt.inline, in)
	}
	if !shared {
		if t.n.Add(int64(1+len(rt.targets))) > maxCached {
			r.table.CompareAndSwap(t, new(routeTable))
		} else {
			t.routes.Store(topic, rt)
		}
	}
	return rt
}

// delivery is a QoS 0 message being routed.
type delivery struct {
	pk      packets.Packet
	own     bool      // published by the broker itself (inline client): never waits
	expires time.Time // zero: no message expiry
}

// deliver writes d's message to one subscriber as mochi's publishToClient
// would for a QoS 0 message, after waiting for room in its queue (the
// broker's own messages do not wait: without room they are dropped for
// this subscriber). A message whose expiry passed meanwhile is not sent
// [MQTT-3.3.2-5]. It reports whether the target's connection is closed and
// its client ID now belongs to another connection (the cached route is out
// of date).
func (r *router) deliver(t *target, d *delivery) (moved bool) {
	cl, sub, pk := t.cl, t.sub, d.pk
	if sub.NoLocal && pk.Origin == cl.ID { // [MQTT-3.8.3-3]
		return false
	}
	if cl.Net.Conn == nil || cl.Closed() {
		now, ok := r.srv.Clients.Get(cl.ID)
		return ok && now != cl
	}
	if !r.mayRead(cl, pk.TopicName, false) {
		return false
	}
	// What pk.Copy(false) keeps, without copying the payload: the packet
	// is encoded before this returns.
	out := pk
	out.FixedHeader.Dup = false // [MQTT-3.3.1-3]
	out.FixedHeader.Retain = false
	out.PacketID = 0
	out.Mods = packets.Mods{MaxSize: pk.Mods.MaxSize}
	out.Properties.TopicAlias, out.Properties.TopicAliasFlag = 0, false // [MQTT-3.3.2-7]
	out.Properties.SubscriptionIdentifier = t.ids                       // [MQTT-3.3.4-3]
	if ac := asyncConnOf(cl.Net.Conn); ac != nil {
		// About the encoded size (TLS and WebSocket framing add little).
		n := len(out.Payload) + len(out.TopicName) + 64
		if d.own {
			ok, err := ac.tryRoom(n)
			if err != nil {
				return false // closed, or cut as a slow consumer
			}
			if !ok {
				// $SYS is periodic state (and retained): the next update
				// or a new SUBSCRIBE brings the current value.
				atomic.AddInt64(&r.srv.Info.MessagesDropped, 1) // as mochi counts its drops
				r.dropped(cl, out.TopicName)
				return false
			}
		} else if err := ac.waitRoom(n); err != nil {
			return false // closed, or cut as a slow consumer
		}
		defer ac.unreserve(n)
	}
	if mochiQueued(cl) > 0 {
		waitMochiQueue(cl)
	}
	if !d.expires.IsZero() {
		left := d.expires.Sub(r.now())
		if left <= 0 { // [MQTT-3.3.2-5]
			r.srv.Log.Debug("qos 0 message expired before delivery", "client", cl.ID, "topic", out.TopicName)
			return false
		}
		// What is left of it, in whole seconds rounded up [MQTT-3.3.2-6]
		// (mochi's WritePacket would count from the second of Created).
		out.Expiry = 0
		out.Properties.MessageExpiryInterval = uint32(min((left+time.Second-1)/time.Second, 1<<32-1))
	}
	if err := cl.WritePacket(out); err != nil && !cl.Closed() {
		// Larger than the client's Maximum Packet Size [MQTT-3.1.2-24]:
		// mochi's write loop logged it too.
		r.srv.Log.Debug("qos 0 message not delivered", "client", cl.ID, "topic", out.TopicName, "error", err)
	}
	return false
}

// waitMochiQueue waits, for orderWait at most, until mochi has written
// what it had queued for cl. Its write loop never blocks on the network
// (asyncConn), so this is short.
func waitMochiQueue(cl *mqtt.Client) {
	var deadline time.Time
	for i := 0; mochiQueued(cl) > 0 && !cl.Closed(); i++ {
		if i < 64 {
			runtime.Gosched()
			continue
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(orderWait)
		} else if time.Now().After(deadline) {
			return
		}
		time.Sleep(50 * time.Microsecond)
	}
}

// identifiers returns the subscription identifiers of sub to send with a
// message, sorted as mochi sends them; nil when there are none (mochi
// merges identifier 0 for a filter without one, which is not sent).
func identifiers(sub packets.Subscription) []int {
	var ids []int
	for _, id := range sub.Identifiers {
		if id > 0 {
			ids = append(ids, id) // [MQTT-3.3.4-4]
		}
	}
	sort.Ints(ids)
	return ids
}
