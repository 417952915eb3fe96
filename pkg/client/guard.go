// SPDX-License-Identifier: Apache-2.0

package client

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// frameGuard applies the packet size limits of the publishing pipeline
// (checkPacketSize) to a connection read by the paho libraries, which
// reserve the whole remaining length a packet announces before reading
// it: a broken or hostile broker could make `mqtt sub` allocate 256 MB
// with a five-byte header. It follows the packet boundaries in the bytes
// read and fails the read that brings a header over the limits, before
// the library sees it. What the library was told stays readable through
// err, since the libraries may report the read error in their own words.
// It also tells (dead) when reading failed for any reason: paho.golang
// learns it only once its pending calls are over.
type frameGuard struct {
	net.Conn
	limit int // Maximum Packet Size the client announced, 0 for none

	mu      sync.Mutex
	hdr     [5]byte // fixed header of the next packet, so far
	n       int     // bytes in hdr
	skip    int     // body bytes of the current packet still to pass
	bad     error   // sticky: the packet that broke the limits
	readErr error   // the first read error (bad included)
	dead    chan struct{}

	// bye is set once DISCONNECT is being sent: Close then lingers (see
	// Close). closed is closed when the connection is closed.
	bye       atomic.Bool
	closeOnce sync.Once
	closeErr  error
	closed    chan struct{}
}

// lingerTimeout bounds how long Close waits for the broker to close the
// connection after a DISCONNECT.
const lingerTimeout = time.Second

// Close closes the connection. After a DISCONNECT (bye) it first shuts
// down the sending side and waits (at most lingerTimeout) until the
// broker has closed its side, which it does on DISCONNECT: closing a
// socket with unread data in it (messages the broker kept sending) makes
// the kernel send a reset, and the broker then drops what it had not read
// yet, the last acknowledgements and the DISCONNECT among them (the
// broker logged "closed its connection" and sent the acknowledged
// messages of a persistent session again).
func (g *frameGuard) Close() error {
	g.closeOnce.Do(func() {
		if g.bye.Load() {
			_ = closeWrite(g.Conn)
			t := time.NewTimer(lingerTimeout)
			select {
			case <-g.dead: // the library's reader saw the end
			case <-t.C:
			}
			t.Stop()
		}
		g.closeErr = g.Conn.Close()
		close(g.closed)
	})
	return g.closeErr
}

// waitClosed waits (at most d) until Close has closed the connection.
func (g *frameGuard) waitClosed(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-g.closed:
	case <-t.C:
	}
}

func newFrameGuard(c net.Conn, limit int) *frameGuard {
	return &frameGuard{Conn: c, limit: limit, dead: make(chan struct{}), closed: make(chan struct{})}
}

// Read reads from the connection and checks the packet headers in what
// was read.
func (g *frameGuard) Read(p []byte) (int, error) {
	n, err := g.Conn.Read(p)
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bad == nil {
		g.bad = g.inspect(p[:n])
	}
	if g.bad != nil {
		n, err = 0, g.bad
	}
	if err != nil && g.readErr == nil {
		g.readErr = err
		close(g.dead)
	}
	return n, err
}

// err returns why the guard stopped the connection, or nil.
func (g *frameGuard) err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.bad
}

// why returns the guard's reason when it stopped the connection, else
// err: the paho libraries report only that the connection was lost.
func (g *frameGuard) why(err error) error {
	if err != nil {
		if gerr := g.err(); gerr != nil {
			return gerr
		}
	}
	return err
}

// lost returns why reading failed (the guard's reason first), or nil.
func (g *frameGuard) lost() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.bad != nil {
		return g.bad
	}
	if g.readErr != nil {
		return fmt.Errorf("connection lost: %w", g.readErr)
	}
	return nil
}

func (g *frameGuard) inspect(b []byte) error {
	for len(b) > 0 {
		if g.skip > 0 {
			k := min(g.skip, len(b))
			g.skip -= k
			b = b[k:]
			continue
		}
		g.hdr[g.n] = b[0]
		g.n++
		b = b[1:]
		if g.n == 1 || g.hdr[g.n-1]&0x80 != 0 {
			if g.n == len(g.hdr) {
				return fmt.Errorf("%w: malformed remaining length", ErrProtocol)
			}
			continue
		}
		rem, _, err := readVarint(g.hdr[1:g.n])
		if err != nil {
			return err
		}
		if err := checkPacketSize(g.hdr[0]>>4, g.n+rem, g.limit); err != nil {
			return err
		}
		g.skip, g.n = rem, 0
	}
	return nil
}
