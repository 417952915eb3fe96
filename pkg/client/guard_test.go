// SPDX-License-Identifier: Apache-2.0

package client

import (
	"bytes"
	"io"
	"net"
	"testing"

	"github.com/stretchr/testify/require"
)

// chunkConn returns its chunks, one per Read.
type chunkConn struct {
	net.Conn
	chunks [][]byte
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if len(c.chunks[0]) == 0 {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// split cuts b into pieces of at most n bytes.
func split(b []byte, n int) [][]byte {
	var out [][]byte
	for len(b) > n {
		out = append(out, b[:n])
		b = b[n:]
	}
	return append(out, b)
}

// The guard follows packet boundaries across reads, lets big PUBLISH
// packets through and stops a packet over the limits at its header.
func TestFrameGuard(t *testing.T) {
	bigPublish := appendPublish(nil, false, "t", 1, 1, false, false, nil, bytes.Repeat([]byte("x"), 2<<20))
	ok := append(append([]byte{0x20, 2, 0, 0}, bigPublish...), 0x90, 3, 0, 1, 0) // CONNACK, PUBLISH, SUBACK
	for _, tc := range []struct {
		name  string
		limit int
		in    []byte
		err   string // "" means everything is read
	}{
		{name: "CONNACK, 2 MiB PUBLISH, SUBACK", in: ok},
		{name: "SUBACK of 256 MB", in: append([]byte{0x20, 2, 0, 0, 0x90}, 0xff, 0xff, 0xff, 0x7f),
			err: "protocol error when communicating with broker: the broker sent a SUBACK packet of 268435460 bytes, over the client's limit of 1048576 bytes for that packet"},
		{name: "PUBLISH over the announced maximum", limit: 1 << 20, in: ok,
			err: "the broker sent a PUBLISH packet of 2097162 bytes, over the maximum packet size of 1048576 bytes the client announced"},
		{name: "malformed remaining length", in: []byte{0x20, 2, 0, 0, 0xd0, 0x80, 0x80, 0x80, 0x80, 0x01},
			err: "protocol error when communicating with broker: malformed remaining length"},
	} {
		for _, size := range []int{1, 3, 4096} {
			g := newFrameGuard(&chunkConn{chunks: split(bytes.Clone(tc.in), size)}, tc.limit)
			got, err := io.ReadAll(g)
			if tc.err == "" {
				require.NoError(t, err, "%s, reads of %d", tc.name, size)
				require.Equal(t, tc.in, got)
				require.NoError(t, g.err())
				continue
			}
			require.ErrorContains(t, err, tc.err, "%s, reads of %d", tc.name, size)
			require.ErrorIs(t, err, ErrProtocol)
			require.Equal(t, err, g.err())
			require.Less(t, len(got), len(tc.in), "the bad header reached the reader")
		}
	}
}
