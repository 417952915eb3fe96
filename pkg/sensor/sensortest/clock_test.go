// SPDX-License-Identifier: Apache-2.0

package sensortest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func fired(ch <-chan time.Time) (time.Time, bool) {
	select {
	case t := <-ch:
		return t, true
	default:
		return time.Time{}, false
	}
}

func TestClockFiresTimersWhenDue(t *testing.T) {
	c := NewClock(t0)
	require.Equal(t, t0, c.Now())
	a := c.After(2 * time.Second)
	b := c.After(time.Second)
	require.Equal(t, 2, c.Pending())

	c.Advance(999 * time.Millisecond)
	_, ok := fired(b)
	require.False(t, ok)

	c.Advance(time.Millisecond)
	at, ok := fired(b)
	require.True(t, ok)
	require.Equal(t, t0.Add(time.Second), at)
	_, ok = fired(a)
	require.False(t, ok)

	c.Advance(5 * time.Second)
	at, ok = fired(a)
	require.True(t, ok)
	require.Equal(t, t0.Add(6*time.Second), at, "fires with the clock's time")
	require.Zero(t, c.Pending())
}

func TestClockAfterZeroFiresAtOnce(t *testing.T) {
	c := NewClock(t0)
	at, ok := fired(c.After(0))
	require.True(t, ok)
	require.Equal(t, t0, at)
	_, ok = fired(c.After(-time.Second))
	require.True(t, ok)
	require.Zero(t, c.Pending())
}

func TestClockFireNextAndWaiting(t *testing.T) {
	c := NewClock(t0)
	require.False(t, c.FireNext())
	w := c.Waiting()
	select {
	case <-w:
		t.Fatal("waiting without timers")
	default:
	}
	a := c.After(3 * time.Second)
	b := c.After(3 * time.Second)
	cc := c.After(4 * time.Second)
	<-w // closed by After
	<-c.Waiting()

	require.True(t, c.FireNext())
	require.Equal(t, t0.Add(3*time.Second), c.Now())
	_, okA := fired(a)
	_, okB := fired(b)
	_, okC := fired(cc)
	require.True(t, okA)
	require.True(t, okB, "all timers due at the same time fire")
	require.False(t, okC)

	require.True(t, c.FireNext())
	_, okC = fired(cc)
	require.True(t, okC)
	select {
	case <-c.Waiting():
		t.Fatal("still waiting after the last timer fired")
	default:
	}
}
