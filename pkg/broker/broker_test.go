// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/testutil"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

func TestLocalOnlyListensOnLoopback(t *testing.T) {
	b, err := New(Config{Port: 0})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.Start())
	ls := b.Listeners()
	require.NotEmpty(t, ls)
	require.True(t, strings.HasPrefix(ls[0].Addr, "127.0.0.1:"), ls[0].Addr)
	require.NotZero(t, b.Port())
	for _, l := range ls {
		host, port, err := net.SplitHostPort(l.Addr)
		require.NoError(t, err)
		require.True(t, net.ParseIP(host).IsLoopback(), l.Addr)
		require.Equal(t, ls[0].Addr[strings.LastIndex(ls[0].Addr, ":")+1:], port, "all local listeners share the port")
	}
	c, err := net.Dial("tcp", b.Addr())
	require.NoError(t, err)
	c.Close()
}

func TestCloseTwice(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
}

func TestListenError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = New(Config{Listeners: []Listener{{Address: l.Addr().String()}}})
	require.ErrorContains(t, err, "listen on "+l.Addr().String())
}

// start starts a broker for cfg (on 127.0.0.1:0 when cfg has no listeners)
// and closes it when the test ends.
func start(t *testing.T, cfg Config) *Broker {
	t.Helper()
	if cfg.Listeners == nil {
		cfg.Listeners = []Listener{{Address: "127.0.0.1:0"}}
	}
	b, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.Start())
	return b
}

func TestBrokerAuthAndACL(t *testing.T) {
	pw := passwordFile(t, map[string]string{"alice": "secret"})
	acl := writeFile(t, "acl", "user alice\ntopic readwrite a/#\n")
	b := start(t, Config{PasswordFile: pw, ACLFile: acl})

	c := rawclient.Dial(t, b.Addr(), 4)
	require.Equal(t, byte(5), c.Connect("anon", "", ""))
	c = rawclient.Dial(t, b.Addr(), 5)
	require.Equal(t, byte(0x87), c.Connect("wrong", "alice", "nope"))

	c = rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("alice", "alice", "secret")
	require.Equal(t, []byte{0, 0}, c.Subscribe(1, 0, "a/#", "b/#"), "granted, as by mosquitto")
	c.Publish(2, 1, "b/x", "denied", false)
	require.Equal(t, byte(0x87), c.Recv().ReasonCode)
	c.Publish(3, 1, "a/x", "ok", false)
	var got []packets.Packet
	for len(got) < 2 {
		got = append(got, c.Recv())
	}
	types := []byte{got[0].FixedHeader.Type, got[1].FixedHeader.Type}
	require.ElementsMatch(t, []byte{packets.Puback, packets.Publish}, types)

	// Reload: alice may now use b/# only; her connection stays.
	require.NoError(t, os.WriteFile(acl, []byte("user alice\ntopic readwrite b/#\n"), 0o600))
	require.NoError(t, b.Reload(SecurityConfig{PasswordFile: pw, ACLFile: acl}))
	c.Publish(4, 1, "b/x", "now allowed", false)
	require.Equal(t, byte(0), c.Recv().ReasonCode)
	// A broken file keeps the rules.
	require.NoError(t, os.WriteFile(acl, []byte("user alice\ntopic rw b/#\n"), 0o600))
	require.Error(t, b.Reload(SecurityConfig{PasswordFile: pw, ACLFile: acl}))
	c.Publish(5, 1, "b/y", "still allowed", false)
	require.Equal(t, byte(0), c.Recv().ReasonCode)
}

func TestBrokerConfigErrors(t *testing.T) {
	s, err := tlsfiles.WriteSelfSigned(t.TempDir())
	require.NoError(t, err)
	tests := []struct {
		name string
		cfg  Config
		msg  string
	}{
		{"missing password file", Config{PasswordFile: "/nonexistent/pw"}, "password_file: open /nonexistent/pw: no such file or directory"},
		{"bad acl", Config{ACLFile: writeFile(t, "acl", "topic x y z\n")}, `:1: Invalid topic access type "x"`},
		{"bad protocol", Config{Listeners: []Listener{{Address: "127.0.0.1:0", Protocol: "quic"}}}, `listener 127.0.0.1:0: unsupported protocol "quic"`},
		{"identity without tls", Config{Listeners: []Listener{{Address: "127.0.0.1:0", UseIdentityAsUsername: true}}}, "use_identity_as_username needs TLS with a cafile"},
		{"tls files", Config{Listeners: []Listener{{Address: "127.0.0.1:0", TLS: &tlsfiles.Files{CertFile: s.CertFile, KeyFile: "/nonexistent.key"}}}}, "listener 127.0.0.1:0: load certificate"},
		{"tls on unix", Config{Listeners: []Listener{{Address: filepath.Join(t.TempDir(), "s"), Protocol: "unix", TLS: &tlsfiles.Files{CertFile: s.CertFile, KeyFile: s.KeyFile}}}}, "TLS on a unix socket is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			require.ErrorContains(t, err, tt.msg)
		})
	}
}

func TestBrokerWebSockets(t *testing.T) {
	s, err := tlsfiles.WriteSelfSigned(t.TempDir())
	require.NoError(t, err)
	b := start(t, Config{AllowAnonymous: true, Listeners: []Listener{
		{Address: "127.0.0.1:0"},
		{Address: "127.0.0.1:0", Protocol: "websockets"},
		{Address: "127.0.0.1:0", Protocol: "websockets", TLS: &tlsfiles.Files{CertFile: s.CertFile, KeyFile: s.KeyFile}},
	}})
	ls := b.Listeners()
	require.Equal(t, []string{"mqtt", "ws", "wss"}, []string{ls[0].Protocol, ls[1].Protocol, ls[2].Protocol})

	sub := rawclient.Dial(t, ls[0].Addr, 4)
	sub.MustConnect("tcp-sub", "", "")
	require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "ws/#"))

	pool, err := tlsfiles.LoadCertPool(s.CAFile)
	require.NoError(t, err)
	for i, url := range []string{"ws://" + ls[1].Addr + "/mqtt", "wss://" + ls[2].Addr + "/mqtt"} {
		d := websocket.Dialer{Subprotocols: []string{"mqtt"}, TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}
		ws, resp, err := d.Dial(url, nil)
		require.NoError(t, err, url)
		resp.Body.Close()
		require.Equal(t, "mqtt", ws.Subprotocol())
		c := rawclient.New(t, &wsConn{Conn: ws.UnderlyingConn(), ws: ws}, 5)
		c.MustConnect(fmt.Sprintf("ws%d", i), "", "")
		c.Publish(0, 0, "ws/"+url[:3], "over "+url[:3], false)
		require.Empty(t, c.Ping())
		got := sub.Recv()
		require.Equal(t, "over "+url[:3], string(got.Payload))
	}
}

func TestBrokerUnixSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mqtt.sock")
	b := start(t, Config{AllowAnonymous: true, Listeners: []Listener{{Address: path, Protocol: "unix"}}})
	require.Equal(t, "unix", b.Listeners()[0].Protocol)
	conn, err := net.Dial("unix", path)
	require.NoError(t, err)
	rawclient.New(t, conn, 4).MustConnect("u", "", "")
}

func TestBrokerMaxConnections(t *testing.T) {
	logs := &testutil.Buffer{}
	b := start(t, Config{AllowAnonymous: true, Log: slog.New(slog.NewTextHandler(logs, nil)),
		Listeners: []Listener{{Address: "127.0.0.1:0", MaxConnections: 2}}})
	c1 := rawclient.Dial(t, b.Addr(), 4)
	c1.MustConnect("c1", "", "")
	c2 := rawclient.Dial(t, b.Addr(), 4)
	c2.MustConnect("c2", "", "")
	c3 := rawclient.Dial(t, b.Addr(), 4)
	c3.Send(c3.ConnectPacket("c3", "", ""))
	require.Empty(t, c3.ExpectClosed())
	require.Contains(t, logs.String(), "connection refused: listener at max_connections")
	// A free slot is usable again.
	c1.Conn.Close()
	rawclient.WaitFor(t, func() bool {
		c := rawclient.Dial(t, b.Addr(), 4)
		c.Send(c.ConnectPacket("c4", "", ""))
		pk, _, err := c.RecvRaw(5 * time.Second)
		return err == nil && pk.FixedHeader.Type == packets.Connack
	})
}

func TestBrokerMessageSizeLimit(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, MessageSizeLimit: 10})
	sub := rawclient.Dial(t, b.Addr(), 5)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{1}, sub.Subscribe(1, 1, "big/#"))
	p5 := rawclient.Dial(t, b.Addr(), 5)
	p5.MustConnect("p5", "", "")
	p5.Publish(1, 1, "big/1", "01234567890", false)
	require.Equal(t, byte(0x95), p5.Recv().ReasonCode)
	p5.Publish(2, 2, "big/2", "01234567890", false)
	ack := p5.Recv()
	require.Equal(t, packets.Pubrec, ack.FixedHeader.Type)
	require.Equal(t, byte(0x95), ack.ReasonCode)
	p4 := rawclient.Dial(t, b.Addr(), 4)
	p4.MustConnect("p4", "", "")
	p4.Publish(3, 1, "big/3", "01234567890", false)
	require.Equal(t, packets.Puback, p4.Recv().FixedHeader.Type)
	p4.Publish(4, 1, "big/4", "0123456789", false)
	require.Equal(t, packets.Puback, p4.Recv().FixedHeader.Type)
	got := sub.Recv()
	require.Equal(t, "big/4", got.TopicName)
	sub.Ack(got)
	require.Empty(t, sub.Ping())
}

// TestMessageSizeLimitRefusedFromHeader: with message_size_limit, a
// packet announcing more than any PUBLISH within the limit can hold is
// refused from its fixed header: the broker neither waits for nor
// allocates the body. As mosquitto, the MQTT 5 CONNACK does not advertise
// it as a Maximum Packet Size (02-subpub-qos0-oversize-payload.py,
// 07-will-oversize-payload.py compare the CONNACK); an MQTT 5 client that
// sends such a packet gets DISCONNECT 0x95.
func TestMessageSizeLimitRefusedFromHeader(t *testing.T) {
	logs := &testutil.Buffer{}
	b := start(t, Config{AllowAnonymous: true, MessageSizeLimit: 1000, Log: slog.New(slog.NewTextHandler(logs, nil))})
	c5 := rawclient.Dial(t, b.Addr(), 5)
	c5.Send(c5.ConnectPacket("v5", "", ""))
	ack := c5.Recv()
	require.Equal(t, byte(0), ack.ReasonCode)
	require.Zero(t, ack.Properties.MaximumPacketSize)

	c := rawclient.Dial(t, b.Addr(), 4)
	c.MustConnect("huge", "", "")
	// A PUBLISH header announcing 64 MiB, then a few bytes of it.
	var hdr bytes.Buffer
	hdr.WriteByte(0x30)
	n := 64 << 20
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		hdr.WriteByte(d)
		if n == 0 {
			break
		}
	}
	hdr.WriteString("\x00\x01tpayload")
	_, err := c.Conn.Write(hdr.Bytes())
	require.NoError(t, err)
	c.ExpectClosed() // within seconds: the broker does not wait for 64 MiB
	rawclient.WaitFor(t, func() bool { return strings.Contains(logs.String(), "larger than the maximum packet size") })
	require.Equal(t, int64(1), b.limits.oversize.Load())

	// Other clients are not affected.
	c5.Publish(0, 0, "x", "still here", false)
	require.Empty(t, c5.Ping())
	// An MQTT 5 client is told why.
	_, err = c5.Conn.Write(hdr.Bytes())
	require.NoError(t, err)
	require.Equal(t, "e00195", c5.RecvHex())
	c5.ExpectClosed()
}

func TestBrokerPersistence(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{AllowAnonymous: true, PersistenceDir: filepath.Join(dir, "store")}
	b1, err := New(Config{AllowAnonymous: true, PersistenceDir: cfg.PersistenceDir, Listeners: []Listener{{Address: "127.0.0.1:0"}}})
	require.NoError(t, err)
	require.NoError(t, b1.Start())

	// A second broker on the same store is refused clearly.
	_, err = New(Config{AllowAnonymous: true, PersistenceDir: cfg.PersistenceDir, Listeners: []Listener{{Address: "127.0.0.1:0"}}})
	require.ErrorContains(t, err, "is in use by another broker")

	c := rawclient.Dial(t, b1.Addr(), 4)
	connect := c.ConnectPacket("keeper", "", "")
	connect.Connect.Clean = false
	c.Send(connect)
	require.Equal(t, byte(0), c.Recv().ReasonCode)
	require.Equal(t, []byte{1}, c.Subscribe(1, 1, "q/#"))
	c.Conn.Close()
	waitOffline(t, b1.srv, "keeper")

	p := rawclient.Dial(t, b1.Addr(), 4)
	p.MustConnect("pub", "", "")
	p.Publish(1, 1, "r/1", "retained", true)
	require.Equal(t, packets.Puback, p.Recv().FixedHeader.Type)
	for i := range 3 {
		p.Publish(uint16(2+i), 1, "q/1", fmt.Sprintf("queued %d", i), false)
		require.Equal(t, packets.Puback, p.Recv().FixedHeader.Type)
	}
	require.NoError(t, b1.Close())

	b2 := start(t, cfg)
	c = rawclient.Dial(t, b2.Addr(), 4)
	c.Send(connect)
	ack := c.Recv()
	require.True(t, ack.SessionPresent)
	var queued []string
	for len(queued) < 3 {
		got := c.Recv()
		queued = append(queued, string(got.Payload))
		c.Ack(got)
	}
	require.ElementsMatch(t, []string{"queued 0", "queued 1", "queued 2"}, queued)
	require.Empty(t, c.Ping())

	r := rawclient.Dial(t, b2.Addr(), 5)
	r.MustConnect("reader", "", "")
	require.Equal(t, []byte{0}, r.Subscribe(1, 0, "r/#"))
	got := r.Recv()
	require.Equal(t, "retained", string(got.Payload))
	require.True(t, got.FixedHeader.Retain)
}

func TestBrokerSys(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: 50 * time.Millisecond})
	c := rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("sys", "", "")
	require.Equal(t, []byte{0}, c.Subscribe(1, 0, "$SYS/#"))
	seen := map[string]string{}
	rawclient.WaitFor(t, func() bool {
		pk := c.Recv()
		seen[pk.TopicName] = string(pk.Payload)
		return seen["$SYS/broker/clients/connected"] == "1" && seen["$SYS/broker/load/bytes/received/1min"] != ""
	})
	require.Contains(t, seen["$SYS/broker/version"], "mqtt broker (mqttkit) version ")
	require.Regexp(t, `^\d+ seconds$`, seen["$SYS/broker/uptime"])
	require.Contains(t, seen, "$SYS/broker/retained messages/count")
	require.NotContains(t, seen, "$SYS/broker/system/threads", "mochi's own $SYS topics are removed")

	off := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	c = rawclient.Dial(t, off.Addr(), 5)
	c.MustConnect("nosys", "", "")
	require.Equal(t, []byte{0}, c.Subscribe(1, 0, "$SYS/#"))
	require.Empty(t, c.Ping())
}

// TestBrokerLogsNoSecrets: a second CONNECT (a protocol error that mochi
// logs with the whole packet) must not put the password in the log.
func TestBrokerLogsNoSecrets(t *testing.T) {
	logs := &testutil.Buffer{}
	pw := passwordFile(t, map[string]string{"alice": "s3cr3t-pw"})
	b := start(t, Config{PasswordFile: pw, Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	c := rawclient.Dial(t, b.Addr(), 4)
	c.MustConnect("c", "alice", "s3cr3t-pw")
	c.Send(c.ConnectPacket("c", "alice", "s3cr3t-pw"))
	c.ExpectClosed()
	c = rawclient.Dial(t, b.Addr(), 5)
	require.Equal(t, byte(0x87), c.Connect("d", "alice", "wr0ng-pw"))
	rawclient.WaitFor(t, func() bool { return strings.Contains(logs.String(), "connection refused") })
	require.NoError(t, b.Close())
	out := logs.String()
	require.NotContains(t, out, "s3cr3t-pw")
	require.NotContains(t, out, "wr0ng-pw")
	require.NotContains(t, out, "alice")
	require.Contains(t, out, `level=DEBUG msg="mochi mqtt starting"`, "mochi chatter is demoted to debug")
}

func TestBrokerMetrics(t *testing.T) {
	pw := passwordFile(t, map[string]string{"alice": "secret"})
	b := start(t, Config{PasswordFile: pw})
	addr, err := b.ServeMetrics("127.0.0.1:0")
	require.NoError(t, err)

	c := rawclient.Dial(t, b.Addr(), 5)
	require.Equal(t, byte(0x87), c.Connect("x", "alice", "wrong"))
	c = rawclient.Dial(t, b.Addr(), 5)
	c.MustConnect("y", "alice", "secret")
	c.Publish(1, 1, "t", "hello", false)
	require.Equal(t, byte(0x10), c.Recv().ReasonCode) // no matching subscribers

	get := func(path string) (string, string) {
		resp, err := http.Get("http://" + addr + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return string(body), resp.Header.Get("Content-Type")
	}
	body, ctype := get("/healthz")
	require.Equal(t, "ok\n", body)
	require.Equal(t, "text/plain; charset=utf-8", ctype)

	body, ctype = get("/metrics")
	require.Equal(t, "text/plain; version=0.0.4; charset=utf-8", ctype)
	for _, line := range []string{
		"# TYPE mqtt_clients_connected gauge\nmqtt_clients_connected 1\n",
		"# TYPE mqtt_auth_failures_total counter\nmqtt_auth_failures_total 1\n",
		"mqtt_messages_received_total 1\n",
		`mqtt_messages_dropped_total{reason="acl_denied"} 0` + "\n",
	} {
		require.Contains(t, body, line)
	}
	// Every sample line is NAME[{labels}] VALUE.
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		if !strings.HasPrefix(l, "#") {
			require.Regexp(t, `^[a-z_]+(\{[a-z_]+="[a-z0-9_]+"\})? [0-9.e+-]+$`, l)
		}
	}
	require.NoError(t, b.Close())
	_, err = http.Get("http://" + addr + "/healthz")
	require.Error(t, err, "the metrics server stops with the broker")
}

// TestBrokerPersistenceFlowControl: messages queued for Receive Maximum and
// later sent keep their store entries right: acknowledged ones do not come
// back after a restart, unacknowledged ones do, once.
func TestBrokerPersistenceFlowControl(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	b1, err := New(Config{AllowAnonymous: true, PersistenceDir: dir, Listeners: []Listener{{Address: "127.0.0.1:0"}}})
	require.NoError(t, err)
	require.NoError(t, b1.Start())
	c := rawclient.Dial(t, b1.Addr(), 5)
	conn := c.ConnectPacket("flow", "", "")
	conn.Connect.Clean = false
	conn.Properties.SessionExpiryInterval, conn.Properties.SessionExpiryIntervalFlag = 300, true
	conn.Properties.ReceiveMaximum = 1
	c.Send(conn)
	require.Equal(t, byte(0), c.Recv().ReasonCode)
	require.Equal(t, []byte{1}, c.Subscribe(1, 1, "f"))
	for i := range 4 {
		require.NoError(t, b1.Publish("f", []byte(fmt.Sprint(i)), false, 1))
	}
	// One in flight at a time; acknowledge the first two.
	for _, want := range []string{"0", "1"} {
		got := c.Recv()
		require.Equal(t, want, string(got.Payload))
		c.Ack(got)
	}
	got := c.Recv()
	require.Equal(t, "2", string(got.Payload)) // not acknowledged
	c.Conn.Close()
	waitOffline(t, b1.srv, "flow")
	require.NoError(t, b1.Close())

	b2 := start(t, Config{AllowAnonymous: true, PersistenceDir: dir})
	c = rawclient.Dial(t, b2.Addr(), 5)
	conn.Properties.ReceiveMaximum = 10
	c.Send(conn)
	require.True(t, c.Recv().SessionPresent)
	var again []string
	for len(again) < 2 {
		pk := c.Recv()
		again = append(again, string(pk.Payload))
		c.Ack(pk)
	}
	require.ElementsMatch(t, []string{"2", "3"}, again)
	require.Empty(t, c.Ping())
}

// TestBrokerCloseWhileClientsChurn: Close while clients connect and leave.
// mochi's own shutdown read-locked its client table twice and deadlocked
// when a client came or went in between.
func TestBrokerCloseWhileClientsChurn(t *testing.T) {
	for round := range 10 {
		b, err := New(Config{AllowAnonymous: true, Listeners: []Listener{{Address: "127.0.0.1:0"}}})
		require.NoError(t, err)
		require.NoError(t, b.Start())
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var cycles atomic.Int64
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					conn, err := net.Dial("tcp", b.Addr())
					if err != nil {
						return
					}
					c := rawclient.New(t, conn, 4)
					var buf bytes.Buffer
					pk := c.ConnectPacket(fmt.Sprintf("churn-%d-%d-%d", round, w, i), "", "")
					pk.ProtocolVersion = 4
					_ = pk.ConnectEncode(&buf)
					_, _ = conn.Write(buf.Bytes())
					_, _, _ = c.RecvRaw(time.Second)
					conn.Close()
					cycles.Add(1)
				}
			}()
		}
		rawclient.WaitFor(t, func() bool { return cycles.Load() >= int64(4*round+1) })
		done := make(chan error, 1)
		go func() { done <- b.Close() }()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(20 * time.Second):
			t.Fatalf("round %d: Close deadlocked", round)
		}
		close(stop)
		wg.Wait()
	}
}

// TestBrokerCloseDisconnects: on Close MQTT 5 clients get DISCONNECT 0x8B,
// MQTT 3.1.1 clients only see the connection end.
func TestBrokerCloseDisconnects(t *testing.T) {
	b, err := New(Config{AllowAnonymous: true, Listeners: []Listener{{Address: "127.0.0.1:0"}}})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	c5 := rawclient.Dial(t, b.Addr(), 5)
	c5.MustConnect("five", "", "")
	c4 := rawclient.Dial(t, b.Addr(), 4)
	c4.MustConnect("four", "", "")
	require.NoError(t, b.Close())
	got := c5.ExpectClosed()
	require.Len(t, got, 1)
	require.Equal(t, packets.Disconnect, got[0].FixedHeader.Type)
	require.Equal(t, byte(0x8B), got[0].ReasonCode)
	require.Empty(t, c4.ExpectClosed())
}
