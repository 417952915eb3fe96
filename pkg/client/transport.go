// SPDX-License-Identifier: Apache-2.0

package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Transport is how MQTT packets travel to the broker.
type Transport string

// Transports.
const (
	TCP       Transport = "tcp"  // MQTT over TCP (the default), with TLS when Config.TLS is set
	WebSocket Transport = "ws"   // MQTT over WebSockets, wss when Config.TLS is set
	Unix      Transport = "unix" // MQTT over a unix domain socket (Config.Socket)
)

// DefaultWSPath is the HTTP path of WebSocket connections when Config.WSPath is empty.
const DefaultWSPath = "/mqtt"

// dialConn opens the network connection described by cfg: TCP or a unix
// socket, then TLS, then the WebSocket upgrade. ctx bounds all of it.
// The returned connection remembers the first bytes the broker sent, so
// that failures before CONNACK can be explained.
func dialConn(ctx context.Context, cfg *Config) (*sniffConn, error) {
	var (
		conn net.Conn
		err  error
	)
	switch cfg.Transport {
	case WebSocket:
		conn, err = dialWS(ctx, cfg)
	default:
		conn, err = dialNet(ctx, cfg)
		if err == nil && cfg.TLS != nil {
			conn, err = handshakeTLS(ctx, cfg, conn)
		}
	}
	if err != nil {
		return nil, err
	}
	if cfg.Trace != nil {
		conn = newTraceConn(conn, cfg)
	}
	return &sniffConn{Conn: conn}, nil
}

// dialNet opens the TCP or unix socket connection.
func dialNet(ctx context.Context, cfg *Config) (net.Conn, error) {
	d := &net.Dialer{}
	network, addr := "tcp", cfg.Addr()
	if cfg.Transport == Unix {
		network = "unix"
	} else if cfg.BindAddress != "" {
		ip := net.ParseIP(cfg.BindAddress)
		if ip == nil {
			a, err := net.DefaultResolver.LookupIPAddr(ctx, cfg.BindAddress)
			if err == nil && len(a) == 0 {
				err = errors.New("no address")
			}
			if err != nil {
				return nil, &BindError{Addr: cfg.BindAddress, Err: err}
			}
			ip = a[0].IP
		}
		d.LocalAddr = &net.TCPAddr{IP: ip}
	}
	var conn net.Conn
	var err error
	if network == "tcp" && d.LocalAddr == nil && strings.EqualFold(cfg.Host, "localhost") {
		conn, err = dialLoopback(ctx, d, cfg.Port)
	} else {
		conn, err = d.DialContext(ctx, network, addr)
	}
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &TimeoutError{Addr: cfg.Addr(), Stage: StageDial, After: cfg.timeout()}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		var errno syscall.Errno
		if d.LocalAddr != nil && errors.As(err, &errno) && (errno == syscall.EADDRNOTAVAIL || errno == syscall.EADDRINUSE || errno == syscall.EACCES) {
			return nil, &BindError{Addr: cfg.BindAddress, Err: errno}
		}
		return nil, err
	}
	// Go turns TCP_NODELAY on for every TCP connection; leave it on even
	// without --nodelay: with Nagle, each QoS 1 round trip waits ~40 ms.
	return conn, nil
}

// dialLoopback connects to "localhost" (the default host) without asking
// the resolver, which would read /etc/nsswitch.conf, /etc/resolv.conf and
// /etc/hosts on every run: localhost is the loopback host (RFC 6761; curl
// does the same). It tries 127.0.0.1, then ::1, the order Go's dialer uses
// for a usual /etc/hosts (IPv4 first, IPv6 as the fallback when IPv4
// fails), and reports the IPv4 error when both fail, as the dialer does.
func dialLoopback(ctx context.Context, d *net.Dialer, port int) (net.Conn, error) {
	p := strconv.Itoa(port)
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort("127.0.0.1", p))
	if err == nil || ctx.Err() != nil {
		return conn, err
	}
	if conn6, err6 := d.DialContext(ctx, "tcp", net.JoinHostPort("::1", p)); err6 == nil {
		return conn6, nil
	}
	return nil, err
}

// handshakeTLS runs the TLS handshake on conn and explains failures.
func handshakeTLS(ctx context.Context, cfg *Config, conn net.Conn) (net.Conn, error) {
	tcfg := cfg.TLS.Clone()
	if tcfg.ServerName == "" {
		tcfg.ServerName = cfg.Host
	}
	tc := tls.Client(conn, tcfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, &TimeoutError{Addr: cfg.Addr(), Stage: StageTLS, After: cfg.timeout(), TLS: true}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, classifyTLS(cfg.Addr(), tcfg, err)
	}
	return tc, nil
}

// classifyTLS turns a handshake error into a *TLSError with a kind and
// the certificate facts a user needs to fix it.
func classifyTLS(addr string, tcfg *tls.Config, err error) *TLSError {
	e := &TLSError{Addr: addr, ServerName: tcfg.ServerName, Err: err}
	var (
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		rhe tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &ua):
		e.Kind = TLSUnknownAuthority
		if ua.Cert != nil {
			e.Subject, e.Issuer, e.CertNames = dn(ua.Cert.Subject), dn(ua.Cert.Issuer), certNames(ua.Cert)
		}
	case errors.As(err, &he):
		e.Kind = TLSNameMismatch
		if he.Certificate != nil {
			e.Subject, e.Issuer, e.CertNames = dn(he.Certificate.Subject), dn(he.Certificate.Issuer), certNames(he.Certificate)
		}
		if he.Host != "" {
			e.ServerName = he.Host
		}
	case errors.As(err, &ci) && (ci.Reason == x509.Expired):
		e.Kind = TLSExpired
		if ci.Cert != nil {
			e.Subject, e.NotAfter = dn(ci.Cert.Subject), ci.Cert.NotAfter
		}
	case errors.As(err, &rhe), isClosed(err):
		// A plain MQTT listener either answers the ClientHello with
		// non-TLS bytes or, like mosquitto and mochi, drops the connection.
		e.Kind = TLSNotTLS
	default:
		msg := err.Error()
		switch {
		case strings.Contains(msg, "certificate required"),
			strings.Contains(msg, "bad certificate") && len(tcfg.Certificates) == 0 && tcfg.GetClientCertificate == nil,
			strings.Contains(msg, "handshake failure") && len(tcfg.Certificates) == 0 && tcfg.GetClientCertificate == nil:
			e.Kind = TLSClientCertNeeded
		case strings.Contains(msg, "unknown certificate authority"),
			strings.Contains(msg, "bad certificate"),
			strings.Contains(msg, "certificate unknown"),
			strings.Contains(msg, "unsupported certificate"):
			e.Kind = TLSClientCertRejected
		case strings.Contains(msg, "protocol version"):
			e.Kind = TLSVersion
		}
	}
	return e
}

// isClosed reports whether err means the peer closed or reset the connection.
func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) ||
		errors.Is(err, syscall.ECONNABORTED)
}

// isTimeout reports whether err is an I/O deadline or context deadline.
func isTimeout(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}

// sniffConn remembers the first bytes read from the broker.
type sniffConn struct {
	net.Conn
	read  atomic.Bool // some bytes were read
	full  atomic.Bool // first holds sniffLen bytes
	mu    sync.Mutex
	first []byte
}

const sniffLen = 8

func (c *sniffConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.full.Load() {
		c.mu.Lock()
		c.first = append(c.first, p[:min(n, sniffLen-len(c.first))]...)
		c.full.Store(len(c.first) == sniffLen)
		c.mu.Unlock()
		c.read.Store(true)
	}
	return n, err
}

// Write passes through; before any byte was read, a failed write on a TLS
// connection looks for the alert the broker sent before closing (TLS 1.3
// brokers check client certificates after the client's handshake ended,
// so "certificate required" is only seen when reading).
func (c *sniffConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err == nil || c.read.Load() {
		return n, err
	}
	if tc, ok := c.Conn.(*tls.Conn); ok && isClosed(err) {
		_ = tc.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		var b [1]byte
		if _, rerr := tc.Read(b[:]); rerr != nil && strings.Contains(rerr.Error(), "remote error: tls:") {
			return n, rerr
		}
	}
	return n, err
}

// NetConn returns the wrapped connection.
func (c *sniffConn) NetConn() net.Conn { return c.Conn }

// CloseWrite shuts down the sending side when the connection can.
func (c *sniffConn) CloseWrite() error { return closeWrite(c.Conn) }

// head returns the first bytes read so far.
func (c *sniffConn) head() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.first...)
}

// looksTLS reports whether the broker sent a TLS record (handshake or
// alert) where an MQTT packet was expected.
func (c *sniffConn) looksTLS() bool {
	h := c.head()
	return len(h) >= 2 && (h[0] == 0x15 || h[0] == 0x16) && h[1] == 0x03
}

// v3Refusal returns the return code of an MQTT 3.1.1 CONNACK refusal
// (20 02 00 rc) sent in answer to an MQTT 5 CONNECT, or 0. MQTT 5
// CONNACKs are longer: they carry a property length.
func (c *sniffConn) v3Refusal() byte {
	h := c.head()
	if len(h) >= 4 && h[0] == 0x20 && h[1] == 0x02 && h[3] != 0 {
		return h[3]
	}
	return 0
}

// connackErr explains a failure while waiting for CONNACK: timeout,
// connection closed (maybe because the port speaks TLS), or err itself.
func connackErr(ctx context.Context, cfg *Config, sc *sniffConn, err error) error {
	if errors.Is(ctx.Err(), context.Canceled) {
		return ctx.Err()
	}
	if cfg.TLS != nil && strings.Contains(err.Error(), "remote error: tls:") {
		// With TLS 1.3 the broker checks the client certificate after
		// the client finished its handshake: the alert arrives here.
		tcfg := cfg.TLS.Clone()
		if tcfg.ServerName == "" {
			tcfg.ServerName = cfg.Host
		}
		return classifyTLS(cfg.Addr(), tcfg, err)
	}
	looksTLS := cfg.TLS == nil && cfg.Transport != WebSocket && sc.looksTLS()
	if isTimeout(err) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		if looksTLS {
			return &ClosedError{Addr: cfg.Addr(), Stage: StageConnack, LooksTLS: true, Err: err}
		}
		return &TimeoutError{Addr: cfg.Addr(), Stage: StageConnack, After: cfg.timeout(), TLS: cfg.TLS != nil}
	}
	if isClosed(err) || looksTLS {
		return &ClosedError{Addr: cfg.Addr(), Stage: StageConnack, TLS: cfg.TLS != nil, LooksTLS: looksTLS, Err: err}
	}
	return err
}

// deadline returns ctx's deadline or now + the connect timeout.
func deadline(ctx context.Context, cfg *Config) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(cfg.timeout())
}
