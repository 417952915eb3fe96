// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/internal/testutil"
)

// Beyond MaxConnecting connections waiting for their CONNECT, the one that
// waited longest is closed, with one log line per episode; a client that
// sends its CONNECT is not affected, and the episode's end is logged.
func TestMaxConnectingClosesLongestWaiting(t *testing.T) {
	logs := new(testutil.Buffer)
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1,
		MaxConnecting: 4, ConnectTimeout: time.Minute, Log: slog.New(slog.NewTextHandler(logs, nil))})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	waiting := func(n int) func() bool {
		return func() bool { _, w, _ := b.conns.counts(); return w == n }
	}

	var silent []*rawmqtt.Conn
	for i := range 6 {
		c, err := rawmqtt.Dial(b.Addr(), 4)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		silent = append(silent, c)
		rawclient.WaitFor(t, waiting(min(i+1, 4)))
	}
	// The two oldest were closed, the others are still open.
	for _, c := range silent[:2] {
		_, err := c.WaitClosed(10 * time.Second)
		require.NoError(t, err, "the longest-waiting connection must be closed")
	}
	_, _, evicted := b.conns.counts()
	require.EqualValues(t, 2, evicted)
	require.Equal(t, 1, strings.Count(logs.String(), "too many connections waiting for CONNECT"), logs.String())

	// A waiting connection that sends its CONNECT leaves the line and is
	// served; once half of the bound is left the episode ends.
	for i, c := range silent[2:5] {
		_, err := c.Connect(rawmqtt.ConnectOptions{ClientID: fmt.Sprint("late", i), Clean: true})
		require.NoError(t, err)
	}
	rawclient.WaitFor(t, waiting(1))
	require.Contains(t, logs.String(), `msg="connections waiting for CONNECT back under the limit" max_connecting=4 closed=2`)

	// Connected clients do not count: three more may wait; a fourth
	// closes the one that was already waiting, the oldest.
	for i := range 4 {
		c, err := rawmqtt.Dial(b.Addr(), 4)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
		rawclient.WaitFor(t, waiting(min(i+2, 4)))
	}
	_, err = silent[5].WaitClosed(10 * time.Second)
	require.NoError(t, err, "the oldest waiting connection must be closed")
	_, _, evicted = b.conns.counts()
	require.EqualValues(t, 3, evicted)
	var out strings.Builder
	b.writeMetrics(&out)
	require.Contains(t, out.String(), "mqtt_connections_waiting 4\n")
	require.Contains(t, out.String(), "mqtt_connections_waiting_closed_total 3\n")
}

// With MaxConnecting negative nothing is closed for the bound.
func TestMaxConnectingUnbounded(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1,
		MaxConnecting: -1, ConnectTimeout: time.Minute})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	for range DefaultMaxConnecting / 64 {
		c, err := rawmqtt.Dial(b.Addr(), 4)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close() })
	}
	rawclient.WaitFor(t, func() bool { _, w, _ := b.conns.counts(); return w == DefaultMaxConnecting/64 })
	require.Zero(t, b.conns.max)
}

// connReader gives its buffer back while it waits for data, and takes one
// again when data arrives.
func TestConnReaderReleasesBufferWhileWaiting(t *testing.T) {
	if !canPeek {
		t.Skip("no buffer-less wait on this system")
	}
	server, client := tcpPair(t)
	// Whether the buffer was gone, each time the reader parked (seen on
	// the reading goroutine).
	parked := make(chan bool, 10)
	cr := newConnReader(server)
	require.NotNil(t, cr.raw)
	release := cr.wait.parked
	cr.wait.parked = func() { release(); parked <- cr.buf == nil }

	_, err := client.Write([]byte("ab"))
	require.NoError(t, err)
	for _, want := range []byte("ab") {
		got, err := cr.ReadByte()
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	require.True(t, cr.buf != nil, "a buffer while reading")

	drain(parked) // parks before "ab" arrived
	got := make(chan byte)
	go func() {
		b, err := cr.ReadByte()
		if err != nil {
			close(got)
			return
		}
		got <- b
	}()
	require.True(t, <-parked, "no buffer while waiting")
	_, err = client.Write([]byte("c"))
	require.NoError(t, err)
	require.Equal(t, byte('c'), <-got)
	require.True(t, cr.buf != nil)

	// End of file is reported once the data is read.
	_, err = client.Write([]byte("d"))
	require.NoError(t, err)
	require.NoError(t, client.Close())
	b, err := cr.ReadByte()
	require.NoError(t, err)
	require.Equal(t, byte('d'), b)
	_, err = cr.ReadByte()
	require.Error(t, err)
}

// drain empties ch.
func drain(ch chan bool) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

// A layer that buffers what it reads hides the socket's readiness: no
// buffer-less wait through it.
func TestRawConnOfBufferingLayers(t *testing.T) {
	server, _ := tcpPair(t)
	require.Equal(t, canPeek, rawConnOf(newAsyncConn(server, 1, nil, nil), false) != nil)
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	require.Nil(t, rawConnOf(a, true))
	require.Nil(t, rawConnOf(&wsConn{Conn: server}, true))
}

// An idle connection's wireConn holds no buffer, whatever it read before,
// a packet longer than the pooled buffers included.
func TestWireConnIdleHoldsNoBuffer(t *testing.T) {
	if !canPeek {
		t.Skip("no buffer-less wait on this system")
	}
	server, client := tcpPair(t)
	g := &wireGuard{log: slog.New(slog.DiscardHandler), stats: new(wireStats)}
	wc := g.wrap(server, nil)
	parked := make(chan bool, 10) // whether both buffers were gone
	idle := wc.in.wait.parked
	wc.in.wait.parked = func() { idle(); parked <- wc.in.buf == nil && wc.buf == nil }

	connect := rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: "idle", Clean: true})
	payload := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	// Bodies longer than what is buffered, arriving in parts: a medium
	// one gathered in a pooled buffer (twice: the buffer goes back to
	// the pool between them, never while it is being filled) and one
	// longer than the pooled buffers.
	var pkts [][]byte
	for i, n := range []int{bufSize - 100, bufSize - 200, 3 * bufSize} {
		pkts = append(pkts, rawmqtt.Publish(rawmqtt.PublishOptions{Version: 4, Topic: []byte("t"), Payload: payload(n, byte('a'+i))}))
	}
	want := append(slices.Clone(connect), bytes.Join(pkts, nil)...)
	go func() {
		_, _ = client.Write(connect)
		for _, pk := range pkts {
			time.Sleep(10 * time.Millisecond) // the body arrives in parts
			_, _ = client.Write(pk[:len(pk)/3])
			time.Sleep(10 * time.Millisecond)
			_, _ = client.Write(pk[len(pk)/3:])
		}
	}()
	got := make([]byte, 0, len(want))
	p := make([]byte, 64)
	for len(got) < cap(got) {
		n, err := wc.Read(p)
		require.NoError(t, err)
		got = append(got, p[:n]...)
	}
	require.True(t, bytes.Equal(want, got), "the packets pass unchanged")

	drain(parked) // parks while the packets arrived
	done := make(chan error, 1)
	go func() { _, err := wc.Read(p); done <- err }()
	select {
	case none := <-parked:
		require.True(t, none, "a buffer held while idle")
	case err := <-done:
		t.Fatalf("read returned while idle: %v", err)
	}
	require.NoError(t, client.Close())
	require.Error(t, <-done)
}

// asyncConn holds no buffer once everything is written.
func TestAsyncConnIdleHoldsNoBuffer(t *testing.T) {
	server, client := tcpPair(t)
	c := newAsyncConn(server, 1<<20, slog.New(slog.DiscardHandler), nil)
	for _, n := range []int{10, 3 * bufSize} {
		_, err := c.Write(make([]byte, n))
		require.NoError(t, err)
		buf := make([]byte, n)
		_, err = readFull(client, buf)
		require.NoError(t, err)
		rawclient.WaitFor(t, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return !c.flushing
		})
		c.mu.Lock()
		require.Nil(t, c.buf)
		require.Nil(t, c.spare)
		c.mu.Unlock()
	}
}

func readFull(c net.Conn, p []byte) (int, error) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n := 0
	for n < len(p) {
		k, err := c.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// A connection the broker never wrote to is closed at once, without the
// draining goroutine; one it wrote to lingers.
func TestLingerOnlyAfterWrites(t *testing.T) {
	server, _ := tcpPair(t)
	var closed atomic.Bool
	c := newAsyncConn(server, 1<<20, slog.New(slog.DiscardHandler), func() { closed.Store(true) })
	require.NoError(t, c.Close())
	require.True(t, closed.Load(), "closed within Close")

	server, client := tcpPair(t)
	done := make(chan struct{})
	c = newAsyncConn(server, 1<<20, slog.New(slog.DiscardHandler), func() { close(done) })
	_, err := c.Write([]byte("bye"))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	select {
	case <-done:
		t.Fatal("closed before the client hung up")
	default:
	}
	buf := make([]byte, 3)
	_, err = readFull(client, buf)
	require.NoError(t, err)
	require.NoError(t, client.Close())
	<-done
}

// After a wave of connections the memory is given back, once per wave.
func TestConnSetFreesAfterWave(t *testing.T) {
	s := newConnSet(0, slog.New(slog.DiscardHandler))
	freed := make(chan struct{}, 10)
	s.free = func() { freed <- struct{}{} }
	var es []*connEntry
	for range 2 * freeAfter {
		e := &connEntry{}
		require.Nil(t, s.add(e))
		e.connected()
		es = append(es, e)
	}
	for _, e := range es[:freeAfter-1] {
		e.closed()
	}
	s.mu.Lock()
	require.False(t, s.freeing, "not yet half of the peak")
	s.mu.Unlock()
	es[freeAfter-1].closed()
	<-freed
	rawclient.WaitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return !s.freeing })
	for _, e := range es[freeAfter:] {
		e.closed()
	}
	<-freed // a second wave: the rest
	open, waiting, _ := s.counts()
	require.Zero(t, open)
	require.Zero(t, waiting)
	require.Empty(t, freed)
}

// stacksChild, set in the environment, runs TestSmallStacks's measurement
// in a child process: "small" calls SmallStacks first, "default" does not.
const stacksChild = "MQTTKIT_TEST_STACKS"

// With SmallStacks an idle MQTT connection's goroutines hold the
// smallest stacks they can: two goroutines, mochi's read goroutine at
// 16 KiB (its CONNACK path is deeper than 8 KiB) and its WriteLoop at
// 4 KiB, even when the runtime has seen deep goroutines and would start
// new ones bigger (docs/design/connections.md). The runtime reads the
// setting only at start: each case runs in a child process, on a broker
// whose runtime has been shown deep goroutines first.
func TestSmallStacks(t *testing.T) {
	if mode := os.Getenv(stacksChild); mode != "" {
		if mode == "small" {
			SmallStacks()
		}
		measureIdleStacks(t)
		return
	}
	if testing.Short() {
		t.Skip("starts two child processes")
	}
	run := func(mode string) (start, perConn int) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSmallStacks$", "-test.v")
		cmd.Env = []string{stacksChild + "=" + mode}
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "GODEBUG=") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		_, rest, ok := strings.Cut(string(out), "idle stacks: ")
		require.True(t, ok, "%s", out)
		_, err = fmt.Sscanf(rest, "start=%d per-connection=%d", &start, &perConn)
		require.NoError(t, err, "%s", out)
		t.Logf("%s: new goroutines start at %d bytes; %d bytes of stack per idle connection", mode, start, perConn)
		return start, perConn
	}
	start, _ := run("default")
	require.Greater(t, start, minStack, "the deep goroutines did not raise the runtime's starting stack size: this test cannot fail")
	start, perConn := run("small")
	require.Equal(t, minStack, start, "SmallStacks did not take effect")
	// 16 KiB + 4 KiB, and some slack for the rest of the process (the
	// runtime counts stacks by the 32 KiB span).
	bound := 16<<10 + 4<<10 + 1<<10
	if raceBuild() {
		bound *= 2 // the race detector doubles the stack guard and the frames grow
	}
	require.LessOrEqual(t, perConn, bound)
}

// raceBuild reports whether the test binary has the race detector.
func raceBuild() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// minStack is the runtime's smallest goroutine stack.
const minStack = 2 << 10

// measureIdleStacks shows the runtime deep goroutines, opens idle MQTT
// connections to a broker and prints the runtime's starting stack size
// and the stack held per connection.
func measureIdleStacks(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, SysInterval: -1,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	defer b.Close()

	// Deep goroutines, parked, and a garbage collection that sees them:
	// the runtime's adaptive start makes new goroutines start bigger.
	release := make(chan struct{})
	defer close(release)
	var deep func(n int) byte
	deep = func(n int) byte {
		var frame [512]byte
		frame[n] = byte(n)
		if n == 0 {
			<-release
			return frame[0]
		}
		return deep(n-1) + frame[n]
	}
	for range 64 {
		go deep(12)
	}
	runtime.GC()
	runtime.GC()
	// Dead goroutines to reuse: the runtime gives a reused one a stack
	// of the starting size. Their stacks, and those freed so far, are
	// returned at the next collection.
	var done sync.WaitGroup
	for range 1000 {
		done.Go(func() {})
	}
	done.Wait()
	runtime.GC()

	const n = 200
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	goroutines := runtime.NumGoroutine()
	var conns []net.Conn
	for i := range n {
		c, err := net.Dial("tcp", b.Addr())
		require.NoError(t, err)
		defer c.Close()
		_, err = c.Write(rawmqtt.Connect(rawmqtt.ConnectOptions{ClientID: fmt.Sprint("idle", i), Clean: true, KeepAlive: 600}))
		require.NoError(t, err)
		connack := make([]byte, 4)
		_, err = readFull(c, connack)
		require.NoError(t, err)
		require.Equal(t, []byte{0x20, 2, 0, 0}, connack)
		conns = append(conns, c)
	}
	// Idle: two goroutines per connection are left (the write goroutines
	// of the CONNACKs are gone).
	rawclient.WaitFor(t, func() bool { return runtime.NumGoroutine() == goroutines+2*n })
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	start := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
	metrics.Read(start)
	fmt.Printf("idle stacks: start=%d per-connection=%d\n", start[0].Value.Uint64(), (int(after.StackInuse)-int(before.StackInuse))/n)
	require.Len(t, conns, n)
}
