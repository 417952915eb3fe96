// SPDX-License-Identifier: Apache-2.0

package bridge_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testcert"
	"github.com/mqttkit/mqttkit/internal/testutil"
	"github.com/mqttkit/mqttkit/pkg/bridge"
	"github.com/mqttkit/mqttkit/pkg/broker"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// waitLimit bounds the waits of these tests: a wait is for something that
// must happen, so the limit only turns a hang into a failure.
const waitLimit = 30 * time.Second

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// newBroker starts a broker on addr (127.0.0.1:0 for a free port).
func newBroker(t *testing.T, addr string, mod ...func(*broker.Config)) *broker.Broker {
	mod = append([]func(*broker.Config){func(c *broker.Config) { c.Log = testLog() }}, mod...)
	t.Helper()
	cfg := broker.Config{Listeners: []broker.Listener{{Address: addr}}, AllowAnonymous: true,
		MaxInflight: 20, MaxQueued: 1000, SysInterval: -1}
	for _, m := range mod {
		m(&cfg)
	}
	var b *broker.Broker
	var err error
	for range 50 { // the same port again after a restart: it may take a moment to be free
		if b, err = broker.New(cfg); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { b.Close() })
	return b
}

// parse reads bridge sections from conf text.
func parse(t *testing.T, text string) []*bridge.Config {
	t.Helper()
	p := &bridge.Parser{Hostname: "host"}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, value, _ := strings.Cut(line, " ")
		handled, _, err := p.Directive("test.conf", i+1, key, strings.TrimSpace(value))
		require.NoError(t, err, line)
		require.True(t, handled, line)
	}
	require.NoError(t, p.Finish())
	return p.Bridges
}

// recorder collects the messages of an inline subscription.
type recorder struct {
	mu   sync.Mutex
	msgs []string // "topic payload"
	qos  []byte
	ret  []bool
}

func record(t *testing.T, b *broker.Broker, filter string, id int) *recorder {
	t.Helper()
	r := &recorder{}
	require.NoError(t, b.Subscribe(filter, id, func(topic string, payload []byte, retain bool, qos byte) {
		if strings.HasPrefix(topic, "$") && !strings.HasPrefix(filter, "$") {
			return // mochi's inline subscriptions match $SYS with wildcards
		}
		r.mu.Lock()
		r.msgs = append(r.msgs, topic+" "+string(payload))
		r.qos = append(r.qos, qos)
		r.ret = append(r.ret, retain)
		r.mu.Unlock()
	}))
	return r
}

func (r *recorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.msgs...)
}

func (r *recorder) wait(t *testing.T, n int) []string {
	t.Helper()
	waitFor(t, fmt.Sprintf("%d messages", n), func() bool { return len(r.all()) >= n })
	return r.all()
}

func startBridges(t *testing.T, local *broker.Broker, cfgs []*bridge.Config) *bridge.Set {
	t.Helper()
	s, err := bridge.Start(cfgs, local, testLog())
	require.NoError(t, err)
	t.Cleanup(s.Stop)
	return s
}

func waitConnected(t *testing.T, s *bridge.Set) {
	t.Helper()
	waitFor(t, "the bridge to connect", func() bool {
		for _, st := range s.Stats() {
			if !st.Connected {
				return false
			}
		}
		return true
	})
}

// TestBridgeOutWithPrefixes: messages published on the edge broker under
// the local prefix reach the remote under the remote prefix, QoS 1, in
// order; other topics do not; retained flags are kept.
func TestBridgeOutWithPrefixes(t *testing.T) {
	remote := newBroker(t, "127.0.0.1:0")
	edge := newBroker(t, "127.0.0.1:0")
	got := record(t, remote, "#", 1)
	cfgs := parse(t, `connection cloud
address `+remote.Addr()+`
topic sensors/# out 1 edge/ site1/
restart_timeout 1`)
	s := startBridges(t, edge, cfgs)
	waitConnected(t, s)
	require.NoError(t, edge.Publish("other/x", []byte("no"), false, 1))
	for i := range 50 {
		require.NoError(t, edge.Publish("edge/sensors/t", []byte(strconv.Itoa(i)), false, 1))
	}
	require.NoError(t, edge.Publish("edge/sensors/r", []byte("kept"), true, 1))
	msgs := got.wait(t, 51)
	for i := range 50 {
		require.Equal(t, "site1/sensors/t "+strconv.Itoa(i), msgs[i])
	}
	require.Equal(t, "site1/sensors/r kept", msgs[50])
	got.mu.Lock()
	require.True(t, got.ret[50], "retained flag forwarded")
	got.mu.Unlock()
	for _, m := range msgs {
		require.False(t, strings.HasPrefix(m, "other/"), m)
	}
	// Counted once written (the remote may have it a moment before).
	waitFor(t, "the count", func() bool { return s.Stats()[0].Sent == 51 })
}

// TestBridgeInAndBothNoLoop: `in` brings remote messages to the edge; a
// `both` topic forwards each message once each way and never back (no
// local on the edge's session and on the MQTT 5 remote; the bridge bit on
// an MQTT 3.1.1 remote).
func TestBridgeInAndBothNoLoop(t *testing.T) {
	for _, v := range []string{"mqttv311", "mqttv50"} {
		t.Run(v, func(t *testing.T) {
			remote := newBroker(t, "127.0.0.1:0")
			edge := newBroker(t, "127.0.0.1:0")
			cfgs := parse(t, `connection cloud
address `+remote.Addr()+`
bridge_protocol_version `+v+`
topic cmd/# in 1
topic chat/# both 1`)
			edgeGot := record(t, edge, "#", 1)
			remoteGot := record(t, remote, "#", 2)
			s := startBridges(t, edge, cfgs)
			waitConnected(t, s)
			waitFor(t, "the remote subscription", func() bool { return remote.HasSubscriber("chat/x") })
			require.NoError(t, remote.Publish("cmd/led", []byte("on"), true, 1))
			require.NoError(t, remote.Publish("chat/a", []byte("from remote"), false, 1))
			require.NoError(t, edge.Publish("chat/b", []byte("from edge"), false, 1))
			require.NoError(t, edge.Publish("cmd/local", []byte("stays"), false, 1))
			// A marker each way, after the others: once it is through,
			// an echo would have been too.
			require.NoError(t, remote.Publish("chat/end", []byte("r"), false, 1))
			require.NoError(t, edge.Publish("chat/end", []byte("e"), false, 1))
			waitFor(t, "the markers", func() bool {
				return contains(edgeGot.all(), "chat/end r") && contains(remoteGot.all(), "chat/end e")
			})
			require.ElementsMatch(t, []string{"cmd/led on", "chat/a from remote", "chat/b from edge", "cmd/local stays", "chat/end r", "chat/end e"}, edgeGot.all())
			edgeGot.mu.Lock()
			for i, m := range edgeGot.msgs {
				require.Equal(t, m == "cmd/led on", edgeGot.ret[i], "retain flag of %s kept", m)
			}
			edgeGot.mu.Unlock()
			require.ElementsMatch(t, []string{"cmd/led on", "chat/a from remote", "chat/b from edge", "chat/end r", "chat/end e"}, remoteGot.all())
		})
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestBridgeRemoteRestartQoS1: the remote goes away in the middle of a
// QoS 1 stream and comes back; every message arrives, in order (a message
// in flight when the remote went away may arrive twice).
func TestBridgeRemoteRestartQoS1(t *testing.T) {
	remote := newBroker(t, "127.0.0.1:0")
	addr := remote.Addr()
	edge := newBroker(t, "127.0.0.1:0")
	got1 := record(t, remote, "data/#", 1)
	cfgs := parse(t, `connection cloud
address `+addr+`
topic data/# out 1
restart_timeout 1`)
	s := startBridges(t, edge, cfgs)
	waitConnected(t, s)
	const n = 300
	for i := range n / 3 {
		require.NoError(t, edge.Publish("data/x", []byte(strconv.Itoa(i)), false, 1))
	}
	got1.wait(t, 10) // the stream is flowing
	require.NoError(t, remote.Close())
	// Published while the remote is down: queued in the edge's session
	// for the bridge.
	for i := n / 3; i < 2*n/3; i++ {
		require.NoError(t, edge.Publish("data/x", []byte(strconv.Itoa(i)), false, 1))
	}
	waitFor(t, "the bridge to notice", func() bool { return !s.Stats()[0].Connected })
	// They wait in the edge's session for the bridge: its queue length
	// is in the stats and the metrics.
	waitFor(t, "the queue", func() bool { return s.Stats()[0].Queued >= n/3 })
	var metrics strings.Builder
	s.WriteMetrics(&metrics)
	require.Contains(t, metrics.String(), "mqtt_bridge_connected{bridge=\"cloud\"} 0\n")
	require.Regexp(t, `mqtt_bridge_queued_messages\{bridge="cloud"\} [1-9][0-9]{2,}\n`, metrics.String())
	require.Regexp(t, `mqtt_bridge_messages_total\{bridge="cloud",direction="out"\} [1-9]`, metrics.String())
	remote2 := newBroker(t, addr)
	got2 := record(t, remote2, "data/#", 1)
	waitConnected(t, s)
	for i := 2 * n / 3; i < n; i++ {
		require.NoError(t, edge.Publish("data/x", []byte(strconv.Itoa(i)), false, 1))
	}
	waitFor(t, "the last message", func() bool { return contains(got2.all(), "data/x "+strconv.Itoa(n-1)) })
	all := append(got1.all(), got2.all()...)
	next := 0
	for _, m := range all {
		v, err := strconv.Atoi(strings.TrimPrefix(m, "data/x "))
		require.NoError(t, err)
		if v == next {
			next++
			continue
		}
		require.Less(t, v, next, "message %d arrived before %d (out of order or lost)", v, next)
	}
	require.Equal(t, n, next, "every message arrived, in order")
}

// TestBridgeTLS: the bridge verifies the remote's certificate with
// bridge_cafile and presents its own client certificate.
func TestBridgeTLS(t *testing.T) {
	files := testcert.WriteT(t, "127.0.0.1", "localhost")
	remote := newBroker(t, "127.0.0.1:0", func(c *broker.Config) {
		c.Listeners[0].TLS = &tlsfiles.Files{CertFile: files.ServerCert, KeyFile: files.ServerKey,
			CAFile: files.CA, RequireCertificate: true}
	})
	edge := newBroker(t, "127.0.0.1:0")
	got := record(t, remote, "#", 1)
	_, port, _ := net.SplitHostPort(remote.Addr())
	cfgs := parse(t, `connection secure
address localhost:`+port+`
topic t/# out 1
bridge_cafile `+files.CA+`
bridge_certfile `+files.ClientCert+`
bridge_keyfile `+files.ClientKey+`
bridge_tls_version tlsv1.2`)
	s := startBridges(t, edge, cfgs)
	waitConnected(t, s)
	require.NoError(t, edge.Publish("t/1", []byte("secret"), false, 1))
	require.Equal(t, []string{"t/1 secret"}, got.wait(t, 1))

	// A CA that did not sign the server's certificate: no connection.
	bad := parse(t, `connection wrongca
address localhost:`+port+`
topic t/# out 1
bridge_cafile `+files.OtherCA)
	var logs testutil.Buffer
	b, err := bridge.New(bad[0], edge, slog.New(slog.NewTextHandler(&logs, nil)))
	require.NoError(t, err)
	require.NoError(t, b.Start())
	defer b.Stop()
	waitFor(t, "the failed handshake", func() bool { return strings.Contains(logs.String(), "bridge connection failed") })
	require.Contains(t, logs.String(), "certificate")
	require.False(t, b.Stats().Connected)
}

// TestBridgeNotifications: the state topic is 1 while connected and 0
// after the bridge stops, retained on the local and the remote broker.
func TestBridgeNotifications(t *testing.T) {
	remote := newBroker(t, "127.0.0.1:0")
	edge := newBroker(t, "127.0.0.1:0")
	cfgs := parse(t, `connection cloud
address `+remote.Addr()+`
topic x out 0`)
	require.Equal(t, "$SYS/broker/connection/host.cloud/state", cfgs[0].StateTopic())
	edgeState := record(t, edge, "$SYS/broker/connection/#", 1)
	remoteState := record(t, remote, "$SYS/broker/connection/#", 1)
	s, err := bridge.Start(cfgs, edge, nil)
	require.NoError(t, err)
	waitConnected(t, s)
	waitFor(t, "state 1 on both", func() bool {
		return contains(edgeState.all(), "$SYS/broker/connection/host.cloud/state 1") &&
			contains(remoteState.all(), "$SYS/broker/connection/host.cloud/state 1")
	})
	s.Stop()
	waitFor(t, "state 0 on both", func() bool {
		e, r := edgeState.all(), remoteState.all()
		return e[len(e)-1] == "$SYS/broker/connection/host.cloud/state 0" && r[len(r)-1] == "$SYS/broker/connection/host.cloud/state 0"
	})
}

// TestBridgeLocalACL: with local_username, messages coming in are
// published under that user's ACL on the local broker.
func TestBridgeLocalACL(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	require.NoError(t, os.WriteFile(acl, []byte("user bridge\ntopic write in/allowed/#\ntopic read #\n"), 0o600))
	remote := newBroker(t, "127.0.0.1:0")
	edge := newBroker(t, "127.0.0.1:0", func(c *broker.Config) { c.ACLFile = acl })
	got := record(t, edge, "in/#", 1)
	cfgs := parse(t, `connection cloud
address `+remote.Addr()+`
local_username bridge
topic in/# in 1`)
	s := startBridges(t, edge, cfgs)
	waitConnected(t, s)
	waitFor(t, "the remote subscription", func() bool { return remote.HasSubscriber("in/x") })
	require.NoError(t, remote.Publish("in/denied/x", []byte("no"), false, 1))
	require.NoError(t, remote.Publish("in/allowed/x", []byte("yes"), false, 1))
	require.Equal(t, []string{"in/allowed/x yes"}, got.wait(t, 1))
	waitFor(t, "both handled", func() bool { return s.Stats()[0].Received == 2 })
	require.Equal(t, []string{"in/allowed/x yes"}, got.all())
}

// testLog logs to stderr with BRIDGE_TEST_LOG=1.
func testLog() *slog.Logger {
	if os.Getenv("BRIDGE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestBridgeMaxPacketSize: a message from the remote larger than
// bridge_max_packet_size is dropped (and acknowledged: the ones after it
// still come); with MQTT 5 the remote is told the limit and does not send it.
func TestBridgeMaxPacketSize(t *testing.T) {
	for _, v := range []string{"mqttv311", "mqttv50"} {
		t.Run(v, func(t *testing.T) {
			remote := newBroker(t, "127.0.0.1:0")
			edge := newBroker(t, "127.0.0.1:0")
			got := record(t, edge, "in/#", 1)
			cfgs := parse(t, `connection cloud
address `+remote.Addr()+`
bridge_protocol_version `+v+`
bridge_max_packet_size 100
topic in/# in 1`)
			s := startBridges(t, edge, cfgs)
			waitConnected(t, s)
			waitFor(t, "the remote subscription", func() bool { return remote.HasSubscriber("in/x") })
			require.NoError(t, remote.Publish("in/big", make([]byte, 200), false, 1))
			require.NoError(t, remote.Publish("in/small", []byte("ok"), false, 1))
			require.Equal(t, []string{"in/small ok"}, got.wait(t, 1))
			require.True(t, s.Stats()[0].Connected)
		})
	}
}

// TestBridgeAddressFallback: with several addresses, a bridge whose first
// address does not answer connects to the next one.
func TestBridgeAddressFallback(t *testing.T) {
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := dead.Addr().String()
	dead.Close() // nothing listens there now
	remote := newBroker(t, "127.0.0.1:0")
	edge := newBroker(t, "127.0.0.1:0")
	got := record(t, remote, "t/#", 1)
	cfgs := parse(t, `connection cloud
address `+deadAddr+` `+remote.Addr()+`
round_robin true
restart_timeout 1
topic t/# out 1`)
	s := startBridges(t, edge, cfgs)
	waitConnected(t, s)
	require.Equal(t, remote.Addr(), s.Stats()[0].Address)
	require.NoError(t, edge.Publish("t/x", []byte("via the second"), false, 1))
	require.Equal(t, []string{"t/x via the second"}, got.wait(t, 1))
}

// TestBridgePersistence: messages for a remote that is down are kept in
// the persistence store and delivered after the edge broker restarts.
func TestBridgePersistence(t *testing.T) {
	dir := t.TempDir()
	remote := newBroker(t, "127.0.0.1:0")
	addr := remote.Addr()
	require.NoError(t, remote.Close())
	persist := func(c *broker.Config) { c.PersistenceDir = dir }
	cfgText := `connection cloud
address ` + addr + `
restart_timeout 1
topic t/# out 1`

	edge := newBroker(t, "127.0.0.1:0", persist)
	s, err := bridge.Start(parse(t, cfgText), edge, testLog())
	require.NoError(t, err)
	for i := range 20 {
		require.NoError(t, edge.Publish("t/x", []byte(strconv.Itoa(i)), false, 1))
	}
	waitFor(t, "the queue", func() bool { return s.Stats()[0].Queued == 20 })
	s.Stop()
	require.NoError(t, edge.Close())

	remote2 := newBroker(t, addr)
	got := record(t, remote2, "t/#", 1)
	edge2 := newBroker(t, "127.0.0.1:0", persist)
	s2 := startBridges(t, edge2, parse(t, cfgText))
	msgs := got.wait(t, 20)
	for i := range 20 {
		require.Equal(t, "t/x "+strconv.Itoa(i), msgs[i])
	}
	waitFor(t, "an empty queue", func() bool { return s2.Stats()[0].Queued == 0 })
}

// TestBridgeSys: $SYS/broker/bridges/NAME/... say the state and counts.
func TestBridgeSys(t *testing.T) {
	remote := newBroker(t, "127.0.0.1:0")
	edge := newBroker(t, "127.0.0.1:0")
	sys := record(t, edge, "$SYS/broker/bridges/#", 1)
	s := startBridges(t, edge, parse(t, `connection cloud
address `+remote.Addr()+`
topic t/# out 1`))
	waitConnected(t, s)
	require.NoError(t, edge.Publish("t/x", []byte("1"), false, 1))
	waitFor(t, "the message to go out", func() bool { return s.Stats()[0].Sent == 1 })
	s.PublishSys(10 * time.Millisecond)
	waitFor(t, "the $SYS topics", func() bool {
		all := sys.all()
		return contains(all, "$SYS/broker/bridges/cloud/state 1") && contains(all, "$SYS/broker/bridges/cloud/messages/sent 1") &&
			contains(all, "$SYS/broker/bridges/cloud/messages/received 0") && contains(all, "$SYS/broker/bridges/cloud/queued 0")
	})
}
