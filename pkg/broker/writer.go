// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
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

// lingerRead and lingerMax bound how long, and how many bytes, a closed
// connection drains of what its client still sends (closeSocket).
const (
	lingerRead = time.Second
	lingerMax  = 1 << 20
)

// ErrSlowConsumer is why a client that does not read its messages is
// disconnected.
var ErrSlowConsumer = errors.New("slow consumer: client does not read its messages")

// asyncConn is our layer on every accepted socket: Write only queues, a
// goroutine (started on demand, gone when the queue is empty) drains the
// queue to the socket, and Close lingers; publishers of QoS 0 messages
// wait, bounded, for a slow reader (waitRoom). Why: docs/design/sockets.md.
type asyncConn struct {
	net.Conn
	max    int
	soft   int           // waitRoom waits while this many bytes are pending
	stall  time.Duration // see waitRoom
	log    *slog.Logger
	closed func() // called once, when the socket is closed
	slow   func() // called when the client is cut as a slow consumer (nil: none)
	waited func() // called each time waitRoom has to wait (nil: none)
	shut   atomic.Bool

	mu       sync.Mutex
	buf      []byte
	spare    []byte
	flushing bool   // a flush goroutine is running
	wrote    bool   // something was written: the close lingers
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

// waitRoom returns once there is room for a write of about n bytes (fits),
// at once in the common case, and reserves it until the caller's
// unreserve(n): writers woken together cannot take the queue past c.max
// and have the client cut although it reads. Writers are let through in
// the order they came, so that a large message is not starved by small
// ones. While the socket takes no data for c.stall with bytes queued, the
// client is cut as a slow consumer. The error is the connection's: it is
// failed or closing (then nothing is reserved).
func (c *asyncConn) waitRoom(n int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	ticket := c.tickets
	c.tickets++
	for waits := 0; ; waits++ {
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
			// Only other writers' reservations are in the way: unreserve
			// wakes this one; the client is not cut for them.
			left = c.stall
		}
		if left <= 0 {
			c.cutSlow(fmt.Sprintf("took no data for %s", c.stall))
			continue
		}
		if waits == 0 && c.waited != nil {
			c.waited()
		}
		if c.progress == nil {
			c.progress = make(chan struct{})
		}
		ch := c.progress
		c.mu.Unlock()
		select {
		case <-ch:
		case <-time.After(left):
		}
		c.mu.Lock()
	}
}

// tryRoom is waitRoom for writers that must never wait (the broker's own
// messages: $SYS, Broker.Publish): it reports, at once, whether there is
// room (fits), and reserves it if so; it takes no place in waitRoom's line.
func (c *asyncConn) tryRoom(n int) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.broken(); err != nil || !c.fits(n) {
		return false, err
	}
	c.reserved += n
	return true, nil
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
	c.wrote = true
	if !c.flushing {
		c.flushing = true
		c.progressAt = time.Now()
		go c.flush()
	}
	return len(p), nil
}

// flush writes the buffer to the socket until it is empty.
func (c *asyncConn) flush() {
	for {
		c.mu.Lock()
		if len(c.buf) == 0 || c.err != nil {
			c.flushing = false
			// The buffers go back to the pool: an idle connection holds none.
			putBuf(c.buf)
			putBuf(c.spare)
			c.buf, c.spare = nil, nil
			closing := c.closing
			c.mu.Unlock()
			if closing {
				c.closeSocket()
			}
			return
		}
		out := c.buf // c.buf gets another array: out is the flush's alone
		c.buf, c.spare = c.spare[:0], nil
		c.mu.Unlock()

		var err error
		for off := 0; off < len(out) && err == nil; off += writeChunk {
			_, err = c.Conn.Write(out[off:min(off+writeChunk, len(out))])
			c.mu.Lock()
			c.progressAt = time.Now()
			c.wake()
			c.mu.Unlock()
		}

		c.mu.Lock()
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

// Read reads from the socket until Close: the broker never acts on what
// a client sent after it was disconnected.
func (c *asyncConn) Read(p []byte) (int, error) {
	if c.shut.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.shut.Load() {
		return 0, net.ErrClosed // read by the drain's side of a race: dropped
	}
	return n, err
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
	c.shut.Store(true)
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

// closeSocket closes the socket, once, and frees its max_connections slot
// at once. A socket the broker wrote to closes gracefully
// (docs/design/sockets.md, Closing): its sending side is shut down and
// what the client still sends is drained, for lingerRead or lingerMax
// bytes at most; the others close at once.
func (c *asyncConn) closeSocket() {
	c.once.Do(func() {
		c.shut.Store(true)
		sock := c.Conn
		if lc, ok := sock.(*limitConn); ok {
			lc.once.Do(lc.release) // a client that reconnects at once finds its slot
			sock = lc.Conn
		}
		half, ok := sock.(interface{ CloseWrite() error })
		if !c.wrote || !ok || half.CloseWrite() != nil {
			c.close()
			return
		}
		go func() {
			_ = c.Conn.SetReadDeadline(time.Now().Add(lingerRead))
			buf := getBuf()
			defer bufPool.Put(buf)
			for n := 0; n < lingerMax; {
				k, err := c.Conn.Read(buf[:])
				n += k
				if err != nil {
					break
				}
			}
			c.close()
		}()
	})
}

func (c *asyncConn) close() {
	_ = c.Conn.Close()
	if c.closed != nil {
		c.closed()
	}
}

// SetDeadline sets the read and write deadlines.
func (c *asyncConn) SetDeadline(t time.Time) error {
	return errors.Join(c.SetWriteDeadline(t), c.SetReadDeadline(t))
}

// SetWriteDeadline sets the deadline of socket writes, unless closing
// (then only closeLinger applies). A deadline already past while bytes
// are queued becomes closeLinger from now: crypto/tls sets one right after
// its close_notify alert, which cut the refusing CONNACK queued before it.
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
