// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Stats counts what a fleet did. It is safe for concurrent use.
type Stats struct {
	sent       atomic.Uint64
	errors     atomic.Uint64
	reconnects atomic.Uint64
	maxLag     atomic.Int64 // nanoseconds, since the last Snapshot
}

// AddSent counts a message sent by an asynchronous sink (see ErrQueued).
func (s *Stats) AddSent() { s.sent.Add(1) }

// AddError counts a message that could not be sent.
func (s *Stats) AddError() { s.errors.Add(1) }

// AddReconnect counts a reconnection to the broker.
func (s *Stats) AddReconnect() { s.reconnects.Add(1) }

// Sent returns the number of messages sent so far.
func (s *Stats) Sent() uint64 { return s.sent.Load() }

// Errors returns the number of messages that could not be sent so far.
func (s *Stats) Errors() uint64 { return s.errors.Load() }

func (s *Stats) observeLag(d time.Duration) {
	for {
		old := s.maxLag.Load()
		if int64(d) <= old || s.maxLag.CompareAndSwap(old, int64(d)) {
			return
		}
	}
}

// Snapshot is the state of Stats at one time.
type Snapshot struct {
	Time       time.Time
	Sent       uint64
	Errors     uint64
	Reconnects uint64
	MaxLag     time.Duration // how late the latest send was at worst since the previous snapshot
}

// Snapshot returns the counters at time t and restarts the lag measurement.
func (s *Stats) Snapshot(t time.Time) Snapshot {
	return Snapshot{
		Time:       t,
		Sent:       s.sent.Load(),
		Errors:     s.errors.Load(),
		Reconnects: s.reconnects.Load(),
		MaxLag:     time.Duration(s.maxLag.Swap(0)),
	}
}

// Rate returns the messages sent per second between prev and s.
func (s Snapshot) Rate(prev Snapshot) float64 {
	d := s.Time.Sub(prev.Time).Seconds()
	if d <= 0 || s.Sent < prev.Sent {
		return 0
	}
	return float64(s.Sent-prev.Sent) / d
}

// StatusLine returns the progress line for s, with the rate since prev:
// "sent=12000 rate=10000.0/s errors=0 reconnects=0 lag=1ms".
func (s Snapshot) StatusLine(prev Snapshot) string {
	return fmt.Sprintf("sent=%d rate=%.1f/s errors=%d reconnects=%d lag=%v",
		s.Sent, s.Rate(prev), s.Errors, s.Reconnects, s.MaxLag.Round(time.Millisecond))
}

// Report calls emit with a status line every period until ctx is done.
// The first line comes one period after the call, with the rate since
// prev, a snapshot the caller takes before it starts sending (taking it
// here would race with the first sends).
func Report(ctx context.Context, clk Clock, s *Stats, prev Snapshot, every time.Duration, emit func(line string)) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-clk.After(every):
		}
		cur := s.Snapshot(clk.Now())
		emit(cur.StatusLine(prev))
		prev = cur
	}
}
