// SPDX-License-Identifier: Apache-2.0

package loadgen

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/mqttkit/mqttkit/internal/bench"
	"github.com/mqttkit/mqttkit/internal/bench/wire"
)

// LatencyConfig configures an end-to-end latency probe: one publisher
// sends N messages at Rate messages per second to one subscriber in the
// same process, so both ends read the same monotonic clock.
type LatencyConfig struct {
	Addr  string
	Topic string
	QoS   byte
	Rate  float64 // messages per second
	N     int
	Idle  time.Duration // wait for stragglers after the last send; default 1 s
}

// LatencyResult holds the latency distribution of the delivered messages,
// in microseconds.
type LatencyResult struct {
	Count  bench.Count `json:"count"`
	P50us  float64     `json:"p50_us"`
	P99us  float64     `json:"p99_us"`
	MaxUs  float64     `json:"max_us"`
	MeanUs float64     `json:"mean_us"`
	// Behind is how far the publisher fell behind its schedule at worst:
	// a large value means the rate was not held and the latencies are
	// not those of the requested rate.
	BehindUs float64 `json:"behind_us"`
}

// Latency runs the probe.
func Latency(ctx context.Context, c LatencyConfig) (LatencyResult, error) {
	if c.Rate <= 0 {
		return LatencyResult{}, fmt.Errorf("latency: rate must be positive")
	}
	if c.Idle <= 0 {
		c.Idle = time.Second
	}
	base := time.Now()
	lat := make([]time.Duration, c.N)
	for i := range lat {
		lat[i] = -1
	}
	t := bench.NewTracker(c.N)
	var got atomic.Int64
	allIn := make(chan struct{})
	sub, err := wire.Dial(ctx, wire.Options{
		Addr:     c.Addr,
		ClientID: "bench-lat-sub-" + strconv.FormatInt(time.Now().UnixNano(), 36),
		OnMessage: func(_, p []byte, _ byte) {
			now := time.Since(base)
			t.Add(p)
			seq, ok := bench.ParseSeq(p)
			sp := bytes.IndexByte(p, ' ')
			if !ok || seq >= c.N || sp < 0 {
				return
			}
			sent, err := strconv.ParseInt(string(p[sp+1:]), 10, 64)
			if err != nil || lat[seq] >= 0 {
				return
			}
			lat[seq] = now - time.Duration(sent)
			if got.Add(1) == int64(c.N) {
				close(allIn)
			}
		},
	})
	if err != nil {
		return LatencyResult{}, fmt.Errorf("latency subscriber: %w", err)
	}
	defer sub.Close()
	if _, err := sub.Subscribe(ctx, c.QoS, c.Topic); err != nil {
		return LatencyResult{}, err
	}
	pub, err := wire.Dial(ctx, wire.Options{Addr: c.Addr, ClientID: "bench-lat-pub-" + strconv.FormatInt(time.Now().UnixNano(), 36)})
	if err != nil {
		return LatencyResult{}, fmt.Errorf("latency publisher: %w", err)
	}
	defer pub.Close()

	interval := time.Duration(float64(time.Second) / c.Rate)
	start := time.Now()
	var behind time.Duration
	buf := make([]byte, 0, 64)
	for i := 0; i < c.N; i++ {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		} else if -d > behind {
			behind = -d
		}
		buf = strconv.AppendInt(buf[:0], int64(i), 10)
		buf = append(buf, ' ')
		buf = strconv.AppendInt(buf, int64(time.Since(base)), 10)
		if err := pub.Publish(ctx, c.Topic, buf, c.QoS); err != nil {
			return LatencyResult{}, err
		}
		if err := pub.Flush(); err != nil {
			return LatencyResult{}, err
		}
	}
	if c.QoS > 0 {
		if err := pub.WaitAcked(ctx); err != nil {
			return LatencyResult{}, err
		}
	}
	select {
	case <-allIn:
	case <-time.After(c.Idle):
	case <-ctx.Done():
	}
	sub.Close() // the handler has stopped: lat and t are ours
	res := LatencyResult{Count: t.Count(), BehindUs: us(behind)}
	var ds []time.Duration
	var sum time.Duration
	for _, d := range lat {
		if d >= 0 {
			ds = append(ds, d)
			sum += d
		}
	}
	if len(ds) == 0 {
		return res, nil
	}
	slices.Sort(ds)
	res.P50us = us(bench.Percentile(ds, 50))
	res.P99us = us(bench.Percentile(ds, 99))
	res.MaxUs = us(ds[len(ds)-1])
	res.MeanUs = us(sum / time.Duration(len(ds)))
	return res, nil
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
