// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// MaxPendingBytes is how many bytes the broker holds for a client that
// does not read them fast enough, beyond what the operating system
// buffers, before it disconnects the client as a slow consumer. A single
// packet larger than this is still sent, alone. QoS 0 messages routed by
// the engine (engine.go) never take a client past it: their publishers
// wait once half of it is pending (see asyncConn.waitRoom), and the
// broker's own are not sent then (asyncConn.tryRoom).
const MaxPendingBytes = 8 << 20

// DefaultSlowConsumerTimeout is how long a client with a full queue may
// take no data at all before it is disconnected as a slow consumer, when
// Config.SlowConsumerTimeout is zero.
const DefaultSlowConsumerTimeout = 5 * time.Second

// writeChunk bounds one socket write, so that progress of a slow reader
// is seen at least every writeChunk bytes.
const writeChunk = 256 << 10

// closeLinger bounds how long a closed connection may take to send the
// bytes still pending (a refusing CONNACK, a DISCONNECT) before it is cut.
const closeLinger = 2 * time.Second

// ErrSlowConsumer is why a client that does not read its messages is
// disconnected.
var ErrSlowConsumer = errors.New("slow consumer: client does not read its messages")

// asyncConn makes writes to a client never block the broker, and lets
// publishers of QoS 0 messages wait, bounded, for a slow reader.
//
// mochi writes to a client while holding that client's lock, and takes
// the same lock to pick a packet identifier for every QoS 1 and 2 message
// sent to it. A subscriber that stops reading fills its socket buffers,
// the write blocks, and from then on every publisher of a QoS 1 or 2
// message on a topic it subscribes to blocks too, forever when the
// subscriber's keep-alive is 0: one client can freeze everyone. Here,
// Write only appends to a buffer, which a goroutine (started on demand,
// gone when the buffer is empty) drains to the socket. A client whose
// buffer grows past MaxPendingBytes is disconnected with a log line; its
// unacknowledged QoS 1 and 2 messages stay in its session, so a
// persistent session gets them again after it reconnects.
//
// Backpressure: the delivery engine calls waitRoom before it writes a QoS
// 0 message. It returns at once while less than half of MaxPendingBytes
// is pending; beyond that it waits for the socket to take data, so that a
// subscriber that reads slowly slows its publishers down instead of
// losing messages. A client that takes no data at all for the stall
// timeout while its queue is full is disconnected with a log line (and
// counted): it cannot hold its publishers up for longer than that. The
// broker's own messages ($SYS, Broker.Publish) never wait: tryRoom.
type asyncConn struct {
	net.Conn
	max    int
	soft   int           // waitRoom waits while this many bytes are pending
	stall  time.Duration // see waitRoom
	log    *slog.Logger
	closed func() // called once, when the socket is closed
	slow   func() // called when the client is cut as a slow consumer (nil: none)
	waited func() // called each time waitRoom has to wait (nil: none)

	mu       sync.Mutex
	buf      []byte
	spare    []byte
	flushing bool // a flush goroutine is running
	held     int  // > 0: bytes from buf[holdAt] on stay until release (see hold)
	holdAt   int
	closing  bool   // Close was called or the connection failed
	reserved int    // bytes waitRoom let through that are not written yet
	tickets  uint64 // waitRoom calls so far: each one's place in line
	serving  uint64 // the place in line waitRoom lets through next
	err      error  // sticky write error
	once     sync.Once

	progressAt time.Time     // the flush started or last completed a socket write
	progress   chan struct{} // closed at the next progress or failure; nil: nobody waits
}

func newAsyncConn(c net.Conn, max int, log *slog.Logger, closed func()) *asyncConn {
	return &asyncConn{Conn: c, max: max, soft: max / 2, stall: DefaultSlowConsumerTimeout, log: log, closed: closed}
}

// wake releases the goroutines in waitRoom (c.mu held).
func (c *asyncConn) wake() {
	if c.progress != nil {
		close(c.progress)
		c.progress = nil
	}
}

// startFlush starts the flush goroutine (c.mu held).
func (c *asyncConn) startFlush() {
	c.flushing = true
	c.progressAt = time.Now()
	c.wake() // a waitRoom that waited for a hold to end
	go c.flush()
}

// cutSlow disconnects the client as a slow consumer (c.mu held).
func (c *asyncConn) cutSlow(why string) {
	c.err = fmt.Errorf("%w (%d bytes waiting, %s)", ErrSlowConsumer, len(c.buf), why)
	c.log.Warn("disconnecting slow consumer", "remote", c.RemoteAddr().String(), "pending_bytes", len(c.buf), "reason", why)
	c.closing = true
	c.buf = nil
	c.wake()
	if c.slow != nil {
		c.slow()
	}
	c.closeSocket() // a flush blocked in Write fails at once
}

// waitRoom returns once there is room for a write of about n bytes: at
// once in the common case. Room means that the pending bytes, plus those
// that other writers were let through for and have not written yet, plus
// n, stay within c.soft, or that nothing at all is pending; what it lets
// through it reserves until the caller's unreserve(n). So that any number
// of writers woken together cannot take the queue past c.max (2*c.soft)
// and have the client cut although it reads. While the socket takes no
// data for c.stall with bytes queued, the client is cut as a slow
// consumer. Writers are let through in the order they came, so that a
// large message is not starved by a stream of small ones. The error is
// the connection's: it is failed or closing (then nothing is reserved).
func (c *asyncConn) waitRoom(n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	ticket := c.tickets
	c.tickets++
	for {
		if err := c.broken(); err != nil {
			return err
		}
		if ticket == c.serving && c.fits(n) {
			c.serving++
			c.reserved += n
			if c.serving != c.tickets {
				c.wake() // the next writer in line may fit too
			}
			return nil
		}
		left := c.stall - time.Since(c.progressAt)
		if !c.flushing {
			switch {
			case c.held > 0:
				// Held (hold): the flush starts at the release,
				// which is not the client's doing; the clock starts then.
				c.progressAt = time.Now()
			case len(c.buf) > 0:
				// Nothing drains the buffer (cannot happen while it is
				// full, but never wait for nothing).
				c.startFlush()
			}
			// Otherwise only other writers' reservations are in the way:
			// unreserve wakes this one; the client is not cut for them.
			left = c.stall
		}
		if left <= 0 {
			c.cutSlow(fmt.Sprintf("took no data for %s", c.stall))
			continue
		}
		if c.progress == nil {
			c.progress = make(chan struct{})
		}
		ch := c.progress
		if timer == nil && c.waited != nil {
			c.waited()
		}
		if timer == nil {
			timer = time.NewTimer(left)
		} else {
			timer.Reset(left)
		}
		c.mu.Unlock()
		select {
		case <-ch:
		case <-timer.C:
		}
		c.mu.Lock()
	}
}

// tryRoom is waitRoom for writers that must never wait (the broker's own
// messages: $SYS, Broker.Publish): it reserves room for about n bytes and
// reports true when waitRoom would let it through at once by size (fits);
// otherwise it reports false at once. It takes no place in waitRoom's
// line. The error is the connection's: it is failed or closing (then
// nothing is reserved).
func (c *asyncConn) tryRoom(n int) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.broken(); err != nil {
		return false, err
	}
	if c.fits(n) {
		c.reserved += n
		return true, nil
	}
	return false, nil
}

// fits is the size rule of waitRoom and tryRoom: the pending bytes, plus
// those reserved, plus n stay within c.soft, or nothing at all is pending
// (c.mu held).
func (c *asyncConn) fits(n int) bool {
	pending := len(c.buf) + c.reserved
	return pending == 0 || pending+n <= c.soft
}

// broken is the error of a connection that failed (sticky: every later
// writer gets it too) or is closing, nil otherwise (c.mu held).
func (c *asyncConn) broken() error {
	switch {
	case c.err != nil:
		return c.err
	case c.closing:
		return net.ErrClosed
	}
	return nil
}

// unreserve ends the reservation of a successful waitRoom(n) or
// tryRoom(n), once its bytes are written (or not written after all).
func (c *asyncConn) unreserve(n int) {
	c.mu.Lock()
	c.reserved -= n
	c.wake()
	c.mu.Unlock()
}

// Write queues p for the client and returns at once.
func (c *asyncConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.broken(); err != nil {
		return 0, err
	}
	if len(c.buf) > 0 && len(c.buf)+len(p) > c.max {
		c.cutSlow(fmt.Sprintf("more than %d bytes pending", c.max))
		return 0, c.err
	}
	if c.buf == nil && len(p) <= bufSize {
		c.buf = getBuf()[:0]
	}
	c.buf = append(c.buf, p...)
	if !c.flushing && (c.held == 0 || c.holdAt > 0) {
		c.startFlush()
	}
	return len(p), nil
}

// hold keeps what is written from now on in the buffer until release;
// what was written before still goes out, even while a flush is running.
// Tests use it to stall a client deterministically (the broker held a
// publisher's acknowledgement with it until the delivery engine made
// routing come before the acknowledgement).
func (c *asyncConn) hold() {
	c.mu.Lock()
	if c.held == 0 {
		c.holdAt = len(c.buf)
	}
	c.held++
	c.mu.Unlock()
}

// release ends a hold and sends what was kept.
func (c *asyncConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held > 0 {
		c.held--
	}
	if c.held == 0 && !c.flushing && len(c.buf) > 0 && !c.closing && c.err == nil {
		c.startFlush()
	}
}

// flush writes the buffer to the socket until it is empty.
func (c *asyncConn) flush() {
	for {
		c.mu.Lock()
		n := len(c.buf)
		if c.held > 0 {
			n = c.holdAt
		}
		if n == 0 || c.err != nil {
			c.flushing = false
			// Nothing left to write: the buffers go back to the pool
			// (an idle connection holds none).
			if len(c.buf) == 0 {
				putBuf(c.buf)
				c.buf = nil
			}
			putBuf(c.spare)
			c.spare = nil
			// Closing with held bytes: they are not sent (the publisher
			// sends its message again).
			closing := c.closing
			c.mu.Unlock()
			if closing {
				c.closeSocket()
			}
			return
		}
		out := c.buf[:n] // c.buf gets another array: out is the flush's alone
		c.buf = append(c.spare[:0], c.buf[n:]...)
		c.spare = nil
		if c.held > 0 {
			c.holdAt = 0
		}
		c.mu.Unlock()

		var err error
		for off := 0; off < len(out) && err == nil; {
			end := min(off+writeChunk, len(out))
			_, err = c.Conn.Write(out[off:end])
			off = end
			if end < len(out) {
				c.mu.Lock()
				c.progressAt = time.Now()
				c.wake()
				c.mu.Unlock()
			}
		}

		c.mu.Lock()
		c.progressAt = time.Now()
		c.wake()
		if cap(out) <= 64<<10 { // keep small buffers, let big ones go
			putBuf(c.spare)
			c.spare = out[:0]
		}
		if err != nil && c.err == nil {
			c.err = err
			c.closing = true
			c.buf = nil
		}
		c.mu.Unlock()
	}
}

// Close closes the connection once the pending bytes are sent, within
// closeLinger; reads fail at once.
func (c *asyncConn) Close() error {
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil
	}
	c.closing = true
	c.wake()
	if c.flushing {
		_ = c.Conn.SetWriteDeadline(time.Now().Add(closeLinger))
		_ = c.Conn.SetReadDeadline(time.Now())
		c.mu.Unlock()
		return nil // the flush goroutine closes the socket
	}
	c.mu.Unlock()
	c.closeSocket()
	return nil
}

func (c *asyncConn) closeSocket() {
	c.once.Do(func() {
		_ = c.Conn.Close()
		if c.closed != nil {
			c.closed()
		}
	})
}

// SetDeadline sets the read and write deadlines, unless the connection is
// closing: then only the linger deadline applies.
func (c *asyncConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

// SetWriteDeadline sets the deadline of socket writes, unless closing.
// A deadline already past while bytes are still queued becomes
// closeLinger from now: crypto/tls sets one right after its close_notify
// alert ("later writes fail"), and on the socket it cut the bytes queued
// before the alert, so a refused TLS client saw the connection end
// without its CONNACK.
func (c *asyncConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil
	}
	if !t.IsZero() && !t.After(time.Now()) && (c.flushing || len(c.buf) > 0) {
		t = time.Now().Add(closeLinger)
	}
	return c.Conn.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline, unless closing.
func (c *asyncConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}
