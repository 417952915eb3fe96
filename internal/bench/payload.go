// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
)

// PayloadSize is the default size of a benchmark payload in bytes, about
// the size of the course's "Temperature: 23.41°C" readings.
const PayloadSize = 32

// Payload returns the benchmark payload for sequence number seq: the
// number in decimal, a space and filler up to size bytes (longer when the
// number needs it). Every payload is one line of printable ASCII, so it
// survives `pub -l` and a subscriber printing one message per line.
func Payload(seq, size int) []byte {
	b := strconv.AppendInt(make([]byte, 0, size), int64(seq), 10)
	b = append(b, ' ')
	for len(b) < size {
		b = append(b, 'x')
	}
	return b
}

// ParseSeq returns the sequence number at the start of a payload (the
// leading decimal digits), and false when there is none.
func ParseSeq(p []byte) (int, bool) {
	n, i := 0, 0
	for ; i < len(p) && p[i] >= '0' && p[i] <= '9'; i++ {
		if i >= 10 {
			return 0, false
		}
		n = n*10 + int(p[i]-'0')
	}
	return n, i > 0
}

// WriteLines writes n payload lines (sequence numbers 0..n-1) for `pub -l`.
func WriteLines(w io.Writer, n, size int) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for i := 0; i < n; i++ {
		bw.Write(Payload(i, size))
		if err := bw.WriteByte('\n'); err != nil {
			return fmt.Errorf("write lines: %w", err)
		}
	}
	return bw.Flush()
}
