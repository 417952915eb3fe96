// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	p5 "github.com/eclipse/paho.golang/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testbroker"
)

func streamCfg(host string, port int, v Version) *Config {
	cfg := &Config{Host: host, Port: port, Version: v, KeepAlive: 60, CleanStart: true}
	if v == V31 {
		cfg.ClientID = "stream-test" // MQTT 3.1 needs one: the broker refuses an empty id as mosquitto does
	}
	return cfg
}

// distinct counts the distinct payloads of recorded messages.
func distinct(msgs []testbroker.Msg) map[string]bool {
	seen := make(map[string]bool, len(msgs))
	for _, m := range msgs {
		seen[m.Payload] = true
	}
	return seen
}

// Every message arrives, once and in order, for each protocol and QoS.
func TestStreamDelivers(t *testing.T) {
	const n = 2000
	for _, v := range []Version{V5, V311, V31} {
		for qos := byte(0); qos <= 2; qos++ {
			t.Run(fmt.Sprintf("%s/qos%d", v, qos), func(t *testing.T) {
				b := testbroker.Start(t)
				require.NoError(t, b.Record("s/#"))
				ctx := context.Background()
				s, err := OpenStream(ctx, streamCfg(b.Host, b.Port, v), StreamOptions{})
				require.NoError(t, err)
				payload := make([]byte, 0, 8)
				for i := 0; i < n; i++ {
					payload = strconv.AppendInt(payload[:0], int64(i), 10)
					require.NoError(t, s.Publish(ctx, &Message{Topic: "s/x", Payload: payload, QoS: qos}))
				}
				require.NoError(t, s.Close(ctx))
				got, err := b.WaitMessages(n, 10*time.Second)
				require.NoError(t, err)
				require.Len(t, got, n)
				for i, m := range got {
					require.Equal(t, strconv.Itoa(i), m.Payload)
					require.Equal(t, qos, m.QoS)
				}
				require.Empty(t, s.TakeFailures())
			})
		}
	}
}

// 100,000 QoS 1 messages through a window of 100 all arrive.
func TestStreamQoS1Many(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const n = 100_000
	b := testbroker.Start(t)
	require.NoError(t, b.Record("m"))
	ctx := context.Background()
	s, err := OpenStream(ctx, streamCfg(b.Host, b.Port, V5), StreamOptions{MaxInflight: 100})
	require.NoError(t, err)
	for i := 0; i < n; i++ {
		require.NoError(t, s.Publish(ctx, &Message{Topic: "m", Payload: []byte(strconv.Itoa(i)), QoS: 1}))
	}
	require.NoError(t, s.Close(ctx))
	got, err := b.WaitMessages(n, 30*time.Second)
	require.NoError(t, err)
	require.Len(t, distinct(got), n)
}

// The broker goes away in the middle of a QoS 1 stream and a new one comes
// up on the same port: every message reaches one of the two.
func TestStreamReconnectResends(t *testing.T) {
	for _, v := range []Version{V5, V311} {
		t.Run(v.String(), func(t *testing.T) {
			const n = 20000
			b1, err := testbroker.NewAt("127.0.0.1:0")
			require.NoError(t, err)
			defer b1.Close()
			require.NoError(t, b1.Record("r"))
			addr := b1.Addr()
			ctx := context.Background()
			s, err := OpenStream(ctx, streamCfg(b1.Host, b1.Port, v), StreamOptions{Reconnect: true, MaxInflight: 50})
			require.NoError(t, err)

			var b2 *testbroker.Broker
			for i := 0; i < n; i++ {
				require.NoError(t, s.Publish(ctx, &Message{Topic: "r", Payload: []byte(strconv.Itoa(i)), QoS: 1}))
				if i == n/3 {
					require.NoError(t, b1.Close())
					b2, err = testbroker.NewAt(addr, "r")
					require.NoError(t, err)
					defer b2.Close()
				}
			}
			fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			require.NoError(t, s.Close(fctx))
			m1, m2 := b1.Messages(), b2.Messages()
			seen := distinct(append(m1, m2...))
			var missing []int
			for i := 0; i < n; i++ {
				if !seen[strconv.Itoa(i)] {
					missing = append(missing, i)
				}
			}
			require.Empty(t, missing, "lost; first broker got %d (last %s), second %d (first %s)",
				len(m1), m1[len(m1)-1].Payload, len(m2), m2[0].Payload)
			require.NotEmpty(t, b2.Messages(), "the second broker got nothing: no reconnect happened")
		})
	}
}

// Without Reconnect a lost connection ends the stream with an error.
func TestStreamLostWithoutReconnect(t *testing.T) {
	b, err := testbroker.NewAt("127.0.0.1:0")
	require.NoError(t, err)
	ctx := context.Background()
	s, err := OpenStream(ctx, streamCfg(b.Host, b.Port, V311), StreamOptions{})
	require.NoError(t, err)
	require.NoError(t, s.Publish(ctx, &Message{Topic: "a", Payload: []byte("1"), QoS: 1}))
	require.NoError(t, s.Flush(ctx))
	require.NoError(t, b.Close())
	deadline := time.Now().Add(10 * time.Second)
	for {
		err = s.Publish(ctx, &Message{Topic: "a", Payload: []byte("2"), QoS: 1})
		if err == nil {
			err = s.Flush(ctx)
		}
		if err != nil || time.Now().After(deadline) {
			break
		}
	}
	var le *ConnectionLostError
	require.ErrorAs(t, err, &le)
	require.ErrorIs(t, err, ErrNotConnected)
	require.Error(t, s.Close(ctx))
}

// fakeBroker accepts one MQTT 5 connection, answers CONNACK with the given
// properties and acknowledges every QoS 1/2 PUBLISH with reason.
type fakeBroker struct {
	ln      net.Listener
	connack *p5.Connack
	reason  byte
	mu      sync.Mutex
	pubs    []*p5.Publish
	connect *p5.Connect
	disc    *p5.Disconnect
	done    chan struct{}
	conn    net.Conn
}

func startFake(t *testing.T, connack *p5.Connack, reason byte) *fakeBroker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	f := &fakeBroker{ln: ln, connack: connack, reason: reason, done: make(chan struct{})}
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		if f.conn != nil {
			f.conn.Close()
		}
		f.mu.Unlock()
		<-f.done
	})
	go f.serve()
	return f
}

func (f *fakeBroker) port() int { return f.ln.Addr().(*net.TCPAddr).Port }

func (f *fakeBroker) serve() {
	defer close(f.done)
	c, err := f.ln.Accept()
	if err != nil {
		return
	}
	defer c.Close()
	f.mu.Lock()
	f.conn = c
	f.mu.Unlock()
	for {
		cp, err := p5.ReadPacket(c)
		if err != nil {
			return
		}
		f.mu.Lock()
		switch p := cp.Content.(type) {
		case *p5.Connect:
			f.connect = p
			_, _ = f.connack.WriteTo(c)
		case *p5.Publish:
			f.pubs = append(f.pubs, p)
			switch p.QoS {
			case 1:
				_, _ = (&p5.Puback{PacketID: p.PacketID, ReasonCode: f.reason, Properties: &p5.Properties{ReasonString: "go away"}}).WriteTo(c)
			case 2:
				_, _ = (&p5.Pubrec{PacketID: p.PacketID, ReasonCode: f.reason}).WriteTo(c)
			}
		case *p5.Pubrel:
			_, _ = (&p5.Pubcomp{PacketID: p.PacketID}).WriteTo(c)
		case *p5.Disconnect:
			f.disc = p
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
	}
}

func TestStreamPublishRefused(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprint(qos), func(t *testing.T) {
			f := startFake(t, &p5.Connack{Properties: &p5.Properties{}}, 0x87)
			ctx := context.Background()
			s, err := OpenStream(ctx, streamCfg("127.0.0.1", f.port(), V5), StreamOptions{})
			require.NoError(t, err)
			require.NoError(t, s.Publish(ctx, &Message{Topic: "a", Payload: []byte("x"), QoS: qos}))
			require.NoError(t, s.Publish(ctx, &Message{Topic: "a", Payload: []byte("y"), QoS: qos}))
			require.NoError(t, s.Close(ctx))
			fs := s.TakeFailures()
			require.Len(t, fs, 2)
			require.EqualValues(t, 1, fs[0].MID)
			require.EqualValues(t, 1, fs[0].Seq)
			require.EqualValues(t, 0x87, fs[0].Err.Code)
			if qos == 1 {
				require.Equal(t, "Not authorized: go away", fs[0].Err.Error())
			}
			require.Empty(t, s.TakeFailures())
		})
	}
}

// The broker's CONNACK limits are honoured: maximum packet size, maximum
// QoS, retain available and topic aliases.
func TestStreamBrokerLimits(t *testing.T) {
	max := uint32(100)
	q1 := byte(1)
	ra := byte(0)
	f := startFake(t, &p5.Connack{Properties: &p5.Properties{MaximumPacketSize: &max, MaximumQOS: &q1, RetainAvailable: &ra}}, 0)
	ctx := context.Background()
	s, err := OpenStream(ctx, streamCfg("127.0.0.1", f.port(), V5), StreamOptions{})
	require.NoError(t, err)
	require.EqualValues(t, 100, s.Session().MaximumPacketSize)

	err = s.Publish(ctx, &Message{Topic: "a", Payload: make([]byte, 200)})
	var tl *PacketTooLargeError
	require.ErrorAs(t, err, &tl)
	require.Equal(t, 100, tl.Max)
	require.Equal(t, 207, tl.Size) // 1 + 2 (length) + 2+1 (topic) + 1 (properties) + 200

	require.ErrorIs(t, s.Publish(ctx, &Message{Topic: "a", QoS: 2}), ErrQoSNotSupported)

	alias := uint16(1)
	props := &Properties{TopicAlias: &alias, ContentType: "c"}
	require.NoError(t, s.Publish(ctx, &Message{Topic: "long/topic", Payload: []byte("1"), QoS: 1, Retain: true, Props: props}))
	require.NoError(t, s.Publish(ctx, &Message{Topic: "long/topic", Payload: []byte("2"), QoS: 1, Props: props}))
	require.NoError(t, s.Close(ctx))
	<-f.done
	require.Len(t, f.pubs, 2)
	require.Equal(t, "long/topic", f.pubs[0].Topic)
	require.False(t, f.pubs[0].Retain, "retain must be cleared when the broker has none")
	require.Equal(t, "", f.pubs[1].Topic)
	require.EqualValues(t, 1, *f.pubs[1].Properties.TopicAlias)
	require.Equal(t, "c", f.pubs[1].Properties.ContentType)
	require.NotNil(t, f.disc)
}

func TestStreamDisconnectProps(t *testing.T) {
	f := startFake(t, &p5.Connack{Properties: &p5.Properties{}}, 0)
	ctx := context.Background()
	s, err := OpenStream(ctx, streamCfg("127.0.0.1", f.port(), V5), StreamOptions{
		Disconnect: &DisconnectProperties{ReasonString: "bye", User: []UserProperty{{"k", "v"}}}})
	require.NoError(t, err)
	require.NoError(t, s.Close(ctx))
	<-f.done
	require.Equal(t, "bye", f.disc.Properties.ReasonString)
	require.Equal(t, []p5.User{{Key: "k", Value: "v"}}, f.disc.Properties.User)
}

func TestStreamConnackRefused(t *testing.T) {
	f := startFake(t, &p5.Connack{ReasonCode: 0x87, Properties: &p5.Properties{ReasonString: "no"}}, 0)
	_, err := OpenStream(context.Background(), streamCfg("127.0.0.1", f.port(), V5), StreamOptions{})
	var ce *ConnectError
	require.ErrorAs(t, err, &ce)
	require.EqualValues(t, 0x87, ce.Code)
	require.Equal(t, "no", ce.Reason)
}

func TestStreamConnectionRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	_, err = OpenStream(context.Background(), streamCfg("127.0.0.1", port, V5), StreamOptions{})
	require.Error(t, err)
	require.False(t, errors.As(err, new(*ConnectError)))
}

// A publish blocked on a full window returns when its context ends.
func TestStreamPublishCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = p5.ReadPacket(c)
		_, _ = (&p5.Connack{Properties: &p5.Properties{}}).WriteTo(c)
		var buf bytes.Buffer
		_, _ = buf.ReadFrom(c) // never acknowledge
	}()
	s, err := OpenStream(context.Background(), streamCfg("127.0.0.1", ln.Addr().(*net.TCPAddr).Port, V5), StreamOptions{MaxInflight: 1})
	require.NoError(t, err)
	defer s.Abort()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	require.NoError(t, s.Publish(ctx, &Message{Topic: "a", QoS: 1}))
	require.ErrorIs(t, s.Publish(ctx, &Message{Topic: "a", QoS: 1}), context.DeadlineExceeded)
}
