// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// TestNoInventedMessageExpiry: a message published without an expiry is
// delivered without one (mochi's default added one day to every message
// and deleted retained messages after 24 h); one with an expiry keeps it.
func TestNoInventedMessageExpiry(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cfg := &client.Config{Host: "127.0.0.1", Port: b.Port(), Version: client.V5, KeepAlive: 60, CleanStart: true}

	pub, err := client.Dial(ctx, cfg, nil)
	require.NoError(t, err)
	defer pub.Disconnect(ctx)
	require.NoError(t, pub.Publish(ctx, &client.Message{Topic: "x/plain", Payload: []byte("a"), QoS: 1, Retain: true}))
	exp := uint32(60)
	require.NoError(t, pub.Publish(ctx, &client.Message{Topic: "x/expiring", Payload: []byte("b"), QoS: 1, Retain: true,
		Props: &client.Properties{MessageExpiry: &exp}}))

	got := make(chan *client.Message, 2)
	sub, err := client.Dial(ctx, cfg, func(m *client.Message) { got <- m })
	require.NoError(t, err)
	defer sub.Disconnect(ctx)
	_, err = sub.Subscribe(ctx, []client.Subscription{{Filter: "x/#", QoS: 1}})
	require.NoError(t, err)
	for range 2 {
		select {
		case m := <-got:
			switch m.Topic {
			case "x/plain":
				if m.Props != nil {
					require.Nil(t, m.Props.MessageExpiry, "invented expiry %v", m.Props.MessageExpiry)
				}
			case "x/expiring":
				require.NotNil(t, m.Props)
				require.NotNil(t, m.Props.MessageExpiry)
				require.LessOrEqual(t, *m.Props.MessageExpiry, exp)
				require.Greater(t, *m.Props.MessageExpiry, uint32(0))
			}
		case <-ctx.Done():
			t.Fatal("retained messages not delivered")
		}
	}
}
