// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestAsyncConnHold: bytes written during a hold reach the socket only
// after release, in order with what follows (tests stall clients with it).
func TestAsyncConnHold(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	ac := newAsyncConn(server, MaxPendingBytes, slog.New(slog.DiscardHandler), nil)
	defer ac.Close()

	ac.hold()
	_, err := ac.Write([]byte("ack"))
	require.NoError(t, err)
	got := make(chan string, 1)
	go func() {
		b := make([]byte, 6)
		_, err := io.ReadFull(client, b)
		if err != nil {
			got <- err.Error()
			return
		}
		got <- string(b)
	}()
	select {
	case s := <-got:
		t.Fatalf("held bytes were sent: %q", s)
	case <-time.After(50 * time.Millisecond):
	}
	ac.release()
	_, err = ac.Write([]byte("msg"))
	require.NoError(t, err)
	select {
	case s := <-got:
		require.Equal(t, "ackmsg", s)
	case <-time.After(5 * time.Second):
		t.Fatal("nothing sent after release")
	}
}

func TestAsyncConnOf(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	ac := newAsyncConn(server, MaxPendingBytes, slog.New(slog.DiscardHandler), nil)
	defer ac.Close()
	require.Same(t, ac, asyncConnOf(ac))
	require.Same(t, ac, asyncConnOf(&guardConn{Conn: ac}))
	require.Nil(t, asyncConnOf(client))
}
