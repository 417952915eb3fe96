// SPDX-License-Identifier: Apache-2.0

// Package sensortest provides a fake clock for tests of code that takes a
// sensor.Clock.
package sensortest

import (
	"sort"
	"sync"
	"time"
)

// Clock is a fake sensor.Clock. Time stands still until Advance or
// FireNext moves it; timers created by After fire when the time reaches
// their deadline. It is safe for concurrent use.
type Clock struct {
	mu      sync.Mutex
	now     time.Time
	timers  []timer
	waiting chan struct{} // closed when a timer is pending
}

type timer struct {
	at time.Time
	ch chan time.Time
}

// NewClock returns a fake clock that reads t.
func NewClock(t time.Time) *Clock {
	return &Clock{now: t, waiting: make(chan struct{})}
}

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// After returns a channel that receives the fake time once it has advanced
// by d. A d <= 0 fires at once.
func (c *Clock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
		return ch
	}
	c.timers = append(c.timers, timer{at: c.now.Add(d), ch: ch})
	sort.SliceStable(c.timers, func(i, j int) bool { return c.timers[i].at.Before(c.timers[j].at) })
	select {
	case <-c.waiting:
	default:
		close(c.waiting)
	}
	return ch
}

// Waiting returns a channel that is closed once at least one timer is
// pending, so a test can select on it together with other events.
func (c *Clock) Waiting() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.waiting
}

// Pending returns the number of timers that have not fired.
func (c *Clock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Advance moves the time forward by d and fires the timers that are due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(c.now.Add(d))
}

// FireNext moves the time to the earliest pending deadline (if it is in
// the future) and fires every timer due then. It reports false when no
// timer is pending.
func (c *Clock) FireNext() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.timers) == 0 {
		return false
	}
	t := c.timers[0].at
	if t.Before(c.now) {
		t = c.now
	}
	c.setLocked(t)
	return true
}

func (c *Clock) setLocked(t time.Time) {
	c.now = t
	n := 0
	for n < len(c.timers) && !c.timers[n].at.After(t) {
		c.timers[n].ch <- t
		n++
	}
	c.timers = c.timers[n:]
	if len(c.timers) == 0 {
		select {
		case <-c.waiting:
			c.waiting = make(chan struct{})
		default:
		}
	}
}
