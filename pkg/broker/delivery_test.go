// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/internal/testutil"
)

// readPublish reads packets until a PUBLISH and returns it; other packets
// (the acknowledgements of the client's own publishes) are skipped.
func readPublish(t *testing.T, c *rawmqtt.Conn) *rawmqtt.Packet {
	t.Helper()
	for {
		p, err := c.Read(10 * time.Second)
		require.NoError(t, err)
		if p.Type == rawmqtt.PUBLISH {
			return p
		}
	}
}

// The broker numbers its deliveries to a client 1, 2, 3 ... as mosquitto
// does: the client's own SUBSCRIBE and QoS 1/2 PUBLISH identifiers are
// another space [MQTT-2.2.1] and use up none of them (mosquitto's
// 02-subpub-qos1.py and 02-subpub-qos2.py check for 1).
func TestDeliveryPacketIDsStartAtOne(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			c, err := rawmqtt.Dial(b.Addr(), v)
			require.NoError(t, err)
			defer c.Close()
			_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: fmt.Sprint("ids-", v), Clean: true, KeepAlive: 30})
			require.NoError(t, err)
			topic := fmt.Sprint("ids/", v)
			_, _, err = c.Subscribe(530, topic, 2)
			require.NoError(t, err)
			for i, qos := range []byte{1, 2, 1} {
				require.NoError(t, c.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: v, Topic: []byte(topic),
					Payload: []byte("m"), QoS: qos, PacketID: uint16(300 + i)})))
				p := readPublish(t, c)
				require.Equal(t, uint16(i+1), p.PacketID, "delivery %d", i+1)
				require.False(t, p.Dup, "a first delivery has DUP 0 [MQTT-3.3.1-1]")
				if qos == 1 {
					require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)))
				} else {
					require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBREC, p.PacketID)))
					for {
						q, err := c.Read(10 * time.Second)
						require.NoError(t, err)
						if q.Type == rawmqtt.PUBREC { // the broker's answer to the client's publish
							require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBREL, q.PacketID)))
							continue
						}
						if q.Type == rawmqtt.PUBREL && q.PacketID == p.PacketID {
							require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBCOMP, q.PacketID)))
							break
						}
					}
				}
			}
		})
	}
}

// A message queued while its client was offline goes out with DUP 0 when
// the client comes back: it was never sent [MQTT-3.3.1-1] (mosquitto's
// 05-clean-session-qos1.py). One that was sent and not acknowledged goes
// out again with DUP 1, under the same packet ID.
func TestDeliveryDupOnlyWhenSentBefore(t *testing.T) {
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1})
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			o := rawmqtt.ConnectOptions{ClientID: fmt.Sprint("dup-", v), KeepAlive: 30, SessionExpiry: 600}
			topic := fmt.Sprint("dup/", v)
			c, err := rawmqtt.Dial(b.Addr(), v)
			require.NoError(t, err)
			_, err = c.Connect(o)
			require.NoError(t, err)
			_, _, err = c.Subscribe(109, topic, 1)
			require.NoError(t, err)
			require.NoError(t, b.Publish(topic, []byte("sent"), false, 1))
			sent := readPublish(t, c)
			require.Equal(t, uint16(1), sent.PacketID)
			require.False(t, sent.Dup)
			require.NoError(t, c.Send(rawmqtt.Disconnect())) // not acknowledged
			c.Close()
			waitOffline(t, b.srv, o.ClientID)

			require.NoError(t, b.Publish(topic, []byte("queued"), false, 1))

			c, err = rawmqtt.Dial(b.Addr(), v)
			require.NoError(t, err)
			defer c.Close()
			ack, err := c.Connect(o)
			require.NoError(t, err)
			require.True(t, ack.SessionPresent)
			again := readPublish(t, c)
			require.Equal(t, "sent", string(again.Payload))
			require.Equal(t, sent.PacketID, again.PacketID)
			require.True(t, again.Dup, "sent before: DUP 1")
			first := readPublish(t, c)
			require.Equal(t, "queued", string(first.Payload))
			require.Equal(t, uint16(2), first.PacketID)
			require.False(t, first.Dup, "queued while offline, never sent: DUP 0")
			require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, again.PacketID)))
			require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, first.PacketID)))
		})
	}
}

// qos1Burst publishes n QoS 1 messages "m0" ... from a raw MQTT 3.1.1
// client without waiting for acknowledgements (as mosquitto_pub -l does,
// pipelined), and reads the PUBACKs; the channel gets the number of
// PUBACKs once all n came, or the error.
func qos1Burst(t *testing.T, addr, topic string, n int) <-chan error {
	t.Helper()
	p, err := rawmqtt.Dial(addr, 4)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	_, err = p.Connect(rawmqtt.ConnectOptions{ClientID: "burst-pub", Clean: true, KeepAlive: 60})
	require.NoError(t, err)
	done := make(chan error, 2)
	go func() {
		for i := range n {
			if err := p.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Topic: []byte(topic),
				Payload: fmt.Appendf(nil, "m%d", i), QoS: 1, PacketID: uint16(i%65535 + 1)})); err != nil {
				done <- fmt.Errorf("publish %d: %w", i, err)
				return
			}
		}
	}()
	go func() {
		for acked := 0; acked < n; {
			q, err := p.Read(30 * time.Second)
			if err != nil {
				done <- fmt.Errorf("after %d PUBACKs: %w", acked, err)
				return
			}
			if q.Type == rawmqtt.PUBACK {
				acked++
			}
		}
		done <- nil
	}()
	return done
}

// A 20,000-message QoS 1 burst to a subscriber that reads and
// acknowledges arrives complete and in order with mosquitto's default
// limits (20 in flight, 1,000 queued): the publisher waits for room
// instead of the broker dropping what does not fit (mochi dropped a third
// of it, one log line per message).
func TestDeliveryQoS1BurstComplete(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			logs := &testutil.Buffer{}
			b := start(t, Config{AllowAnonymous: true, SysInterval: -1, MaxInflight: 20, MaxQueued: 1000,
				Log: slog.New(slog.NewTextHandler(logs, nil))})
			s, err := rawmqtt.Dial(b.Addr(), v)
			require.NoError(t, err)
			defer s.Close()
			_, err = s.Connect(rawmqtt.ConnectOptions{ClientID: "burst-sub", Clean: true, KeepAlive: 60})
			require.NoError(t, err)
			_, _, err = s.Subscribe(1, "burst", 1)
			require.NoError(t, err)

			const n = 20000
			pub := qos1Burst(t, b.Addr(), "burst", n)
			maxOpen, open := 0, map[uint16]bool{}
			for i := range n {
				p, err := s.Read(30 * time.Second)
				require.NoError(t, err, "after %d messages", i)
				require.Equal(t, rawmqtt.PUBLISH, p.Type)
				require.Equal(t, fmt.Sprintf("m%d", i), string(p.Payload), "message %d", i)
				open[p.PacketID] = true
				maxOpen = max(maxOpen, len(open))
				// Acknowledge in batches of 10: the broker must send the
				// next ones as room comes, never more than its window.
				if len(open) >= 10 || i == n-1 {
					for id := range open {
						require.NoError(t, s.Send(rawmqtt.Ack(rawmqtt.PUBACK, id)))
						delete(open, id)
					}
				}
			}
			require.NoError(t, <-pub)
			require.LessOrEqual(t, maxOpen, 20, "max_inflight_messages is a window")
			require.NotContains(t, logs.String(), "quota", "nothing dropped")
			require.Zero(t, atomic.LoadInt64(&b.srv.Info.InflightDropped))
		})
	}
}

// A session whose client is offline holds max_inflight_messages +
// max_queued_messages messages; past that they are dropped, with one log
// line for the episode and a counter, and the client gets the ones kept,
// in order, when it comes back.
func TestDeliveryOfflineSessionBound(t *testing.T) {
	logs := &testutil.Buffer{}
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1, MaxInflight: 2, MaxQueued: 8,
		Log: slog.New(slog.NewTextHandler(logs, nil))})
	o := rawmqtt.ConnectOptions{ClientID: "offline", KeepAlive: 60}
	c, err := rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	_, err = c.Connect(o)
	require.NoError(t, err)
	_, _, err = c.Subscribe(1, "held", 1)
	require.NoError(t, err)
	require.NoError(t, c.Send(rawmqtt.Disconnect()))
	c.Close()
	waitOffline(t, b.srv, "offline")

	for i := range 25 {
		require.NoError(t, b.Publish("held", fmt.Appendf(nil, "m%d", i), false, 1))
	}
	require.Equal(t, int64(15), atomic.LoadInt64(&b.srv.Info.InflightDropped))
	require.Equal(t, 1, strings.Count(logs.String(), "dropping messages for offline client"), logs.String())
	require.Contains(t, logs.String(), "max_queued_messages")

	c, err = rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Connect(o)
	require.NoError(t, err)
	for i := range 10 {
		p := readPublish(t, c)
		require.Equal(t, fmt.Sprintf("m%d", i), string(p.Payload))
		require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID)))
	}
	require.NoError(t, c.Send(rawmqtt.Pingreq()))
	p, err := c.Read(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PINGRESP, p.Type, "no more messages: %s", p)
}

// A subscriber that acknowledges nothing holds its publishers up for the
// slow-consumer timeout at most: then it is disconnected (one log line,
// counted) and its publishers go on.
func TestDeliveryNoAcksCut(t *testing.T) {
	logs := &testutil.Buffer{}
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1, MaxInflight: 2, MaxQueued: 8,
		SlowConsumerTimeout: 200 * time.Millisecond, Log: slog.New(slog.NewTextHandler(logs, nil))})
	s, err := rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Connect(rawmqtt.ConnectOptions{ClientID: "no-acks", KeepAlive: 60})
	require.NoError(t, err)
	_, _, err = s.Subscribe(1, "stuck", 1)
	require.NoError(t, err)

	require.NoError(t, <-qos1Burst(t, b.Addr(), "stuck", 100))
	_, err = s.WaitClosed(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, int64(1), b.engine.cut.Load())
	require.Equal(t, 1, strings.Count(logs.String(), "no acknowledgement while its queue is full"), logs.String())
}

// The burst of issue 16 with real clients: `seq -f 'm%g' 20000 |
// mosquitto_pub -q 1 -l` to a python paho QoS 1 subscriber, with
// mosquitto's default limits, arrives complete and in order (mochi
// delivered 11,614 to 20,000 of them).
func TestInteropQoS1BurstPaho(t *testing.T) {
	py := pythonWithPaho(t)
	pub := interop.Require(t, "mosquitto_pub")
	b := start(t, Config{AllowAnonymous: true, SysInterval: -1, MaxInflight: 20, MaxQueued: 1000})
	_, port, _ := strings.Cut(b.Addr(), "127.0.0.1:")
	script, err := filepath.Abs(filepath.Join("testdata", "paho", "burst_subscriber.py"))
	require.NoError(t, err)
	const n = 20000
	wait := background(t, py, script, "--port", port, "--topic", "burst", "--count", strconv.Itoa(n))
	rawclient.WaitFor(t, func() bool { return b.HasSubscriber("burst") })
	var lines strings.Builder
	for i := range n {
		fmt.Fprintf(&lines, "m%d\n", i+1)
	}
	cmd := exec.Command(pub, "-p", port, "-q", "1", "-l", "-t", "burst")
	cmd.Stdin = strings.NewReader(lines.String())
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	code, stdout, stderr := wait()
	require.Equal(t, 0, code, stdout+stderr)
	require.Equal(t, fmt.Sprintf("received %d in order\n", n), stdout)
	require.Zero(t, atomic.LoadInt64(&b.srv.Info.InflightDropped))
}

// A resumed session's queued messages are checked against the ACL again
// when they are resent: a message queued while the client could read its
// topic is not delivered once a reloaded ACL (SIGHUP) took the right away,
// as with mosquitto. Before the reload the same session gets it.
func TestDeliveryQueuedACLRecheck(t *testing.T) {
	acl := writeFile(t, "acl", "topic readwrite acl/#\n")
	cfg := Config{AllowAnonymous: true, ACLFile: acl, SysInterval: -1}
	b := start(t, cfg)
	o := rawmqtt.ConnectOptions{ClientID: "acl-queued", KeepAlive: 60}
	connect := func() *rawmqtt.Conn {
		c, err := rawmqtt.Dial(b.Addr(), 4)
		require.NoError(t, err)
		t.Cleanup(func() { c.Close() })
		_, err = c.Connect(o)
		require.NoError(t, err)
		return c
	}
	c := connect()
	_, _, err := c.Subscribe(1, "acl/#", 1)
	require.NoError(t, err)
	offline := func() {
		require.NoError(t, c.Send(rawmqtt.Disconnect()))
		c.Close()
		waitOffline(t, b.srv, o.ClientID)
	}
	offline()
	p := rawclient.Dial(t, b.Addr(), 4)
	p.MustConnect("acl-pub", "", "")
	p.Publish(1, 1, "acl/x", "before", false)
	require.Equal(t, packets.Puback, p.Recv().FixedHeader.Type)
	c = connect()
	got := readPublish(t, c)
	require.Equal(t, "before", string(got.Payload))
	require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, got.PacketID)))
	offline()

	p.Publish(2, 1, "acl/x", "revoked", false)
	require.Equal(t, packets.Puback, p.Recv().FixedHeader.Type)
	require.NoError(t, os.WriteFile(acl, []byte("topic write acl/#\n"), 0o600))
	require.NoError(t, b.Reload(cfg.Security()))
	c = connect()
	require.NoError(t, c.Send(rawmqtt.Pingreq()))
	q, err := c.Read(10 * time.Second)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PINGRESP, q.Type, "got %s", q)
}
