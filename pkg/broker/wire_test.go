// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// syncBuffer is a log sink safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startWireBroker starts an anonymous broker on a random port and returns
// it with its log.
func startWireBroker(t *testing.T) (*Broker, *syncBuffer) {
	t.Helper()
	logs := new(syncBuffer)
	b, err := New(Config{
		Listeners:      []Listener{{Address: "127.0.0.1:0"}},
		AllowAnonymous: true,
		SysInterval:    -1,
		Log:            slog.New(slog.NewTextHandler(logs, nil)),
	})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	return b, logs
}

// dialWire connects a raw client of version with a will on "will/<id>".
func dialWire(t *testing.T, addr string, version byte, id string) *rawmqtt.Conn {
	t.Helper()
	c, err := rawmqtt.Dial(addr, version)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: id, Clean: true, KeepAlive: 60,
		WillTopic: "will/" + id, WillPayload: []byte("gone")})
	require.NoError(t, err)
	return c
}

// roundTrip checks that the broker still serves: a subscriber receives
// what a publisher sends.
func roundTrip(t *testing.T, addr string) {
	t.Helper()
	sub := dialWire(t, addr, 5, "rt-sub")
	_, _, err := sub.Subscribe(1, "rt/topic", 1)
	require.NoError(t, err)
	pub := dialWire(t, addr, 4, "rt-pub")
	require.NoError(t, pub.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: 4, Topic: []byte("rt/topic"), Payload: []byte("alive")})))
	p, err := sub.Read(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PUBLISH, p.Type)
	require.Equal(t, "alive", string(p.Payload))
}

// sessions lists mochi's client table without the inline client.
func sessions(b *Broker) []string {
	var ids []string
	for id := range b.srv.Clients.GetAll() {
		if id != mqtt.InlineClientId {
			ids = append(ids, id)
		}
	}
	return ids
}

// TestMalformedPacketsEndOnlyTheirConnection sends the MQTT 5 SUBSCRIBEs
// that panicked mochi's decoder and took the process down (issue 15), and
// other malformed packets: each gets DISCONNECT 0x81 (MQTT 5) or a plain
// close (3.1.1), is logged and counted, the client's will is published,
// its session leaves mochi's table, and the broker keeps serving.
func TestMalformedPacketsEndOnlyTheirConnection(t *testing.T) {
	b, logs := startWireBroker(t)
	watch := dialWire(t, b.Addr(), 5, "watch")
	_, _, err := watch.Subscribe(1, "will/#", 0)
	require.NoError(t, err)

	cases := []struct {
		name    string
		version byte
		packet  string // hex
	}{
		{"v5 SUBSCRIBE filter without options byte", 5, "8206123400000170"},
		{"v5 SUBSCRIBE empty filter without options byte", 5, "82051234000000"},
		{"v5 SUBSCRIBE properties past the end", 5, "8203123405"},
		{"v5 PUBLISH QoS 3", 5, "3605000161000000"},
		{"v5 PUBLISH invalid UTF-8 topic", 5, "30040002c328"},
		{"v5 remaining length of 5 bytes", 5, "3080808080"},
		{"v5 CONNACK from a client", 5, "20020000"},
		{"v3.1.1 SUBSCRIBE filter without QoS byte", 4, "820512340001" + "61"},
		{"v3.1.1 PUBLISH QoS 3", 4, "3605000161" + "0001"},
		{"v3.1.1 PINGREQ with a body", 4, "c00100"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := "bad" + string(rune('a'+i))
			c := dialWire(t, b.Addr(), tc.version, id)
			raw, err := hex.DecodeString(tc.packet)
			require.NoError(t, err)
			require.NoError(t, c.Send(raw))
			got, err := c.WaitClosed(5 * time.Second)
			require.NoError(t, err)
			if tc.version == 5 {
				require.Len(t, got, 1, "packets before the close: %v", got)
				require.Equal(t, rawmqtt.DISCONNECT, got[0].Type)
				require.Equal(t, packets.ErrMalformedPacket.Code, got[0].Reason)
				require.Equal(t, []byte{0x81}, got[0].Body, "mosquitto sends the reason code without properties")
			} else {
				require.Empty(t, got, "MQTT 3.1.1 has no DISCONNECT from the server")
			}
			p, err := watch.Read(5 * time.Second)
			require.NoError(t, err, "the will of %s", id)
			require.Equal(t, "will/"+id, p.Topic)
			waitFor(t, func() bool { return !strings.Contains(strings.Join(sessions(b), " "), id) })
		})
	}
	require.Equal(t, int64(len(cases)), b.wire.malformed.Load())
	require.Zero(t, b.wire.panics.Load())
	require.Equal(t, len(cases), strings.Count(logs.String(), "client sent a malformed packet, disconnecting"))
	roundTrip(t, b.Addr())

	var out strings.Builder
	b.writeMetrics(&out)
	require.Contains(t, out.String(), "mqtt_malformed_packets_total 10\n")
}

// panicHook panics while mochi processes a SUBSCRIBE to "panic/now": a
// stand-in for any defect on a connection's goroutine that the packet
// checks do not catch.
type panicHook struct{ mqtt.HookBase }

func (panicHook) ID() string           { return "panic" }
func (panicHook) Provides(b byte) bool { return b == mqtt.OnSubscribe }
func (panicHook) OnSubscribe(_ *mqtt.Client, pk packets.Packet) packets.Packet {
	for _, f := range pk.Filters {
		if f.Filter == "panic/now" {
			panic("test panic in a hook")
		}
	}
	return pk
}

// TestConnectionPanicIsRecovered: a panic on one connection's goroutine
// ends that connection only: logged, counted, the will published, the
// session gone from mochi's table; the broker keeps serving.
func TestConnectionPanicIsRecovered(t *testing.T) {
	b, logs := startWireBroker(t)
	require.NoError(t, b.srv.AddHook(new(panicHook), nil))
	watch := dialWire(t, b.Addr(), 5, "watch")
	_, _, err := watch.Subscribe(1, "will/#", 0)
	require.NoError(t, err)

	c := dialWire(t, b.Addr(), 5, "victim")
	require.NoError(t, c.Send(rawmqtt.Subscribe(5, 7, "panic/now", 0)))
	_, err = c.WaitClosed(5 * time.Second)
	require.NoError(t, err)

	p, err := watch.Read(5 * time.Second)
	require.NoError(t, err)
	require.Equal(t, "will/victim", p.Topic)
	waitFor(t, func() bool { return !strings.Contains(strings.Join(sessions(b), " "), "victim") })
	require.Equal(t, int64(1), b.wire.panics.Load())
	require.Contains(t, logs.String(), "connection goroutine panicked")
	roundTrip(t, b.Addr())
}
