// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	stdlog "log"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttkit/mqttkit/internal/wsconn"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// bound is one open listener: mochi's side and ours.
type bound struct {
	conn  *connListener
	info  BoundListener
	limit *limitListener // nil without max_connections
	certs *tlsfiles.Cert // nil without TLS
}

// bindListener opens the socket of l and stacks, bottom up: max_connections
// (limitListener), TLS under WebSockets, the HTTP upgrade (wsListener), the
// CONNECT deadline, non-blocking writes and TLS for plain MQTT
// (connListener.wrap), and the listener mochi serves (connListener).
func bindListener(id string, l Listener, timeout time.Duration, log *slog.Logger) (*bound, error) {
	kind, network := "mqtt", "tcp"
	switch l.Protocol {
	case "", "mqtt":
	case "websockets", "ws":
		kind = "ws"
	case "unix":
		kind, network = "unix", "unix"
	default:
		return nil, fmt.Errorf("listener %s: unsupported protocol %q", l.Address, l.Protocol)
	}
	info := BoundListener{Identity: l.UseIdentityAsUsername}
	var (
		tlsCfg *tls.Config
		certs  *tlsfiles.Cert
	)
	if l.TLS != nil {
		if kind == "unix" {
			return nil, fmt.Errorf("listener %s: TLS on a unix socket is not supported", l.Address)
		}
		c, src, err := tlsfiles.ServerConfig(*l.TLS)
		if err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Address, err)
		}
		tlsCfg, certs = c, src
		kind += "s"
		switch {
		case l.TLS.RequireCertificate:
			info.ClientCerts = "required"
		case l.TLS.CAFile != "":
			info.ClientCerts = "optional"
		}
	}
	if l.UseIdentityAsUsername && (l.TLS == nil || l.TLS.CAFile == "") {
		return nil, fmt.Errorf("listener %s: use_identity_as_username needs TLS with a cafile to verify client certificates", l.Address)
	}
	if timeout <= 0 {
		timeout = DefaultConnectTimeout
	}

	raw, err := net.Listen(network, l.Address)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", l.Address, err)
	}
	b := &bound{info: info, certs: certs}
	b.info.Addr, b.info.Protocol = raw.Addr().String(), kind
	if l.MaxConnections > 0 {
		b.limit = &limitListener{Listener: raw, max: int64(l.MaxConnections), log: log, freed: make(chan struct{}, 1)}
		raw = b.limit
	}
	var below net.Listener = raw
	if kind == "ws" || kind == "wss" {
		if tlsCfg != nil {
			below = tls.NewListener(below, tlsCfg)
		}
		below = newWSListener(below, timeout, log)
	}
	b.conn = newConnListener(id, below)
	b.conn.timeout = timeout
	if kind == "mqtts" {
		b.conn.tls = tlsCfg
	}
	return b, nil
}

// limitGrace is how long a connection beyond max_connections waits for a
// slot before it is refused. A client that closes its connection and
// connects again at once (mosquitto's 01-connect-max-connections.py does
// it with ten) would otherwise be refused while the broker is still
// noticing the close on the old connection's goroutine; mosquitto, with
// one thread, has handled the close by then.
const limitGrace = 500 * time.Millisecond

// limitListener refuses connections beyond max open ones (mosquitto's
// max_connections), closing them with a log line once no slot came free
// within limitGrace.
type limitListener struct {
	net.Listener
	max     int64
	log     *slog.Logger
	active  atomic.Int64
	refused atomic.Int64
	freed   chan struct{} // a slot came free (capacity 1)
}

// Accept returns the next connection within the limit.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.take() && !l.waitSlot() {
			l.refused.Add(1)
			l.log.Warn("connection refused: listener at max_connections", "listener", l.Addr().String(),
				"remote", c.RemoteAddr().String(), "max_connections", l.max)
			_ = c.Close()
			continue
		}
		return &limitConn{Conn: c, release: l.release}, nil
	}
}

// take takes a slot if one is free.
func (l *limitListener) take() bool {
	if l.active.Add(1) > l.max {
		l.active.Add(-1)
		return false
	}
	return true
}

// waitSlot waits up to limitGrace for a slot and takes it.
func (l *limitListener) waitSlot() bool {
	t := time.NewTimer(limitGrace)
	defer t.Stop()
	for {
		select {
		case <-l.freed:
			if l.take() {
				return true
			}
		case <-t.C:
			return l.take()
		}
	}
}

// release gives a slot back.
func (l *limitListener) release() {
	l.active.Add(-1)
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

// limitConn gives its slot back when closed.
type limitConn struct {
	net.Conn
	release func()
	once    sync.Once
}

// Close closes the connection and frees its slot.
func (c *limitConn) Close() error {
	c.once.Do(c.release)
	return c.Conn.Close()
}

// wsListener accepts HTTP connections, upgrades them to WebSockets
// (subprotocol "mqtt") and hands each out as a byte stream from Accept.
type wsListener struct {
	ln    net.Listener
	srv   *http.Server
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

var upgrader = websocket.Upgrader{
	Subprotocols:    []string{"mqtt"},
	CheckOrigin:     func(*http.Request) bool { return true },
	ReadBufferSize:  4096,
	WriteBufferSize: 4096,
}

func newWSListener(ln net.Listener, timeout time.Duration, log *slog.Logger) *wsListener {
	w := &wsListener{ln: ln, conns: make(chan net.Conn), done: make(chan struct{})}
	w.srv = &http.Server{
		Handler:           http.HandlerFunc(w.upgrade),
		ReadHeaderTimeout: timeout,
		ErrorLog:          stdlog.New(httpErrorLog{log}, "", 0),
	}
	go func() {
		err := w.srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("websocket listener stopped", "listener", ln.Addr().String(), "error", err)
		}
		w.Close()
	}()
	return w
}

func (w *wsListener) upgrade(rw http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(rw, r, nil)
	if err != nil {
		return // the upgrader answered with an HTTP error
	}
	select {
	case w.conns <- &wsConn{Conn: c.UnderlyingConn(), ws: c}:
	case <-w.done:
		_ = c.Close()
	}
}

// Accept returns the next upgraded connection.
func (w *wsListener) Accept() (net.Conn, error) {
	select {
	case c := <-w.conns:
		return c, nil
	case <-w.done:
		return nil, net.ErrClosed
	}
}

// Close stops the HTTP server; upgraded connections are not affected.
func (w *wsListener) Close() error {
	w.once.Do(func() {
		close(w.done)
		_ = w.srv.Close()
	})
	return nil
}

// Addr is the bound address.
func (w *wsListener) Addr() net.Addr { return w.ln.Addr() }

// wsConn presents a WebSocket as a byte stream: MQTT packets may span
// binary messages and a message may hold several packets [MQTT-6.0.0-2].
type wsConn struct {
	net.Conn
	ws *websocket.Conn
	r  io.Reader // current message, nil between messages
}

// errTextFrame ends a connection that sends a text frame [MQTT-6.0.0-1].
var errTextFrame = errors.New("websocket: text frame received, MQTT needs binary frames")

// Read reads the stream across binary messages.
func (c *wsConn) Read(p []byte) (int, error) {
	return wsconn.Read(c.ws, &c.r, p, errTextFrame, nil)
}

// Write sends p as one binary message.
func (c *wsConn) Write(p []byte) (int, error) { return wsconn.Write(c.ws, p) }

// ConnectionState exposes the TLS state of a wss connection, for
// use_identity_as_username.
func (c *wsConn) ConnectionState() tls.ConnectionState {
	if tc, ok := c.Conn.(*tls.Conn); ok {
		return tc.ConnectionState()
	}
	return tls.ConnectionState{}
}

// tlsState finds the TLS state under the wrappers of a connection.
func tlsState(c net.Conn) (tls.ConnectionState, bool) {
	for c != nil {
		switch x := c.(type) {
		case *tls.Conn:
			return x.ConnectionState(), true
		case *wsConn:
			st := x.ConnectionState()
			return st, st.HandshakeComplete
		case *asyncConn:
			c = x.Conn
		case *wireConn:
			c = x.Conn
		case *limitConn:
			c = x.Conn
		default:
			return tls.ConnectionState{}, false
		}
	}
	return tls.ConnectionState{}, false
}

// httpErrorLog takes the WebSocket listener's HTTP server log: failed TLS
// handshakes of wss clients at the default level, as for mqtts
// (logConnError), the rest at debug.
type httpErrorLog struct{ log *slog.Logger }

func (h httpErrorLog) Write(p []byte) (int, error) {
	msg := strings.TrimSpace(string(p))
	// net/http: "http: TLS handshake error from ADDR: ERR"
	if rest, ok := strings.CutPrefix(msg, "http: TLS handshake error from "); ok {
		remote, reason, _ := strings.Cut(rest, ": ")
		if strings.HasSuffix(reason, "EOF") {
			h.log.Debug("TLS handshake: client hung up", "remote", remote)
		} else {
			h.log.Warn("TLS handshake failed, disconnecting", "remote", remote, "reason", reason)
		}
		return len(p), nil
	}
	h.log.Debug(msg)
	return len(p), nil
}
