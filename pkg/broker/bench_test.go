// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/bench/loadgen"
)

// BenchmarkFanIn runs the fan-in scenario of scripts/bench in process (4
// publishers, 1 subscriber, every message accounted for) against the
// broker as `mqtt broker` configures it; b.N is the number of messages.
// With -cpuprofile it shows where the broker's time goes (the load
// generator runs in the same process: look at the broker's and mochi's
// functions).
func BenchmarkFanIn(b *testing.B) {
	for _, qos := range []byte{0, 1} {
		b.Run(fmt.Sprintf("qos%d", qos), func(b *testing.B) {
			br, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true})
			require.NoError(b, err)
			defer br.Close()
			require.NoError(b, br.Start())
			const pubs = 4
			n := max(b.N/pubs, 1)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			b.ResetTimer()
			res, err := loadgen.Fan(ctx, loadgen.FanConfig{
				Addr: br.Addr(), Topic: "bench/fanin", QoS: qos, Pubs: pubs, Subs: 1, N: n, Idle: time.Second,
			})
			b.StopTimer()
			require.NoError(b, err)
			b.ReportMetric(res.MsgRate, "msg/s")
			if !res.Sub.Complete {
				b.Errorf("messages lost: %+v", res.Sub.Worst)
			}
		})
	}
}
