// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bufio"
	"io"
	"strconv"
)

// Tracker accounts exactly for the messages one subscriber received out
// of an expected set of sequence numbers 0..Expect-1: duplicates and
// payloads that are not benchmark payloads are counted, not mistaken for
// deliveries. It is not safe for concurrent use.
type Tracker struct {
	expect int
	seen   []uint64
	unique int
	dups   int
	bad    int
}

// NewTracker returns a tracker expecting sequence numbers 0..expect-1.
func NewTracker(expect int) *Tracker {
	return &Tracker{expect: expect, seen: make([]uint64, (expect+63)/64)}
}

// Add records one received payload.
func (t *Tracker) Add(payload []byte) {
	seq, ok := ParseSeq(payload)
	if !ok {
		t.bad++
		return
	}
	t.AddSeq(seq)
}

// AddSeq records one received sequence number.
func (t *Tracker) AddSeq(seq int) {
	if seq < 0 || seq >= t.expect {
		t.bad++
		return
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	if t.seen[w]&bit != 0 {
		t.dups++
		return
	}
	t.seen[w] |= bit
	t.unique++
}

// GridSeq maps a payload "A B ..." of two 1-based numbers (a simulated
// sensor's number and its reading's number, at most stride readings per
// sensor) to the dense sequence number (A-1)*stride + B-1.
func GridSeq(payload []byte, stride int) (int, bool) {
	a, ok := ParseSeq(payload)
	if !ok || a < 1 {
		return 0, false
	}
	rest := payload[len(strconv.Itoa(a)):]
	if len(rest) < 2 || rest[0] != ' ' {
		return 0, false
	}
	b, ok := ParseSeq(rest[1:])
	if !ok || b < 1 || b > stride {
		return 0, false
	}
	return (a-1)*stride + b - 1, true
}

// Expect returns the number of distinct messages expected.
func (t *Tracker) Expect() int { return t.expect }

// Unique returns how many distinct expected messages arrived.
func (t *Tracker) Unique() int { return t.unique }

// Dups returns how many messages arrived more than once (extra copies).
func (t *Tracker) Dups() int { return t.dups }

// Bad returns how many payloads were not expected benchmark payloads.
func (t *Tracker) Bad() int { return t.bad }

// Complete reports whether every expected message arrived.
func (t *Tracker) Complete() bool { return t.unique == t.expect }

// Missing returns how many expected messages did not arrive.
func (t *Tracker) Missing() int { return t.expect - t.unique }

// Count is the verified outcome of one delivery check.
type Count struct {
	Expect int `json:"expect"`
	Unique int `json:"unique"`
	Dups   int `json:"dups"`
	Bad    int `json:"bad"`
}

// Count returns the tracker's totals.
func (t *Tracker) Count() Count {
	return Count{Expect: t.expect, Unique: t.unique, Dups: t.dups, Bad: t.bad}
}

// OK reports whether exactly the expected messages arrived, each once.
func (c Count) OK() bool { return c.Unique == c.Expect && c.Dups == 0 && c.Bad == 0 }

// String renders the count for the table: "200000/200000", with the
// missing, duplicate and foreign counts when there are any.
func (c Count) String() string {
	s := Thousands(int64(c.Unique)) + "/" + Thousands(int64(c.Expect))
	if c.Unique < c.Expect {
		s += " (" + Thousands(int64(c.Expect-c.Unique)) + " lost)"
	}
	if c.Dups > 0 {
		s += " (" + Thousands(int64(c.Dups)) + " dup)"
	}
	if c.Bad > 0 {
		s += " (" + Thousands(int64(c.Bad)) + " foreign)"
	}
	return s
}

// CountLines verifies a subscriber's output: one payload per line. Lines
// that skip says to skip (e.g. a readiness marker) are ignored.
func CountLines(r io.Reader, expect int, skip func(line []byte) bool) (Count, error) {
	t := NewTracker(expect)
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		if skip != nil && skip(s.Bytes()) {
			continue
		}
		t.Add(s.Bytes())
	}
	return t.Count(), s.Err()
}
