// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/stretchr/testify/require"
)

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (server, peer net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	peer, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server = <-accepted
	require.NotNil(t, server)
	t.Cleanup(func() { server.Close(); peer.Close() })
	return server, peer
}

func TestAsyncConnDeliversInOrderAndFlushesOnClose(t *testing.T) {
	server, peer := tcpPair(t)
	closed := make(chan struct{})
	c := newAsyncConn(server, 1<<20, slog.New(slog.DiscardHandler), func() { close(closed) })
	var want []byte
	for i := 0; i < 1000; i++ {
		b := []byte{byte(i), byte(i >> 8), 0xAA}
		want = append(want, b...)
		n, err := c.Write(b)
		require.NoError(t, err)
		require.Equal(t, len(b), n)
	}
	require.NoError(t, c.Close()) // before the peer read anything
	_, err := c.Write([]byte("late"))
	require.Error(t, err)
	got, err := io.ReadAll(peer)
	require.NoError(t, err)
	require.Equal(t, want, got, "bytes written before Close must all arrive, in order")
	<-closed
}

// Writes to a client that reads nothing never block; past the limit the
// client is cut.
func TestAsyncConnSlowConsumer(t *testing.T) {
	server, peer := tcpPair(t)
	closed := make(chan struct{})
	c := newAsyncConn(server, 1<<20, slog.New(slog.DiscardHandler), func() { close(closed) })
	chunk := make([]byte, 64<<10)
	done := make(chan error, 1)
	go func() {
		// The kernel buffers a few MiB; 64 MiB cannot all fit.
		for i := 0; i < 1024; i++ {
			if _, err := c.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrSlowConsumer)
	case <-time.After(30 * time.Second):
		t.Fatal("Write blocked on a client that does not read")
	}
	<-closed
	_ = peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, peer)
	require.NoError(t, err, "the slow consumer's connection must end")
}

// A single packet larger than the limit still goes out.
func TestAsyncConnLargePacket(t *testing.T) {
	server, peer := tcpPair(t)
	c := newAsyncConn(server, 1024, slog.New(slog.DiscardHandler), nil)
	big := make([]byte, 64<<10)
	_, err := c.Write(big)
	require.NoError(t, err)
	got := make([]byte, len(big))
	_, err = io.ReadFull(peer, got)
	require.NoError(t, err)
	require.NoError(t, c.Close())
}

// Close of a connection whose peer stopped reading returns at once and
// the socket is closed within closeLinger.
func TestAsyncConnCloseStuckPeer(t *testing.T) {
	server, _ := tcpPair(t)
	closed := make(chan struct{})
	c := newAsyncConn(server, 64<<20, slog.New(slog.DiscardHandler), func() { close(closed) })
	chunk := make([]byte, 1<<20)
	for i := 0; i < 32; i++ {
		_, err := c.Write(chunk)
		require.NoError(t, err)
	}
	require.NoError(t, c.Close())
	select {
	case <-closed:
	case <-time.After(closeLinger + 10*time.Second):
		t.Fatal("the socket of a stuck peer was never closed")
	}
}

// Deadlines set after Close do not extend the linger.
func TestAsyncConnDeadlinesIgnoredWhenClosing(t *testing.T) {
	server, _ := tcpPair(t)
	closed := make(chan struct{})
	c := newAsyncConn(server, 64<<20, slog.New(slog.DiscardHandler), func() { close(closed) })
	_, err := c.Write(make([]byte, 32<<20))
	require.NoError(t, err)
	require.NoError(t, c.Close())
	require.NoError(t, c.SetDeadline(time.Time{}))
	require.NoError(t, c.SetWriteDeadline(time.Time{}))
	select {
	case <-closed:
	case <-time.After(closeLinger + 10*time.Second):
		t.Fatal("a deadline set after Close kept the socket open")
	}
}

// writeRouted writes p to c as the engine writes a QoS 0 delivery:
// waitRoom, Write, unreserve.
func writeRouted(c *asyncConn, p []byte) error {
	if err := c.waitRoom(len(p)); err != nil {
		return err
	}
	defer c.unreserve(len(p))
	_, err := c.Write(p)
	return err
}

// A reader that is slower than the writer but keeps reading gets every
// byte, in order: waitRoom holds the writer back instead of the client
// being cut (which Write alone would do past the limit).
func TestAsyncConnWaitRoomSlowReader(t *testing.T) {
	server, peer := tcpPair(t)
	c := newAsyncConn(server, 256<<10, slog.New(slog.DiscardHandler), nil)
	c.stall = time.Hour // this reader never stalls for long; no clock in the test
	var waits atomic.Int64
	c.waited = func() { waits.Add(1) }

	const total = 32 << 20 // more than the limit and the kernel's buffers
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 4<<10)
		for i := 0; i < total/len(chunk); i++ {
			for j := range chunk {
				chunk[j] = byte(i + j)
			}
			if err := writeRouted(c, chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	// The reader starts only once the writer had to wait: it is slow.
	rawclient.WaitFor(t, func() bool { return waits.Load() > 0 })
	r := bufio.NewReaderSize(peer, 4<<10)
	chunk := make([]byte, 4<<10)
	for i := 0; i < total/len(chunk); i++ {
		_, err := io.ReadFull(r, chunk)
		require.NoError(t, err, "chunk %d", i)
		for j := range chunk {
			if chunk[j] != byte(i+j) {
				t.Fatalf("chunk %d byte %d: got %d, want %d", i, j, chunk[j], byte(i+j))
			}
		}
	}
	require.NoError(t, <-done)
	require.NoError(t, c.Close())
}

// A reader that takes nothing is cut once the stall timeout passes with
// its queue full; the waiting writer gets ErrSlowConsumer.
func TestAsyncConnWaitRoomStalledReader(t *testing.T) {
	server, peer := tcpPair(t)
	require.NoError(t, server.(*net.TCPConn).SetWriteBuffer(16<<10))
	require.NoError(t, peer.(*net.TCPConn).SetReadBuffer(16<<10))
	closed := make(chan struct{})
	c := newAsyncConn(server, 256<<10, slog.New(slog.DiscardHandler), func() { close(closed) })
	c.stall = 50 * time.Millisecond
	var slow atomic.Int64
	c.slow = func() { slow.Add(1) }
	done := make(chan error, 1)
	go func() {
		chunk := make([]byte, 4<<10)
		for {
			if err := writeRouted(c, chunk); err != nil {
				done <- err
				return
			}
		}
	}()
	select {
	case err := <-done:
		require.ErrorIs(t, err, ErrSlowConsumer)
	case <-time.After(30 * time.Second):
		t.Fatal("a writer waited for ever on a client that reads nothing")
	}
	<-closed
	require.Equal(t, int64(1), slow.Load())
	_, err := c.Write([]byte("x"))
	require.ErrorIs(t, err, ErrSlowConsumer)
}

// crypto/tls closes with close_notify and then a write deadline of now
// on the connection below it ("later writes fail"): the bytes queued
// before (a refusing CONNACK, then the alert) must still go out.
func TestAsyncConnPastWriteDeadlineKeepsQueuedBytes(t *testing.T) {
	server, peer := net.Pipe() // unbuffered: the flush waits for the reader
	t.Cleanup(func() { server.Close(); peer.Close() })
	c := newAsyncConn(server, 1<<20, slog.New(slog.DiscardHandler), nil)
	_, err := c.Write([]byte("connack"))
	require.NoError(t, err)
	got := make([]byte, len("connack+alert"))
	_, err = io.ReadFull(peer, got[:1]) // the flush is now inside the socket write
	require.NoError(t, err)
	_, err = c.Write([]byte("+alert"))
	require.NoError(t, err)
	require.NoError(t, c.SetWriteDeadline(time.Now()))
	_, err = io.ReadFull(peer, got[1:])
	require.NoError(t, err, "the queued bytes were cut by the past deadline")
	require.Equal(t, "connack+alert", string(got))
	require.NoError(t, c.Close())
	_, err = peer.Read(got)
	require.ErrorIs(t, err, io.EOF)
}

// stalled returns an asyncConn (limit max) over one end of a net.Pipe
// that nobody reads until the test reads peer: the flush goroutine is
// blocked writing a first byte, so what is written after it stays pending.
func stalled(t *testing.T, max int) (c *asyncConn, peer net.Conn) {
	t.Helper()
	server, peer := net.Pipe()
	t.Cleanup(func() {
		server.Close()
		peer.Close()
	})
	c = newAsyncConn(server, max, slog.New(slog.DiscardHandler), nil)
	c.stall = time.Hour
	_, err := c.Write([]byte{0})
	require.NoError(t, err)
	rawclient.WaitFor(t, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.buf) == 0
	})
	return c, peer
}

// waitRoom lets writers through in the order they came: a large message
// that must wait for the queue to drain is not overtaken, and so not
// starved, by small ones that would fit meanwhile.
func TestAsyncConnWaitRoomInOrder(t *testing.T) {
	c, peer := stalled(t, 64<<10) // waits past 32 KiB
	var waits atomic.Int64
	c.waited = func() { waits.Add(1) }
	_, err := c.Write(make([]byte, 20<<10))
	require.NoError(t, err)

	order := make(chan string, 2)
	go func() {
		if c.waitRoom(48<<10) == nil { // fits only once nothing is pending
			order <- "large"
		}
	}()
	rawclient.WaitFor(t, func() bool { return waits.Load() == 1 })
	go func() {
		if c.waitRoom(1<<10) == nil { // would fit at once
			order <- "small"
		}
	}()
	rawclient.WaitFor(t, func() bool { return waits.Load() == 2 || len(order) > 0 })
	require.Empty(t, order, "a later writer overtook one that waits")
	go func() { _, _ = io.Copy(io.Discard, peer) }()
	require.Equal(t, "large", <-order)
	_, err = c.Write(make([]byte, 48<<10))
	require.NoError(t, err)
	c.unreserve(48 << 10)
	require.Equal(t, "small", <-order)
	require.NoError(t, c.Close())
}
