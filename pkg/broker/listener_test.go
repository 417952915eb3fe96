// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// Close returns even when a subscriber stopped reading long ago and its
// socket buffers are full, and when clients are half-way through CONNECT.
func TestCloseWithStuckClients(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true, ConnectTimeout: time.Minute})
	require.NoError(t, err)
	require.NoError(t, b.Start())

	stuck, err := rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	defer stuck.Close()
	_, err = stuck.Connect(rawmqtt.ConnectOptions{ClientID: "stuck", Clean: true})
	require.NoError(t, err)
	_, _, err = stuck.Subscribe(1, "flood", 0)
	require.NoError(t, err)
	// Shrink the receive buffer so the broker's writes block quickly.
	require.NoError(t, stuck.Conn.(*net.TCPConn).SetReadBuffer(4096))

	half, err := rawmqtt.Dial(b.Addr(), 4)
	require.NoError(t, err)
	defer half.Close()
	require.NoError(t, half.Send([]byte{0x10, 0x20, 0x00}))

	// Publish until the broker's writer to the stuck client is blocked:
	// its outbound queue stops draining.
	payload := make([]byte, 64<<10)
	for i := 0; i < 400; i++ {
		require.NoError(t, b.Publish("flood", payload, false, 0))
	}

	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()
	select {
	case err := <-closed:
		require.NoError(t, err)
	case <-time.After(20 * time.Second):
		t.Fatal("Close hangs on a client that does not read")
	}
	_, err = half.WaitClosed(5 * time.Second)
	require.NoError(t, err, "a client in CONNECT must be cut at Close")
}

// Close while clients connect and disconnect: under -race this reports
// mochi's WaitGroup misuse unless the listener waits for its goroutines.
func TestCloseDuringConnects(t *testing.T) {
	for i := 0; i < 5; i++ {
		b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true})
		require.NoError(t, err)
		require.NoError(t, b.Start())
		var stop atomic.Bool
		done := make(chan struct{})
		go func() {
			defer close(done)
			for n := 0; !stop.Load(); n++ {
				c, err := rawmqtt.Dial(b.Addr(), 4)
				if err != nil {
					return
				}
				_, _ = c.Connect(rawmqtt.ConnectOptions{ClientID: fmt.Sprint("c", n), Clean: true})
				if n%2 == 0 {
					_ = c.Send(rawmqtt.Disconnect())
				}
				_ = c.Close()
			}
		}()
		// Close with a client attached.
		c, err := rawmqtt.Dial(b.Addr(), 4)
		require.NoError(t, err)
		_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: "held", Clean: true})
		require.NoError(t, err)
		require.NoError(t, b.Close())
		stop.Store(true)
		<-done
		_, err = c.WaitClosed(5 * time.Second)
		require.NoError(t, err)
		c.Close()
	}
}

// flakyListener fails its first Accept calls like a process out of file
// descriptors.
type flakyListener struct {
	net.Listener
	fails atomic.Int32
}

func (l *flakyListener) Accept() (net.Conn, error) {
	if l.fails.Add(-1) >= 0 {
		return nil, errors.New("accept tcp: too many open files")
	}
	return l.Listener.Accept()
}

// A failing Accept does not stop the listener for good.
func TestListenerSurvivesAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fl := &flakyListener{Listener: ln}
	fl.fails.Store(3)
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	cl := newConnListener("flaky", fl)
	cl.disconnect, cl.set, cl.srv, cl.stats = b.disconnectListener, b.conns, b.srv, &b.wire
	cl.wire = &wireGuard{log: slog.New(slog.DiscardHandler), stats: &b.wire}
	require.NoError(t, b.srv.AddListener(cl))
	require.NoError(t, b.Start())

	c, err := rawmqtt.Dial(ln.Addr().String(), 4)
	require.NoError(t, err)
	defer c.Close()
	_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: "after-emfile", Clean: true})
	require.NoError(t, err)
	require.LessOrEqual(t, fl.fails.Load(), int32(0))
}
