// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bufio"
	"context"
	"io"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/pkg/iostreams"
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
			if h, _, err := rawmqtt.ReadAnswering(c, r); err == nil && h>>4 == 3 {
				_, _ = c.Write(append([]byte{0x40}, huge...))
			}
		}, args: []string{"-m", "x", "-q", "1", "-V", "311"},
			want: "the broker sent a PUBACK packet of 268435460 bytes, over the client's limit of 1048576 bytes for that packet"},
		{name: "over the announced maximum packet size", reply: func(c net.Conn, r *bufio.Reader) {
			_, _ = c.Write([]byte{0x20, 0x06, 0, 0, 3, 0x21, 0, 10}) // CONNACK 5, receive maximum 10
			if h, _, err := rawmqtt.ReadAnswering(c, r); err == nil && h>>4 == 3 {
				_, _ = c.Write([]byte{0x40, 200, 1}) // PUBACK of 203 bytes
			}
		}, args: []string{"-m", "x", "-q", "1", "-D", "connect", "maximum-packet-size", "100"},
			want: "the broker sent a PUBACK packet of 203 bytes, over the maximum packet size of 100 bytes the client announced"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runAgainstHugePacket(t, tc.reply, append([]string{"pub", "-t", "a"}, tc.args...), tc.want)
		})
	}
}

// The same for sub, whose MQTT libraries reserve what a packet announces:
// the guard under them stops the packet at its header.
func TestSubBrokerAnnouncesHugePacket(t *testing.T) {
	huge := []byte{0xff, 0xff, 0xff, 0x7f} // remaining length 268435455
	for _, tc := range []struct {
		name  string
		reply func(c net.Conn, r *bufio.Reader)
		args  []string
		want  string
	}{
		{name: "CONNACK", reply: func(c net.Conn, r *bufio.Reader) {
			_, _ = c.Write(append([]byte{0x20}, huge...))
		}, want: "the broker sent a CONNACK packet of 268435460 bytes, over the client's limit of 1048576 bytes for that packet"},
		{name: "CONNACK 3.1.1", reply: func(c net.Conn, r *bufio.Reader) {
			_, _ = c.Write(append([]byte{0x20}, huge...))
		}, args: []string{"-V", "311"},
			want: "the broker sent a CONNACK packet of 268435460 bytes, over the client's limit of 1048576 bytes for that packet"},
		{name: "SUBACK", reply: func(c net.Conn, r *bufio.Reader) {
			_, _ = c.Write([]byte{0x20, 3, 0, 0, 0})
			if h, _, err := rawmqtt.ReadAnswering(c, r); err == nil && h>>4 == 8 {
				_, _ = c.Write(append([]byte{0x90}, huge...))
			}
		}, want: "the broker sent a SUBACK packet of 268435460 bytes, over the client's limit of 1048576 bytes for that packet"},
		{name: "SUBACK 3.1.1", reply: func(c net.Conn, r *bufio.Reader) {
			_, _ = c.Write([]byte{0x20, 2, 0, 0})
			if h, _, err := rawmqtt.ReadAnswering(c, r); err == nil && h>>4 == 8 {
				_, _ = c.Write(append([]byte{0x90}, huge...))
			}
		}, args: []string{"-V", "311"},
			want: "the broker sent a SUBACK packet of 268435460 bytes, over the client's limit of 1048576 bytes for that packet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			runAgainstHugePacket(t, tc.reply, append([]string{"sub", "-t", "a", "-C", "1"}, tc.args...), tc.want)
		})
	}
}

// runAgainstHugePacket runs the command in args against a fake broker that
// reads CONNECT and then answers with reply. The command must exit 1 with
// one line holding want, print nothing on stdout, and not allocate what
// the broker announced.
func runAgainstHugePacket(t *testing.T, reply func(c net.Conn, r *bufio.Reader), args []string, want string) {
	t.Helper()
	port := rawmqtt.Serve(t, 10*time.Second, func(c net.Conn) {
		r := bufio.NewReader(c)
		if h, _, err := rawmqtt.ReadRaw(r); err != nil || h>>4 != 1 {
			return
		}
		reply(c, r)
		_, _ = io.Copy(io.Discard, r) // hold the connection until the client gives up
	})
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	code, stdout, stderr := runWith(t, "", append(args, "-h", "127.0.0.1", "-p", strconv.Itoa(port))...)
	runtime.ReadMemStats(&after)
	require.Equal(t, ExitFailure, code, stderr)
	require.Empty(t, stdout)
	require.Contains(t, stderr, want)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %q", stderr)
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20), "%s allocated what the broker announced", args[0])
}

// A broker that hangs up instead of answering SUBSCRIBE ends sub with an
// error: paho.golang waited for the SUBACK until the context ended, so
// sub hung for ever.
func TestSubBrokerHangsUpDuringSubscribe(t *testing.T) {
	for _, v := range []string{"5", "311"} {
		t.Run("MQTT "+v, func(t *testing.T) {
			port := rawmqtt.Serve(t, 10*time.Second, func(c net.Conn) {
				r := bufio.NewReader(c)
				if h, _, err := rawmqtt.ReadRaw(r); err != nil || h>>4 != 1 {
					return
				}
				if v == "5" {
					_, _ = c.Write([]byte{0x20, 3, 0, 0, 0})
				} else {
					_, _ = c.Write([]byte{0x20, 2, 0, 0})
				}
				_, _, _ = rawmqtt.ReadAnswering(c, r) // SUBSCRIBE, then hang up
			})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ios, _, out, errOut := iostreams.Test()
			d := newDeps(ios)
			done := make(chan int, 1)
			go func() {
				done <- Run(ctx, d, []string{"mqtt", "sub", "-h", "127.0.0.1", "-p", strconv.Itoa(port), "-t", "a", "-V", v})
			}()
			select {
			case code := <-done:
				require.Equal(t, ExitFailure, code, errOut.String())
			case <-time.After(20 * time.Second):
				cancel()
				<-done
				t.Fatal("sub still waits for a SUBACK from a broker that hung up")
			}
			require.Empty(t, out.String())
			require.Contains(t, errOut.String(), "Error: subscribe: ")
			require.Equal(t, 1, strings.Count(errOut.String(), "\n"), "one line: %q", errOut.String())
		})
	}
}
