// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// FuzzConnection feeds arbitrary bytes to a broker connection, after a
// valid CONNECT (v3.1.1 or v5) or in place of it, chosen by the first input
// byte. The broker must never panic and must end the connection once the
// client hangs up; health is checked after every input.
func FuzzConnection(f *testing.F) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true})
	if err != nil {
		f.Fatal(err)
	}
	if err := b.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = b.Close() })

	pub := func(v byte, qos byte) []byte {
		return rawmqtt.Publish(rawmqtt.PublishOptions{Version: v, Topic: []byte("a/b"), Payload: []byte("hi"), QoS: qos, PacketID: 1, Retain: qos == 1})
	}
	f.Add(append([]byte{0}, rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: "x", Clean: true})...))
	f.Add(append([]byte{0}, rawmqtt.Connect(rawmqtt.ConnectOptions{Version: 5, ClientID: "x", SessionExpiry: 5, Username: "u", Password: "p", WillTopic: "w", WillPayload: []byte("bye"), WillQoS: 1})...))
	for _, v := range []byte{4, 5} {
		first := byte(1)
		if v == 5 {
			first = 3
		}
		f.Add(append([]byte{first}, pub(v, 0)...))
		f.Add(append([]byte{first}, append(pub(v, 1), pub(v, 2)...)...))
		f.Add(append([]byte{first}, rawmqtt.Subscribe(v, 1, "a/#", 2)...))
		f.Add(append([]byte{first}, append(rawmqtt.Ack(rawmqtt.PUBREL, 1), rawmqtt.Pingreq()...)...))
		f.Add(append([]byte{first}, rawmqtt.Fixed(rawmqtt.UNSUBSCRIBE<<4|2, append([]byte{0, 3}, rawmqtt.Str("a/#")...))...))
		f.Add(append([]byte{first}, rawmqtt.Disconnect()...))
	}
	f.Add([]byte{1, 0x30, 0xff, 0xff, 0xff, 0x7f})

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		var in []byte
		switch data[0] & 3 {
		case 1:
			in = rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: "fuzz", Clean: true})
		case 3:
			in = rawmqtt.Connect(rawmqtt.ConnectOptions{Version: 5, ClientID: "fuzz5", Clean: true})
		}
		in = append(in, data[1:]...)

		client, server := net.Pipe()
		done := make(chan error, 1)
		go func() { done <- b.srv.EstablishConnection("fuzz", server) }()
		go func() { _, _ = io.Copy(io.Discard, client) }() // net.Pipe writes block until read
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = client.Write(in)
		_ = client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the broker kept the connection after the client hung up; input %x", in)
		}
		// A well-behaved client still connects and is answered.
		c, err := rawmqtt.Dial(b.Addr(), 4)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Connect(rawmqtt.ConnectOptions{ClientID: "probe", Clean: true}); err != nil {
			t.Fatalf("broker unhealthy after input %x: %v", in, err)
		}
		if err := c.Send(rawmqtt.Pingreq()); err != nil {
			t.Fatal(err)
		}
		if p, err := c.Read(5 * time.Second); err != nil || p.Type != rawmqtt.PINGRESP {
			t.Fatalf("broker unhealthy after input %x: %v %v", in, p, err)
		}
	})
}
