// SPDX-License-Identifier: Apache-2.0

package client

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testbroker"
	"github.com/mqttkit/mqttkit/internal/testcert"
)

var versions = []Version{V5, V311}

// tlsFront starts a TLS front end for the test broker with the given
// server certificate and client-certificate policy.
func tlsFront(t *testing.T, b *testbroker.Broker, cert tls.Certificate, clientCA *testcert.CA) int {
	t.Helper()
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCA != nil {
		cfg.ClientCAs = clientCA.Pool()
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	require.NoError(t, err)
	return portOf(t, proxy(t, l, net.JoinHostPort(b.Host, b.PortString())))
}

func TestDialTLS(t *testing.T) {
	b := testbroker.Start(t)
	ca, err := testcert.NewCA("test CA")
	require.NoError(t, err)
	srv, err := ca.Server("localhost", "127.0.0.1")
	require.NoError(t, err)
	port := tlsFront(t, b, srv.TLSCertificate(), nil)
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			roundTrip(t, b, &Config{Host: "localhost", Port: port, Version: v, KeepAlive: 30, CleanStart: true,
				TLS: &tls.Config{RootCAs: ca.Pool()}}, "tls/"+v.String())
		})
	}
}

func TestDialTLSClientCert(t *testing.T) {
	b := testbroker.Start(t)
	ca, err := testcert.NewCA("test CA")
	require.NoError(t, err)
	srv, err := ca.Server("127.0.0.1")
	require.NoError(t, err)
	cli, err := ca.Client("alice")
	require.NoError(t, err)
	port := tlsFront(t, b, srv.TLSCertificate(), ca)
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			roundTrip(t, b, &Config{Host: "127.0.0.1", Port: port, Version: v, KeepAlive: 30, CleanStart: true,
				TLS: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cli.TLSCertificate()}}}, "mtls/"+v.String())
		})
		t.Run(v.String()+"/missing", func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Dial(ctx, &Config{Host: "127.0.0.1", Port: port, Version: v, KeepAlive: 30, CleanStart: true,
				TLS: &tls.Config{RootCAs: ca.Pool()}}, nil)
			var te *TLSError
			require.ErrorAs(t, err, &te)
			require.Equal(t, TLSClientCertNeeded, te.Kind, "%v", err)
		})
	}
}

func TestTLSErrors(t *testing.T) {
	b := testbroker.Start(t)
	ca, err := testcert.NewCA("mqttkit test CA")
	require.NoError(t, err)
	other, err := testcert.NewCA("other CA")
	require.NoError(t, err)
	good, err := ca.Server("localhost", "127.0.0.1")
	require.NoError(t, err)
	expired, err := ca.Expired("localhost")
	require.NoError(t, err)
	goodPort := tlsFront(t, b, good.TLSCertificate(), nil)
	plainPort := dropper(t)
	expiredPort := tlsFront(t, b, expired.TLSCertificate(), nil)

	for _, tc := range []struct {
		name  string
		host  string
		port  int
		tls   *tls.Config
		kind  TLSErrorKind
		check func(t *testing.T, e *TLSError)
	}{
		{name: "unknown authority", host: "localhost", port: goodPort, tls: &tls.Config{RootCAs: other.Pool()}, kind: TLSUnknownAuthority,
			check: func(t *testing.T, e *TLSError) { require.Contains(t, e.Issuer, "mqttkit test CA") }},
		{name: "name mismatch", host: "127.0.0.1", port: goodPort, tls: &tls.Config{RootCAs: ca.Pool(), ServerName: "broker.example.com"}, kind: TLSNameMismatch,
			check: func(t *testing.T, e *TLSError) {
				require.Equal(t, "broker.example.com", e.ServerName)
				require.Equal(t, []string{"localhost", "127.0.0.1"}, e.CertNames)
			}},
		{name: "expired", host: "localhost", port: expiredPort, tls: &tls.Config{RootCAs: ca.Pool()}, kind: TLSExpired,
			check: func(t *testing.T, e *TLSError) { require.True(t, e.NotAfter.Before(time.Now())) }},
		{name: "plain port", host: "127.0.0.1", port: plainPort, tls: &tls.Config{RootCAs: ca.Pool()}, kind: TLSNotTLS},
		{name: "old version", host: "localhost", port: goodPort, tls: &tls.Config{RootCAs: ca.Pool(), MaxVersion: tls.VersionTLS11, MinVersion: tls.VersionTLS10}, kind: TLSVersion},
	} {
		for _, v := range versions {
			t.Run(tc.name+"/"+v.String(), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := Dial(ctx, &Config{Host: tc.host, Port: tc.port, Version: v, KeepAlive: 30, TLS: tc.tls}, nil)
				var te *TLSError
				require.ErrorAs(t, err, &te)
				require.Equal(t, tc.kind, te.Kind, "%v", err)
				if tc.check != nil {
					tc.check(t, te)
				}
			})
		}
	}
}

func TestPlainToTLSPort(t *testing.T) {
	b := testbroker.Start(t)
	ca, err := testcert.NewCA("test CA")
	require.NoError(t, err)
	srv, err := ca.Server("127.0.0.1")
	require.NoError(t, err)
	port := tlsFront(t, b, srv.TLSCertificate(), nil)
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Dial(ctx, &Config{Host: "127.0.0.1", Port: port, Version: v, KeepAlive: 30, ConnectTimeout: 2 * time.Second}, nil)
			var ce *ClosedError
			require.ErrorAs(t, err, &ce, "%v", err)
			require.Equal(t, StageConnack, ce.Stage)
			require.False(t, ce.TLS)
		})
	}
}

func TestConnectTimeout(t *testing.T) {
	port := silent(t)
	for _, v := range versions {
		for _, withTLS := range []bool{false, true} {
			name := v.String()
			stage := StageConnack
			var tcfg *tls.Config
			if withTLS {
				name += "/tls"
				stage = StageTLS
				tcfg = &tls.Config{}
			}
			t.Run(name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				_, err := Dial(ctx, &Config{Host: "127.0.0.1", Port: port, Version: v, KeepAlive: 30, TLS: tcfg, ConnectTimeout: 200 * time.Millisecond}, nil)
				var te *TimeoutError
				require.ErrorAs(t, err, &te, "%v", err)
				require.Equal(t, stage, te.Stage)
				require.Equal(t, 200*time.Millisecond, te.After)
				require.NoError(t, ctx.Err(), "Dial returned only after the test's own deadline")
			})
		}
	}
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	for _, v := range versions {
		_, err := Dial(context.Background(), &Config{Host: "127.0.0.1", Port: port, Version: v, KeepAlive: 30}, nil)
		var oe *net.OpError
		require.ErrorAs(t, err, &oe, "%v", err)
	}
}

func TestCanceled(t *testing.T) {
	port := silent(t)
	for _, v := range versions {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := Dial(ctx, &Config{Host: "127.0.0.1", Port: port, Version: v, KeepAlive: 30}, nil)
		require.ErrorIs(t, err, context.Canceled, "%v", err)
	}
}

func TestUnixSocket(t *testing.T) {
	b := testbroker.Start(t)
	sock := filepath.Join(t.TempDir(), "mqtt.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	proxy(t, l, net.JoinHostPort(b.Host, b.PortString()))
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			roundTrip(t, b, &Config{Transport: Unix, Socket: sock, Version: v, KeepAlive: 30, CleanStart: true}, "unix/"+v.String())
		})
	}
}

func TestBindAddress(t *testing.T) {
	b := testbroker.Start(t)
	roundTrip(t, b, &Config{Host: b.Host, Port: b.Port, Version: V5, KeepAlive: 30, CleanStart: true, BindAddress: "127.0.0.1", NoDelay: true}, "bind/ok")
	for _, v := range versions {
		_, err := Dial(context.Background(), &Config{Host: b.Host, Port: b.Port, Version: v, KeepAlive: 30, BindAddress: "192.0.2.1"}, nil)
		var be *BindError
		require.ErrorAs(t, err, &be, "binding to an address this host does not have must fail")
		require.Equal(t, "cannot connect from local address 192.0.2.1: cannot assign requested address", be.Error())
		_, err = OpenStream(context.Background(), &Config{Host: b.Host, Port: b.Port, Version: v, KeepAlive: 30, BindAddress: "192.0.2.1"}, StreamOptions{})
		require.ErrorAs(t, err, &be)
	}
}

func TestErrorsText(t *testing.T) {
	require.Equal(t, "no CONNACK from h:1 within 10s", (&TimeoutError{Addr: "h:1", Stage: StageConnack, After: 10 * time.Second}).Error())
	require.Equal(t, "TLS handshake to h:1 timed out after 1s", (&TimeoutError{Addr: "h:1", Stage: StageTLS, After: time.Second}).Error())
	require.Contains(t, (&ClosedError{Addr: "h:1", Stage: StageConnack, Err: errors.New("EOF")}).Error(), "closed the connection during the CONNACK (EOF)")
	require.Equal(t, "WebSocket handshake with ws://h:1/mqtt failed: HTTP 404 Not Found", (&HandshakeError{URL: "ws://h:1/mqtt", Status: "404 Not Found"}).Error())
	require.Equal(t, strconv.Itoa(1), "1")
}

// TestDialLocalhost: "localhost" dials the loopback addresses without the
// resolver, IPv4 first, IPv6 when IPv4 fails, and reports the IPv4 error.
func TestDialLocalhost(t *testing.T) {
	accept := func(t *testing.T, network, addr string) (int, <-chan net.Addr) {
		t.Helper()
		l, err := net.Listen(network, addr)
		if err != nil && network == "tcp6" {
			t.Skipf("no IPv6 loopback here: %v", err)
		}
		require.NoError(t, err)
		t.Cleanup(func() { l.Close() })
		got := make(chan net.Addr, 1)
		go func() {
			c, err := l.Accept()
			if err == nil {
				got <- c.LocalAddr()
				c.Close()
			}
		}()
		return l.Addr().(*net.TCPAddr).Port, got
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	t.Run("ipv4", func(t *testing.T) {
		port, got := accept(t, "tcp4", "127.0.0.1:0")
		conn, err := dialNet(ctx, &Config{Host: "LocalHost", Port: port})
		require.NoError(t, err)
		conn.Close()
		require.Equal(t, "127.0.0.1", (<-got).(*net.TCPAddr).IP.String())
	})
	t.Run("ipv6 when ipv4 refuses", func(t *testing.T) {
		port, got := accept(t, "tcp6", "[::1]:0")
		if l, err := net.Listen("tcp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port))); err != nil {
			t.Skipf("127.0.0.1:%d is taken", port)
		} else {
			l.Close() // now 127.0.0.1:port refuses
		}
		conn, err := dialNet(ctx, &Config{Host: "localhost", Port: port})
		require.NoError(t, err)
		conn.Close()
		require.Equal(t, "::1", (<-got).(*net.TCPAddr).IP.String())
	})
	t.Run("both refuse", func(t *testing.T) {
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		require.NoError(t, err)
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		_, err = dialNet(ctx, &Config{Host: "localhost", Port: port})
		var oe *net.OpError
		require.ErrorAs(t, err, &oe)
		require.Equal(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), oe.Addr.String())
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
	})
}
