// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"log/slog"
	"net"
	"sync"
	"time"
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

// guardListener makes every accepted connection an asyncConn (writer.go)
// with a deadline for its CONNECT (docs/design/sockets.md, The CONNECT
// deadline), and counts the sockets still open, so that Close can wait
// for them.
type guardListener struct {
	net.Listener
	timeout time.Duration
	log     *slog.Logger
	stall   time.Duration // asyncConn stall timeout; 0: DefaultSlowConsumerTimeout
	slow    func()        // called when a client is cut as a slow consumer
	waited  func()        // called when a publisher waits for a client's queue
	socks   sync.WaitGroup
}

// Accept waits for a connection and arms its CONNECT deadline.
func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(l.timeout))
	l.socks.Add(1)
	ac := newAsyncConn(c, MaxPendingBytes, l.log, l.socks.Done)
	if l.stall > 0 {
		ac.stall = l.stall
	}
	ac.slow, ac.waited = l.slow, l.waited
	return ac, nil
}
