// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"strings"
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// parentRetain sends a new subscription "P/#" the retained messages on
// the topics P itself matches: "#" also stands for the parent level
// [MQTT-4.7.1-2] ("sport/#" matches "sport"). mochi v2.7.9 delivers live
// messages so, but its scan of the retained messages (TopicsIndex
// .scanMessages) only looks below P, so a client subscribing to
// "foo/bar/baz/#" or "foo/+/baz/#" never got the message retained on
// "foo/bar/baz" (mosquitto's test suite, 03-pattern-matching.py).
//
// The scan is unexported, and so is mochi's delivery to one client, so
// the hook lets mochi do both: for such a filter it adds a subscription
// to P to the SUBSCRIBE (OnSubscribe) when a message is retained under P,
// so that mochi sends P's retained messages through its usual path (QoS,
// packet IDs, in-flight store, ACL read check, subscription identifiers),
// keeps the extra reason code out of the SUBACK (OnPacketEncode), and
// removes the extra subscription, from the store too, once the SUBSCRIBE
// is processed (OnPacketProcessed). While it exists it changes no
// delivery: every topic P matches, P/# matches too, and mochi delivers a
// message once per client. retainGuard holds retained publishes off for
// the whole SUBSCRIBE.
//
// Not done when the client already has a subscription to P itself (it
// would be replaced), for shared subscriptions (no retained messages) and
// with Retain Handling 2 (none wanted), or 1 when the subscription exists.
type parentRetain struct {
	mqtt.HookBase
	srv *mqtt.Server
	// unpersist deletes a subscription from the store (nil without
	// persistence); changed tells the router the topic index changed.
	unpersist func(cl *mqtt.Client, filter string)
	changed   func()

	mu    sync.Mutex
	extra map[*mqtt.Client]*parentExtra // from OnSubscribe to OnPacketProcessed
}

// parentExtra is what OnSubscribe added to a client's SUBSCRIBE.
type parentExtra struct {
	n     int      // filters the client sent
	added []string // parent filters added after them
}

func newParentRetain(srv *mqtt.Server) *parentRetain {
	return &parentRetain{srv: srv, extra: map[*mqtt.Client]*parentExtra{}}
}

// ID implements mqtt.Hook.
func (h *parentRetain) ID() string { return "mqttkit-parent-retain" }

// Provides implements mqtt.Hook.
func (h *parentRetain) Provides(b byte) bool {
	switch b {
	case mqtt.OnSubscribe, mqtt.OnPacketEncode, mqtt.OnPacketProcessed, mqtt.OnDisconnect:
		return true
	}
	return false
}

// parentFilter returns P for a filter "P/#" whose parent level can have
// retained messages.
func parentFilter(sub packets.Subscription) (string, bool) {
	f := sub.Filter
	if !strings.HasSuffix(f, "/#") || len(f) < 3 || mqtt.IsSharedFilter(f) || sub.RetainHandling == 2 {
		return "", false
	}
	return f[:len(f)-2], true
}

// OnSubscribe adds the parent subscriptions whose retained messages mochi
// would miss.
func (h *parentRetain) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline || h.srv.Topics.Retained.Len() == 0 {
		return pk
	}
	var e *parentExtra
	n := len(pk.Filters)
	for _, sub := range pk.Filters[:n] {
		p, ok := parentFilter(sub)
		if !ok {
			continue
		}
		if _, has := cl.State.Subscriptions.Get(p); has {
			continue
		}
		if _, has := cl.State.Subscriptions.Get(sub.Filter); has && sub.RetainHandling == 1 {
			continue
		}
		dup := false
		for _, s := range pk.Filters {
			dup = dup || s.Filter == p
		}
		if dup || len(h.srv.Topics.Messages(p)) == 0 {
			continue
		}
		extra := sub
		extra.Filter, extra.RetainHandling = p, 0
		pk.Filters = append(pk.Filters, extra)
		if e == nil {
			e = &parentExtra{n: n}
		}
		e.added = append(e.added, p)
	}
	if e != nil {
		h.mu.Lock()
		h.extra[cl] = e
		h.mu.Unlock()
	}
	return pk
}

func (h *parentRetain) pending(cl *mqtt.Client, take bool) *parentExtra {
	h.mu.Lock()
	defer h.mu.Unlock()
	e := h.extra[cl]
	if take {
		delete(h.extra, cl)
	}
	return e
}

// OnPacketEncode keeps the reason codes of the added filters out of the
// SUBACK.
func (h *parentRetain) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if pk.FixedHeader.Type != packets.Suback {
		return pk
	}
	// The only SUBACK between OnSubscribe and OnPacketProcessed is the
	// SUBSCRIBE's (fixesHook has renamed its packet ID back by now).
	if e := h.pending(cl, false); e != nil && len(pk.ReasonCodes) > e.n {
		pk.ReasonCodes = pk.ReasonCodes[:e.n]
	}
	return pk
}

// OnPacketProcessed removes the added subscriptions once mochi has sent
// the retained messages.
func (h *parentRetain) OnPacketProcessed(cl *mqtt.Client, pk packets.Packet, _ error) {
	if pk.FixedHeader.Type != packets.Subscribe {
		return
	}
	e := h.pending(cl, true)
	if e == nil {
		return
	}
	for _, p := range e.added {
		if h.srv.Topics.Unsubscribe(p, cl.ID) {
			atomic.AddInt64(&h.srv.Info.Subscriptions, -1)
		}
		cl.State.Subscriptions.Delete(p)
		if h.unpersist != nil {
			h.unpersist(cl, p)
		}
	}
	if h.changed != nil {
		h.changed()
	}
}

// OnDisconnect forgets a SUBSCRIBE that did not finish.
func (h *parentRetain) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.pending(cl, true) }
