// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Memory per connection is owned here (docs/design/connections.md).
// mochi gives every connection, from the TCP accept on, a Client with an
// outbound channel, a read buffer and two goroutines; connections that
// never send anything cost as much as idle clients, and an idle client
// keeps every buffer it ever used. So:
//
//   - connListener hands a connection to mochi only once its first bytes
//     have arrived: until then it is a socket and one goroutine parked in
//     the runtime's poller without a buffer (waitReadable);
//   - connSet bounds the connections waiting for their CONNECT,
//     broker-wide, closing the one that has waited longest, and gives
//     memory back to the system after a wave of connections;
//   - wireConn reads through connReader, whose buffer comes from a pool
//     and goes back to it whenever the connection waits for data;
//   - asyncConn's buffers go back to the pool once written;
//   - SmallStacks keeps new goroutines at the runtime's smallest stack.

// stackSetting turns off the runtime's adaptive initial goroutine stack
// size (docs/design/connections.md, "Goroutine stacks").
const stackSetting = "adaptivestackstart=0"

// SmallStacks makes the process run with stackSetting: it executes the
// program again, same arguments and process, with the setting added to
// GODEBUG, unless GODEBUG already has an adaptivestackstart setting. The
// runtime reads this setting only at start, and the Go tool refuses it in
// //go:debug directives and go.mod. It returns when the setting is in
// effect or cannot be set (os.Executable or exec fails, Windows); call it
// first thing in main, before anything has been opened or written.
func SmallStacks() {
	gd, set := os.LookupEnv("GODEBUG")
	if strings.Contains(gd, "adaptivestackstart=") {
		return
	}
	exe, err := os.Executable()
	if err != nil {
		return
	}
	if set && gd != "" {
		gd += ","
	}
	env := []string{"GODEBUG=" + gd + stackSetting}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	_ = syscall.Exec(exe, os.Args, env) // returns only on failure
}

// bufSize is the size of the pooled buffers.
const bufSize = 4 << 10

var bufPool = sync.Pool{New: func() any { return new([bufSize]byte) }}

func getBuf() *[bufSize]byte { return bufPool.Get().(*[bufSize]byte) }

// putBuf gives b back to the pool when it is a pooled buffer (its
// capacity is bufSize); other buffers are left to the garbage collector.
func putBuf(b []byte) {
	if cap(b) == bufSize {
		bufPool.Put((*[bufSize]byte)(b[:bufSize]))
	}
}

// rawConnOf returns the socket under c when every layer between reads
// through without buffering anything (our wrappers; TLS too when before
// is set, as nothing has been read yet), so that the socket being
// readable means that c is; nil otherwise (WebSockets, TLS once started,
// systems without canPeek).
func rawConnOf(c net.Conn, before bool) syscall.RawConn {
	if !canPeek {
		return nil
	}
	for {
		switch x := c.(type) {
		case *asyncConn:
			c = x.Conn
		case *limitConn:
			c = x.Conn
		case *tls.Conn:
			if !before {
				return nil
			}
			c = x.NetConn()
		case *net.TCPConn:
			rc, err := x.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		case *net.UnixConn:
			rc, err := x.SyscallConn()
			if err != nil {
				return nil
			}
			return rc
		default:
			return nil
		}
	}
}

// waitReadable parks until rc has data, end of file or an error, holding
// no buffer; r.parked runs once before the goroutine parks. The error is
// the poller's (deadline passed, socket closed) or, when no data came,
// io.EOF or the socket's; a Read that follows reports it too, as every
// Read does.
func waitReadable(rc syscall.RawConn, r *readable) error {
	r.did, r.gone = false, nil
	if err := rc.Read(r.fn); err != nil {
		return err
	}
	return r.gone
}

// connReader is a buffered reader whose buffer is taken from bufPool when
// data arrives and given back when the connection waits for more, when
// raw is set (see rawConnOf); otherwise it keeps its buffer.
type connReader struct {
	src  io.Reader
	raw  syscall.RawConn
	wait *readable
	buf  *[bufSize]byte // nil while released
	r, w int
	err  error // from the Read that filled the buffer, after its data
}

func newConnReader(src net.Conn) *connReader {
	cr := &connReader{src: src, raw: rawConnOf(src, false)}
	if cr.raw != nil {
		cr.wait = newReadable(cr.release)
	}
	return cr
}

// release gives the buffer back; the reader must be empty.
func (cr *connReader) release() {
	if cr.buf != nil {
		bufPool.Put(cr.buf)
		cr.buf = nil
	}
}

// buffered is how many bytes can be read without waiting.
func (cr *connReader) buffered() int { return cr.w - cr.r }

func (cr *connReader) fill() error {
	if cr.err != nil {
		err := cr.err
		cr.err = nil
		return err
	}
	cr.r, cr.w = 0, 0
	if cr.raw != nil {
		_ = waitReadable(cr.raw, cr.wait) // the Read below fails the same way
	}
	if cr.buf == nil {
		cr.buf = getBuf()
	}
	n, err := cr.src.Read(cr.buf[:])
	cr.w = n
	if n > 0 {
		cr.err = err
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// ReadByte returns the next byte.
func (cr *connReader) ReadByte() (byte, error) {
	if cr.r == cr.w {
		if err := cr.fill(); err != nil {
			return 0, err
		}
	}
	b := cr.buf[cr.r]
	cr.r++
	return b, nil
}

// Read reads what is buffered, or fills the buffer first.
func (cr *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if cr.r == cr.w {
		if err := cr.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, cr.buf[cr.r:cr.w])
	cr.r += n
	return n, nil
}

// take returns the next n buffered bytes in place (n <= buffered()),
// valid until the next read.
func (cr *connReader) take(n int) []byte {
	if n == 0 {
		return nil
	}
	b := cr.buf[cr.r : cr.r+n : cr.r+n]
	cr.r += n
	return b
}

// DefaultMaxConnecting is how many connections, across all listeners, may
// be waiting for their CONNECT at once when Config.MaxConnecting is zero:
// from the TCP accept (the WebSocket upgrade) until their CONNECT packet
// has been read, TLS handshake included.
const DefaultMaxConnecting = 4096

// connSet is the broker's accepted connections, across its listeners.
//
// It bounds those waiting for their CONNECT: beyond max it closes the one
// that has waited longest. A client that connects and sends its CONNECT at
// once waits a few milliseconds, so the ones closed are those that hold
// connections open without a word (the slowloris attack), and a flood of
// them cannot lock other clients out as refusing new connections would.
// Each episode logs one line when it starts and one when fewer than half
// of max are waiting again.
//
// It also gives memory back after a wave: the Go runtime keeps what a
// thousand connections used (goroutine stacks, heap) long after they are
// gone. When the connections open fall to half of their peak, at least
// freeAfter fewer, the garbage is collected and the free memory returned
// to the system (debug.FreeOSMemory), once the closing has settled.
type connSet struct {
	max int // 0: no bound
	log *slog.Logger

	mu         sync.Mutex
	head, tail *connEntry // waiting for CONNECT, oldest first
	waiting    int
	episode    int64 // connections closed in the current episode (> 0: in one)
	evicted    int64 // connections closed for the bound since start
	open, peak int
	freeing    bool   // a FreeOSMemory is scheduled
	free       func() // debug.FreeOSMemory; tests replace it
}

// freeAfter is the smallest wave, in connections, after which memory is
// given back; freeDelay lets the wave's connections finish closing first.
const (
	freeAfter = 1000
	freeDelay = time.Second
)

func newConnSet(max int, log *slog.Logger) *connSet {
	return &connSet{max: max, log: log, free: debug.FreeOSMemory}
}

// connEntry is an accepted connection: an element of its listener's list
// and, until its CONNECT has been read, of connSet's waiting line.
type connEntry struct {
	c          net.Conn
	prev, next *connEntry // listener's list (connListener.mu)
	set        *connSet
	wprev      *connEntry // waiting line (connSet.mu)
	wnext      *connEntry
	waiting    bool
}

// add counts e as open and waiting for its CONNECT, and returns the
// connection to close when that takes the line past max, or nil.
func (s *connSet) add(e *connEntry) net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.open++
	s.peak = max(s.peak, s.open)
	e.set, e.waiting = s, true
	e.wprev = s.tail
	if s.tail != nil {
		s.tail.wnext = e
	} else {
		s.head = e
	}
	s.tail = e
	s.waiting++
	if s.max <= 0 || s.waiting <= s.max {
		return nil
	}
	old := s.head
	s.unlink(old)
	s.evicted++
	if s.episode == 0 {
		s.log.Warn("too many connections waiting for CONNECT; closing the ones that waited longest",
			"max_connecting", s.max)
	}
	s.episode++
	return old.c
}

// connected takes e out of the waiting line: its CONNECT was read.
func (e *connEntry) connected() {
	if s := e.set; s != nil {
		s.mu.Lock()
		s.leave(e)
		s.mu.Unlock()
	}
}

// closed counts e as gone.
func (e *connEntry) closed() {
	s := e.set
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.leave(e)
	e.set = nil
	s.open--
	if !s.freeing && s.peak-s.open >= freeAfter && s.open <= s.peak/2 {
		s.freeing = true
		time.AfterFunc(freeDelay, func() {
			s.free()
			s.mu.Lock()
			s.freeing, s.peak = false, s.open
			s.mu.Unlock()
		})
	}
}

// leave takes e out of the waiting line if it is in it (s.mu held).
func (s *connSet) leave(e *connEntry) {
	if !e.waiting {
		return
	}
	s.unlink(e)
	if s.episode > 0 && s.waiting <= s.max/2 {
		s.log.Info("connections waiting for CONNECT back under the limit",
			"max_connecting", s.max, "closed", s.episode)
		s.episode = 0
	}
}

// unlink removes e from the waiting line (s.mu held).
func (s *connSet) unlink(e *connEntry) {
	if e.wprev != nil {
		e.wprev.wnext = e.wnext
	} else {
		s.head = e.wnext
	}
	if e.wnext != nil {
		e.wnext.wprev = e.wprev
	} else {
		s.tail = e.wprev
	}
	e.wprev, e.wnext, e.waiting = nil, nil, false
	s.waiting--
}

// counts returns how many connections are open and waiting for their
// CONNECT, and how many were closed for the bound since start.
func (s *connSet) counts() (open, waiting int, evicted int64) {
	if s == nil {
		return 0, 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.open, s.waiting, s.evicted
}
