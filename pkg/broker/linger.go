// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// lingerRead bounds how long a closed connection drains what its client
// still sends before the socket is closed.
const lingerRead = time.Second

// lingerMax bounds how many bytes a closed connection drains.
const lingerMax = 1 << 20

// lingerConn closes a socket gracefully. Closing a TCP socket while bytes
// the peer sent are still unread makes the kernel send a reset, and the
// reset makes the peer discard what it had received but not read yet: a
// client that was still sending when the broker disconnected it (a burst
// of PUBLISHes over its Receive Maximum) saw "connection reset" instead of
// the DISCONNECT 0x93 sent to it. Close shuts the sending side down (the
// client reads everything sent, then end of file) and drains, in the
// background, what the client still sends until it closes too, for
// lingerRead or lingerMax bytes at most; then the socket is closed and
// done is called. Reads after Close fail: the broker never acts on what
// the client sent after it was disconnected. A connection the broker never
// wrote to has nothing to lose that way and is closed at once (a client
// that never sent its CONNECT costs no draining goroutine).
type lingerConn struct {
	net.Conn
	half interface{ CloseWrite() error }
	done func() // called once the socket is closed

	wrote atomic.Bool
	shut  atomic.Bool
	once  sync.Once
}

// newLingerConn wraps c when its socket can be half-closed (TCP and unix
// sockets, also under max_connections' limitConn); otherwise it returns
// nil.
func newLingerConn(c net.Conn, done func()) *lingerConn {
	inner := c
	if lc, ok := c.(*limitConn); ok {
		inner = lc.Conn
	}
	half, ok := inner.(interface{ CloseWrite() error })
	if !ok {
		return nil
	}
	return &lingerConn{Conn: c, half: half, done: done}
}

// Read reads from the socket until Close.
func (c *lingerConn) Read(p []byte) (int, error) {
	if c.shut.Load() {
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if c.shut.Load() {
		return 0, net.ErrClosed // read by the drain's side of a race: dropped
	}
	return n, err
}

// Write writes p, noting that the connection has something to lose.
func (c *lingerConn) Write(p []byte) (int, error) {
	if !c.wrote.Load() {
		c.wrote.Store(true)
	}
	return c.Conn.Write(p)
}

// Close shuts the sending side down and closes the socket once the client
// has closed its side, or after lingerRead.
func (c *lingerConn) Close() error {
	c.once.Do(func() {
		c.shut.Store(true)
		if lc, ok := c.Conn.(*limitConn); ok {
			// The max_connections slot is free now, as before lingering:
			// a client that reconnects at once must not find it taken.
			lc.once.Do(lc.release)
		}
		if !c.wrote.Load() {
			c.close()
			return
		}
		if err := c.half.CloseWrite(); err != nil {
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
	return nil
}

func (c *lingerConn) close() {
	_ = c.Conn.Close()
	if c.done != nil {
		c.done()
	}
}
