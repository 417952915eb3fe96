// SPDX-License-Identifier: Apache-2.0

package bridge_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
	"github.com/mqttkit/mqttkit/internal/testcert"
	"github.com/mqttkit/mqttkit/pkg/broker"
)

// pahoClient connects an MQTT 3.1.1 client to 127.0.0.1:port and records
// what it receives on filter ("" for none).
func pahoClient(t *testing.T, port int, id, filter string) (paho.Client, *recorder) {
	t.Helper()
	r := &recorder{}
	opts := paho.NewClientOptions().AddBroker("tcp://127.0.0.1:" + strconv.Itoa(port)).SetClientID(id).
		SetAutoReconnect(false).SetOrderMatters(true)
	c := paho.NewClient(opts)
	tok := c.Connect()
	require.True(t, tok.WaitTimeout(waitLimit))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { c.Disconnect(100) })
	if filter != "" {
		tok := c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
			r.mu.Lock()
			r.msgs = append(r.msgs, m.Topic()+" "+string(m.Payload()))
			r.qos = append(r.qos, m.Qos())
			r.ret = append(r.ret, m.Retained())
			r.mu.Unlock()
		})
		require.True(t, tok.WaitTimeout(waitLimit))
		require.NoError(t, tok.Error())
	}
	return c, r
}

func pahoPublish(t *testing.T, c paho.Client, topic, payload string, qos byte, retain bool) {
	t.Helper()
	tok := c.Publish(topic, qos, retain, payload)
	require.True(t, tok.WaitTimeout(waitLimit))
	require.NoError(t, tok.Error())
}

// TestInteropMosquittoRemote: mqtt broker bridges to a real mosquitto,
// both ways, over MQTT 3.1.1 (bridge bit 0x84) and MQTT 5, with prefixes,
// without loops; the state notification reaches mosquitto.
func TestInteropMosquittoRemote(t *testing.T) {
	for _, v := range []string{"mqttv311", "mqttv50"} {
		t.Run(v, func(t *testing.T) {
			m := interop.StartMosquitto(t)
			edge := newBroker(t, "127.0.0.1:0")
			_, remoteGot := pahoClient(t, m.Port, "watcher", "#")
			_, stateGot := pahoClient(t, m.Port, "state", "$SYS/broker/connection/#")
			cfgs := parse(t, `connection mosq
address 127.0.0.1:`+strconv.Itoa(m.Port)+`
bridge_protocol_version `+v+`
topic sensors/# out 1 edge/ site/
topic chat/# both 1
topic # in 1 cmd/ cloud/cmd/`)
			edgeGot := record(t, edge, "#", 1)
			s := startBridges(t, edge, cfgs)
			waitConnected(t, s)
			waitFor(t, "state 1 on mosquitto", func() bool {
				return contains(stateGot.all(), "$SYS/broker/connection/host.mosq/state 1")
			})
			pub, _ := pahoClient(t, m.Port, "pub", "")
			// mosquitto has the bridge's subscriptions once a message
			// through it arrives: send until one does.
			waitFor(t, "the bridge's subscriptions on mosquitto", func() bool {
				pahoPublish(t, pub, "cloud/cmd/ping", "p", 1, false)
				time.Sleep(20 * time.Millisecond)
				return contains(edgeGot.all(), "cmd/ping p")
			})
			require.NoError(t, edge.Publish("edge/sensors/t", []byte("1"), false, 1))
			require.NoError(t, edge.Publish("chat/e", []byte("from edge"), false, 1))
			pahoPublish(t, pub, "chat/m", "from mosquitto", 1, false)
			pahoPublish(t, pub, "cloud/cmd/led", "on", 1, true)
			require.NoError(t, edge.Publish("chat/end", []byte("e"), false, 1))
			pahoPublish(t, pub, "chat/end", "m", 1, false)
			waitFor(t, "the markers", func() bool {
				// Both markers on both sides: each side's own one arrives
				// through its broker alone, and may come after the other.
				return contains(edgeGot.all(), "chat/end m") && contains(edgeGot.all(), "chat/end e") &&
					contains(remoteGot.all(), "chat/end e") && contains(remoteGot.all(), "chat/end m")
			})
			var edgeMsgs []string
			for _, x := range edgeGot.all() {
				if x != "cmd/ping p" {
					edgeMsgs = append(edgeMsgs, x)
				}
			}
			require.ElementsMatch(t, []string{"edge/sensors/t 1", "chat/e from edge", "chat/m from mosquitto", "cmd/led on", "chat/end e", "chat/end m"}, edgeMsgs)
			var remoteMsgs []string
			for _, x := range remoteGot.all() {
				if x != "cloud/cmd/ping p" {
					remoteMsgs = append(remoteMsgs, x)
				}
			}
			require.ElementsMatch(t, []string{"site/sensors/t 1", "chat/e from edge", "chat/m from mosquitto", "cloud/cmd/led on", "chat/end e", "chat/end m"}, remoteMsgs)
			s.Stop()
			waitFor(t, "state 0 on mosquitto", func() bool {
				st := stateGot.all()
				return st[len(st)-1] == "$SYS/broker/connection/host.mosq/state 0"
			})
		})
	}
}

// TestInteropMosquittoEdge: a real mosquitto bridges into mqtt broker
// (protocol version 0x84, try_private): messages flow both ways without
// loops, and its state notification is accepted.
func TestInteropMosquittoEdge(t *testing.T) {
	core := newBroker(t, "127.0.0.1:0")
	_, port, _ := strings.Cut(core.Addr(), ":")
	coreGot := record(t, core, "#", 1)
	state := record(t, core, "$SYS/broker/connection/#", 2)
	m := interop.StartMosquitto(t,
		"connection core",
		"address 127.0.0.1:"+port,
		"remote_clientid mosq-edge",
		"topic chat/# both 1",
		"topic up/# out 1 \"\" site/",
		"restart_timeout 1",
	)
	waitFor(t, "mosquitto's bridge", func() bool {
		return contains(state.all(), "$SYS/broker/connection/mosq-edge/state 1")
	})
	_, edgeGot := pahoClient(t, m.Port, "watcher", "#")
	pub, _ := pahoClient(t, m.Port, "pub", "")
	waitFor(t, "the bridge's subscription on mqtt broker", func() bool { return core.HasSubscriber("chat/x") })
	pahoPublish(t, pub, "up/temp", "20", 1, false)
	pahoPublish(t, pub, "chat/m", "from mosquitto", 1, false)
	require.NoError(t, core.Publish("chat/c", []byte("from core"), false, 1))
	require.NoError(t, core.Publish("chat/end", []byte("c"), false, 1))
	pahoPublish(t, pub, "chat/end", "m", 1, false)
	waitFor(t, "the markers", func() bool {
		return contains(coreGot.all(), "chat/end m") && contains(edgeGot.all(), "chat/end c")
	})
	require.ElementsMatch(t, []string{"site/up/temp 20", "chat/m from mosquitto", "chat/c from core", "chat/end c", "chat/end m"}, coreGot.all(), m.Log())
	require.ElementsMatch(t, []string{"up/temp 20", "chat/m from mosquitto", "chat/c from core", "chat/end c", "chat/end m"}, edgeGot.all())
}

// TestInteropMosquittoRemoteTLSRestart: mqtt broker bridges `out` at QoS 1
// with a local and a remote prefix over TLS (bridge_cafile) to a real
// mosquitto, which is stopped (SIGTERM) and started again on the same port
// in the middle of a stream of n QoS 1 messages. mosquitto keeps its
// sessions (persistence true), so the subscriber there, a persistent QoS 1
// session that reconnects by itself, gets what mosquitto accepted while it
// was away. Asserted, over everything the subscriber receives: every
// message arrives (no loss); the first arrival of each message is in
// publish order (message i first arrives after the first arrival of
// i-1); any other arrival is a duplicate of a message that already
// arrived (at-least-once: a message in flight when mosquitto stopped may
// come twice). Nothing else arrives.
func TestInteropMosquittoRemoteTLSRestart(t *testing.T) {
	files := testcert.WriteT(t, "127.0.0.1", "localhost")
	store := t.TempDir()
	m := interop.StartMosquitto(t,
		"certfile "+files.ServerCert,
		"keyfile "+files.ServerKey,
		"persistence true",
		"persistence_location "+store+"/",
		"max_queued_messages 0", // no limit: the subscriber's queue holds the whole stream if need be
		"user root",             // when started as root: keep access to the temporary directories
	)
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(files.CA)
	require.NoError(t, err)
	require.True(t, pool.AppendCertsFromPEM(caPEM))

	// The subscriber on mosquitto, over TLS too.
	var mu sync.Mutex
	var got []int
	var bad []string
	opts := paho.NewClientOptions().AddBroker("ssl://127.0.0.1:" + strconv.Itoa(m.Port)).
		SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "localhost"}).
		SetClientID("sink").SetCleanSession(false).SetOrderMatters(true).
		SetAutoReconnect(true).SetMaxReconnectInterval(200 * time.Millisecond).
		SetConnectionLostHandler(func(paho.Client, error) {})
	opts.SetDefaultPublishHandler(func(_ paho.Client, msg paho.Message) {
		mu.Lock()
		defer mu.Unlock()
		v, err := strconv.Atoi(strings.TrimPrefix(msg.Topic(), "site/data/"))
		if err != nil || msg.Qos() != 1 || string(msg.Payload()) != "m"+strconv.Itoa(v) {
			bad = append(bad, fmt.Sprintf("%s %q qos %d", msg.Topic(), msg.Payload(), msg.Qos()))
			return
		}
		got = append(got, v)
	})
	sink := paho.NewClient(opts)
	tok := sink.Connect()
	require.True(t, tok.WaitTimeout(waitLimit))
	require.NoError(t, tok.Error())
	t.Cleanup(func() { sink.Disconnect(100) })
	tok = sink.Subscribe("site/#", 1, nil)
	require.True(t, tok.WaitTimeout(waitLimit))
	require.NoError(t, tok.Error())
	received := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(got)
	}
	seen := func(v int) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, x := range got {
			if x == v {
				return true
			}
		}
		return false
	}

	const n = 2000
	// The bridge's queue on the edge holds the whole stream while the
	// remote is away (the default limit, 1000, would drop the rest by
	// design).
	edge := newBroker(t, "127.0.0.1:0", func(c *broker.Config) { c.MaxQueued = 2 * n })
	cfgs := parse(t, `connection cloud
address 127.0.0.1:`+strconv.Itoa(m.Port)+`
topic data/# out 1 edge/ site/
bridge_cafile `+files.CA+`
restart_timeout 1`)
	s := startBridges(t, edge, cfgs)
	waitConnected(t, s)
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			require.NoError(t, edge.Publish("edge/data/"+strconv.Itoa(i), []byte("m"+strconv.Itoa(i)), false, 1))
		}
	}
	publish(0, n/2)
	waitFor(t, "the stream to flow", func() bool { return received() >= 50 })
	m.Terminate(t)
	t.Logf("mosquitto stopped after %d arrivals", received())
	// Published while mosquitto is away: they wait for the bridge on the
	// edge.
	publish(n/2, 3*n/4)
	waitFor(t, "the bridge to notice", func() bool { return !s.Stats()[0].Connected })
	m.Restart(t)
	waitConnected(t, s)
	publish(3*n/4, n)
	waitFor(t, "the last message", func() bool { return seen(n - 1) })

	mu.Lock()
	defer mu.Unlock()
	require.Empty(t, bad, "only the stream arrives, under the remote prefix, at QoS 1")
	next, dups := 0, 0
	for _, v := range got {
		if v == next {
			next++
			continue
		}
		require.Less(t, v, next, "message %d arrived before %d (out of order or lost); log:\n%s", v, next, m.Log())
		dups++
	}
	require.Equal(t, n, next, "every message arrived, first arrivals in order")
	t.Logf("%d arrivals for %d messages (%d duplicates)", len(got), n, dups)
}
