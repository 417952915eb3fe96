// SPDX-License-Identifier: Apache-2.0

package rawmqtt

import (
	"bufio"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// ReadRaw reads one packet from r and returns its first byte and its
// body, undecoded: for fake brokers that check bytes themselves.
func ReadRaw(r *bufio.Reader) (first byte, body []byte, err error) {
	first, err = r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&0x7f) * mul
		mul *= 128
		if b&0x80 == 0 {
			break
		}
	}
	body = make([]byte, n)
	_, err = io.ReadFull(r, body)
	return first, body, err
}

// ReadAnswering reads packets from r like ReadRaw, answers each PINGREQ
// with a PINGRESP on w, and returns the first other packet. A client's
// keep-alive may send a PINGREQ at any time, even right after CONNECT
// (paho.golang's pinger does when its first tick comes before it has
// noted the CONNECT), so a fake broker waiting for a given packet must not
// take a PINGREQ for it.
func ReadAnswering(w io.Writer, r *bufio.Reader) (first byte, body []byte, err error) {
	for {
		first, body, err = ReadRaw(r)
		if err != nil || first>>4 != PINGREQ {
			return first, body, err
		}
		if _, err := w.Write([]byte{PINGRESP << 4, 0}); err != nil {
			return 0, nil, err
		}
	}
}

// Serve is a fake server for a test: it listens on a free 127.0.0.1 port
// and runs handle on every connection, with the given deadline, closing
// the connection when handle returns. When the test ends it stops
// listening and waits for the handlers. It returns the port.
func Serve(t testing.TB, deadline time.Duration, handle func(net.Conn)) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(deadline))
				handle(c)
			})
		}
	})
	t.Cleanup(func() { l.Close(); wg.Wait() })
	return l.Addr().(*net.TCPAddr).Port
}
