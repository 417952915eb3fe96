// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// Fuzz input layout (see fuzzStream): the first byte chooses the session,
// the rest are packets.
const (
	fuzzV31  = 1 // CONNECT MQTT 3.1 first (0: no CONNECT)
	fuzzV311 = 2 // CONNECT MQTT 3.1.1 first
	fuzzV5   = 3 // CONNECT MQTT 5 first
	fuzzRaw  = 4 // bit: the packets are sent as they are, not framed
)

// fuzzStream turns a fuzz input into the bytes a client sends. data[0]&3
// picks a valid CONNECT (none, 3.1, 3.1.1 or 5) with a will; then, unless
// data[0] has fuzzRaw, the rest is a list of packets, each a first byte
// (type and flags), a length byte n and up to n body bytes: the remaining
// length is computed from the body actually present, so that cutting or
// inserting bytes keeps the stream framed and the fuzzer explores packet
// bodies (a SUBSCRIBE that loses its last options byte) rather than
// announced lengths. Raw mode sends the bytes unframed, for malformed
// fixed headers and lengths.
func fuzzStream(data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	var out []byte
	will := rawmqtt.ConnectOptions{ClientID: "fuzz", Clean: true, WillTopic: "fuzz/will", WillPayload: []byte("gone")}
	switch data[0] & 3 {
	case fuzzV31:
		out = connectV31("fuzz31")
	case fuzzV311:
		will.Version = 4
		out = rawmqtt.Connect(will)
	case fuzzV5:
		will.Version = 5
		out = rawmqtt.Connect(will)
	}
	rest := data[1:]
	if data[0]&fuzzRaw != 0 {
		return append(out, rest...)
	}
	for len(rest) >= 2 {
		first, n := rest[0], int(rest[1])
		rest = rest[2:]
		n = min(n, len(rest))
		out = append(out, rawmqtt.Fixed(first, rest[:n])...)
		rest = rest[n:]
	}
	return out
}

// connectV31 is an MQTT 3.1 CONNECT ("MQIsdp", level 3), clean session.
func connectV31(id string) []byte {
	body := append(rawmqtt.Str("MQIsdp"), 3, 0x02, 0, 0)
	body = append(body, rawmqtt.Str(id)...)
	return rawmqtt.Fixed(rawmqtt.CONNECT<<4, body)
}

// fuzzPacket frames one packet for a fuzz input (see fuzzStream).
func fuzzPacket(first byte, body ...byte) []byte {
	return append([]byte{first, byte(len(body))}, body...)
}

// fuzzInput builds a fuzz input: a session byte, then packets.
func fuzzInput(session byte, pkts ...[]byte) []byte {
	return append([]byte{session}, bytes.Join(pkts, nil)...)
}

// FuzzConnection drives whole client connections through the broker's own
// connection stack (the packet checks and the panic guard of wire.go, then
// mochi): a CONNECT chosen by the input, then arbitrary packets. A
// recovered panic fails the target as a crash would; after every input the
// connection must have ended and the broker must still answer a client.
// With wire.go's checks and guard taken out, this finds the MQTT 5
// SUBSCRIBEs that crashed mochi's decoder (issue 15) within seconds.
func FuzzConnection(f *testing.F) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1})
	if err != nil {
		f.Fatal(err)
	}
	if err := b.Start(); err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = b.Close() })
	l := b.bound[0].conn

	// serve runs one in-process connection that sends in and then hangs
	// up through the listener's connection path, and returns what the
	// broker wrote to it once the broker is done with it.
	serve := func(t *testing.T, in []byte) []byte {
		c := &fuzzConn{r: bytes.NewReader(in)}
		done := make(chan struct{})
		e := l.track(c)
		go func() {
			defer close(done)
			l.serveConn(b.srv.EstablishConnection, e)
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("the broker kept the connection after the client hung up; input %x", in)
		}
		return c.written()
	}

	sub := func(v byte, filter string, opts byte) []byte {
		body := []byte{0x12, 0x34}
		if v == 5 {
			body = append(body, 0)
		}
		body = append(body, rawmqtt.Str(filter)...)
		return fuzzPacket(0x82, append(body, opts)...)
	}
	pub := func(v byte, qos byte) []byte {
		p := rawmqtt.Publish(rawmqtt.PublishOptions{Version: v, Topic: []byte("a/b"), Payload: []byte("hi"), QoS: qos, PacketID: 1, Retain: qos == 1})
		return fuzzPacket(p[0], p[2:]...)
	}
	for _, s := range []struct{ session, v byte }{{fuzzV31, 3}, {fuzzV311, 4}, {fuzzV5, 5}} {
		f.Add(fuzzInput(s.session, sub(s.v, "p", 0)))
		f.Add(fuzzInput(s.session, sub(s.v, "", 1)))
		f.Add(fuzzInput(s.session, sub(s.v, "a/#", 2), pub(s.v, 1)))
		f.Add(fuzzInput(s.session, pub(s.v, 0), pub(s.v, 2), fuzzPacket(0x62, 0, 1)))
		f.Add(fuzzInput(s.session, fuzzPacket(0xa2, append([]byte{0, 3}, rawmqtt.Str("a/#")...)...)))
		f.Add(fuzzInput(s.session, fuzzPacket(0xc0), fuzzPacket(0xe0)))
	}
	f.Add(fuzzInput(fuzzV5, fuzzPacket(0xf0, 0x18, 0)))
	f.Add(fuzzInput(fuzzV5, fuzzPacket(0x40, 0, 1, 0x10, 0)))
	f.Add(fuzzInput(fuzzV311|fuzzRaw, []byte{0x30, 0xff, 0xff, 0xff, 0x7f}))
	f.Add(fuzzInput(fuzzRaw, rawmqtt.Connect(rawmqtt.ConnectOptions{Version: 5, ClientID: "x", SessionExpiry: 5, Username: "u", Password: "p", WillTopic: "w", WillPayload: []byte("bye"), WillQoS: 1})))

	f.Fuzz(func(t *testing.T, data []byte) {
		in := fuzzStream(data)
		if len(in) == 0 {
			return
		}
		serve(t, in)
		if n := b.wire.panics.Load(); n > 0 {
			t.Fatalf("a connection goroutine panicked (see the log of recoverConn); input %x", in)
		}
		// A well-behaved client is still answered.
		out := serve(t, append(rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: "probe", Clean: true}), rawmqtt.Pingreq()...))
		if want := []byte{rawmqtt.CONNACK << 4, 2, 0, 0, rawmqtt.PINGRESP << 4, 0}; !bytes.Equal(out, want) {
			t.Fatalf("broker unhealthy after input %x: it answered %x to CONNECT, PINGREQ", in, out)
		}
	})
}

// fuzzConn is a client connection in memory that sends its input and then
// hangs up (io.EOF), while the broker may write to it until it is closed:
// the broker handles the whole input, with no timing involved.
type fuzzConn struct {
	r      *bytes.Reader
	mu     sync.Mutex
	out    bytes.Buffer
	closed bool
}

func (c *fuzzConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return 0, net.ErrClosed
	}
	return c.r.Read(p)
}

func (c *fuzzConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, net.ErrClosed
	}
	return c.out.Write(p)
}

func (c *fuzzConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *fuzzConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return bytes.Clone(c.out.Bytes())
}

var fuzzAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}

func (c *fuzzConn) LocalAddr() net.Addr              { return fuzzAddr }
func (c *fuzzConn) RemoteAddr() net.Addr             { return fuzzAddr }
func (c *fuzzConn) SetDeadline(time.Time) error      { return nil }
func (c *fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// FuzzPublishCheck holds wireConn to its shortcut: an MQTT 3.1/3.1.1
// PUBLISH that checkPublish accepts is not trial-decoded, so mochi's
// decoder must accept it too, without a panic.
func FuzzPublishCheck(f *testing.F) {
	for _, qos := range []byte{0, 1, 2} {
		p := rawmqtt.Publish(rawmqtt.PublishOptions{Version: 4, Topic: []byte("a/b"), Payload: []byte("hi"), QoS: qos, PacketID: 7})
		f.Add(p[0], p[2:])
	}
	f.Add(byte(0x32), []byte{0, 3, 'a', 0, 'b', 0, 1}) // NUL in the topic
	f.Add(byte(0x32), []byte{0, 2, 0xed, 0xa0, 0, 1})  // a surrogate half
	f.Add(byte(0x32), []byte{0, 1, 'a', 0})            // packet identifier cut short
	f.Add(byte(0x30), []byte{0, 5, 'a'})               // topic past the end
	f.Fuzz(func(t *testing.T, first byte, body []byte) {
		var fh packets.FixedHeader
		if fh.Decode(packets.Publish<<4|first&0x0f) != nil {
			return // refused from the fixed header
		}
		fh.Remaining = len(body)
		for _, v := range []byte{3, 4} {
			var aliases topicAliases
			if checkPublish(first&0x0f, body, v, &aliases) != nil {
				continue
			}
			if _, why := trialDecode(fh, body, v); why != "" {
				t.Fatalf("checkPublish accepts what mochi refuses (version %d, flags %x, body %x): %s", v, first&0x0f, body, why)
			}
		}
	})
}
