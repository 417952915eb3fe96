// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultConnectTimeout is how long a new connection may take, from the
// TCP accept, to send a complete CONNECT packet (TLS handshake included)
// when Config.ConnectTimeout is zero.
const DefaultConnectTimeout = 10 * time.Second

// MaxConnectSize is the largest CONNECT packet a listener (TCP, TLS,
// WebSocket, unix socket) accepts, in bytes after the fixed header. A
// legitimate CONNECT holds at most a few 64 KiB strings; without this
// bound one unauthenticated client could make the broker allocate the
// 256 MiB the remaining length field can announce, per connection, before
// it sends any of it.
const MaxConnectSize = 1 << 20

// mochi reads the CONNECT packet with no deadline at all (the keep-alive
// deadline starts after it), so a client that opens a connection and sends
// nothing, or half a CONNECT, holds two goroutines and a few KiB forever:
// the slowloris attack. guardListener puts a deadline on every accepted
// connection; mochi replaces it with the keep-alive deadline once the
// CONNECT is accepted (Client.refreshDeadline), so only the CONNECT phase
// is bounded.
//
// It also makes every connection an asyncConn (writer.go) and counts the
// sockets still open, so that Close can wait for them.
type guardListener struct {
	net.Listener
	timeout    time.Duration
	maxConnect int // 0: do not inspect (the stream is TLS-encrypted: connectSizeListener does it above TLS)
	log        *slog.Logger
	stall      time.Duration // asyncConn stall timeout; 0: DefaultSlowConsumerTimeout
	slow       func()        // called when a client is cut as a slow consumer
	waited     func()        // called when a publisher waits for a client's queue

	mu   sync.Mutex
	open int
	idle *sync.Cond
}

// Accept waits for a connection and arms its CONNECT deadline.
func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	l.mu.Lock()
	l.open++
	l.mu.Unlock()
	ac := newAsyncConn(c, MaxPendingBytes, l.log, l.socketClosed)
	if l.stall > 0 {
		ac.stall = l.stall
	}
	ac.slow, ac.waited = l.slow, l.waited
	if l.maxConnect == 0 {
		return ac, nil
	}
	return &guardConn{Conn: ac, max: l.maxConnect}, nil
}

func (l *guardListener) socketClosed() {
	l.mu.Lock()
	l.open--
	if l.open == 0 {
		l.idle.Broadcast()
	}
	l.mu.Unlock()
}

// wait returns once every accepted socket is closed.
func (l *guardListener) wait() {
	l.mu.Lock()
	for l.open > 0 {
		l.idle.Wait()
	}
	l.mu.Unlock()
}

// connectSizeListener puts the CONNECT size check of guardConn on every
// connection it accepts. It serves TLS listeners, where the CONNECT can
// only be read above the encryption, so guardListener (below TLS, to bound
// the handshake with its deadline) cannot inspect it.
type connectSizeListener struct {
	net.Listener
	max int
}

// Accept returns the next connection, checked as it is read.
func (l *connectSizeListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &guardConn{Conn: c, max: l.max}, nil
}

// guardConn checks the fixed header of the first packet as it passes
// through and fails the read if it announces an oversized CONNECT. The
// first packet written, the CONNACK, gets its properties in mosquitto's
// order (connackOrder, connect.go); a DISCONNECT without properties is
// written without its property length, a PUBACK 0x10 without its reason
// string (compactWrite).
type guardConn struct {
	net.Conn
	max  int
	done bool    // first fixed header inspected
	hdr  [5]byte // first fixed header bytes seen so far
	n    int

	wrote atomic.Bool // first packet written
}

// Write writes p; the first write is the CONNACK, whole (mochi writes each
// packet with one Write until its session is established).
func (c *guardConn) Write(p []byte) (int, error) {
	if c.wrote.Load() || !c.wrote.CompareAndSwap(false, true) {
		if q := compactWrite(p); len(q) != len(p) {
			if _, err := c.Conn.Write(q); err != nil {
				return 0, err
			}
			return len(p), nil
		}
		return c.Conn.Write(p)
	}
	if _, err := c.Conn.Write(connackOrder(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Read reads from the connection, checking the first fixed header.
func (c *guardConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.done || n == 0 {
		return n, err
	}
	if cerr := c.inspect(p[:n]); cerr != nil {
		_ = c.Conn.Close()
		return 0, fmt.Errorf("%s: %w", c.RemoteAddr(), cerr)
	}
	return n, err
}

func (c *guardConn) inspect(b []byte) error {
	for _, x := range b {
		c.hdr[c.n] = x
		c.n++
		if c.n == 1 {
			if x>>4 != 1 { // not CONNECT: mochi refuses it [MQTT-3.1.0-1]
				c.done = true
				return nil
			}
			continue
		}
		if x&0x80 != 0 {
			if c.n == len(c.hdr) { // malformed length: mochi refuses it
				c.done = true
				return nil
			}
			continue
		}
		c.done = true
		remaining, mult := 0, 1
		for _, y := range c.hdr[1:c.n] {
			remaining += int(y&0x7f) * mult
			mult *= 128
		}
		if remaining > c.max {
			return fmt.Errorf("CONNECT of %d bytes exceeds the limit of %d bytes", remaining, c.max)
		}
		return nil
	}
	return nil
}
