// SPDX-License-Identifier: Apache-2.0

// Package loadgen generates and verifies benchmark traffic with the small
// client of internal/bench/wire: counting subscribers, pipelined
// publishers, fan-in/fan-out runs, fixed-rate latency probes and idle
// connections. Every message carries a sequence number, and every
// subscriber accounts for each one exactly (see bench.Tracker).
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttkit/mqttkit/internal/bench"
	"github.com/mqttkit/mqttkit/internal/bench/wire"
)

// SubConfig configures counting subscribers.
type SubConfig struct {
	Addr   string
	Filter string
	QoS    byte
	Subs   int // subscriber connections; default 1
	Expect int // distinct messages each subscriber must receive (seq 0..Expect-1)
	// Stride, when > 0, reads payloads as "SENSOR READING" pairs (see
	// bench.GridSeq), as printed by simulate-sensor --format '{{.Sensor}} {{.Seq}}'.
	Stride int
	// Idle ends the wait this long after the last message once the
	// publisher is done (PublisherDone closed, or, when PublisherDone is
	// nil, after the first message). Default 1 s.
	Idle          time.Duration
	PublisherDone <-chan struct{}
	// Ready, if set, is called once every subscription is acknowledged.
	Ready func()
}

// SubResult is what the subscribers received.
type SubResult struct {
	Subs     int         `json:"subs"`
	Received int64       `json:"received"` // every message, duplicates included, all subscribers
	Worst    bench.Count `json:"worst"`    // the subscriber with the fewest distinct messages (dups and bad: all subscribers)
	Total    bench.Count `json:"total"`    // all subscribers together: expect is Expect x Subs
	Complete bool        `json:"complete"` // every subscriber got every message exactly once
	FirstNS  int64       `json:"first_ns"` // Unix time of the first message, ns
	LastNS   int64       `json:"last_ns"`  // Unix time of the last message, ns
}

type subscriber struct {
	conn *wire.Conn
	t    *bench.Tracker
}

// Sub connects the subscribers, waits for the expected messages and
// returns the exact accounting. It returns when every subscriber is
// complete, when the traffic went idle (see SubConfig.Idle) or when ctx
// ends; the last two are not errors: the result says what is missing.
func Sub(ctx context.Context, c SubConfig) (SubResult, error) {
	if c.Subs <= 0 {
		c.Subs = 1
	}
	if c.Idle <= 0 {
		c.Idle = time.Second
	}
	var (
		received atomic.Int64
		firstNS  atomic.Int64
		lastNS   atomic.Int64
		complete atomic.Int64
		allDone  = make(chan struct{})
		doneOnce sync.Once
	)
	subs := make([]*subscriber, c.Subs)
	defer func() {
		for _, s := range subs {
			if s != nil && s.conn != nil {
				s.conn.Close()
			}
		}
	}()
	for i := range subs {
		s := &subscriber{t: bench.NewTracker(c.Expect)}
		subs[i] = s
		conn, err := wire.Dial(ctx, wire.Options{
			Addr:     c.Addr,
			ClientID: "bench-sub-" + strconv.Itoa(i) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
			OnMessage: func(_, payload []byte, _ byte) {
				now := time.Now().UnixNano()
				received.Add(1)
				firstNS.CompareAndSwap(0, now)
				lastNS.Store(now)
				was := s.t.Complete()
				if c.Stride > 0 {
					if seq, ok := bench.GridSeq(payload, c.Stride); ok {
						s.t.AddSeq(seq)
					} else {
						s.t.AddSeq(-1)
					}
				} else {
					s.t.Add(payload)
				}
				if !was && s.t.Complete() && complete.Add(1) == int64(c.Subs) {
					doneOnce.Do(func() { close(allDone) })
				}
			},
		})
		if err != nil {
			return SubResult{}, fmt.Errorf("subscriber %d: %w", i, err)
		}
		s.conn = conn
		if _, err := conn.Subscribe(ctx, c.QoS, c.Filter); err != nil {
			return SubResult{}, fmt.Errorf("subscriber %d: subscribe: %w", i, err)
		}
	}
	if c.Expect == 0 {
		doneOnce.Do(func() { close(allDone) })
	}
	if c.Ready != nil {
		c.Ready()
	}
	var doneAt time.Time
	pubDone := c.PublisherDone
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
wait:
	for {
		select {
		case <-allDone:
			break wait
		case <-ctx.Done():
			break wait
		case <-pubDone:
			doneAt = time.Now()
			pubDone = nil
		case <-tick.C:
			for _, s := range subs {
				if err := s.conn.Err(); err != nil {
					return SubResult{}, fmt.Errorf("subscriber connection lost: %w", err)
				}
			}
			last := time.Unix(0, lastNS.Load())
			if c.PublisherDone == nil {
				if lastNS.Load() != 0 && time.Since(last) > c.Idle {
					break wait
				}
				continue
			}
			if !doneAt.IsZero() {
				if doneAt.After(last) {
					last = doneAt
				}
				if time.Since(last) > c.Idle {
					break wait
				}
			}
		}
	}
	for _, s := range subs {
		s.conn.Close() // waits for the reader: the trackers are ours now
	}
	res := SubResult{Subs: c.Subs, Received: received.Load(), FirstNS: firstNS.Load(), LastNS: lastNS.Load(), Complete: true}
	var dups, bad int
	res.Total.Expect = c.Expect * c.Subs
	for i, s := range subs {
		cnt := s.t.Count()
		dups += cnt.Dups
		bad += cnt.Bad
		res.Total.Unique += cnt.Unique
		if i == 0 || cnt.Unique < res.Worst.Unique {
			res.Worst = cnt
		}
		if !cnt.OK() {
			res.Complete = false
		}
	}
	res.Worst.Dups, res.Worst.Bad = dups, bad
	res.Total.Dups, res.Total.Bad = dups, bad
	return res, nil
}

// PubConfig configures pipelined publishers.
type PubConfig struct {
	Addr   string
	Topic  string
	QoS    byte
	Conns  int // publisher connections; default 1
	N      int // messages per connection; connection i sends seq i*N..(i+1)*N-1
	Size   int // payload bytes; default bench.PayloadSize
	Window int // QoS 1/2 messages in flight per connection; default 20
}

// PubResult is what the publishers sent.
type PubResult struct {
	Sent    int64   `json:"sent"`
	Acked   int64   `json:"acked"` // QoS 1/2 acknowledgements received
	StartNS int64   `json:"start_ns"`
	EndNS   int64   `json:"end_ns"` // all written (QoS 0) or all acknowledged (QoS 1/2)
	Seconds float64 `json:"seconds"`
}

// Pub connects the publishers, then sends all messages as fast as the
// broker takes them and, at QoS 1/2, waits for every acknowledgement.
func Pub(ctx context.Context, c PubConfig) (PubResult, error) {
	conns, err := dialPublishers(ctx, c)
	if err != nil {
		return PubResult{}, err
	}
	defer closeAll(conns)
	return publish(ctx, c, conns)
}

func dialPublishers(ctx context.Context, c PubConfig) ([]*wire.Conn, error) {
	if c.Conns <= 0 {
		c.Conns = 1
	}
	conns := make([]*wire.Conn, 0, c.Conns)
	for i := 0; i < c.Conns; i++ {
		conn, err := wire.Dial(ctx, wire.Options{
			Addr:     c.Addr,
			ClientID: "bench-pub-" + strconv.Itoa(i) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
			Window:   c.Window,
		})
		if err != nil {
			closeAll(conns)
			return nil, fmt.Errorf("publisher %d: %w", i, err)
		}
		conns = append(conns, conn)
	}
	return conns, nil
}

func closeAll(conns []*wire.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

func publish(ctx context.Context, c PubConfig, conns []*wire.Conn) (PubResult, error) {
	size := c.Size
	if size <= 0 {
		size = bench.PayloadSize
	}
	start := time.Now()
	var sent atomic.Int64
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, conn := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 0, size+16)
			for seq := i * c.N; seq < (i+1)*c.N; seq++ {
				buf = appendPayload(buf[:0], seq, size)
				if err := conn.Publish(ctx, c.Topic, buf, c.QoS); err != nil {
					errs[i] = err
					return
				}
				sent.Add(1)
			}
			if c.QoS == 0 {
				errs[i] = conn.Flush()
				return
			}
			errs[i] = conn.WaitAcked(ctx)
		}()
	}
	wg.Wait()
	end := time.Now()
	res := PubResult{Sent: sent.Load(), StartNS: start.UnixNano(), EndNS: end.UnixNano(), Seconds: end.Sub(start).Seconds()}
	for _, conn := range conns {
		res.Acked += conn.Acked()
	}
	return res, errors.Join(errs...)
}

func appendPayload(b []byte, seq, size int) []byte {
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// FanConfig configures a broker throughput run: Pubs publishers each
// sending N messages to one topic that Subs subscribers all receive.
type FanConfig struct {
	Addr   string
	Topic  string
	QoS    byte // publish and subscribe QoS
	Pubs   int
	Subs   int
	N      int // messages per publisher
	Size   int
	Window int
	Idle   time.Duration // how long the subscribers wait for stragglers
}

// FanResult is the outcome of a fan run.
type FanResult struct {
	Pub     PubResult `json:"pub"`
	Sub     SubResult `json:"sub"`
	Seconds float64   `json:"seconds"` // first publish to last delivery
	// MsgRate is published messages per second (each delivered to every
	// subscriber); DeliveryRate counts every delivery.
	MsgRate      float64 `json:"msg_rate"`
	DeliveryRate float64 `json:"delivery_rate"`
}

// Fan connects the subscribers and publishers, then measures the time from
// the first publish until every subscriber has every message.
func Fan(ctx context.Context, c FanConfig) (FanResult, error) {
	pc := PubConfig{Addr: c.Addr, Topic: c.Topic, QoS: c.QoS, Conns: c.Pubs, N: c.N, Size: c.Size, Window: c.Window}
	ready := make(chan struct{})
	pubDone := make(chan struct{})
	type subOut struct {
		r   SubResult
		err error
	}
	subc := make(chan subOut, 1)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		r, err := Sub(sctx, SubConfig{
			Addr: c.Addr, Filter: c.Topic, QoS: c.QoS, Subs: c.Subs, Expect: c.Pubs * c.N,
			Idle: c.Idle, PublisherDone: pubDone, Ready: func() { close(ready) },
		})
		subc <- subOut{r, err}
	}()
	select {
	case <-ready:
	case o := <-subc:
		if o.err == nil {
			o.err = errors.New("subscribers ended before they were ready")
		}
		return FanResult{}, o.err
	}
	conns, err := dialPublishers(ctx, pc)
	if err != nil {
		cancel()
		<-subc
		return FanResult{}, err
	}
	pr, perr := publish(ctx, pc, conns)
	close(pubDone)
	o := <-subc
	closeAll(conns)
	if o.err != nil {
		return FanResult{}, o.err
	}
	if perr != nil {
		return FanResult{}, fmt.Errorf("publish: %w", perr)
	}
	res := FanResult{Pub: pr, Sub: o.r}
	end := o.r.LastNS
	if end < pr.EndNS {
		end = pr.EndNS
	}
	res.Seconds = float64(end-pr.StartNS) / 1e9
	if res.Seconds > 0 {
		res.MsgRate = float64(pr.Sent) / res.Seconds
		res.DeliveryRate = float64(o.r.Received) / res.Seconds
	}
	return res, nil
}
