// SPDX-License-Identifier: Apache-2.0

package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
	"github.com/mqttkit/mqttkit/internal/testcert"
)

// echo connects with cfg, subscribes to topic, publishes to it and waits
// for the message to come back through the broker.
func echo(t *testing.T, cfg *Config, topic string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan *Message, 1)
	c, err := Dial(ctx, cfg, func(m *Message) {
		select {
		case got <- m:
		default:
		}
	})
	require.NoError(t, err)
	defer c.Disconnect(ctx)
	_, err = c.Subscribe(ctx, []Subscription{{Filter: topic, QoS: 1}})
	require.NoError(t, err)
	require.NoError(t, c.Publish(ctx, &Message{Topic: topic, Payload: []byte("ping"), QoS: 1}))
	select {
	case m := <-got:
		require.Equal(t, "ping", string(m.Payload))
	case <-ctx.Done():
		t.Fatal("message did not come back")
	}
}

func TestInteropAuth(t *testing.T) {
	pw := interop.Require(t, "mosquitto_passwd")
	dir := t.TempDir()
	pwfile := filepath.Join(dir, "passwd")
	out, err := exec.Command(pw, "-c", "-b", pwfile, "alice", "secret").CombinedOutput()
	require.NoError(t, err, string(out))
	m := interop.StartMosquitto(t, "allow_anonymous false", "password_file "+pwfile, "user root")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		v    Version
		code byte
		text string
	}{
		{V311, 5, "Connection Refused: not authorised."},
		{V31, 5, "Connection Refused: not authorised."},
		{V5, 135, "Not authorized"},
	} {
		t.Run(tc.v.String(), func(t *testing.T) {
			cfg := &Config{Host: "127.0.0.1", Port: m.Port, Version: tc.v, KeepAlive: 30, CleanStart: true, Username: "alice", Password: "wrong", ClientID: "c-" + tc.v.String()}
			_, err := Dial(ctx, cfg, nil)
			var ce *ConnectError
			require.ErrorAs(t, err, &ce, "%v", err)
			require.Equal(t, tc.code, ce.Code)
			require.Equal(t, tc.text, ce.Error())

			cfg.Password = "secret"
			echo(t, cfg, "auth/"+tc.v.String())
		})
	}
}

func TestInteropTLS(t *testing.T) {
	interop.Require(t, "mosquitto")
	f := testcert.WriteT(t)
	plain := interop.FreePort(t)
	m := interop.StartMosquitto(t, "cafile "+f.CA, "certfile "+f.ServerCert, "keyfile "+f.ServerKey, "user root",
		"listener "+strconv.Itoa(plain)+" 127.0.0.1")
	pem, err := os.ReadFile(f.CA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))

	for _, v := range []Version{V5, V311} {
		t.Run(v.String(), func(t *testing.T) {
			echo(t, &Config{Host: "localhost", Port: m.Port, Version: v, KeepAlive: 30, CleanStart: true, TLS: &tls.Config{RootCAs: pool}}, "tls/"+v.String())

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := Dial(ctx, &Config{Host: "127.0.0.1", Port: m.Port, Version: v, KeepAlive: 30, TLS: &tls.Config{RootCAs: x509.NewCertPool()}}, nil)
			var te *TLSError
			require.ErrorAs(t, err, &te)
			require.Equal(t, TLSUnknownAuthority, te.Kind)
			require.Contains(t, te.Issuer, "mqttkit test CA")

			_, err = Dial(ctx, &Config{Host: "127.0.0.1", Port: m.Port, Version: v, KeepAlive: 30, TLS: &tls.Config{RootCAs: pool, ServerName: "mqtt.example.com"}}, nil)
			require.ErrorAs(t, err, &te)
			require.Equal(t, TLSNameMismatch, te.Kind)
			require.Contains(t, te.CertNames, "localhost")

			_, err = Dial(ctx, &Config{Host: "127.0.0.1", Port: plain, Version: v, KeepAlive: 30, TLS: &tls.Config{RootCAs: pool}}, nil)
			require.ErrorAs(t, err, &te)
			require.Equal(t, TLSNotTLS, te.Kind, "%v", err)

			_, err = Dial(ctx, &Config{Host: "127.0.0.1", Port: m.Port, Version: v, KeepAlive: 30, ConnectTimeout: 3 * time.Second}, nil)
			var ce *ClosedError
			require.ErrorAs(t, err, &ce, "%v", err)
			require.Equal(t, StageConnack, ce.Stage)
		})
	}
}

func TestInteropClientCert(t *testing.T) {
	interop.Require(t, "mosquitto")
	f := testcert.WriteT(t)
	m := interop.StartMosquitto(t, "cafile "+f.CA, "certfile "+f.ServerCert, "keyfile "+f.ServerKey, "user root", "require_certificate true")
	pem, err := os.ReadFile(f.CA)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	cert, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
	require.NoError(t, err)
	for _, v := range []Version{V5, V311} {
		t.Run(v.String(), func(t *testing.T) {
			echo(t, &Config{Host: "localhost", Port: m.Port, Version: v, KeepAlive: 30, CleanStart: true,
				TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}}, "mtls/"+v.String())
			_, err := Dial(context.Background(), &Config{Host: "localhost", Port: m.Port, Version: v, KeepAlive: 30, TLS: &tls.Config{RootCAs: pool}}, nil)
			var te *TLSError
			require.ErrorAs(t, err, &te, "%v", err)
			require.Equal(t, TLSClientCertNeeded, te.Kind, "%v", err)
		})
	}
}

func TestInteropWebSocket(t *testing.T) {
	// mosquitto 2.0 exits when it has only WebSocket listeners: add a TCP one.
	m := interop.StartMosquitto(t, "protocol websockets", "listener "+strconv.Itoa(interop.FreePort(t))+" 127.0.0.1")
	for _, v := range []Version{V5, V311} {
		t.Run(v.String(), func(t *testing.T) {
			echo(t, &Config{Transport: WebSocket, Host: "127.0.0.1", Port: m.Port, Version: v, KeepAlive: 30, CleanStart: true}, "ws/"+v.String())
		})
	}
}
