// SPDX-License-Identifier: Apache-2.0

package bridge_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/pkg/bridge"
)

// TestBridgeWireResend checks what a fake remote sees on the wire: the
// CONNECT with the bridge bit, one SUBSCRIBE per topic, and after the
// remote drops the connection without acknowledging a QoS 1 message, the
// same message again with the same packet id and DUP set, after the
// SUBSCRIBE of the new connection (as mosquitto does).
func TestBridgeWireResend(t *testing.T) {
	type conn struct {
		c    *rawmqtt.Conn
		nc   net.Conn
		done chan struct{}
	}
	conns := make(chan conn, 8)
	stop := make(chan struct{})
	port := rawmqtt.Serve(t, waitLimit, func(nc net.Conn) {
		c := rawmqtt.NewConn(nc, 4)
		done := make(chan struct{})
		conns <- conn{c, nc, done}
		select { // until the test is done with the connection
		case <-done:
		case <-stop:
		}
	})
	t.Cleanup(func() { close(stop) }) // before Serve's cleanup
	edge := newBroker(t, "127.0.0.1:0")
	cfgs := parse(t, `connection sample
address 127.0.0.1:`+strconv.Itoa(port)+`
topic bridge/# both 1
notifications false
restart_timeout 1`)
	startBridges(t, edge, cfgs)

	first := <-conns
	pk, err := first.c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.CONNECT, pk.Type)
	// protocol name "MQTT", version 0x84, flags 0 (clean session false), keepalive 60
	require.Equal(t, []byte{0, 4, 'M', 'Q', 'T', 'T', 0x84, 0x00, 0, 60}, pk.Body[:10])
	require.Equal(t, "host.sample", string(pk.Body[12:]))
	require.NoError(t, first.c.Send([]byte{rawmqtt.CONNACK << 4, 2, 0, 0}))
	pk, err = first.c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.SUBSCRIBE, pk.Type)
	require.Equal(t, []byte{0, 1}, pk.Body[:2], "SUBSCRIBE packet id 1")
	require.NoError(t, first.c.Send(rawmqtt.Fixed(rawmqtt.SUBACK<<4, []byte{0, 1, 1})))

	require.NoError(t, edge.Publish("bridge/x", []byte("m"), false, 1))
	pk, err = first.c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PUBLISH, pk.Type)
	require.Equal(t, uint16(2), pk.PacketID)
	require.False(t, pk.Dup)
	first.nc.Close() // no PUBACK
	close(first.done)

	second := <-conns
	pk, err = second.c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.CONNECT, pk.Type)
	require.NoError(t, second.c.Send([]byte{rawmqtt.CONNACK << 4, 2, 1, 0}))
	pk, err = second.c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.SUBSCRIBE, pk.Type)
	require.Equal(t, []byte{0, 3}, pk.Body[:2], "SUBSCRIBE packet id 3")
	pk, err = second.c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PUBLISH, pk.Type)
	require.Equal(t, uint16(2), pk.PacketID, "the same packet id")
	require.True(t, pk.Dup)
	require.Equal(t, "bridge/x", pk.Topic)
	require.NoError(t, second.c.Send(rawmqtt.Ack(rawmqtt.PUBACK, 2)))
	// Acknowledged: the edge's session for the bridge empties, and the
	// local broker's own resend of the message was not forwarded again.
	require.NoError(t, edge.Publish("bridge/y", []byte("n"), false, 1))
	pk, err = second.c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, "bridge/y", pk.Topic)
	require.Equal(t, uint16(4), pk.PacketID)
	// A PINGREQ from the remote is answered, as mosquitto's bridge does.
	require.NoError(t, second.c.Send(rawmqtt.Pingreq()))
	pk, err = second.c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PINGRESP, pk.Type)
	second.nc.Close()
	close(second.done)
}

// TestBridgeWireReceiveMaximum: an MQTT 5 remote that announces Receive
// Maximum 2 gets two QoS 1 messages, then the next one only after a
// PUBACK, although more wait.
func TestBridgeWireReceiveMaximum(t *testing.T) {
	conns := make(chan *rawmqtt.Conn, 8)
	stop := make(chan struct{})
	port := rawmqtt.Serve(t, waitLimit, func(nc net.Conn) {
		conns <- rawmqtt.NewConn(nc, 5)
		<-stop
	})
	t.Cleanup(func() { close(stop) })
	edge := newBroker(t, "127.0.0.1:0")
	s := startBridges(t, edge, parse(t, `connection sample
address 127.0.0.1:`+strconv.Itoa(port)+`
bridge_protocol_version mqttv50
bridge_attempt_unsubscribe false
topic t/# out 1
notifications false`))
	c := <-conns
	pk, err := c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.CONNECT, pk.Type)
	// Queued before the remote accepts the bridge.
	for i := range 5 {
		require.NoError(t, edge.Publish("t/x", []byte(strconv.Itoa(i)), false, 1))
	}
	waitFor(t, "the queue", func() bool { return s.Stats()[0].Queued == 5 })
	require.NoError(t, c.Send([]byte{rawmqtt.CONNACK << 4, 6, 0, 0, 3, 0x21, 0, 2})) // Receive Maximum 2
	for i := range 2 {
		pk, err = c.Read(waitLimit)
		require.NoError(t, err)
		require.Equal(t, rawmqtt.PUBLISH, pk.Type)
		require.Equal(t, strconv.Itoa(i), string(pk.Payload))
	}
	require.NoError(t, c.Send(rawmqtt.Pingreq()))
	pk, err = c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PINGRESP, pk.Type, "no third PUBLISH before a PUBACK")
	require.NoError(t, c.Send(rawmqtt.Ack(rawmqtt.PUBACK, 1)))
	pk, err = c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.PUBLISH, pk.Type)
	require.Equal(t, "2", string(pk.Payload))
}

// TestBridgeStopDuringHandshake: a remote that accepts the connection and
// never answers the CONNECT does not hold Stop up.
func TestBridgeStopDuringHandshake(t *testing.T) {
	conns := make(chan *rawmqtt.Conn, 8)
	stop := make(chan struct{})
	port := rawmqtt.Serve(t, waitLimit, func(nc net.Conn) {
		conns <- rawmqtt.NewConn(nc, 4)
		<-stop
	})
	t.Cleanup(func() { close(stop) })
	edge := newBroker(t, "127.0.0.1:0")
	s, err := bridge.Start(parse(t, `connection sample
address 127.0.0.1:`+strconv.Itoa(port)+`
topic t/# out 1`), edge, testLog())
	require.NoError(t, err)
	c := <-conns
	pk, err := c.Read(waitLimit)
	require.NoError(t, err)
	require.Equal(t, rawmqtt.CONNECT, pk.Type)
	stopped := make(chan struct{})
	go func() { s.Stop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(waitLimit):
		t.Fatal("Stop waited for the CONNACK")
	}
}
