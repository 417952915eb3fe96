// SPDX-License-Identifier: Apache-2.0

package mosqconf

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/testcert"
	"github.com/mqttkit/mqttkit/pkg/broker"
	"github.com/mqttkit/mqttkit/pkg/logdest"
	"github.com/mqttkit/mqttkit/pkg/passwd"
)

// confPorts is how many {{P1}}... placeholders a sameConf template may use.
const confPorts = 3

// sameConf runs the mosquitto.conf tmpl on mqtt broker (in process, through
// ParseConf and Config) and on the real mosquitto, and runs check against
// each, so that a test states once what both must do. In tmpl, {{P1}},
// {{P2}}, {{P3}} are free ports and {{DIR}} a directory holding files
// (files: name → content) that both brokers read. The mosquitto part skips
// when mosquitto is not installed (fails with MQTT_INTEROP=require).
func sameConf(t *testing.T, tmpl string, files map[string]string, check func(t *testing.T, kind string, ports []string)) {
	t.Helper()
	prepare := func(t *testing.T) (string, []string) {
		dir := t.TempDir()
		for name, content := range files {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
		}
		var ports []string
		pairs := []string{"{{DIR}}", dir}
		for i := 1; i <= confPorts; i++ {
			p := strconv.Itoa(interop.FreePort(t))
			ports = append(ports, p)
			pairs = append(pairs, "{{P"+strconv.Itoa(i)+"}}", p)
		}
		return strings.NewReplacer(pairs...).Replace(tmpl), ports
	}
	t.Run("mqtt", func(t *testing.T) {
		text, ports := prepare(t)
		conf, err := ParseConf("test.conf", strings.NewReader(text))
		require.NoError(t, err)
		require.Empty(t, conf.Warnings)
		cfg := conf.Config()
		var level slog.LevelVar
		level.Set(conf.LogLevel())
		lg, err := logdest.Open(conf.Log, io.Discard, io.Discard, &level)
		require.NoError(t, err)
		t.Cleanup(lg.Close)
		cfg.Log = lg.Logger
		lg.PublishTo(start(t, cfg))
		check(t, "mqtt", ports)
	})
	t.Run("mosquitto", func(t *testing.T) {
		bin := interop.Require(t, "mosquitto")
		text, ports := prepare(t)
		if os.Geteuid() == 0 {
			// mosquitto drops root privileges to its own user, which
			// cannot read the test's files.
			text = "user root\n" + text
		}
		conf := filepath.Join(t.TempDir(), "mosquitto.conf")
		require.NoError(t, os.WriteFile(conf, []byte(text), 0o644))
		var out bytes.Buffer
		cmd := exec.Command(bin, "-c", conf)
		cmd.Stdout, cmd.Stderr = &out, &out
		require.NoError(t, cmd.Start())
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			<-exited
			if t.Failed() {
				t.Logf("mosquitto log:\n%s", out.String())
			}
		})
		for _, p := range ports {
			if !strings.Contains(text, " "+p) {
				continue
			}
			rawclient.WaitFor(t, func() bool {
				select {
				case <-exited:
					t.Fatalf("mosquitto exited: %s", out.String())
				default:
				}
				c, err := net.DialTimeout("tcp", "127.0.0.1:"+p, time.Second)
				if err == nil {
					c.Close()
				}
				return err == nil
			})
		}
		check(t, "mosquitto", ports)
	})
}

// A TLS listener whose certfile holds only the leaf, signed by an
// intermediate CA that is in the cafile with the root, sends the chain:
// a client that trusts only the root verifies it (mosquitto: OpenSSL
// builds the chain from the cafile).
func TestConfTLSChainFromCAFile(t *testing.T) {
	root, err := testcert.NewCA("chain root")
	require.NoError(t, err)
	inter, err := root.Intermediate("chain intermediate")
	require.NoError(t, err)
	leaf, err := inter.Server("localhost", "127.0.0.1")
	require.NoError(t, err)
	files := map[string]string{
		"all-ca.pem": string(root.PEM) + string(inter.PEM),
		"server.pem": string(leaf.CertPEM),
		"server.key": string(leaf.KeyPEM),
	}
	conf := "listener {{P1}} 127.0.0.1\nallow_anonymous true\ncafile {{DIR}}/all-ca.pem\ncertfile {{DIR}}/server.pem\nkeyfile {{DIR}}/server.key\n" +
		// no cafile: the leaf alone, which the client cannot verify
		"listener {{P2}} 127.0.0.1\ncertfile {{DIR}}/server.pem\nkeyfile {{DIR}}/server.key\n"
	sameConf(t, conf, files, func(t *testing.T, _ string, ports []string) {
		cfg := &tls.Config{RootCAs: root.Pool(), ServerName: "localhost"}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+ports[0], cfg)
		require.NoError(t, err)
		require.Len(t, conn.ConnectionState().PeerCertificates, 3, "leaf, intermediate, root")
		rawclient.New(t, conn, 4).MustConnect("chain", "", "")

		conn, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+ports[1], cfg)
		if err == nil {
			conn.Close()
		}
		require.Error(t, err, "without cafile the intermediate is not sent")
	})
}

// start runs a broker with cfg on a free loopback port until the test ends.
func start(t *testing.T, cfg broker.Config) *broker.Broker {
	t.Helper()
	b, err := broker.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.Start())
	return b
}

// passwdLine is a password file line for user (PBKDF2, as mosquitto_passwd writes).
func passwdLine(t *testing.T, user, password string) string {
	t.Helper()
	h, err := passwd.Hash(password, passwd.HashOptions{Type: passwd.TypeSHA512PBKDF2})
	require.NoError(t, err)
	return user + ":" + h + "\n"
}

// The common per_listener_settings setup: anonymous clients on one
// listener, passwords, an ACL and no empty client ids on the other; each
// listener's settings apply to the connections on it.
func TestConfPerListenerSettings(t *testing.T) {
	conf := `per_listener_settings true
listener {{P1}} 127.0.0.1
allow_anonymous true
listener {{P2}} 127.0.0.1
password_file {{DIR}}/passwd
acl_file {{DIR}}/acl
allow_zero_length_clientid false
`
	files := map[string]string{
		"passwd": passwdLine(t, "alice", "secret"),
		"acl":    "user alice\ntopic readwrite a/#\n",
	}
	sameConf(t, conf, files, func(t *testing.T, _ string, ports []string) {
		open, closed := "127.0.0.1:"+ports[0], "127.0.0.1:"+ports[1]

		// The open listener: anonymous, any topic, an assigned id.
		c := rawclient.Dial(t, open, 5)
		c.Send(c.ConnectPacket("", "", ""))
		ack := c.Recv()
		require.Equal(t, byte(0), ack.ReasonCode)
		require.Regexp(t, `^auto-[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$`, ack.Properties.AssignedClientID)
		c.Publish(1, 1, "b/1", "x", false)
		require.Less(t, c.Recv().ReasonCode, byte(0x80), "success (mosquitto: 0x10 no matching subscribers)")
		// A username without password file: still anonymous rules (allowed).
		rawclient.Dial(t, open, 4).MustConnect("u1", "mallory", "x")

		// The closed listener: passwords and the ACL.
		require.Equal(t, byte(5), rawclient.Dial(t, closed, 4).Connect("anon", "", ""))
		require.Equal(t, byte(0x87), rawclient.Dial(t, closed, 5).Connect("anon", "", ""))
		require.Equal(t, byte(5), rawclient.Dial(t, closed, 4).Connect("a2", "alice", "wrong"))
		require.Equal(t, byte(2), rawclient.Dial(t, closed, 4).Connect("", "alice", "secret"), "allow_zero_length_clientid false")
		require.Equal(t, byte(0x80), rawclient.Dial(t, closed, 5).Connect("", "alice", "secret"), "MQTT 5: Unspecified error")
		c = rawclient.Dial(t, closed, 5)
		c.MustConnect("a1", "alice", "secret")
		c.Publish(1, 1, "a/1", "x", false)
		require.Less(t, c.Recv().ReasonCode, byte(0x80))
		c.Publish(2, 1, "b/1", "x", false)
		require.Equal(t, byte(0x87), c.Recv().ReasonCode, "not in alice's ACL")
	})
}

// use_username_as_clientid: the username replaces the client id (two
// clients of one user take each other over); a client without username
// is not authorised.
func TestConfUseUsernameAsClientID(t *testing.T) {
	conf := "listener {{P1}} 127.0.0.1\nallow_anonymous true\nuse_username_as_clientid true\n"
	sameConf(t, conf, nil, func(t *testing.T, _ string, ports []string) {
		addr := "127.0.0.1:" + ports[0]
		require.Equal(t, byte(5), rawclient.Dial(t, addr, 4).Connect("anon", "", ""))
		first := rawclient.Dial(t, addr, 4)
		first.MustConnect("one", "bob", "x")
		rawclient.Dial(t, addr, 4).MustConnect("two", "bob", "y")
		first.ExpectClosed()
	})
}

// use_subject_as_username: the client certificate's subject, in RFC 2253
// form, is the username the ACL sees.
func TestConfUseSubjectAsUsername(t *testing.T) {
	ca, err := testcert.NewCA("subject CA")
	require.NoError(t, err)
	srv, err := ca.Server("localhost", "127.0.0.1")
	require.NoError(t, err)
	cli, err := ca.Client("sensor-7")
	require.NoError(t, err)
	files := map[string]string{
		"ca.pem": string(ca.PEM), "server.pem": string(srv.CertPEM), "server.key": string(srv.KeyPEM),
		"acl": "user CN=sensor-7,O=mqttkit tests\ntopic readwrite a/#\n",
	}
	conf := "listener {{P1}} 127.0.0.1\nallow_anonymous true\ncafile {{DIR}}/ca.pem\ncertfile {{DIR}}/server.pem\nkeyfile {{DIR}}/server.key\n" +
		"require_certificate true\nuse_subject_as_username true\nacl_file {{DIR}}/acl\n"
	sameConf(t, conf, files, func(t *testing.T, _ string, ports []string) {
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{cli.TLSCertificate()}}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+ports[0], cfg)
		require.NoError(t, err)
		c := rawclient.New(t, conn, 5)
		c.MustConnect("s7", "", "")
		c.Publish(1, 1, "a/1", "x", false)
		require.Less(t, c.Recv().ReasonCode, byte(0x80))
		c.Publish(2, 1, "b/1", "x", false)
		require.Equal(t, byte(0x87), c.Recv().ReasonCode)
	})
}

// max_packet_size: MQTT 5 clients learn it from the CONNACK; a longer
// packet ends the connection, a packet of exactly that size passes.
func TestConfMaxPacketSize(t *testing.T) {
	conf := "listener {{P1}} 127.0.0.1\nallow_anonymous true\nmax_packet_size 30\n"
	sameConf(t, conf, nil, func(t *testing.T, _ string, ports []string) {
		addr := "127.0.0.1:" + ports[0]
		c := rawclient.Dial(t, addr, 5)
		c.Send(c.ConnectPacket("mps", "", ""))
		ack := c.Recv()
		require.Equal(t, byte(0), ack.ReasonCode)
		require.Equal(t, uint32(30), ack.Properties.MaximumPacketSize)
		// 2 (fixed header) + 3 (topic "t") + 2 (packet id) + 1 (properties) + 22 = 30 bytes
		c.Publish(1, 1, "t", strings.Repeat("x", 22), false)
		require.Less(t, c.Recv().ReasonCode, byte(0x80))
		c.Publish(2, 1, "t", strings.Repeat("x", 40), false)
		require.Equal(t, [][]byte{{0xE0, 1, 0x95}}, c.ClosedRaw(), "DISCONNECT 0x95 Packet too large")

		c = rawclient.Dial(t, addr, 4)
		c.MustConnect("mps3", "", "")
		c.Publish(1, 1, "t", strings.Repeat("x", 23), false) // 30 bytes without properties
		require.Equal(t, packets.Puback, c.Recv().FixedHeader.Type)
		// Like mochi, mosquitto compares the remaining length + 1 with
		// the limit: 31 bytes pass, 32 do not.
		c.Publish(2, 1, "t", strings.Repeat("x", 24), false)
		require.Equal(t, packets.Puback, c.Recv().FixedHeader.Type)
		c.Publish(3, 1, "t", strings.Repeat("x", 25), false)
		require.Empty(t, c.ExpectClosed())
	})
}

// retain_available false: MQTT 5 clients are told in the CONNACK; a
// retained PUBLISH ends the connection (MQTT 5: DISCONNECT 0x9A) and is
// neither delivered nor kept.
func TestConfRetainAvailableFalse(t *testing.T) {
	conf := "listener {{P1}} 127.0.0.1\nallow_anonymous true\nretain_available false\n"
	sameConf(t, conf, nil, func(t *testing.T, kind string, ports []string) {
		addr := "127.0.0.1:" + ports[0]
		sub := rawclient.Dial(t, addr, 4)
		sub.MustConnect("sub", "", "")
		require.Equal(t, []byte{1}, sub.Subscribe(1, 1, "r/#"))

		c := rawclient.Dial(t, addr, 5)
		c.Send(c.ConnectPacket("ra", "", ""))
		ack := c.Recv()
		require.Equal(t, byte(0), ack.ReasonCode)
		require.True(t, ack.Properties.RetainAvailableFlag)
		require.Equal(t, byte(0), ack.Properties.RetainAvailable)
		c.Publish(1, 1, "r/5", "x", true)
		require.Equal(t, [][]byte{{0xE0, 1, 0x9A}}, c.ClosedRaw(), "DISCONNECT 0x9A")

		c = rawclient.Dial(t, addr, 4)
		c.MustConnect("ra3", "", "")
		c.Publish(1, 1, "r/3", "x", true)
		require.Empty(t, c.ExpectClosed())

		// Not delivered, not retained; a message without the flag is.
		c = rawclient.Dial(t, addr, 4)
		c.MustConnect("ok", "", "")
		c.Publish(1, 1, "r/ok", "plain", false)
		require.Equal(t, packets.Puback, c.Recv().FixedHeader.Type)
		pk := sub.Recv()
		require.Equal(t, "r/ok", pk.TopicName)
		late := rawclient.Dial(t, addr, 4)
		late.MustConnect("late", "", "")
		require.Equal(t, []byte{1}, late.Subscribe(1, 1, "r/#"))
		require.Empty(t, late.Ping())
	})
}

// sys_interval 0: no $SYS topic at all, not even the version.
func TestConfSysIntervalZero(t *testing.T) {
	conf := "listener {{P1}} 127.0.0.1\nallow_anonymous true\nsys_interval 0\n"
	sameConf(t, conf, nil, func(t *testing.T, _ string, ports []string) {
		c := rawclient.Dial(t, "127.0.0.1:"+ports[0], 4)
		c.MustConnect("sys", "", "")
		require.Equal(t, []byte{0}, c.Subscribe(1, 0, "$SYS/#"))
		require.Empty(t, c.Ping())
	})
}

// log_dest topic: log lines are published to $SYS/broker/log/<level>; a
// client connecting is a notice (N).
func TestConfLogDestTopic(t *testing.T) {
	conf := "listener {{P1}} 127.0.0.1\nallow_anonymous true\nlog_dest topic\nlog_type notice\n"
	sameConf(t, conf, nil, func(t *testing.T, kind string, ports []string) {
		addr := "127.0.0.1:" + ports[0]
		sub := rawclient.Dial(t, addr, 4)
		sub.MustConnect("logsub", "", "")
		require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "$SYS/broker/log/#"))
		rawclient.Dial(t, addr, 4).MustConnect("newcomer", "", "")
		for {
			pk := sub.Recv()
			require.Equal(t, packets.Publish, pk.FixedHeader.Type)
			require.Regexp(t, `^\$SYS/broker/log/[EWNID]`, pk.TopicName)
			if strings.Contains(string(pk.Payload), "newcomer") {
				require.Equal(t, "$SYS/broker/log/N", pk.TopicName, "%s: %s", kind, pk.Payload)
				return
			}
		}
	})
}

// tls_version, ciphers and crlfile on a TLS listener.
func TestConfTLSOptions(t *testing.T) {
	ca, err := testcert.NewCA("options CA")
	require.NoError(t, err)
	srv, err := ca.Server("localhost", "127.0.0.1")
	require.NoError(t, err)
	good, err := ca.Client("good")
	require.NoError(t, err)
	revoked, err := ca.Client("revoked")
	require.NoError(t, err)
	crl, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number: big.NewInt(1), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(24 * time.Hour),
		RevokedCertificateEntries: []x509.RevocationListEntry{{SerialNumber: revoked.Cert.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)}},
	}, ca.Cert, ca.Key)
	require.NoError(t, err)
	files := map[string]string{
		"ca.pem": string(ca.PEM), "server.pem": string(srv.CertPEM), "server.key": string(srv.KeyPEM),
		"crl.pem": string(pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: crl})),
	}
	conf := `listener {{P1}} 127.0.0.1
allow_anonymous true
certfile {{DIR}}/server.pem
keyfile {{DIR}}/server.key
tls_version tlsv1.3
listener {{P2}} 127.0.0.1
allow_anonymous true
certfile {{DIR}}/server.pem
keyfile {{DIR}}/server.key
ciphers ECDHE-ECDSA-AES128-GCM-SHA256
listener {{P3}} 127.0.0.1
allow_anonymous true
certfile {{DIR}}/server.pem
keyfile {{DIR}}/server.key
cafile {{DIR}}/ca.pem
require_certificate true
crlfile {{DIR}}/crl.pem
`
	sameConf(t, conf, files, func(t *testing.T, kind string, ports []string) {
		// connects reports whether an MQTT CONNECT succeeds over TLS with cfg
		// (TLS 1.3 reports a refused client certificate on the first read).
		connects := func(port string, cfg *tls.Config) bool {
			cfg.RootCAs, cfg.ServerName = ca.Pool(), "localhost"
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", "127.0.0.1:"+port, cfg)
			if err != nil {
				return false
			}
			c := rawclient.New(t, conn, 4)
			pk := c.ConnectPacket("tlsopt", "", "")
			pk.ProtocolVersion = 4
			var buf bytes.Buffer
			require.NoError(t, pk.ConnectEncode(&buf))
			// A server that refuses the client certificate after the
			// handshake may already have reset the connection: the write
			// fails then (seen with mosquitto), and that is no connection.
			if _, err := conn.Write(buf.Bytes()); err != nil {
				return false
			}
			pk, _, err = c.RecvRaw(5 * time.Second)
			return err == nil && pk.FixedHeader.Type == packets.Connack && pk.ReasonCode == 0
		}
		require.True(t, connects(ports[0], &tls.Config{}), "%s: TLS 1.3", kind)
		require.False(t, connects(ports[0], &tls.Config{MaxVersion: tls.VersionTLS12}), "%s: TLS 1.2 under tls_version tlsv1.3", kind)

		tls12 := func(suite uint16) *tls.Config {
			return &tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{suite}}
		}
		require.True(t, connects(ports[1], tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)), "%s: the cipher given", kind)
		require.False(t, connects(ports[1], tls12(tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384)), "%s: another cipher", kind)

		withCert := func(p *testcert.Pair) *tls.Config {
			return &tls.Config{Certificates: []tls.Certificate{p.TLSCertificate()}}
		}
		require.True(t, connects(ports[2], withCert(good)), "%s: a certificate the CRL does not revoke", kind)
		require.False(t, connects(ports[2], withCert(revoked)), "%s: a revoked certificate", kind)
	})
}

// max_keepalive: MQTT 5 clients asking for more (or none) are told the
// maximum as Server Keep Alive; MQTT 3.1.1 clients are refused.
func TestConfMaxKeepalive(t *testing.T) {
	conf := "listener {{P1}} 127.0.0.1\nallow_anonymous true\nmax_keepalive 100\n"
	sameConf(t, conf, nil, func(t *testing.T, kind string, ports []string) {
		connack := func(version byte, keepalive uint16) packets.Packet {
			c := rawclient.Dial(t, "127.0.0.1:"+ports[0], version)
			pk := c.ConnectPacket("ka", "", "")
			pk.Connect.Keepalive = keepalive
			c.Send(pk)
			return c.Recv()
		}
		require.Equal(t, byte(0), connack(4, 100).ReasonCode, kind)
		if kind == "mqtt" {
			// mosquitto 2.0.20 refuses these (its test
			// 01-connect-max-keepalive); the 2.0.11 installed here lets
			// them in.
			require.Equal(t, byte(2), connack(4, 101).ReasonCode, kind)
			require.Equal(t, byte(2), connack(4, 0).ReasonCode, "%s: no keepalive", kind)
		}
		for ka, want := range map[uint16]uint16{101: 100, 0: 100, 50: 0} {
			ack := connack(5, ka)
			require.Equal(t, byte(0), ack.ReasonCode)
			require.Equal(t, want != 0, ack.Properties.ServerKeepAliveFlag, "%s: keepalive %d", kind, ka)
			require.Equal(t, want, ack.Properties.ServerKeepAlive, "%s: keepalive %d", kind, ka)
		}
	})
}

// An ACL file without rules denies everything, but, as every ACL, never
// refuses a SUBSCRIBE: the subscription is granted and nothing is
// delivered.
func TestConfEmptyACLFile(t *testing.T) {
	for _, perListener := range []string{"false", "true"} {
		t.Run("per_listener_settings "+perListener, func(t *testing.T) {
			conf := "per_listener_settings " + perListener + "\nlistener {{P1}} 127.0.0.1\nallow_anonymous true\nacl_file {{DIR}}/acl\n"
			sameConf(t, conf, map[string]string{"acl": "#comment\n\n"}, func(t *testing.T, kind string, ports []string) {
				for _, v := range []byte{4, 5} {
					c := rawclient.Dial(t, "127.0.0.1:"+ports[0], v)
					c.MustConnect("acl-check", "", "")
					require.Equal(t, []byte{0, 0}, c.Subscribe(1, 0, "test/topic", "#"), "%s v%d", kind, v)
					c.Publish(0, 0, "test/topic", "message", false)
					require.Empty(t, c.Ping(), "%s v%d: nothing delivered", kind, v)
				}
			})
		})
	}
}
