// SPDX-License-Identifier: Apache-2.0

package hostile

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/pkg/broker"
	"github.com/mqttkit/mqttkit/pkg/client"
)

const (
	// connectTimeout is the broker's CONNECT deadline in this suite. It
	// applies to the well-behaved clients too: on a loaded machine (two
	// cores, -race, other test binaries) a CONNECT took over 500 ms from
	// accept to CONNACK, and the broker cut such clients, so it leaves
	// ample room. The attacks that wait for it run their connections all
	// at once (see all), so they wait for it about once.
	connectTimeout = 3 * time.Second
	// closedWithin bounds how long the broker may keep a hostile
	// connection open: the CONNECT deadline, or 1.5 keep-alives of 1 s.
	closedWithin = 10 * time.Second
	// roundTrip bounds how long a well-behaved client waits for its own
	// message after an attack. It is a guard against a broker that stopped
	// serving, not a speed test: issue 10 asks for "within a second", but
	// a 1 s limit failed under load (a parallel go test -race ./... on 2
	// cores), and tests assert no timings (speed is for scripts/bench).
	// The round trip is logged.
	roundTrip = 10 * time.Second
	// heapSlack is how far the live heap may stay above its baseline once
	// an attack is over: generous, but far below what a leak of the
	// attack's connections or buffers would hold.
	heapSlack = 24 << 20
	// forbidden prefixes every topic a hostile client must not get
	// delivered; the watcher subscribes to it.
	forbidden = "forbidden/"
)

// suite is one broker under attack and the instruments that watch it.
type suite struct {
	b     *broker.Broker
	host  string
	port  int
	addr  string
	watch *watcher
	n     atomic.Int64

	leak goleak.Option // goroutines alive at the baseline
	heap uint64        // live heap at the baseline
}

// watcher is a well-behaved subscriber to forbidden/# for the whole suite:
// nothing a hostile client sends may reach it.
type watcher struct {
	mu  sync.Mutex
	got []string
}

func (w *watcher) handle(m *client.Message) {
	w.mu.Lock()
	w.got = append(w.got, fmt.Sprintf("%q: %q", m.Topic, m.Payload))
	w.mu.Unlock()
}

func (w *watcher) seen() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.got...)
}

func newSuite(t *testing.T, configure ...func(*broker.Config)) *suite {
	t.Helper()
	cfg := broker.Config{
		Listeners:      []broker.Listener{{Address: "127.0.0.1:0"}},
		AllowAnonymous: true,
		ConnectTimeout: connectTimeout,
	}
	for _, f := range configure {
		f(&cfg)
	}
	b, err := broker.New(cfg)
	require.NoError(t, err)
	require.NoError(t, b.Start())
	s := &suite{b: b, host: "127.0.0.1", port: b.Port(), addr: b.Addr(), watch: &watcher{}}
	w := s.dial(t, "watcher", s.watch.handle)
	_, err = w.Subscribe(context.Background(), []client.Subscription{{Filter: forbidden + "#", QoS: 1}})
	require.NoError(t, err)
	t.Cleanup(func() {
		_ = w.Disconnect(context.Background())
		_ = b.Close()
	})
	s.healthy(t) // warm up lazily started goroutines and pools
	s.baseline()
	return s
}

func (s *suite) dial(t *testing.T, name string, h client.Handler) client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, &client.Config{
		Host: s.host, Port: s.port, Version: client.V5, CleanStart: true, NoDelay: true,
		ClientID: fmt.Sprintf("%s-%d", name, s.n.Add(1)),
	}, h)
	require.NoError(t, err, "a well-behaved client cannot connect")
	return c
}

func (s *suite) baseline() {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	s.heap = ms.HeapAlloc
	s.leak = goleak.IgnoreCurrent()
}

// healthy checks that a well-behaved client publishes at QoS 1 and gets
// the message back through a second client within roundTrip.
func (s *suite) healthy(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := fmt.Sprintf("health/%d", s.n.Add(1))
	got := make(chan *client.Message, 1)
	sub := s.dial(t, "health-sub", func(m *client.Message) {
		select {
		case got <- m:
		default:
		}
	})
	defer sub.Disconnect(ctx)
	_, err := sub.Subscribe(ctx, []client.Subscription{{Filter: topic, QoS: 1}})
	require.NoError(t, err)
	pub := s.dial(t, "health-pub", nil)
	defer pub.Disconnect(ctx)

	start := time.Now()
	require.NoError(t, pub.Publish(ctx, &client.Message{Topic: topic, Payload: []byte("ok"), QoS: 1}))
	select {
	case m := <-got:
		require.Equal(t, "ok", string(m.Payload))
	case <-time.After(roundTrip):
		t.Fatalf("a well-behaved client did not get its message within %s", roundTrip)
	}
	t.Logf("round trip after the attack: %s", time.Since(start))
}

// settled checks that goroutines and the live heap are back to the
// baseline and that nothing reached the watcher.
func (s *suite) settled(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := goleak.Find(s.leak)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("goroutines did not return to the baseline: %v", err)
			break
		}
	}
	var ms runtime.MemStats
	for {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		if ms.HeapAlloc <= s.heap+heapSlack {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("live heap %d MiB, baseline %d MiB: the attack left memory behind", ms.HeapAlloc>>20, s.heap>>20)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.Empty(t, s.watch.seen(), "hostile messages were delivered")
}

// attack runs one hostile scenario, then checks the broker.
func (s *suite) attack(t *testing.T, name string, f func(t *testing.T)) {
	t.Run(name, func(t *testing.T) {
		t.Cleanup(func() {
			if t.Failed() {
				return
			}
			s.healthy(t)
			s.settled(t)
		})
		f(t)
	})
}

// raw opens a raw connection closed at the end of the test.
func (s *suite) raw(t *testing.T, version byte) *rawmqtt.Conn {
	t.Helper()
	c, err := rawmqtt.Dial(s.addr, version)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// connected opens a raw connection and completes CONNECT with a 1 s
// keep-alive, so that the broker drops it soon after it goes quiet.
func (s *suite) connected(t *testing.T, version byte) *rawmqtt.Conn {
	t.Helper()
	c := s.raw(t, version)
	_, err := c.Connect(rawmqtt.ConnectOptions{ClientID: fmt.Sprintf("hostile-%d", s.n.Add(1)), Clean: true, KeepAlive: 1})
	require.NoError(t, err)
	return c
}

// parallel runs f(i) for i in [0, n) on a few goroutines.
func parallel(n int, f func(i int)) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				f(i)
			}
		}()
	}
	wg.Wait()
}

// all runs f(i) for i in [0, n) at once, for attacks whose connections
// wait for the broker's CONNECT deadline.
func all(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}

// errs collects failures from goroutines, which must not call t.Fatal.
type errs struct {
	mu   sync.Mutex
	list []string
}

func (e *errs) add(format string, args ...any) {
	e.mu.Lock()
	e.list = append(e.list, fmt.Sprintf(format, args...))
	e.mu.Unlock()
}

func (e *errs) check(t *testing.T) {
	t.Helper()
	if len(e.list) > 0 {
		n := len(e.list)
		if n > 10 {
			e.list = e.list[:10]
		}
		t.Fatalf("%d failures, first ones:\n%s", n, strings.Join(e.list, "\n"))
	}
}

func scale(full, short int) int {
	if testing.Short() {
		return short
	}
	return full
}

func TestHostileClients(t *testing.T) {
	s := newSuite(t)
	seed := uint64(time.Now().UnixNano())
	t.Logf("random seed %d", seed)

	s.attack(t, "random bytes", func(t *testing.T) {
		var e errs
		parallel(scale(400, 100), func(i int) {
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			c, err := rawmqtt.Dial(s.addr, 4)
			if err != nil {
				e.add("dial: %v", err)
				return
			}
			defer c.Close()
			if i%2 == 1 { // garbage after a valid CONNECT
				if _, err := c.Connect(rawmqtt.ConnectOptions{ClientID: fmt.Sprint("rnd-", i), Clean: true, KeepAlive: 1}); err != nil {
					e.add("connect %d: %v", i, err)
					return
				}
			}
			junk := make([]byte, 1+rng.IntN(512))
			for j := range junk {
				junk[j] = byte(rng.Uint32())
			}
			_ = c.Send(junk)
			if _, err := c.WaitClosed(closedWithin); err != nil {
				e.add("connection %d (seed %d) after %x: %v", i, seed, junk[:min(len(junk), 16)], err)
			}
		})
		e.check(t)
	})

	s.attack(t, "truncated packets", func(t *testing.T) {
		pre := map[string][]byte{
			"CONNECT v3.1.1": rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: "trunc", Clean: true, KeepAlive: 1, Username: "u", Password: "p", WillTopic: forbidden + "will", WillPayload: []byte("w")}),
			"CONNECT v5":     rawmqtt.Connect(rawmqtt.ConnectOptions{Version: 5, ClientID: "trunc5", Clean: true, KeepAlive: 1, SessionExpiry: 10}),
		}
		post := map[string][]byte{
			"PUBLISH":     rawmqtt.Publish(rawmqtt.PublishOptions{Topic: []byte(forbidden + "trunc"), Payload: []byte("payload"), QoS: 1, PacketID: 1}),
			"SUBSCRIBE":   rawmqtt.Subscribe(4, 2, "a/b/#", 1),
			"UNSUBSCRIBE": rawmqtt.Fixed(rawmqtt.UNSUBSCRIBE<<4|2, append([]byte{0, 3}, rawmqtt.Str("a/b")...)),
			"PUBREL":      rawmqtt.Ack(rawmqtt.PUBREL, 9),
		}
		var e errs
		type job struct {
			name    string
			connect bool
			b       []byte
			hangUp  bool
		}
		var jobs []job
		for name, p := range pre {
			for n := 1; n < len(p); n++ {
				jobs = append(jobs, job{name, false, p[:n], n%2 == 0})
			}
		}
		for name, p := range post {
			for n := 1; n < len(p); n++ {
				jobs = append(jobs, job{name, true, p[:n], n%2 == 0})
			}
		}
		all(len(jobs), func(i int) {
			j := jobs[i]
			c, err := rawmqtt.Dial(s.addr, 4)
			if err != nil {
				e.add("dial: %v", err)
				return
			}
			defer c.Close()
			if j.connect {
				if _, err := c.Connect(rawmqtt.ConnectOptions{ClientID: fmt.Sprint("trunc-", i), Clean: true, KeepAlive: 1}); err != nil {
					e.add("connect: %v", err)
					return
				}
			}
			if err := c.Send(j.b); err != nil {
				e.add("send: %v", err)
				return
			}
			if j.hangUp { // the client goes away mid-packet
				return
			}
			if _, err := c.WaitClosed(closedWithin); err != nil { // the client stalls mid-packet
				e.add("%s cut after %d bytes: %v", j.name, len(j.b), err)
			}
		})
		e.check(t)
	})

	s.attack(t, "remaining length over the limit", func(t *testing.T) {
		// Before CONNECT: refused at once, before the broker allocates.
		c := s.raw(t, 4)
		require.NoError(t, c.Send(append([]byte{0x10}, rawmqtt.EncodeLength(rawmqtt.MaxRemaining)...)))
		_, err := c.WaitClosed(closedWithin)
		require.NoError(t, err)
		// A length field of five bytes is malformed [MQTT-1.5.5].
		for _, connect := range []bool{false, true} {
			c := s.raw(t, 4)
			if connect {
				c = s.connected(t, 4)
			}
			require.NoError(t, c.Send([]byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 1, 'x'}))
			_, err := c.WaitClosed(closedWithin)
			require.NoError(t, err)
		}
		// After CONNECT, the protocol maximum announced and then a trickle:
		// whatever the broker reserved is released when the client goes.
		for i := 0; i < 4; i++ {
			c := s.connected(t, 4)
			require.NoError(t, c.Send(append([]byte{0x30}, rawmqtt.EncodeLength(rawmqtt.MaxRemaining)...)))
			require.NoError(t, c.Send(append(rawmqtt.Str(forbidden+"big"), make([]byte, 4096)...)))
			require.NoError(t, c.Close())
		}
	})

	s.attack(t, "packets before CONNECT", func(t *testing.T) {
		for name, p := range map[string][]byte{
			"PUBLISH QoS 0":  rawmqtt.Publish(rawmqtt.PublishOptions{Topic: []byte(forbidden + "early"), Payload: []byte("x")}),
			"PUBLISH QoS 1":  rawmqtt.Publish(rawmqtt.PublishOptions{Topic: []byte(forbidden + "early"), Payload: []byte("x"), QoS: 1, PacketID: 1}),
			"SUBSCRIBE":      rawmqtt.Subscribe(4, 1, "#", 0),
			"PINGREQ":        rawmqtt.Pingreq(),
			"DISCONNECT":     rawmqtt.Disconnect(),
			"PUBREL":         rawmqtt.Ack(rawmqtt.PUBREL, 1),
			"CONNACK":        {0x20, 2, 0, 0},
			"AUTH":           {0xf0, 0},
			"reserved type":  {0x00, 0},
			"garbage ASCII":  []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
			"TLS ClientHelo": {0x16, 0x03, 0x01, 0x00, 0x05, 1, 0, 0, 1, 0},
		} {
			c := s.raw(t, 4)
			require.NoError(t, c.Send(p), name)
			got, err := c.WaitClosed(closedWithin)
			require.NoError(t, err, name)
			require.Empty(t, got, "%s: the broker must answer nothing before CONNECT", name)
		}
	})

	s.attack(t, "second CONNECT", func(t *testing.T) {
		for _, v := range []byte{4, 5} {
			c := s.raw(t, v)
			_, err := c.Connect(rawmqtt.ConnectOptions{ClientID: fmt.Sprint("twice-", v), Clean: true})
			require.NoError(t, err)
			require.NoError(t, c.Send(rawmqtt.Connect(rawmqtt.ConnectOptions{Version: v, ClientID: fmt.Sprint("twice-", v), Clean: true})))
			require.NoError(t, c.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: v, Topic: []byte(forbidden + "after-second-connect"), Payload: []byte("x")})))
			got, err := c.WaitClosed(closedWithin)
			require.NoError(t, err, "a second CONNECT is a protocol error [MQTT-3.1.0-2]")
			for _, p := range got {
				require.Equal(t, rawmqtt.DISCONNECT, p.Type, "only a DISCONNECT may answer: %s", p)
				require.GreaterOrEqual(t, p.Reason, byte(0x80))
			}
		}
	})

	s.attack(t, "slowloris", func(t *testing.T) {
		// Each client trickles its CONNECT one byte every 100 ms; the whole
		// CONNECT would take about 20 s. The deadline covers the whole
		// CONNECT, not each read, so all are cut long before they finish.
		connect := rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: "slowloris-" + strings.Repeat("x", 160), Clean: true})
		trickle := time.Duration(len(connect)) * 100 * time.Millisecond
		var e errs
		all(scale(64, 16), func(i int) {
			c, err := rawmqtt.Dial(s.addr, 4)
			if err != nil {
				e.add("dial: %v", err)
				return
			}
			defer c.Close()
			start := time.Now()
			for _, b := range connect {
				if err := c.Send([]byte{b}); err != nil {
					return // cut: good
				}
				// Wait for the next byte, or for the broker to hang up.
				_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
				if _, err := c.Conn.Read(make([]byte, 1)); err != nil {
					if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
						if d := time.Since(start); d > trickle/2 {
							e.add("connection %d cut only after %s", i, d)
						}
						return
					}
				}
			}
			e.add("connection %d finished a CONNECT trickled over %s", i, time.Since(start))
		})
		e.check(t)
	})

	s.attack(t, "invalid UTF-8 and wildcards in PUBLISH topics", func(t *testing.T) {
		topics := []string{
			forbidden + "\xff\xfe",     // not UTF-8
			forbidden + "\xed\xa0\x80", // UTF-16 surrogate [MQTT-1.5.4-1]
			forbidden + "\xc0\xaf",     // overlong encoding
			forbidden + "a\x00b",       // U+0000 [MQTT-1.5.4-2]
			forbidden + "+",            // wildcards [MQTT-3.3.2-2]
			forbidden + "#",            //
			forbidden + "a/+/b",        //
			"",                         // empty topic, no alias [MQTT-4.7.3-1]
			forbidden + strings.Repeat("\x80", 3),
		}
		for _, v := range []byte{4, 5} {
			for _, topic := range topics {
				for qos := byte(0); qos <= 2; qos++ {
					c := s.connected(t, v)
					require.NoError(t, c.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: v, Topic: []byte(topic), Payload: []byte(forbidden), QoS: qos, PacketID: 1})))
					got, err := c.WaitClosed(closedWithin)
					require.NoError(t, err, "v%d QoS %d topic %q: the connection must be closed", v, qos, topic)
					for _, p := range got {
						require.Equal(t, rawmqtt.DISCONNECT, p.Type, "v%d QoS %d topic %q: only a DISCONNECT may answer: %s", v, qos, topic, p)
					}
				}
			}
		}
	})

	s.attack(t, "QoS 3", func(t *testing.T) {
		for _, v := range []byte{4, 5} {
			c := s.connected(t, v)
			require.NoError(t, c.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: v, Topic: []byte(forbidden + "qos3"), Payload: []byte("x"), QoS: 3, PacketID: 1})))
			_, err := c.WaitClosed(closedWithin)
			require.NoError(t, err, "v%d PUBLISH with QoS 3 [MQTT-3.3.1-4]", v)

			c = s.raw(t, v)
			require.NoError(t, c.Send(rawmqtt.Connect(rawmqtt.ConnectOptions{Version: v, ClientID: "will3", Clean: true, WillTopic: forbidden + "will", WillPayload: []byte("x"), WillQoS: 3})))
			got, err := c.WaitClosed(closedWithin)
			require.NoError(t, err, "v%d CONNECT with will QoS 3 [MQTT-3.1.2-14]", v)
			for _, p := range got {
				require.Equal(t, rawmqtt.CONNACK, p.Type)
				require.NotZero(t, p.Reason, "a will with QoS 3 must be refused")
			}

			c = s.connected(t, v)
			require.NoError(t, c.Send(rawmqtt.Subscribe(v, 1, forbidden+"#", 3)))
			got, err = c.WaitClosed(closedWithin)
			require.NoError(t, err, "v%d SUBSCRIBE with QoS 3 [MQTT-3.8.3-4]", v)
			for _, p := range got {
				require.NotEqual(t, rawmqtt.SUBACK, p.Type, "a subscription with QoS 3 was granted")
			}
		}
	})

	s.attack(t, "connect/disconnect cycles", func(t *testing.T) {
		n := scale(10000, 1000)
		var e errs
		start := time.Now()
		parallel(n, func(i int) {
			v := byte(4 + i%2)
			c, err := rawmqtt.Dial(s.addr, v)
			if err != nil {
				e.add("cycle %d: dial: %v", i, err)
				return
			}
			defer c.Close()
			o := rawmqtt.ConnectOptions{ClientID: fmt.Sprint("cycle-", i), Clean: true, KeepAlive: 30}
			if i%10 == 0 { // a persistent session taken over again and again
				o = rawmqtt.ConnectOptions{ClientID: fmt.Sprint("cycle-session-", i%160), KeepAlive: 30}
			}
			if _, err := c.Connect(o); err != nil {
				e.add("cycle %d: %v", i, err)
				return
			}
			if i%3 != 0 { // polite goodbye; otherwise just drop the socket
				_ = c.Send(rawmqtt.Disconnect())
			}
		})
		e.check(t)
		t.Logf("%d connect/disconnect cycles in %s", n, time.Since(start))
	})

	s.attack(t, "subscriber that never reads", func(t *testing.T) {
		stuck := s.raw(t, 4)
		_, err := stuck.Connect(rawmqtt.ConnectOptions{ClientID: "never-reads", Clean: true})
		require.NoError(t, err)
		_, _, err = stuck.Subscribe(1, "flood/#", 1)
		require.NoError(t, err)

		// A well-behaved subscriber on the same topic.
		var good atomic.Int64
		// A guard against a hang: the flood takes about 45 s under -race
		// on a busy 2-core machine, and 60 s was exceeded under load.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		sub := s.dial(t, "fast-sub", func(m *client.Message) {
			if m.QoS == 1 {
				good.Add(1)
			}
		})
		defer sub.Disconnect(ctx)
		_, err = sub.Subscribe(ctx, []client.Subscription{{Filter: "flood/#", QoS: 1}})
		require.NoError(t, err)

		// A flood far larger than what the broker holds for one client: the
		// publisher is held up by the stuck subscriber for the stall
		// timeout at most, others are served meanwhile, and the stuck one
		// is eventually disconnected.
		pub := s.dial(t, "flooder", nil)
		defer pub.Disconnect(ctx)
		payload := make([]byte, 64<<10)
		n := scale(1000, 300)
		start := time.Now()
		for i := 0; i < n; i++ {
			require.NoError(t, pub.Publish(ctx, &client.Message{Topic: "flood/x", Payload: payload, QoS: byte(i % 2)}), "publish %d", i)
			if i%100 == 0 {
				s.healthy(t)
			}
		}
		t.Logf("%d messages of %d KiB in %s", n, len(payload)>>10, time.Since(start))
		s.healthy(t)
		_, err = stuck.WaitClosed(closedWithin)
		require.NoError(t, err, "the broker must disconnect a subscriber that never reads")
		deadline := time.Now().Add(closedWithin)
		for good.Load() < int64(n/2) && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		require.Equal(t, int64(n/2), good.Load(), "the well-behaved subscriber lost QoS 1 messages")
	})
}
