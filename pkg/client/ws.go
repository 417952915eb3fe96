// SPDX-License-Identifier: Apache-2.0

package client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mqttkit/mqttkit/internal/wsconn"
)

// dialWS opens an MQTT-over-WebSocket connection: TCP (or TLS for wss)
// through dialNet and handshakeTLS, then the HTTP upgrade asking for the
// "mqtt" subprotocol [MQTT-6.0.0-3].
func dialWS(ctx context.Context, cfg *Config) (net.Conn, error) {
	u := cfg.wsURL()
	d := &websocket.Dialer{
		NetDialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialNet(ctx, cfg)
		},
		NetDialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := dialNet(ctx, cfg)
			if err != nil {
				return nil, err
			}
			return handshakeTLS(ctx, cfg, c)
		},
		Subprotocols:     []string{"mqtt"},
		HandshakeTimeout: cfg.timeout(),
	}
	ws, resp, err := d.DialContext(ctx, u, nil)
	if resp != nil && resp.Body != nil {
		resp.Body.Close()
	}
	if err != nil {
		var (
			te  *TimeoutError
			tle *TLSError
		)
		switch {
		case errors.As(err, &te), errors.As(err, &tle):
			return nil, err
		case errors.Is(ctx.Err(), context.DeadlineExceeded) || isTimeout(err):
			return nil, &TimeoutError{Addr: cfg.Addr(), Stage: StageWebSocket, After: cfg.timeout(), TLS: cfg.TLS != nil}
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case errors.Is(err, websocket.ErrBadHandshake) && resp != nil:
			return nil, &HandshakeError{URL: u, Status: resp.Status, Err: err}
		}
		var oe *net.OpError
		if errors.As(err, &oe) && oe.Op == "dial" {
			return nil, err // connection refused and friends
		}
		return nil, &HandshakeError{URL: u, Err: err}
	}
	return &wsConn{ws: ws}, nil
}

// wsURL is the WebSocket URL of the broker.
func (c *Config) wsURL() string {
	scheme := "ws"
	if c.TLS != nil {
		scheme = "wss"
	}
	p := c.WSPath
	if p == "" {
		p = DefaultWSPath
	}
	return (&url.URL{Scheme: scheme, Host: c.Addr(), Path: p}).String()
}

// wsConn is a net.Conn over WebSocket binary messages. MQTT packets may
// span messages and a message may hold several packets [MQTT-6.0.0-2].
type wsConn struct {
	ws *websocket.Conn

	rmu sync.Mutex
	r   io.Reader

	wmu sync.Mutex
}

func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	return wsconn.Read(c.ws, &c.r, p, errTextMessage, io.EOF)
}

// errTextMessage ends a connection whose broker sends a text message.
var errTextMessage = errors.New("websocket: the broker sent a text message; MQTT needs binary messages")

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return wsconn.Write(c.ws, p)
}

func (c *wsConn) Close() error {
	// WriteControl may run concurrently with Write (gorilla/websocket docs).
	_ = c.ws.WriteControl(websocket.CloseMessage,
		websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
	return c.ws.Close()
}

// NetConn returns the TCP (or TLS) connection under the WebSocket.
func (c *wsConn) NetConn() net.Conn { return c.ws.NetConn() }

func (c *wsConn) LocalAddr() net.Addr  { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr { return c.ws.RemoteAddr() }

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.ws.SetReadDeadline(t); err != nil {
		return err
	}
	return c.ws.SetWriteDeadline(t)
}

func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
