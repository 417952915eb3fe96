// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bufio"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// v3Only is a fake MQTT 3.1.1 broker: it answers an MQTT 5 CONNECT with
// the 3.1.1 refusal "unacceptable protocol version" (20 02 00 01) and
// accepts 3.1.1 CONNECTs, answering PINGREQ until the client leaves.
type v3Only struct {
	mu     sync.Mutex
	levels []byte
	port   int
}

func newV3Only(t *testing.T) *v3Only {
	t.Helper()
	f := &v3Only{}
	f.port = rawmqtt.Serve(t, 10*time.Second, f.serve)
	return f
}

func (f *v3Only) serve(c net.Conn) {
	r := bufio.NewReader(c)
	h, body, err := rawmqtt.ReadRaw(r)
	if err != nil || h>>4 != 1 || len(body) < 7 {
		return
	}
	level := body[6]
	f.mu.Lock()
	f.levels = append(f.levels, level)
	f.mu.Unlock()
	if level != 4 {
		_, _ = c.Write([]byte{0x20, 0x02, 0x00, 0x01})
		return
	}
	_, _ = c.Write([]byte{0x20, 0x02, 0x00, 0x00})
	for {
		h, _, err := rawmqtt.ReadRaw(r)
		if err != nil {
			return
		}
		switch h >> 4 {
		case 12: // PINGREQ
			_, _ = c.Write([]byte{0xd0, 0x00})
		case 14: // DISCONNECT
			return
		}
	}
}

func (f *v3Only) seen() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]byte(nil), f.levels...)
}

func TestFallback311(t *testing.T) {
	f := newV3Only(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, &Config{Host: "127.0.0.1", Port: f.port, Version: V5, KeepAlive: 30, CleanStart: true, Fallback311: true}, nil)
	require.NoError(t, err)
	_, isV3 := c.(*v3Client)
	require.True(t, isV3, "the retry uses MQTT 3.1.1")
	require.NoError(t, c.Disconnect(ctx))
	require.Equal(t, []byte{5, 4}, f.seen())
}

func TestFallbackDropsLimits(t *testing.T) {
	f := newV3Only(t)
	rm := uint16(5)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, &Config{Host: "127.0.0.1", Port: f.port, Version: V5, KeepAlive: 30, CleanStart: true, Fallback311: true,
		ConnectProps: &ConnectProperties{ReceiveMaximum: &rm}}, nil)
	require.NoError(t, err)
	require.NoError(t, c.Disconnect(ctx))
	require.Equal(t, []byte{5, 4}, f.seen())
}

func TestNoFallback(t *testing.T) {
	expiry := uint32(60)
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{name: "not asked", cfg: Config{}},
		{name: "session expiry is MQTT 5 only", cfg: Config{Fallback311: true, SessionExpiry: &expiry}},
		{name: "CONNECT user property", cfg: Config{Fallback311: true, ConnectProps: &ConnectProperties{User: []UserProperty{{"a", "b"}}}}},
		{name: "request problem information", cfg: Config{Fallback311: true, ConnectProps: &ConnectProperties{RequestProblemInfo: new(bool)}}},
		{name: "will properties", cfg: Config{Fallback311: true, Will: &Message{Topic: "w", Props: &Properties{ContentType: "x"}}}},
		{name: "password without user", cfg: Config{Fallback311: true, Password: "x"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newV3Only(t)
			cfg := tc.cfg
			cfg.Host, cfg.Port, cfg.Version, cfg.KeepAlive = "127.0.0.1", f.port, V5, 30
			_, err := Dial(context.Background(), &cfg, nil)
			var ce *ConnectError
			require.ErrorAs(t, err, &ce)
			require.Equal(t, byte(132), ce.Code)
			require.Equal(t, V5, ce.Version)
			require.Equal(t, "Unsupported Protocol Version. Try connecting to an MQTT v5 broker, or use MQTT v3.x mode.", ce.Error())
			require.Equal(t, []byte{5}, f.seen())
		})
	}
}
