// SPDX-License-Identifier: Apache-2.0

package wsconn

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"
)

var (
	errText   = errors.New("text message")
	errClosed = errors.New("closed")
)

// pair returns both ends of a WebSocket connection over loopback.
func pair(t *testing.T) (client, server *websocket.Conn) {
	t.Helper()
	got := make(chan *websocket.Conn, 1)
	up := websocket.Upgrader{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err == nil {
			got <- c
		}
	}))
	t.Cleanup(srv.Close)
	c, _, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(srv.URL, "http"), nil)
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	select {
	case s := <-got:
		t.Cleanup(func() { s.Close() })
		return c, s
	case <-time.After(10 * time.Second):
		t.Fatal("no WebSocket connection")
	}
	return nil, nil
}

// readAll reads with Read in reads of at most size bytes until it fails.
func readAll(ws *websocket.Conn, size int, closed error) ([]byte, error) {
	var cur io.Reader
	var out []byte
	buf := make([]byte, size)
	for {
		n, err := Read(ws, &cur, buf, errText, closed)
		out = append(out, buf[:n]...)
		if err != nil {
			return out, err
		}
	}
}

// The stream runs across binary messages, whatever their cut, skips
// empty ones, and stops at a text message.
func TestReadAcrossMessages(t *testing.T) {
	for _, size := range []int{1, 3, 1024} {
		c, s := pair(t)
		for _, m := range []string{"\x20\x02", "\x00\x00\x30", "", "\x03\x00\x01a"} {
			_, err := Write(c, []byte(m))
			require.NoError(t, err)
		}
		require.NoError(t, c.WriteMessage(websocket.TextMessage, []byte("x")))
		got, err := readAll(s, size, nil)
		require.ErrorIs(t, err, errText, "reads of %d", size)
		require.Equal(t, "\x20\x02\x00\x00\x30\x03\x00\x01a", string(got), "reads of %d", size)
	}
}

// A close frame between messages is closed when given, else the
// WebSocket's own error.
func TestReadClosed(t *testing.T) {
	for _, closed := range []error{errClosed, nil} {
		c, s := pair(t)
		_, err := Write(c, []byte("ab"))
		require.NoError(t, err)
		require.NoError(t, c.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")))
		got, err := readAll(s, 16, closed)
		require.Equal(t, "ab", string(got))
		if closed != nil {
			require.ErrorIs(t, err, errClosed)
			continue
		}
		var ce *websocket.CloseError
		require.ErrorAs(t, err, &ce)
		require.Equal(t, websocket.CloseNormalClosure, ce.Code)
	}
}

// Write sends p as one binary message.
func TestWrite(t *testing.T) {
	c, s := pair(t)
	n, err := Write(c, []byte("\x30\x03\x00\x01a"))
	require.NoError(t, err)
	require.Equal(t, 5, n)
	op, b, err := s.ReadMessage()
	require.NoError(t, err)
	require.Equal(t, websocket.BinaryMessage, op)
	require.Equal(t, "\x30\x03\x00\x01a", string(b))
}
