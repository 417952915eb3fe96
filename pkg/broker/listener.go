// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// DefaultConnectTimeout is how long a new connection may take, from the
// TCP accept, to send a complete CONNECT packet (TLS handshake included)
// when Config.ConnectTimeout is zero.
const DefaultConnectTimeout = 10 * time.Second

// MaxConnectSize is the largest CONNECT packet a listener (TCP, TLS,
// WebSocket, unix socket) accepts, in bytes after the fixed header
// (wireConn refuses a longer one from its fixed header). A legitimate
// CONNECT holds at most a few 64 KiB strings; without this bound one
// unauthenticated client could make the broker hold the 256 MiB the
// remaining length field can announce, per connection.
const MaxConnectSize = 1 << 20

// shutdownGrace bounds how long Close waits for a client to take its
// DISCONNECT before the connection is cut.
const shutdownGrace = time.Second

// connListener serves MQTT over any net.Listener, in place of mochi's
// listeners.TCP and listeners.Net, whose shutdown and Accept errors it
// handles (docs/design/sockets.md, Shutdown).
type connListener struct {
	id  string
	ln  net.Listener
	log *slog.Logger

	// Every accepted connection becomes an asyncConn (writer.go) with a
	// deadline for its CONNECT (docs/design/sockets.md), under TLS when
	// tls is set.
	timeout time.Duration // 0: no deadline
	tls     *tls.Config
	stall   time.Duration  // asyncConn stall timeout; 0: DefaultSlowConsumerTimeout
	slow    func()         // called when a client is cut as a slow consumer
	waited  func()         // called when a publisher waits for a client's queue
	socks   sync.WaitGroup // sockets not closed yet

	// disconnect replaces mochi's closeClients, which can deadlock.
	disconnect func(id string)

	// wire checks every packet before mochi decodes it (wire.go); srv and
	// stats serve recoverConn.
	wire  *wireGuard
	srv   *mqtt.Server
	stats *wireStats

	// set counts the connections and bounds those waiting for their
	// CONNECT (connmem.go); listeners share the broker's.
	set *connSet

	wg     sync.WaitGroup // one per connection goroutine
	mu     sync.Mutex
	conns  *connEntry // open connections, newest first: a list, which keeps nothing once they are gone
	closed bool
	served chan struct{} // closed when Serve returns; nil before Serve
}

func newConnListener(id string, ln net.Listener) *connListener {
	return &connListener{id: id, ln: ln, log: slog.New(slog.DiscardHandler)}
}

// ID returns the listener's id.
func (l *connListener) ID() string { return l.id }

// Address returns the bound address.
func (l *connListener) Address() string { return l.ln.Addr().String() }

// Protocol returns the network name.
func (l *connListener) Protocol() string { return "tcp" }

// Init keeps mochi's logger (never nil); the socket is already bound.
func (l *connListener) Init(log *slog.Logger) error {
	l.log = log
	return nil
}

// Serve accepts connections until Close, handing each to establish in its
// own goroutine once the client has sent something (serveConn); after an
// Accept error it backs off and tries again.
func (l *connListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.served = make(chan struct{})
	defer close(l.served)
	l.mu.Unlock()
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.isClosed() {
				return
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.log.Warn("accept failed; retrying", "error", err, "in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		c = l.wrap(c)
		e := l.track(c)
		if e == nil {
			_ = c.Close()
			return
		}
		if old := l.set.add(e); old != nil {
			_ = old.Close() // its goroutine ends it
		}
		go l.serveConn(establish, e)
	}
}

// wrap makes c an asyncConn with its CONNECT deadline, under TLS when
// l.tls is set.
func (l *connListener) wrap(c net.Conn) net.Conn {
	if l.timeout > 0 {
		_ = c.SetDeadline(time.Now().Add(l.timeout))
	}
	l.socks.Add(1)
	ac := newAsyncConn(c, MaxPendingBytes, l.log, l.socks.Done)
	ac.stall, ac.slow, ac.waited = cmp.Or(l.stall, DefaultSlowConsumerTimeout), l.slow, l.waited
	if l.tls != nil {
		return tls.Server(ac, l.tls)
	}
	return ac
}

// track adds c to the open connections and counts its goroutine; nil
// once the listener is closed.
func (l *connListener) track(c net.Conn) *connEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	e := &connEntry{c: c, next: l.conns}
	if l.conns != nil {
		l.conns.prev = e
	}
	l.conns = e
	l.wg.Add(1)
	return e
}

// untrack removes e from the open connections.
func (l *connListener) untrack(e *connEntry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e.prev != nil {
		e.prev.next = e.next
	} else if l.conns == e {
		l.conns = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	e.prev, e.next = nil, nil
}

// serveConn runs mochi's side of one connection once the client has sent
// its first bytes, waiting for them without a buffer
// (docs/design/connections.md). A panic on it ends that connection only
// (recoverConn), never the process.
func (l *connListener) serveConn(establish listeners.EstablishFn, e *connEntry) {
	defer l.wg.Done()
	c := e.c
	mc := c // the connection mochi holds
	defer func() {
		if r := recover(); r != nil {
			recoverConn(l.srv, l.log, l.stats, mc, r)
		}
		_ = c.Close()
		e.closed()
		l.untrack(e)
	}()
	if rc := rawConnOf(c, true); rc != nil {
		if err := waitReadable(rc, newReadable(nil)); err != nil {
			// Silent until the connect timeout, hung up or closed:
			// mochi never has to know of it.
			logConnError(l.log, c.RemoteAddr().String(), fmt.Errorf("read connection: %w", err))
			return
		}
	}
	mc = l.wire.wrap(c, e)
	if err := establish(l.id, mc); err != nil {
		logConnError(l.log, c.RemoteAddr().String(), err)
	}
}

// readable is the callback of waitReadable for syscall.RawConn.Read: it
// reports whether the socket has a byte to read, end of file or an error,
// without taking anything from it (peek). When it reports false the
// runtime parks the goroutine in its poller until the socket is readable
// and calls it again; parked is then called first, once.
type readable struct {
	parked func() // nil: nothing to do before parking
	did    bool
	b      [1]byte
	fn     func(uintptr) bool // check, made once
	gone   error              // io.EOF or the socket's error when that is what was readable
}

func newReadable(parked func()) *readable {
	r := &readable{parked: parked}
	r.fn = r.check
	return r
}

func (r *readable) check(fd uintptr) bool {
	n, again, err := peek(fd, r.b[:])
	if again {
		if !r.did && r.parked != nil {
			r.parked()
		}
		r.did = true
		return false
	}
	r.gone = err
	if n == 0 && err == nil {
		r.gone = io.EOF
	}
	return true
}

func (l *connListener) isClosed() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed
}

// Close stops accepting, disconnects the listener's clients (disconnect
// sends each a DISCONNECT), cuts what is left and waits for every
// connection goroutine to return.
func (l *connListener) Close(listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	served := l.served
	deadline := time.Now().Add(shutdownGrace)
	for e := l.conns; e != nil; e = e.next {
		_ = e.c.SetWriteDeadline(deadline)
	}
	l.mu.Unlock()
	_ = l.ln.Close()
	if served != nil {
		<-served // no more connections after this
	}
	l.disconnect(l.id)
	l.mu.Lock()
	for e := l.conns; e != nil; e = e.next {
		_ = e.c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
	l.socks.Wait() // pending bytes sent or given up (closeLinger)
}
