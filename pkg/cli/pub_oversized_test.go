// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// A broker that announces a huge packet must not make pub allocate it:
// pub exits 1 with one line naming the packet and the limit.
func TestPubBrokerAnnouncesHugePacket(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0x7f} // remaining length 268435455
	for _, tc := range []struct {
		name  string
		reply func(c net.Conn, r *bufio.Reader)
		args  []string
		want  string
	}{
		{name: "CONNACK", reply: func(c net.Conn, r *bufio.Reader) {
			_, _ = c.Write(append([]byte{0x20}, huge...))
		}, args: []string{"-m", "x"},
			want: "the broker sent a CONNACK packet of 268435460 bytes, over the client's limit of 1048576 bytes for that packet"},
		{name: "PUBACK", reply: func(c net.Conn, r *bufio.Reader) {
			_, _ = c.Write([]byte{0x20, 2, 0, 0})
			if h, _, err := rawmqtt.ReadRaw(r); err == nil && h>>4 == 3 {
				_, _ = c.Write(append([]byte{0x40}, huge...))
			}
		}, args: []string{"-m", "x", "-q", "1", "-V", "311"},
			want: "the broker sent a PUBACK packet of 268435460 bytes, over the client's limit of 1048576 bytes for that packet"},
		{name: "over the announced maximum packet size", reply: func(c net.Conn, r *bufio.Reader) {
			_, _ = c.Write([]byte{0x20, 0x06, 0, 0, 3, 0x21, 0, 10}) // CONNACK 5, receive maximum 10
			if h, _, err := rawmqtt.ReadRaw(r); err == nil && h>>4 == 3 {
				_, _ = c.Write([]byte{0x40, 200, 1}) // PUBACK of 203 bytes
			}
		}, args: []string{"-m", "x", "-q", "1", "-D", "connect", "maximum-packet-size", "100"},
			want: "the broker sent a PUBACK packet of 203 bytes, over the maximum packet size of 100 bytes the client announced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			port := rawmqtt.Serve(t, 10*time.Second, func(c net.Conn) {
				r := bufio.NewReader(c)
				if h, _, err := rawmqtt.ReadRaw(r); err != nil || h>>4 != 1 {
					return
				}
				tc.reply(c, r)
				_, _ = io.Copy(io.Discard, r) // hold the connection until pub gives up
			})
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			code, stdout, stderr := runWith(t, "", append([]string{"pub", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "a"}, tc.args...)...)
			runtime.ReadMemStats(&after)
			require.Equal(t, ExitFailure, code, stderr)
			require.Empty(t, stdout)
			require.Contains(t, stderr, tc.want)
			require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
			require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "pub allocated what the broker announced")
		})
	}
}
