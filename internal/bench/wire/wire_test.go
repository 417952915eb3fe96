// SPDX-License-Identifier: Apache-2.0

package wire_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/bench/wire"
	"github.com/mqttkit/mqttkit/internal/testbroker"
)

func addr(b *testbroker.Broker) string { return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)) }

func TestPublishSubscribeEveryQoS(t *testing.T) {
	b := testbroker.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for q := byte(0); q <= 2; q++ {
		t.Run(fmt.Sprintf("qos%d", q), func(t *testing.T) {
			const n = 200
			var mu sync.Mutex
			got := map[string]int{}
			wrongQoS := 0
			done := make(chan struct{})
			sub, err := wire.Dial(ctx, wire.Options{Addr: addr(b), ClientID: fmt.Sprintf("s%d", q), OnMessage: func(topic, p []byte, qos byte) {
				mu.Lock()
				defer mu.Unlock()
				if qos != q {
					wrongQoS++
				}
				got[string(topic)+" "+string(p)]++
				if len(got) == n {
					close(done)
				}
			}})
			require.NoError(t, err)
			defer sub.Close()
			codes, err := sub.Subscribe(ctx, q, fmt.Sprintf("w/%d/#", q))
			require.NoError(t, err)
			require.Equal(t, []byte{q}, codes)

			pub, err := wire.Dial(ctx, wire.Options{Addr: addr(b), ClientID: fmt.Sprintf("p%d", q), Window: 5})
			require.NoError(t, err)
			defer pub.Close()
			for i := 0; i < n; i++ {
				require.NoError(t, pub.Publish(ctx, fmt.Sprintf("w/%d/t", q), []byte(strconv.Itoa(i)), q))
			}
			if q > 0 {
				require.NoError(t, pub.WaitAcked(ctx))
				require.EqualValues(t, n, pub.Acked())
			} else {
				require.NoError(t, pub.Flush())
			}
			select {
			case <-done:
			case <-ctx.Done():
				t.Fatal("messages did not arrive")
			}
			sub.Close() // no handler runs after Close
			require.Zero(t, wrongQoS)
			for i := 0; i < n; i++ {
				require.Equal(t, 1, got[fmt.Sprintf("w/%d/t %d", q, i)], "message %d exactly once", i)
			}
		})
	}
}

func TestRetained(t *testing.T) {
	b := testbroker.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pub, err := wire.Dial(ctx, wire.Options{Addr: addr(b)})
	require.NoError(t, err)
	defer pub.Close()
	require.NoError(t, pub.PublishRetained(ctx, "r/x", []byte("kept"), 1))
	require.NoError(t, pub.WaitAcked(ctx))

	got := make(chan string, 1)
	sub, err := wire.Dial(ctx, wire.Options{Addr: addr(b), OnMessage: func(_, p []byte, _ byte) { got <- string(p) }})
	require.NoError(t, err)
	defer sub.Close()
	_, err = sub.Subscribe(ctx, 0, "r/#")
	require.NoError(t, err)
	select {
	case p := <-got:
		require.Equal(t, "kept", p)
	case <-ctx.Done():
		t.Fatal("retained message not delivered")
	}
}

func TestDialRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		_, _ = c.Read(buf)
		_, _ = c.Write([]byte{0x20, 2, 0, 5}) // CONNACK: not authorised
	}()
	defer l.Close()
	_, err = wire.Dial(context.Background(), wire.Options{Addr: l.Addr().String(), Timeout: 5 * time.Second})
	require.ErrorContains(t, err, "return code 5")
}

func TestConnectPacket(t *testing.T) {
	require.Equal(t, []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 60, 0, 2, 'i', 'd'}, wire.ConnectPacket("id", 60))
}
