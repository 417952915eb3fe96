// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// Local is the local broker as a bridge sees it.
type Local interface {
	// DialInProcess opens a new client connection to the broker that
	// does not go through a network listener.
	DialInProcess() (net.Conn, error)
	// Publish publishes a message from the broker itself (notifications).
	Publish(topic string, payload []byte, retain bool, qos byte) error
}

// Bridge is one running bridge connection.
type Bridge struct {
	cfg   *Config
	local Local
	log   *slog.Logger
	tls   *tls.Config // nil: plain TCP

	connected atomic.Bool
	sent      atomic.Int64 // messages forwarded to the remote
	received  atomic.Int64 // messages forwarded from the remote
	address   atomic.Value // string: the remote address in use

	remoteIDs ids  // remote packet identifiers (continue across reconnects)
	pending   outs // messages the remote has not acknowledged
	localIDs  ids

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
}

// Stats is a snapshot of a bridge for $SYS and metrics.
type Stats struct {
	Name      string
	Connected bool
	Address   string // remote address of the current or last connection
	Sent      int64  // messages forwarded to the remote
	Received  int64  // messages forwarded from the remote
}

// New checks cfg (TLS files are loaded here, so a bad file is an error at
// start-up) and returns a bridge that Start runs.
func New(cfg *Config, local Local, log *slog.Logger) (*Bridge, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	b := &Bridge{cfg: cfg, local: local, log: log.With("bridge", cfg.Name)}
	if cfg.TLS() {
		tc, err := clientTLS(cfg)
		if err != nil {
			return nil, fmt.Errorf("bridge %s: %w", cfg.Name, err)
		}
		b.tls = tc
	}
	b.address.Store("")
	return b, nil
}

// Config returns the bridge's configuration.
func (b *Bridge) Config() *Config { return b.cfg }

// Stats returns the bridge's state and counters.
func (b *Bridge) Stats() Stats {
	return Stats{Name: b.cfg.Name, Connected: b.connected.Load(), Address: b.address.Load().(string),
		Sent: b.sent.Load(), Received: b.received.Load()}
}

// Start creates the bridge's local session and subscriptions, so that
// messages for the remote are queued from now on, and starts connecting
// to the remote in the background.
func (b *Bridge) Start() error {
	if !b.cfg.LocalClean() && b.hasOut() {
		if err := b.prime(); err != nil {
			return fmt.Errorf("bridge %s: local session: %w", b.cfg.Name, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.mu.Lock()
	b.cancel, b.done = cancel, make(chan struct{})
	b.mu.Unlock()
	b.notifyLocal(false)
	go b.run(ctx)
	return nil
}

// Stop ends the bridge and waits for it. The local session stays (its
// messages wait for the next start).
func (b *Bridge) Stop() {
	b.mu.Lock()
	cancel, done := b.cancel, b.done
	b.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	<-done
}

func (b *Bridge) hasOut() bool {
	for _, t := range b.cfg.Topics {
		if t.Direction != In {
			return true
		}
	}
	return false
}

// prime connects to the local broker once to create the bridge's session
// and its subscriptions.
func (b *Bridge) prime() error {
	local, _, err := b.connectLocal(20, true)
	if err != nil {
		return err
	}
	defer local.close()
	return local.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
}

// run connects and reconnects until ctx ends.
func (b *Bridge) run(ctx context.Context) {
	defer close(b.done)
	idx := 0
	delay := b.cfg.RestartTimeout
	for {
		addr := b.cfg.Addresses[idx]
		up, err := b.session(ctx, addr)
		if ctx.Err() != nil {
			return
		}
		if up {
			b.log.Info("bridge disconnected", "address", addr.String(), "error", err)
			delay = b.cfg.RestartTimeout
		} else {
			b.log.Warn("bridge connection failed", "address", addr.String(), "error", err)
		}
		if n := len(b.cfg.Addresses); n > 1 {
			if up && !b.cfg.RoundRobin && idx != 0 {
				idx = 0 // back to the main address
			} else {
				idx = (idx + 1) % n
			}
		}
		wait := b.cfg.RestartTimeout
		if b.cfg.RestartCap > 0 {
			// Decorrelated jitter, as mosquitto: between the base and
			// three times the last delay, at most the cap.
			hi := max(3*delay, b.cfg.RestartTimeout+1)
			wait = min(b.cfg.RestartCap, b.cfg.RestartTimeout+time.Duration(rand.Int64N(int64(hi-b.cfg.RestartTimeout))))
			delay = wait
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// notifyLocal publishes the state notification on the local broker.
func (b *Bridge) notifyLocal(up bool) {
	if !b.cfg.Notifications {
		return
	}
	payload := []byte("0")
	if up {
		payload = []byte("1")
	}
	if err := b.local.Publish(b.cfg.StateTopic(), payload, true, 1); err != nil {
		b.log.Warn("bridge notification failed", "error", err)
	}
}

func (b *Bridge) dialRemote(ctx context.Context, addr Address) (net.Conn, error) {
	d := net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil, err
	}
	if b.tls == nil {
		return c, nil
	}
	tc := b.tls.Clone()
	if tc.ServerName == "" {
		tc.ServerName = addr.Host
	}
	conn := tls.Client(c, tc)
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := conn.HandshakeContext(hctx); err != nil {
		c.Close()
		return nil, fmt.Errorf("tls: %w", err)
	}
	return conn, nil
}

// connectLocal opens the in-process connection and sends the bridge's
// local CONNECT. receiveMax is the Receive Maximum to announce: the
// remote's, so that no more messages are in flight to the bridge than the
// remote takes.
func (b *Bridge) connectLocal(receiveMax uint16, waitSuback bool) (*conn, *packets.Packet, error) {
	c, err := b.local.DialInProcess()
	if err != nil {
		return nil, nil, err
	}
	local := newConn(c, 5)
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 5}
	pk.Connect = packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: b.cfg.LocalClientID,
		Clean: b.cfg.LocalClean(), Keepalive: 0}
	if !b.cfg.LocalClean() {
		pk.Properties.SessionExpiryInterval = 0xFFFFFFFF
		pk.Properties.SessionExpiryIntervalFlag = true
	}
	pk.Properties.ReceiveMaximum = max(receiveMax, 1)
	if b.cfg.LocalUsername != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(b.cfg.LocalUsername)
		if b.cfg.LocalPassword != "" {
			pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(b.cfg.LocalPassword)
		}
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := local.write(pk); err != nil {
		local.close()
		return nil, nil, err
	}
	ack, err := local.read()
	if err != nil {
		local.close()
		return nil, nil, fmt.Errorf("read connack: %w", err)
	}
	if ack.FixedHeader.Type != packets.Connack || ack.ReasonCode != 0 {
		local.close()
		return nil, nil, fmt.Errorf("local broker refused the bridge (reason %#x)", ack.ReasonCode)
	}
	var filters packets.Subscriptions
	for _, t := range b.cfg.Topics {
		if t.Direction != In {
			filters = append(filters, packets.Subscription{Filter: t.LocalFilter(), Qos: t.QoS, NoLocal: true,
				RetainAsPublished: true, RetainHandling: 1})
		}
	}
	if len(filters) > 0 {
		id := b.localIDs.next()
		err := local.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: id, Filters: filters})
		// prime waits for the SUBACK; a resumed session's messages may
		// come first: they are left unacknowledged (the broker sends them
		// again on the next connection). The session loop takes the SUBACK
		// with the rest.
		for err == nil && waitSuback {
			var pk *packets.Packet
			if pk, err = local.read(); err == nil && pk.FixedHeader.Type == packets.Suback {
				break
			}
		}
		b.localIDs.free(id)
		if err != nil {
			local.close()
			return nil, nil, fmt.Errorf("subscribe: %w", err)
		}
	}
	_ = c.SetDeadline(time.Time{})
	return local, ack, nil
}

// remoteCaps is what the remote's CONNACK allows.
type remoteCaps struct {
	receiveMax uint16
	maxQoS     byte
	retain     bool
	maxPacket  uint32
	keepalive  time.Duration
}

// connectRemote dials addr and runs the CONNECT exchange, the
// notification and the subscriptions.
func (b *Bridge) connectRemote(c net.Conn) (*conn, remoteCaps, error) {
	// MQTT 3.1.1 has no Receive Maximum: the local in-flight window
	// bounds what is in flight.
	caps := remoteCaps{receiveMax: 65535, maxQoS: 2, retain: true, keepalive: b.cfg.Keepalive}
	v := b.cfg.ProtocolVersion
	remote := newConn(c, v)
	remote.maxIn = b.cfg.MaxPacketSize
	pk := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: v}
	pk.Connect = packets.ConnectParams{ProtocolName: []byte("MQTT"), ClientIdentifier: b.cfg.RemoteClientID,
		Clean: b.cfg.CleanSession, Keepalive: uint16(b.cfg.Keepalive / time.Second)}
	if v == 3 {
		pk.Connect.ProtocolName = []byte("MQIsdp")
	}
	if v < 5 && b.cfg.TryPrivate {
		pk.ProtocolVersion |= 0x80 // mosquitto's bridge bit
	}
	if v == 5 {
		pk.Properties.ReceiveMaximum = 20
		if b.cfg.MaxPacketSize > 0 {
			pk.Properties.MaximumPacketSize = uint32(b.cfg.MaxPacketSize)
		}
	}
	if b.cfg.RemoteUsername != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(b.cfg.RemoteUsername)
		if b.cfg.RemotePassword != "" {
			pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(b.cfg.RemotePassword)
		}
	}
	remoteNotify := b.cfg.Notifications && !b.cfg.NotificationsLocalOnly
	if remoteNotify {
		pk.Connect.WillFlag, pk.Connect.WillTopic, pk.Connect.WillPayload = true, b.cfg.StateTopic(), []byte("0")
		pk.Connect.WillQos, pk.Connect.WillRetain = 1, true
	}
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	fail := func(err error) (*conn, remoteCaps, error) {
		remote.close()
		return nil, caps, err
	}
	if err := remote.write(pk); err != nil {
		return fail(err)
	}
	ack, err := remote.read()
	if err != nil {
		return fail(fmt.Errorf("read connack: %w", err))
	}
	if ack.FixedHeader.Type != packets.Connack {
		return fail(fmt.Errorf("expected CONNACK, got packet type %d", ack.FixedHeader.Type))
	}
	if ack.ReasonCode != 0 {
		return fail(fmt.Errorf("connection refused by the remote broker (reason %#x)", ack.ReasonCode))
	}
	_ = c.SetDeadline(time.Time{})
	if v == 5 {
		p := ack.Properties
		if p.ReceiveMaximum > 0 {
			caps.receiveMax = p.ReceiveMaximum
		} else {
			caps.receiveMax = 65535
		}
		if p.MaximumQosFlag {
			caps.maxQoS = p.MaximumQos
		}
		if p.RetainAvailableFlag && p.RetainAvailable == 0 {
			caps.retain = false
		}
		caps.maxPacket = p.MaximumPacketSize
		if p.ServerKeepAliveFlag {
			caps.keepalive = time.Duration(p.ServerKeepAlive) * time.Second
		}
	}
	if remoteNotify {
		id := b.remoteIDs.next()
		b.remoteIDs.free(id) // its PUBACK is not waited for
		n := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: min(1, caps.maxQoS), Retain: caps.retain},
			TopicName: b.cfg.StateTopic(), Payload: []byte("1")}
		if n.FixedHeader.Qos > 0 {
			n.PacketID = id
		}
		if err := remote.write(n); err != nil {
			return fail(err)
		}
	}
	for _, t := range b.cfg.Topics {
		var err error
		if t.Direction == Out {
			if !b.cfg.AttemptUnsub {
				continue
			}
			id := b.remoteIDs.next()
			b.remoteIDs.free(id)
			err = remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe}, PacketID: id,
				Filters: packets.Subscriptions{{Filter: t.RemoteFilter()}}})
		} else {
			id := b.remoteIDs.next()
			b.remoteIDs.free(id)
			s := packets.Subscription{Filter: t.RemoteFilter(), Qos: t.QoS}
			if v == 5 {
				s.NoLocal, s.RetainAsPublished = true, true
			}
			err = remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe}, PacketID: id,
				Filters: packets.Subscriptions{s}})
		}
		if err != nil {
			return fail(err)
		}
	}
	for _, id := range b.pending.order {
		m := b.pending.byID[id]
		var err error
		if m.released {
			err = remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: id})
		} else {
			m.pk.FixedHeader.Dup = true
			err = remote.write(m.pk)
		}
		if err != nil {
			return fail(err)
		}
	}
	return remote, caps, nil
}

// read delivers the packets of one connection to the session loop.
type readResult struct {
	pk  *packets.Packet
	err error
}

func reader(c *conn, out chan<- readResult, stop <-chan struct{}) {
	for {
		pk, err := c.read()
		select {
		case out <- readResult{pk, err}:
		case <-stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// outMsg is a message on its way to the remote, by remote packet id. It
// outlives a connection: like mosquitto, the bridge sends what the remote
// has not acknowledged again after a reconnect, with the same packet id
// and DUP set (or the PUBREL of a QoS 2 message the remote has received).
type outMsg struct {
	pk       *packets.Packet // as sent to the remote
	localID  uint16
	localQoS byte // 0: nothing to acknowledge locally
	acked    bool // acknowledged locally (QoS 2 after PUBREC)
	released bool // PUBREC received, PUBREL sent
}

// outs are the messages the remote has not acknowledged, in order.
type outs struct {
	byID    map[uint16]*outMsg
	order   []uint16
	byLocal map[uint16]uint16 // local packet id -> remote packet id
}

func (o *outs) add(id uint16, m *outMsg) {
	if o.byID == nil {
		o.byID, o.byLocal = map[uint16]*outMsg{}, map[uint16]uint16{}
	}
	o.byID[id] = m
	o.order = append(o.order, id)
	if m.localQoS > 0 {
		o.byLocal[m.localID] = id
	}
}

func (o *outs) remove(id uint16) {
	m, ok := o.byID[id]
	if !ok {
		return
	}
	delete(o.byID, id)
	if m.localQoS > 0 && o.byLocal[m.localID] == id {
		delete(o.byLocal, m.localID)
	}
	for i, x := range o.order {
		if x == id {
			o.order = append(o.order[:i], o.order[i+1:]...)
			break
		}
	}
}

// forgetLocal drops every local acknowledgement still owed: the local
// session is new, the packet ids belong to the old one.
func (o *outs) forgetLocal() {
	for _, m := range o.byID {
		m.localQoS = 0
	}
	clear(o.byLocal)
}

// inMsg is a message on its way to the local broker, by local packet id.
type inMsg struct {
	remoteID  uint16
	remoteQoS byte
}

// session runs one connection to the remote: it returns whether the
// bridge was up (both connections established) and why it ended.
func (b *Bridge) session(ctx context.Context, addr Address) (up bool, err error) {
	b.address.Store(addr.String())
	rc, err := b.dialRemote(ctx, addr)
	if err != nil {
		return false, err
	}
	// The local side connects first, so that from the moment the remote
	// accepts the bridge, messages published locally flow to it (QoS 0
	// ones too: they are not queued for an offline session). What comes
	// meanwhile waits in the connection.
	b.localIDs.reset()
	local, lack, err := b.connectLocal(20, false)
	if err != nil {
		rc.Close()
		return false, fmt.Errorf("local connection: %w", err)
	}
	defer local.close()
	if !lack.SessionPresent {
		b.pending.forgetLocal()
	}
	stop := make(chan struct{})
	defer close(stop)
	lch := make(chan readResult, 16)
	go reader(local, lch, stop)
	// Stop during the handshake: closing the connection ends its reads.
	stopClose := context.AfterFunc(ctx, func() { _ = rc.Close() })
	remote, caps, err := b.connectRemote(rc)
	if !stopClose() {
		if err == nil {
			remote.close()
		}
		return false, ctx.Err()
	}
	if err != nil {
		return false, err
	}
	defer func() {
		if errors.Is(err, errProtocol) {
			if tc, ok := rc.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // reset, as mosquitto on a protocol error
			}
		}
		remote.close()
	}()
	b.connected.Store(true)
	b.notifyLocal(true)
	b.log.Info("bridge connected", "address", addr.String())
	defer func() {
		b.connected.Store(false)
		b.notifyLocal(false)
	}()

	rch := make(chan readResult, 16)
	go reader(remote, rch, stop)

	ping := caps.keepalive
	if ping <= 0 {
		ping = time.Hour
	}
	localPing := time.Hour
	if lack.Properties.ServerKeepAliveFlag && lack.Properties.ServerKeepAlive > 0 {
		localPing = time.Duration(lack.Properties.ServerKeepAlive) * time.Second / 2
	}
	remoteTick, localTick := time.NewTicker(ping), time.NewTicker(localPing)
	defer remoteTick.Stop()
	defer localTick.Stop()
	lastRemote := time.Now()

	outs := &b.pending
	ins := map[uint16]*inMsg{}      // by local packet id
	inByRemote := map[uint16]bool{} // remote ids being delivered locally
	inRel := map[uint16]bool{}      // remote QoS 2 ids waiting for PUBREL

	ackLocal := func(id uint16, qos byte) error {
		switch qos {
		case 1:
			return local.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
		case 2:
			return local.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: id})
		}
		return nil
	}
	ackRemote := func(id uint16, qos byte) error {
		switch qos {
		case 1:
			return remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id})
		case 2:
			inRel[id] = true
			return remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrec}, PacketID: id})
		}
		return nil
	}

	// held are local messages waiting for room under the remote's
	// Receive Maximum, in order.
	var held []*packets.Packet
	sendHeld := func() error {
		for len(held) > 0 && len(outs.byID) < int(caps.receiveMax) {
			pk := held[0]
			held = held[1:]
			if err := b.toRemote(pk, remote, caps, outs, ackLocal); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		var err error
		select {
		case <-ctx.Done():
			b.goodbye(remote, local)
			return true, ctx.Err()
		case <-remoteTick.C:
			if time.Since(lastRemote) > 2*ping {
				return true, errors.New("remote broker did not answer PINGREQ")
			}
			err = remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		case <-localTick.C:
			err = local.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		case r := <-rch:
			if r.err != nil {
				return true, fmt.Errorf("remote: %w", r.err)
			}
			lastRemote = time.Now()
			pk := r.pk
			b.log.Debug("bridge received from remote", "packet", pk.FixedHeader.Type, "id", pk.PacketID, "topic", pk.TopicName)
			switch pk.FixedHeader.Type {
			case packets.Publish:
				err = b.fromRemote(pk, local, ins, inByRemote, inRel, ackRemote)
			case packets.Puback, packets.Pubcomp:
				if o, ok := outs.byID[pk.PacketID]; ok {
					outs.remove(pk.PacketID)
					b.remoteIDs.free(pk.PacketID)
					if !o.acked {
						err = ackLocal(o.localID, o.localQoS)
					}
					if err == nil {
						err = sendHeld()
					}
				}
			case packets.Pubrec:
				o, ok := outs.byID[pk.PacketID]
				if pk.ReasonCode >= 0x80 {
					if ok {
						outs.remove(pk.PacketID)
						b.remoteIDs.free(pk.PacketID)
						b.log.Warn("remote broker refused a message", "reason", fmt.Sprintf("%#x", pk.ReasonCode))
						err = ackLocal(o.localID, o.localQoS)
						if err == nil {
							err = sendHeld()
						}
					}
					break
				}
				err = remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: pk.PacketID})
				if ok {
					o.released = true
				}
				if err == nil && ok && !o.acked {
					o.acked = true
					err = ackLocal(o.localID, o.localQoS)
				}
			case packets.Pubrel:
				delete(inRel, pk.PacketID)
				err = remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: pk.PacketID})
			case packets.Suback:
				for _, rc := range pk.ReasonCodes {
					if rc >= 0x80 {
						b.log.Warn("remote broker refused a bridge subscription", "reason", fmt.Sprintf("%#x", rc))
					}
				}
			case packets.Pingreq:
				err = remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingresp}})
			case packets.Disconnect:
				return true, fmt.Errorf("remote broker disconnected the bridge (reason %#x)", pk.ReasonCode)
			}
		case r := <-lch:
			if r.err != nil {
				return true, fmt.Errorf("local: %w", r.err)
			}
			pk := r.pk
			b.log.Debug("bridge received from local", "packet", pk.FixedHeader.Type, "id", pk.PacketID, "topic", pk.TopicName)
			switch pk.FixedHeader.Type {
			case packets.Publish:
				if pk.FixedHeader.Qos > 0 && caps.maxQoS > 0 && (len(held) > 0 || len(outs.byID) >= int(caps.receiveMax)) {
					held = append(held, pk) // the remote's Receive Maximum is reached
				} else {
					err = b.toRemote(pk, remote, caps, outs, ackLocal)
				}
			case packets.Pubrel:
				err = local.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubcomp}, PacketID: pk.PacketID})
			case packets.Puback, packets.Pubrec:
				in, ok := ins[pk.PacketID]
				if !ok {
					break
				}
				if pk.ReasonCode >= 0x80 {
					b.log.Info("local broker refused a bridged message", "reason", fmt.Sprintf("%#x", pk.ReasonCode))
				}
				if pk.FixedHeader.Type == packets.Pubrec && pk.ReasonCode < 0x80 {
					err = local.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel}, PacketID: pk.PacketID})
				} else {
					delete(ins, pk.PacketID)
					b.localIDs.free(pk.PacketID)
				}
				delete(inByRemote, in.remoteID)
				if err == nil {
					err = ackRemote(in.remoteID, in.remoteQoS)
				}
			case packets.Pubcomp:
				delete(ins, pk.PacketID)
				b.localIDs.free(pk.PacketID)
			case packets.Disconnect:
				return true, fmt.Errorf("local broker disconnected the bridge (reason %#x)", pk.ReasonCode)
			}
		}
		if err != nil {
			return true, err
		}
	}
}

// goodbye ends both connections on Stop. The remote gets the will (the
// "0" notification) with an MQTT 5 DISCONNECT 0x04, or the "0" itself
// before an MQTT 3.1.1 DISCONNECT.
func (b *Bridge) goodbye(remote, local *conn) {
	_ = local.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}})
	d := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}}
	if b.cfg.Notifications && !b.cfg.NotificationsLocalOnly {
		if b.cfg.ProtocolVersion == 5 {
			d.ReasonCode = 0x04
		} else {
			_ = remote.write(&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Retain: true},
				TopicName: b.cfg.StateTopic(), Payload: []byte("0")})
		}
	}
	_ = remote.write(d)
}

// errProtocol is a protocol violation by the remote broker.
var errProtocol = errors.New("protocol error")

// forwardProps returns the properties of a message to pass on: all but
// those that belong to one connection (topic alias, subscription ids).
func forwardProps(p packets.Properties) packets.Properties {
	q := p.Copy(false)
	q.TopicAlias, q.TopicAliasFlag = 0, false
	q.SubscriptionIdentifier = nil
	return q
}

// toRemote forwards a message from the local broker.
func (b *Bridge) toRemote(pk *packets.Packet, remote *conn, caps remoteCaps, outs *outs,
	ackLocal func(uint16, byte) error) error {
	if _, ok := outs.byLocal[pk.PacketID]; ok && pk.FixedHeader.Dup && pk.FixedHeader.Qos > 0 {
		return nil // sent again to the remote already (resendPending)
	}
	topic, ok := "", false
	for _, t := range b.cfg.Topics {
		if t.Direction == In {
			continue
		}
		if topic, ok = t.ToRemote(pk.TopicName); ok {
			break
		}
	}
	if !ok {
		return ackLocal(pk.PacketID, pk.FixedHeader.Qos)
	}
	qos := min(pk.FixedHeader.Qos, caps.maxQoS)
	out := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos,
		Retain: pk.FixedHeader.Retain && b.cfg.OutgoingRetain && caps.retain},
		TopicName: topic, Payload: pk.Payload, Mods: packets.Mods{AllowResponseInfo: true}}
	if remote.version == 5 {
		out.Properties = forwardProps(pk.Properties)
	}
	if caps.maxPacket > 0 && len(pk.Payload)+len(topic)+4 > int(caps.maxPacket) {
		b.log.Warn("message too large for the remote broker, dropped", "topic", topic, "bytes", len(pk.Payload))
		return ackLocal(pk.PacketID, pk.FixedHeader.Qos)
	}
	if qos > 0 {
		out.PacketID = b.remoteIDs.next()
		outs.add(out.PacketID, &outMsg{pk: out, localID: pk.PacketID, localQoS: pk.FixedHeader.Qos})
	}
	if err := remote.write(out); err != nil {
		return err
	}
	b.sent.Add(1)
	if qos == 0 {
		return ackLocal(pk.PacketID, pk.FixedHeader.Qos)
	}
	return nil
}

// fromRemote forwards a message from the remote broker.
func (b *Bridge) fromRemote(pk *packets.Packet, local *conn, ins map[uint16]*inMsg, inByRemote, inRel map[uint16]bool,
	ackRemote func(uint16, byte) error) error {
	q := pk.FixedHeader.Qos
	if pk.TopicName == "" || strings.ContainsAny(pk.TopicName, "+#") {
		return fmt.Errorf("%w: PUBLISH to %q", errProtocol, pk.TopicName)
	}
	if q == 2 && inRel[pk.PacketID] {
		// A resent QoS 2 message already delivered: acknowledge again.
		return ackRemote(pk.PacketID, 2)
	}
	if q > 0 && inByRemote[pk.PacketID] {
		return nil // being delivered
	}
	if pk.Ignore {
		b.log.Warn("message from the remote broker larger than bridge_max_packet_size, dropped", "topic", pk.TopicName, "bytes", len(pk.Payload))
		return ackRemote(pk.PacketID, q)
	}
	topic, ok := "", false
	for _, t := range b.cfg.Topics {
		if t.Direction == Out {
			continue
		}
		if topic, ok = t.ToLocal(pk.TopicName); ok {
			break
		}
	}
	if !ok {
		return ackRemote(pk.PacketID, q)
	}
	lp := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: q, Retain: pk.FixedHeader.Retain},
		TopicName: topic, Payload: pk.Payload, Mods: packets.Mods{AllowResponseInfo: true}}
	if local.version == 5 && pk.ProtocolVersion == 5 {
		lp.Properties = forwardProps(pk.Properties)
	}
	if q > 0 {
		lp.PacketID = b.localIDs.next()
		ins[lp.PacketID] = &inMsg{remoteID: pk.PacketID, remoteQoS: q}
		inByRemote[pk.PacketID] = true
	}
	if err := local.write(lp); err != nil {
		return err
	}
	b.received.Add(1)
	return nil
}

// clientTLS builds the TLS configuration of bridge_cafile, bridge_capath,
// bridge_certfile/bridge_keyfile, bridge_insecure and bridge_tls_version.
func clientTLS(cfg *Config) (*tls.Config, error) {
	pool := x509.NewCertPool()
	n := 0
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("bridge_cafile: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("bridge_cafile %s: no PEM certificate in it", cfg.CAFile)
		}
		n++
	}
	if cfg.CAPath != "" {
		entries, err := os.ReadDir(cfg.CAPath)
		if err != nil {
			return nil, fmt.Errorf("bridge_capath: %w", err)
		}
		for _, e := range entries {
			if e.IsDir() {
				continue
			}
			pem, err := os.ReadFile(filepath.Join(cfg.CAPath, e.Name()))
			if err == nil && pool.AppendCertsFromPEM(pem) {
				n++
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("bridge_capath %s: no PEM certificate in it", cfg.CAPath)
		}
	}
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if v, ok := tlsfiles.TLSVersion(cfg.TLSVersion); ok {
		tc.MinVersion = v
	}
	if cfg.ALPN != "" {
		tc.NextProtos = []string{cfg.ALPN}
	}
	if cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("bridge_certfile/bridge_keyfile: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	if cfg.Insecure {
		// bridge_insecure: the chain is still verified, the host name is
		// not (mosquitto's meaning).
		tc.InsecureSkipVerify = true
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("no server certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
			return err
		}
	}
	return tc, nil
}
