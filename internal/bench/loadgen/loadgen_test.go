// SPDX-License-Identifier: Apache-2.0

package loadgen_test

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/bench"
	"github.com/mqttkit/mqttkit/internal/bench/loadgen"
	"github.com/mqttkit/mqttkit/internal/testbroker"
)

func start(t *testing.T) (string, context.Context) {
	b := testbroker.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return net.JoinHostPort(b.Host, strconv.Itoa(b.Port)), ctx
}

func TestFanCountsEveryMessage(t *testing.T) {
	addr, ctx := start(t)
	for q := byte(0); q <= 2; q++ {
		t.Run(fmt.Sprintf("qos%d", q), func(t *testing.T) {
			r, err := loadgen.Fan(ctx, loadgen.FanConfig{Addr: addr, Topic: fmt.Sprintf("f/%d", q), QoS: q, Pubs: 2, Subs: 3, N: 50})
			require.NoError(t, err)
			require.True(t, r.Sub.Complete)
			require.Equal(t, bench.Count{Expect: 100, Unique: 100}, r.Sub.Worst)
			require.Equal(t, bench.Count{Expect: 300, Unique: 300}, r.Sub.Total)
			require.EqualValues(t, 300, r.Sub.Received)
			require.EqualValues(t, 100, r.Pub.Sent)
			if q > 0 {
				require.EqualValues(t, 100, r.Pub.Acked)
			}
			require.Positive(t, r.Seconds)
			require.InDelta(t, 3*r.MsgRate, r.DeliveryRate, 1e-6)
		})
	}
}

func TestSubReportsLossWithoutWaitingForever(t *testing.T) {
	addr, ctx := start(t)
	pubDone := make(chan struct{})
	ready := make(chan struct{})
	type out struct {
		r   loadgen.SubResult
		err error
	}
	res := make(chan out, 1)
	go func() {
		r, err := loadgen.Sub(ctx, loadgen.SubConfig{Addr: addr, Filter: "loss", Expect: 10, Idle: 100 * time.Millisecond,
			PublisherDone: pubDone, Ready: func() { close(ready) }})
		res <- out{r, err}
	}()
	<-ready
	// Publish 7 of the 10 expected messages, one of them twice.
	_, err := loadgen.Pub(ctx, loadgen.PubConfig{Addr: addr, Topic: "loss", QoS: 1, N: 7})
	require.NoError(t, err)
	_, err = loadgen.Pub(ctx, loadgen.PubConfig{Addr: addr, Topic: "loss", QoS: 1, N: 1})
	require.NoError(t, err)
	close(pubDone)
	o := <-res
	require.NoError(t, o.err)
	require.False(t, o.r.Complete)
	require.Equal(t, bench.Count{Expect: 10, Unique: 7, Dups: 1}, o.r.Worst)
}

func TestLatency(t *testing.T) {
	addr, ctx := start(t)
	r, err := loadgen.Latency(ctx, loadgen.LatencyConfig{Addr: addr, Topic: "lat", Rate: 2000, N: 100})
	require.NoError(t, err)
	require.True(t, r.Count.OK(), r.Count.String())
	require.Positive(t, r.P50us)
	require.LessOrEqual(t, r.P50us, r.P99us)
	require.LessOrEqual(t, r.P99us, r.MaxUs)
}

func TestIdleAndWaitAccepting(t *testing.T) {
	addr, ctx := start(t)
	require.NoError(t, loadgen.WaitAccepting(ctx, addr))
	ic, err := loadgen.Idle(ctx, loadgen.IdleConfig{Addr: addr, N: 50, Concurrency: 8})
	require.NoError(t, err)
	require.Equal(t, 50, ic.Len())
	require.Zero(t, ic.Failed)
	ic.Close()
	require.Zero(t, ic.Len())

	raw, err := loadgen.Idle(ctx, loadgen.IdleConfig{Addr: addr, N: 5, Concurrency: 2, Raw: true})
	require.NoError(t, err)
	require.Equal(t, 5, raw.Len())
	raw.Close()

	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := l.Addr().String()
	l.Close()
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	require.Error(t, loadgen.WaitAccepting(short, closed))
}
