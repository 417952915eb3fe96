// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"math"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttkit/mqttkit/internal/buildinfo"
)

// sysPublisher publishes mosquitto's $SYS topics (names and formats of
// mosquitto 2.0, src/sys_tree.c): retained, every interval, only the
// values that changed; $SYS/broker/version once.
type sysPublisher struct {
	b        *Broker
	interval time.Duration
	started  time.Time
	last     map[string]string
	load     map[string]*loadAvg
	done     chan struct{}
	wg       sync.WaitGroup
	heapMax  uint64
}

// loadAvg is mosquitto's 1, 5 and 15 minute exponentially decaying
// per-minute rate of a counter.
type loadAvg struct {
	prev int64
	avg  [3]float64
}

func newSysPublisher(b *Broker, interval time.Duration) *sysPublisher {
	if interval == 0 {
		interval = 10 * time.Second
	}
	return &sysPublisher{b: b, interval: interval, last: map[string]string{}, load: map[string]*loadAvg{}, done: make(chan struct{})}
}

func (p *sysPublisher) start() {
	p.started = time.Now()
	p.publish("$SYS/broker/version", "mqtt broker (mqttkit) version "+buildinfo.Get().Version)
	p.tick()
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				p.tick()
			}
		}
	}()
}

func (p *sysPublisher) stop() {
	close(p.done)
	p.wg.Wait()
}

// publish sends a $SYS message if its value changed, retained: the
// engine keeps it like any retained message (a SUBSCRIBE pending
// meanwhile gets it once), but not in the persistent store, which would
// write $SYS every interval (engine.retainMessage).
func (p *sysPublisher) publish(topic, value string) {
	if p.last[topic] == value {
		return
	}
	p.last[topic] = value
	_ = p.b.Publish(topic, []byte(value), true, 0)
}

func (p *sysPublisher) tick() {
	info := p.b.srv.Info
	n := func(v *int64) int64 { return atomic.LoadInt64(v) }
	connected := n(&info.ClientsConnected)
	total := int64(p.b.srv.Clients.Len()) - 1 // without the inline client
	disconnected := max(total-connected, 0)
	packetsIn, messagesIn := p.b.received()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.heapMax = max(p.heapMax, ms.HeapInuse)

	p.publish("$SYS/broker/uptime", strconv.FormatInt(int64(time.Since(p.started).Seconds()), 10)+" seconds")
	p.publish("$SYS/broker/clients/total", strconv.FormatInt(total, 10))
	p.publish("$SYS/broker/clients/connected", strconv.FormatInt(connected, 10))
	p.publish("$SYS/broker/clients/active", strconv.FormatInt(connected, 10))
	p.publish("$SYS/broker/clients/disconnected", strconv.FormatInt(disconnected, 10))
	p.publish("$SYS/broker/clients/inactive", strconv.FormatInt(disconnected, 10))
	p.publish("$SYS/broker/clients/maximum", strconv.FormatInt(n(&info.ClientsMaximum), 10))
	p.publish("$SYS/broker/messages/stored", strconv.FormatInt(n(&info.Inflight), 10))
	p.publish("$SYS/broker/subscriptions/count", strconv.FormatInt(n(&info.Subscriptions), 10))
	p.publish("$SYS/broker/retained messages/count", strconv.FormatInt(p.b.retainedCount(), 10))
	p.publish("$SYS/broker/heap/current", strconv.FormatUint(ms.HeapInuse, 10))
	p.publish("$SYS/broker/heap/maximum", strconv.FormatUint(p.heapMax, 10))
	// Counters, published with their load averages (named in short).
	for _, c := range []struct {
		topic, name string
		value       int64
	}{
		{"messages/received", "messages/received", packetsIn},
		{"messages/sent", "messages/sent", n(&info.PacketsSent)},
		{"publish/messages/received", "publish/received", messagesIn},
		{"publish/messages/sent", "publish/sent", n(&info.MessagesSent)},
		{"publish/messages/dropped", "publish/dropped", p.b.dropped()},
		{"bytes/received", "bytes/received", n(&info.BytesReceived)},
		{"bytes/sent", "bytes/sent", n(&info.BytesSent)},
	} {
		p.publish("$SYS/broker/"+c.topic, strconv.FormatInt(c.value, 10))
		l := p.load[c.name]
		if l == nil {
			l = &loadAvg{prev: c.value}
			p.load[c.name] = l
		}
		perMinute := float64(c.value-l.prev) * float64(time.Minute) / float64(p.interval)
		l.prev = c.value
		for i, minutes := range []float64{1, 5, 15} {
			k := math.Exp(-p.interval.Minutes() / minutes)
			l.avg[i] = perMinute + k*(l.avg[i]-perMinute)
			p.publish("$SYS/broker/load/"+c.name+"/"+[]string{"1min", "5min", "15min"}[i], strconv.FormatFloat(l.avg[i], 'f', 2, 64))
		}
	}
}
