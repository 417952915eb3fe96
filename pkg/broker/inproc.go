// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// InProcessListener is the listener id of in-process connections
// (DialInProcess): the bridges' local side. Such a client is trusted like
// a mosquitto bridge: it is not authenticated (the configuration file that
// defines the bridge is the authority), and without a username it is not
// subject to the ACL file; with one (local_username) the ACL rules of that
// user apply to what it publishes and receives.
const InProcessListener = "bridge"

// errInProcessClosed is a dial after Close.
var errInProcessClosed = errors.New("broker is closed")

// DialInProcess opens a client connection to the broker that goes through
// no network listener: the client end of a net.Pipe whose other end the
// broker serves like any accepted connection (sessions, queues, in-flight
// window, persistence and ACL all apply). The caller speaks MQTT on it
// and closes it when done; Close cuts it.
func (b *Broker) DialInProcess() (net.Conn, error) {
	l, err := b.inprocListener()
	if err != nil {
		return nil, err
	}
	client, server := net.Pipe()
	ac := newAsyncConn(server, MaxPendingBytes, b.log, nil)
	if !l.add(server) {
		client.Close()
		server.Close()
		return nil, errInProcessClosed
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer l.remove(server)
		defer func() {
			if r := recover(); r != nil {
				recoverConn(b.srv, b.log, &b.wire, ac, r)
			}
			_ = ac.Close()
		}()
		if err := b.srv.EstablishConnection(InProcessListener, ac); err != nil {
			logConnError(b.log, "in-process", err)
		}
	}()
	return &inprocConn{Conn: client, done: done}, nil
}

// inprocConn is the client end of an in-process connection. Its Close
// returns once the broker has finished with the connection (for at most
// 5 s), so that a new connection with the same client id
// that follows does not meet the old one still being torn down in mochi
// (its session takeover races with that).
type inprocConn struct {
	net.Conn
	done chan struct{}
}

func (c *inprocConn) Close() error {
	err := c.Conn.Close()
	select {
	case <-c.done:
	case <-time.After(5 * time.Second):
	}
	return err
}

// SessionQueued returns how many messages the session of clientID holds
// for its client (queued and in flight), 0 when there is no such session.
func (b *Broker) SessionQueued(clientID string) int {
	s := b.engine.lookupSession(clientID)
	if s == nil {
		return 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) + len(s.flight)
}

// inprocListener returns the broker's in-process listener, registering it
// with mochi on first use (so that Server.Close closes its connections
// and waits for them like any listener's).
func (b *Broker) inprocListener() (*inprocListener, error) {
	for range 2 {
		if l, ok := b.srv.Listeners.Get(InProcessListener); ok {
			if il, ok := l.(*inprocListener); ok {
				return il, nil
			}
			return nil, errors.New("listener id " + InProcessListener + " is taken")
		}
		err := b.srv.AddListener(&inprocListener{log: b.log, conns: map[net.Conn]struct{}{}})
		if err != nil && !errors.Is(err, mqtt.ErrListenerIDExists) {
			return nil, err
		}
	}
	return nil, errors.New("in-process listener not registered")
}

// inprocListener is the mochi listener of in-process connections. It
// accepts nothing itself (DialInProcess hands connections to mochi); its
// Close cuts them and waits for their goroutines.
type inprocListener struct {
	log    *slog.Logger
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func (l *inprocListener) ID() string                  { return InProcessListener }
func (l *inprocListener) Address() string             { return "in-process" }
func (l *inprocListener) Protocol() string            { return "inproc" }
func (l *inprocListener) Init(*slog.Logger) error     { return nil }
func (l *inprocListener) Serve(listeners.EstablishFn) {}

func (l *inprocListener) add(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.conns[c] = struct{}{}
	l.wg.Add(1)
	return true
}

func (l *inprocListener) remove(c net.Conn) {
	l.mu.Lock()
	delete(l.conns, c)
	l.mu.Unlock()
	l.wg.Done()
}

func (l *inprocListener) Close(listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	for c := range l.conns {
		_ = c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}
