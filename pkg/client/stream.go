// SPDX-License-Identifier: Apache-2.0

package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"
)

// StreamOptions configure a Stream.
type StreamOptions struct {
	// MaxInflight is the most QoS 1/2 messages awaiting acknowledgement at
	// once (mosquitto_pub -M); 0 means 20. The broker's receive maximum
	// lowers it further.
	MaxInflight int
	// Reconnect makes the stream survive a lost connection: it reconnects
	// (forever, until Close or Abort) and resends every QoS 1/2 message the
	// broker had not acknowledged. Without it a lost connection ends the
	// stream with a *ConnectionLostError.
	Reconnect bool
	// ReconnectDelay is the longest wait between two reconnect attempts; 0
	// means 1 s (libmosquitto's). The first attempt is immediate and the
	// waits double from 50 ms up to this.
	ReconnectDelay time.Duration
	// Disconnect holds the MQTT 5 properties of the final DISCONNECT.
	Disconnect *DisconnectProperties
}

// PublishFailure is a message the broker refused: an MQTT 5 PUBACK or
// PUBREC with a reason code of 128 or more.
type PublishFailure struct {
	MID uint16 // packet identifier, as mosquitto_pub prints it
	Seq uint64 // 1-based position of the message in the stream
	Err *PublishError
}

// PacketTooLargeError is a message that does not fit the broker's maximum
// packet size (MQTT 5 CONNACK) or MQTT's absolute limit. Nothing was sent.
type PacketTooLargeError struct {
	Size int // bytes the PUBLISH packet would take
	Max  int // the limit
}

func (e *PacketTooLargeError) Error() string {
	return fmt.Sprintf("message too large: the PUBLISH packet would be %d bytes, the broker accepts at most %d", e.Size, e.Max)
}

// ErrQoSNotSupported is a publish at a QoS above the broker's maximum QoS.
var ErrQoSNotSupported = errors.New("Message QoS not supported on broker, try a lower QoS.")

// ErrStreamClosed is returned by Publish after Close or Abort.
var ErrStreamClosed = errors.New("stream closed")

// ConnectionLostError ends a stream that may not reconnect.
type ConnectionLostError struct{ Err error }

func (e *ConnectionLostError) Error() string {
	var de *DisconnectError
	if errors.As(e.Err, &de) {
		return "The connection was lost: " + de.Error()
	}
	return "The connection was lost (" + e.Err.Error() + ")."
}

// Unwrap returns ErrNotConnected and the cause.
func (e *ConnectionLostError) Unwrap() []error { return []error{ErrNotConnected, e.Err} }

// maxPending bounds the bytes queued for the writer: a producer faster
// than the network waits instead of growing memory.
const maxPending = 256 << 10

// Stream publishes messages in order over one connection to a broker. It
// batches writes, keeps up to MaxInflight QoS 1/2 messages unacknowledged
// (not one round trip per message) and, with Reconnect, survives broker
// restarts without losing a QoS 1/2 message. It is the engine of
// `mqtt pub`; it speaks MQTT 3.1, 3.1.1 and 5 itself over the transport
// of dialConn, so that it can do all three.
//
// Publish, Flush, Close and Abort may be called from one goroutine at a time.
type Stream struct {
	cfg  *Config
	opts StreamOptions
	log  *slog.Logger

	ctx    context.Context // ends background work on Close/Abort
	cancel context.CancelFunc
	wg     sync.WaitGroup
	lostCh chan struct{} // wakes the reconnect loop

	mu        sync.Mutex
	cond      *sync.Cond
	wc        *wireConn // nil while disconnected
	sess      *Session
	fatal     error
	lastErr   error // why the last connection ended
	closing   bool
	seq       uint64
	nextPID   uint16
	inflight  map[uint16]*entry
	failures  []PublishFailure
	out       []byte // encoded packets for the writer
	spare     []byte
	propsP    *Properties // cache of the last encoded property block
	propsB    []byte
	warnedRet bool
}

type entry struct {
	seq uint64
	pid uint16
	m   Message // Payload is the stream's own copy
	rel bool    // PUBREC received, PUBREL sent
}

// wireConn is one network connection of a stream.
type wireConn struct {
	conn    net.Conn
	pr      *packetReader
	sess    *Session
	kick    chan struct{} // wakes the writer
	dead    chan struct{} // closed when the connection is gone
	once    sync.Once
	aliases map[uint16]string
	// stopPinger stops the keep-alive timer that would start the pinger
	// (nil without keep-alive); close calls it.
	stopPinger func()

	// guarded by Stream.mu
	writing     bool
	lastWrite   time.Time
	pingPending bool
	pingSent    time.Time
}

func (wc *wireConn) close() {
	wc.once.Do(func() {
		close(wc.dead)
		_ = wc.conn.Close()
		if wc.stopPinger != nil {
			wc.stopPinger()
		}
	})
}

func (wc *wireConn) wake() {
	select {
	case wc.kick <- struct{}{}:
	default:
	}
}

// OpenStream connects to the broker described by cfg. A refused
// connection is a *ConnectError.
func OpenStream(ctx context.Context, cfg *Config, opts StreamOptions) (*Stream, error) {
	conn, pr, sess, err := handshake(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = 20
	}
	if opts.ReconnectDelay <= 0 {
		opts.ReconnectDelay = time.Second
	}
	s := &Stream{
		cfg:      cfg,
		opts:     opts,
		log:      cfg.logger(),
		lostCh:   make(chan struct{}, 1),
		inflight: make(map[uint16]*entry),
		out:      make([]byte, 0, 64<<10),
		spare:    make([]byte, 0, 64<<10),
	}
	s.cond = sync.NewCond(&s.mu)
	s.ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.mu.Lock()
	s.install(conn, pr, sess)
	s.mu.Unlock()
	if opts.Reconnect {
		s.wg.Add(1)
		go s.reconnectLoop()
	}
	return s, nil
}

// Session returns what the broker announced in its last CONNACK.
func (s *Stream) Session() Session {
	s.mu.Lock()
	defer s.mu.Unlock()
	return *s.sess
}

// install makes conn the stream's connection and resends what the broker
// has not acknowledged. s.mu is held.
func (s *Stream) install(conn net.Conn, pr *packetReader, sess *Session) {
	noDelay(conn)
	wc := &wireConn{conn: conn, pr: pr, sess: sess, kick: make(chan struct{}, 1), dead: make(chan struct{}),
		aliases: map[uint16]string{}, lastWrite: time.Now()}
	s.wc, s.sess = wc, sess
	// Bytes queued for the old connection are gone: QoS 0 messages among
	// them are lost (at most once), QoS 1/2 ones are resent from inflight.
	s.out = s.out[:0]
	if len(s.inflight) > 0 {
		es := make([]*entry, 0, len(s.inflight))
		for _, e := range s.inflight {
			es = append(es, e)
		}
		slices.SortFunc(es, func(a, b *entry) int { return cmp.Compare(a.seq, b.seq) })
		for _, e := range es {
			if e.rel && sess.SessionPresent {
				s.out = append(s.out, pktPubrel<<4|2, 2, byte(e.pid>>8), byte(e.pid))
				continue
			}
			e.rel = false
			s.appendPublish(wc, &e.m, e.pid, sess.SessionPresent)
		}
		s.log.Debug("resending unacknowledged messages", "count", len(es))
	}
	if ka := time.Duration(sess.KeepAlive) * time.Second; ka > 0 {
		// The pinger's first check is due a quarter of the interval from
		// now: a timer starts it then, so that a connection closed before
		// (a one-shot publish) never starts its goroutine and ticker, which
		// cost a thread wake-up and about 20 page faults of a one-shot run.
		// If close stops the timer first, it accounts for the pinger.
		s.wg.Add(1)
		t := time.AfterFunc(ka/4, func() { s.pinger(wc, ka) })
		wc.stopPinger = func() {
			if t.Stop() {
				s.wg.Done()
			}
		}
	}
	s.wg.Add(2)
	go s.reader(wc)
	go s.writer(wc)
	wc.wake()
	s.cond.Broadcast()
}

// noDelay turns Nagle's algorithm off: the writer already sends whatever
// has gathered in one write, and Nagle would hold back the next one until
// the broker's (delayed) ACK, stalling a window of QoS 1 messages.
func noDelay(c net.Conn) {
	for {
		switch t := c.(type) {
		case *net.TCPConn:
			_ = t.SetNoDelay(true)
			return
		case interface{ NetConn() net.Conn }:
			c = t.NetConn()
		default:
			return
		}
	}
}

// window is the number of QoS 1/2 messages allowed in flight. s.mu is held.
func (s *Stream) window() int {
	w := s.opts.MaxInflight
	if s.sess != nil && int(s.sess.ReceiveMaximum) < w {
		w = int(s.sess.ReceiveMaximum)
	}
	return w
}

// encodedProps returns the MQTT 5 property block for p. s.mu is held.
func (s *Stream) encodedProps(p *Properties) []byte {
	if p == nil {
		return nil
	}
	if p != s.propsP {
		s.propsP, s.propsB = p, appendPublishProps(nil, p)
	}
	return s.propsB
}

// appendPublish encodes m for wc into s.out. s.mu is held.
func (s *Stream) appendPublish(wc *wireConn, m *Message, pid uint16, dup bool) {
	v5 := wc.sess.Version == V5
	var props []byte
	topic := m.Topic
	if v5 {
		props = s.encodedProps(m.Props)
		if m.Props != nil && m.Props.TopicAlias != nil {
			// The first PUBLISH on a connection binds the alias; later ones
			// send only the alias (mosquitto does the same).
			a := *m.Props.TopicAlias
			if wc.aliases[a] == topic {
				topic = ""
			} else {
				wc.aliases[a] = topic
			}
		}
	}
	s.out = appendPublish(s.out, v5, topic, pid, m.QoS, m.Retain, dup, props, m.Payload)
}

// Publish queues m, in order after every earlier message. It waits while
// the window of unacknowledged messages is full, while the writer is
// behind, or (with Reconnect) while the stream reconnects. m.Payload is
// copied when needed, so the caller may reuse it after Publish returns.
// A QoS 0 message is done once written; QoS 1 and 2 ones when Flush or
// Close returns. Refused messages are reported by TakeFailures.
func (s *Stream) Publish(ctx context.Context, m *Message) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(m); err != nil {
		return err
	}
	var stop func() bool
	for {
		if s.fatal != nil {
			return s.fatal
		}
		if s.closing {
			return ErrStreamClosed
		}
		if s.wc != nil && len(s.out) < maxPending && (m.QoS == 0 || len(s.inflight) < s.window()) {
			break
		}
		if stop == nil {
			stop = context.AfterFunc(ctx, s.broadcast)
			defer stop()
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		s.cond.Wait()
	}
	// Checked again: a reconnect may have brought other limits.
	if err := s.check(m); err != nil {
		return err
	}
	s.seq++
	wc := s.wc
	retain := m.Retain
	if retain && !wc.sess.RetainAvailable {
		// libmosquitto silently clears the flag; say so once.
		retain = false
		if !s.warnedRet {
			s.warnedRet = true
			s.log.Warn("the broker does not support retained messages; publishing without the retain flag")
		}
	}
	if m.QoS == 0 {
		mm := *m
		mm.Retain = retain
		s.appendPublish(wc, &mm, 0, false)
	} else {
		pid := s.allocPID()
		e := &entry{seq: s.seq, pid: pid, m: Message{Topic: m.Topic, QoS: m.QoS, Retain: retain, Props: m.Props,
			Payload: append([]byte(nil), m.Payload...)}}
		s.inflight[pid] = e
		s.appendPublish(wc, &e.m, pid, false)
	}
	wc.wake()
	return nil
}

// check rejects a message the broker cannot take. s.mu is held.
func (s *Stream) check(m *Message) error {
	if s.sess == nil {
		return nil
	}
	if m.QoS > s.sess.MaximumQoS {
		return ErrQoSNotSupported
	}
	v5 := s.sess.Version == V5
	var np int
	if v5 {
		np = len(s.encodedProps(m.Props))
	}
	size := publishSize(len(m.Topic), np, len(m.Payload), m.QoS, v5)
	limit := MaxPacketSize
	if v5 && s.sess.MaximumPacketSize > 0 && int(s.sess.MaximumPacketSize) < limit {
		limit = int(s.sess.MaximumPacketSize)
	}
	if size > limit {
		return &PacketTooLargeError{Size: size, Max: limit}
	}
	return nil
}

// allocPID returns a free packet identifier. s.mu is held and the window
// guarantees one is free.
func (s *Stream) allocPID() uint16 {
	for {
		s.nextPID++
		if s.nextPID == 0 {
			s.nextPID = 1
		}
		if _, used := s.inflight[s.nextPID]; !used {
			return s.nextPID
		}
	}
}

func (s *Stream) broadcast() {
	s.mu.Lock()
	s.cond.Broadcast()
	s.mu.Unlock()
}

// Flush waits until every message published so far is written (QoS 0) or
// acknowledged (QoS 1 and 2). With Reconnect it waits through reconnects.
func (s *Stream) Flush(ctx context.Context) error {
	stop := context.AfterFunc(ctx, s.broadcast)
	defer stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		if s.fatal != nil {
			return s.fatal
		}
		if s.wc != nil && len(s.out) == 0 && !s.wc.writing && len(s.inflight) == 0 {
			return nil
		}
		if s.wc == nil && s.closing {
			return ErrStreamClosed
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		s.cond.Wait()
	}
}

// TakeFailures returns the messages the broker refused since the last call.
func (s *Stream) TakeFailures() []PublishFailure {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.failures
	s.failures = nil
	return f
}

// Close flushes, sends DISCONNECT (with opts.Disconnect properties) and
// closes the connection. It returns the first error that ended the stream.
func (s *Stream) Close(ctx context.Context) error {
	if err := s.Flush(ctx); err != nil {
		s.Abort()
		return err
	}
	s.mu.Lock()
	s.closing = true
	wc := s.wc
	if wc != nil {
		s.out = append(s.out, encodeDisconnect(wc.sess.Version, 0, s.opts.Disconnect)...)
		wc.wake()
		stop := context.AfterFunc(ctx, s.broadcast)
		for s.wc == wc && (len(s.out) > 0 || wc.writing) && ctx.Err() == nil {
			s.cond.Wait()
		}
		stop()
	}
	s.mu.Unlock()
	if wc != nil {
		// Half-close and let the broker close first: closing a socket with
		// unread input resets it, which can discard what we just sent.
		if cw, ok := wc.conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			t := time.NewTimer(time.Second)
			select {
			case <-wc.dead:
			case <-t.C:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	s.shutdown()
	s.log.Debug("disconnected")
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fatal
}

// Abort closes the connection at once, without DISCONNECT (so the broker
// publishes the will), and stops reconnecting.
func (s *Stream) Abort() {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	s.shutdown()
}

func (s *Stream) shutdown() {
	s.cancel()
	s.mu.Lock()
	wc := s.wc
	s.wc = nil
	s.cond.Broadcast()
	s.mu.Unlock()
	if wc != nil {
		wc.close()
	}
	s.wg.Wait()
}

// lost handles the end of connection wc.
func (s *Stream) lost(wc *wireConn, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wc.close()
	if s.wc != wc {
		return
	}
	s.wc = nil
	s.lastErr = err
	switch {
	case s.closing:
	case !s.opts.Reconnect:
		if s.fatal == nil {
			s.fatal = &ConnectionLostError{Err: err}
		}
	default:
		select {
		case s.lostCh <- struct{}{}:
		default:
		}
	}
	s.cond.Broadcast()
}

func (s *Stream) reconnectLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.lostCh:
		case <-s.ctx.Done():
			return
		}
		s.mu.Lock()
		s.log.Warn("connection lost, reconnecting", "addr", s.cfg.Addr(), "err", s.lastErr, "unacknowledged", len(s.inflight))
		s.mu.Unlock()
		delay := time.Duration(0)
		for attempt := 1; ; attempt++ {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-s.ctx.Done():
				t.Stop()
				return
			}
			conn, pr, sess, err := handshake(s.ctx, s.cfg)
			if err != nil {
				var ce *ConnectError
				if errors.As(err, &ce) {
					s.mu.Lock()
					if s.fatal == nil {
						s.fatal = err
					}
					s.cond.Broadcast()
					s.mu.Unlock()
					return
				}
				s.log.Debug("reconnect failed", "attempt", attempt, "err", err)
				delay = min(max(2*delay, 50*time.Millisecond), s.opts.ReconnectDelay)
				continue
			}
			s.mu.Lock()
			if s.closing {
				s.mu.Unlock()
				conn.Close()
				return
			}
			s.install(conn, pr, sess)
			s.log.Warn("reconnected", "addr", s.cfg.Addr(), "attempts", attempt, "resent", len(s.inflight))
			s.mu.Unlock()
			break
		}
	}
}

// writer moves queued bytes to the connection. While one write is in the
// kernel, new packets gather in s.out, so a fast producer gets large
// writes and a slow one gets each packet sent at once.
func (s *Stream) writer(wc *wireConn) {
	defer s.wg.Done()
	for {
		select {
		case <-wc.kick:
		case <-wc.dead:
			return
		}
		s.mu.Lock()
		for s.wc == wc && len(s.out) > 0 {
			// Two buffers swap between producer and writer; spare is nil
			// while a writer (possibly of an old connection) holds one.
			buf := s.out
			s.out, s.spare = s.spare[:0], nil
			wc.writing = true
			s.mu.Unlock()
			_, err := wc.conn.Write(buf)
			s.mu.Lock()
			wc.writing = false
			if s.spare == nil && cap(buf) <= 4*maxPending {
				s.spare = buf[:0]
			}
			if err != nil {
				s.mu.Unlock()
				s.lost(wc, err)
				return
			}
			wc.lastWrite = time.Now()
			s.cond.Broadcast()
		}
		s.mu.Unlock()
	}
}

// pinger sends PINGREQ when the connection was idle and declares it lost
// when no PINGRESP came back within the keep alive.
func (s *Stream) pinger(wc *wireConn, ka time.Duration) {
	defer s.wg.Done()
	t := time.NewTicker(ka / 4)
	defer t.Stop()
	// Started a quarter of the interval after the connection (see
	// install): check now, then every quarter.
	for now := time.Now(); ; {
		select {
		case <-wc.dead:
			return
		default:
		}
		s.mu.Lock()
		if s.wc != wc {
			s.mu.Unlock()
			return
		}
		if wc.pingPending {
			if now.Sub(wc.pingSent) > ka {
				s.mu.Unlock()
				s.lost(wc, errors.New("keepalive exceeded: no PINGRESP from the broker"))
				return
			}
		} else if now.Sub(wc.lastWrite) >= ka*3/4 {
			s.out = append(s.out, pktPingreq<<4, 0)
			wc.pingPending, wc.pingSent = true, now
			wc.wake()
		}
		s.mu.Unlock()
		select {
		case <-wc.dead:
			return
		case now = <-t.C:
		}
	}
}

// reader handles what the broker sends.
func (s *Stream) reader(wc *wireConn) {
	defer s.wg.Done()
	v5 := wc.sess.Version == V5
	for {
		if wc.pr.r.Buffered() == 0 {
			// Wake the producer once per batch of packets that arrived
			// together (acknowledgements free the window), not per packet.
			s.broadcast()
		}
		first, body, err := wc.pr.read()
		if err != nil {
			s.lost(wc, err)
			return
		}
		switch first >> 4 {
		case pktPuback, pktPubrec, pktPubcomp:
			a, err := decodeAck(v5, body)
			if err != nil {
				s.lost(wc, err)
				return
			}
			s.ack(wc, first>>4, a)
		case pktPingresp:
			s.mu.Lock()
			wc.pingPending = false
			s.mu.Unlock()
		case pktPublish:
			// Only a resumed session (-c) sends us messages; acknowledge
			// them so the broker can let go of them.
			if err := s.ackIncoming(wc, first, body); err != nil {
				s.lost(wc, err)
				return
			}
		case pktPubrel:
			a, err := decodeAck(v5, body)
			if err != nil {
				s.lost(wc, err)
				return
			}
			s.queue(wc, []byte{pktPubcomp << 4, 2, byte(a.pid >> 8), byte(a.pid)})
		case pktDisconnect:
			de := &DisconnectError{}
			if len(body) > 0 {
				de.Code = body[0]
			}
			if len(body) > 1 {
				if p, _, err := readProps(body[1:]); err == nil {
					de.Reason = p.reasonString
				}
			}
			s.lost(wc, de)
			return
		default:
			s.lost(wc, fmt.Errorf("%w: unexpected packet type %d", ErrProtocol, first>>4))
			return
		}
	}
}

func (s *Stream) queue(wc *wireConn, pkt []byte) {
	s.mu.Lock()
	if s.wc == wc {
		s.out = append(s.out, pkt...)
		wc.wake()
	}
	s.mu.Unlock()
}

func (s *Stream) ackIncoming(wc *wireConn, first byte, body []byte) error {
	qos := first >> 1 & 3
	if qos == 0 {
		return nil
	}
	if len(body) < 2 {
		return fmt.Errorf("%w: short PUBLISH", ErrProtocol)
	}
	tl := int(body[0])<<8 | int(body[1])
	if len(body) < 4+tl {
		return fmt.Errorf("%w: short PUBLISH", ErrProtocol)
	}
	pid := body[2+tl : 4+tl]
	typ := byte(pktPuback)
	if qos == 2 {
		typ = pktPubrec
	}
	s.queue(wc, []byte{typ << 4, 2, pid[0], pid[1]})
	return nil
}

// ack handles PUBACK, PUBREC and PUBCOMP.
func (s *Stream) ack(wc *wireConn, typ byte, a ackInfo) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.inflight[a.pid]
	if e == nil {
		return // not ours (or a duplicate): nothing to do
	}
	switch {
	case typ == pktPuback && e.m.QoS == 1, typ == pktPubrec && e.m.QoS == 2 && a.reason >= 0x80:
		delete(s.inflight, a.pid)
		if a.reason >= 0x80 {
			s.failures = append(s.failures, PublishFailure{MID: a.pid, Seq: e.seq, Err: &PublishError{Code: a.reason, Reason: a.text}})
		}
	case typ == pktPubrec && e.m.QoS == 2:
		e.rel = true
		if s.wc == wc {
			s.out = append(s.out, pktPubrel<<4|2, 2, byte(a.pid>>8), byte(a.pid))
			wc.wake()
		}
		return
	case typ == pktPubcomp && e.rel:
		delete(s.inflight, a.pid)
	}
}
