// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"net"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLocalOnlyListensOnLoopback(t *testing.T) {
	b, err := New(Config{Port: 0})
	require.NoError(t, err)
	t.Cleanup(func() { _ = b.Close() })
	require.NoError(t, b.Start())
	ls := b.Listeners()
	require.NotEmpty(t, ls)
	require.True(t, strings.HasPrefix(ls[0].Addr, "127.0.0.1:"), ls[0].Addr)
	require.NotZero(t, b.Port())
	for _, l := range ls {
		host, port, err := net.SplitHostPort(l.Addr)
		require.NoError(t, err)
		require.True(t, net.ParseIP(host).IsLoopback(), l.Addr)
		require.Equal(t, ls[0].Addr[strings.LastIndex(ls[0].Addr, ":")+1:], port, "all local listeners share the port")
	}
	c, err := net.Dial("tcp", b.Addr())
	require.NoError(t, err)
	c.Close()
}

func TestCloseTwice(t *testing.T) {
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, AllowAnonymous: true})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	require.NoError(t, b.Close())
	require.NoError(t, b.Close())
}

func TestListenError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	_, err = New(Config{Listeners: []Listener{{Address: l.Addr().String()}}})
	require.ErrorContains(t, err, "listen on "+l.Addr().String())
}
