// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"log/slog"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestAsyncConnOf(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	ac := newAsyncConn(server, MaxPendingBytes, slog.New(slog.DiscardHandler), nil)
	defer ac.Close()
	require.Same(t, ac, asyncConnOf(ac))
	require.Same(t, ac, asyncConnOf(&wireConn{Conn: ac}))
	require.Nil(t, asyncConnOf(client))
}
