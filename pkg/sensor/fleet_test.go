// SPDX-License-Identifier: Apache-2.0

package sensor_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/sensor"
	"github.com/mqttkit/mqttkit/pkg/sensor/sensortest"
)

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func fleet(t *testing.T, c sensor.FleetConfig) *sensor.Fleet {
	t.Helper()
	if c.Topic == "" {
		c.Topic = "sensor/{{.Sensor}}/temp"
	}
	if c.Sensor.Max == 0 {
		c.Sensor = sensor.DefaultConfig(1)
	}
	f, err := sensor.NewFleet(c)
	require.NoError(t, err)
	return f
}

// recorder is a Sink that keeps what it gets.
type recorder struct {
	mu   sync.Mutex
	msgs []sensor.Message
	at   []time.Time
	clk  sensor.Clock
	fail func(m sensor.Message) error
}

func (r *recorder) sink(_ context.Context, m sensor.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, m)
	r.at = append(r.at, r.clk.Now())
	if r.fail != nil {
		return r.fail(m)
	}
	return nil
}

// drive runs f on the fake clock, firing each timer Run waits on, until Run
// returns; it fails the test if Run does not finish within 10 s.
func drive(t *testing.T, ctx context.Context, f *sensor.Fleet, clk *sensortest.Clock, sink sensor.Sink) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, clk, sink) }()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-done:
			return err
		case <-clk.Waiting():
			clk.FireNext()
		case <-deadline:
			t.Fatal("Run did not finish")
		}
	}
}

func TestSlotsSpreadSendsOverTheInterval(t *testing.T) {
	f := fleet(t, sensor.FleetConfig{Sensors: 4, Interval: time.Second})
	want := []struct {
		index  int
		offset time.Duration
	}{
		{0, 0}, {1, 250 * time.Millisecond}, {2, 500 * time.Millisecond}, {3, 750 * time.Millisecond},
		{0, time.Second}, {1, 1250 * time.Millisecond},
	}
	for j, w := range want {
		i, off := f.Slot(uint64(j))
		require.Equal(t, w.index, i, "send %d", j)
		require.Equal(t, w.offset, off, "send %d", j)
	}
	// No drift: the millionth round starts exactly a million intervals in.
	f3 := fleet(t, sensor.FleetConfig{Sensors: 3, Interval: time.Second})
	i, off := f3.Slot(3_000_000)
	require.Equal(t, 0, i)
	require.Equal(t, 1_000_000*time.Second, off)
	_, off = f3.Slot(3_000_001)
	require.Equal(t, 1_000_000*time.Second+333_333_333*time.Nanosecond, off)
}

func TestRunSendsOnScheduleAndStopsAtCount(t *testing.T) {
	clk := sensortest.NewClock(t0)
	f := fleet(t, sensor.FleetConfig{Sensors: 4, Interval: 2 * time.Second, Count: 3})
	rec := &recorder{clk: clk}
	require.NoError(t, drive(t, context.Background(), f, clk, rec.sink))

	require.Len(t, rec.msgs, 12)
	require.Equal(t, uint64(12), f.Total())
	require.Equal(t, uint64(12), f.Stats().Sent())
	seq := map[string]uint64{}
	for j, m := range rec.msgs {
		round, idx := j/4, j%4
		due := t0.Add(time.Duration(round)*2*time.Second + time.Duration(idx)*500*time.Millisecond)
		require.Equal(t, idx, m.Index, "message %d", j)
		require.Equal(t, due, m.Due, "message %d", j)
		require.Equal(t, due, rec.at[j], "message %d sent on time, no burst", j)
		require.Equal(t, due, m.Reading.Time)
		require.Equal(t, fmt.Sprint(idx+1), m.Reading.Sensor)
		require.Equal(t, fmt.Sprintf("sensor/%d/temp", idx+1), m.Topic)
		seq[m.Reading.Sensor]++
		require.Equal(t, seq[m.Reading.Sensor], m.Reading.Seq)
		require.Equal(t, "Temperature: "+m.Reading.Value.String()+"°C", string(m.Payload))
	}
	require.Equal(t, t0.Add(2*2*time.Second+3*500*time.Millisecond), clk.Now(), "no wait after the last send")
}

func TestRunReproducesGeneratorSequences(t *testing.T) {
	clk := sensortest.NewClock(t0)
	c := sensor.FleetConfig{Sensor: sensor.DefaultConfig(42), Sensors: 2, Interval: time.Second, Count: 5}
	rec := &recorder{clk: clk}
	require.NoError(t, drive(t, context.Background(), fleet(t, c), clk, rec.sink))
	for n := 1; n <= 2; n++ {
		g, err := sensor.NewGenerator(c.Sensor, n)
		require.NoError(t, err)
		for j, m := range rec.msgs {
			if m.Index == n-1 {
				require.Equal(t, g.Next(m.Reading.Time), float64(m.Reading.Value), "message %d", j)
			}
		}
	}
}

func TestRunSingleSensorFirstSendIsImmediate(t *testing.T) {
	clk := sensortest.NewClock(t0)
	f := fleet(t, sensor.FleetConfig{Interval: 2 * time.Second, Count: 2, Topic: "sensor/temp"})
	rec := &recorder{clk: clk}
	require.NoError(t, drive(t, context.Background(), f, clk, rec.sink))
	require.Equal(t, []time.Time{t0, t0.Add(2 * time.Second)}, rec.at)
	require.Equal(t, "sensor/temp", rec.msgs[0].Topic)
	require.Equal(t, "1", rec.msgs[0].Reading.Sensor)
}

func TestRunUntilCancelled(t *testing.T) {
	clk := sensortest.NewClock(t0)
	f := fleet(t, sensor.FleetConfig{Sensors: 2, Interval: time.Second})
	require.Zero(t, f.Total())
	ctx, cancel := context.WithCancel(context.Background())
	rec := &recorder{clk: clk, fail: func(m sensor.Message) error {
		if m.Reading.Seq == 50 && m.Index == 1 {
			cancel()
		}
		return nil
	}}
	err := drive(t, ctx, f, clk, rec.sink)
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, rec.msgs, 100)
}

func TestRunCatchesUpWhenLate(t *testing.T) {
	clk := sensortest.NewClock(t0)
	f := fleet(t, sensor.FleetConfig{Sensors: 2, Interval: time.Second, Count: 3})
	rec := &recorder{clk: clk}
	slow := func(ctx context.Context, m sensor.Message) error {
		if m.Index == 0 && m.Reading.Seq == 1 {
			clk.Advance(1700 * time.Millisecond) // the first publish takes 1.7 s
		}
		return rec.sink(ctx, m)
	}
	require.NoError(t, drive(t, context.Background(), f, clk, slow))
	require.Len(t, rec.msgs, 6)
	// The sends due at 0.5, 1.0 and 1.5 s go out at once when the slow
	// publish returns at 1.7 s; then the schedule resumes.
	late := t0.Add(1700 * time.Millisecond)
	require.Equal(t, []time.Time{late, late, late, late, t0.Add(2 * time.Second), t0.Add(2500 * time.Millisecond)}, rec.at)
	require.Equal(t, 1200*time.Millisecond, f.Stats().Snapshot(clk.Now()).MaxLag)
}

func TestRunDroppedMessagesCountAsErrors(t *testing.T) {
	clk := sensortest.NewClock(t0)
	f := fleet(t, sensor.FleetConfig{Sensors: 2, Interval: time.Second, Count: 2})
	rec := &recorder{clk: clk, fail: func(m sensor.Message) error {
		if m.Index == 1 {
			return fmt.Errorf("not connected: %w", sensor.ErrDropped)
		}
		return nil
	}}
	require.NoError(t, drive(t, context.Background(), f, clk, rec.sink))
	s := f.Stats().Snapshot(clk.Now())
	require.Equal(t, uint64(2), s.Sent)
	require.Equal(t, uint64(2), s.Errors)
}

func TestRunQueuedMessagesAreCountedBySink(t *testing.T) {
	clk := sensortest.NewClock(t0)
	f := fleet(t, sensor.FleetConfig{Sensors: 3, Interval: time.Second, Count: 2})
	rec := &recorder{clk: clk, fail: func(m sensor.Message) error {
		if m.Index == 2 {
			f.Stats().AddError() // the asynchronous publish failed later
		} else {
			f.Stats().AddSent()
		}
		return fmt.Errorf("accepted: %w", sensor.ErrQueued)
	}}
	require.NoError(t, drive(t, context.Background(), f, clk, rec.sink))
	s := f.Stats().Snapshot(clk.Now())
	require.Len(t, rec.msgs, 6)
	require.Equal(t, uint64(4), s.Sent)
	require.Equal(t, uint64(2), s.Errors)
}

func TestRunStopsOnSinkError(t *testing.T) {
	clk := sensortest.NewClock(t0)
	f := fleet(t, sensor.FleetConfig{Sensors: 2, Interval: time.Second, Count: 5})
	boom := errors.New("not authorised")
	rec := &recorder{clk: clk, fail: func(m sensor.Message) error {
		if m.Reading.Seq == 2 {
			return boom
		}
		return nil
	}}
	require.ErrorIs(t, drive(t, context.Background(), f, clk, rec.sink), boom)
	require.Len(t, rec.msgs, 3)
	require.Equal(t, uint64(2), f.Stats().Sent())
}

func TestRunStopsOnTemplateErrorLater(t *testing.T) {
	clk := sensortest.NewClock(t0)
	format, err := sensor.TemplateFormat(`{{if gt .Seq 1}}{{index .Sensor 5}}{{end}}`)
	require.NoError(t, err)
	f := fleet(t, sensor.FleetConfig{Interval: time.Second, Count: 3, Format: format})
	rec := &recorder{clk: clk}
	err = drive(t, context.Background(), f, clk, rec.sink)
	require.ErrorContains(t, err, "format reading 2 of sensor 1: template: format:1:18: executing")
	require.Len(t, rec.msgs, 1)
}

func TestNewFleetErrors(t *testing.T) {
	ok := sensor.FleetConfig{Sensor: sensor.DefaultConfig(1), Interval: time.Second, Topic: "t"}
	tests := []struct {
		name   string
		change func(*sensor.FleetConfig)
		err    string
	}{
		{"zero interval", func(c *sensor.FleetConfig) { c.Interval = 0 }, "interval must be positive, not 0s"},
		{"negative interval", func(c *sensor.FleetConfig) { c.Interval = -time.Second }, "interval must be positive, not -1s"},
		{"negative sensors", func(c *sensor.FleetConfig) { c.Sensors = -1 }, "number of sensors must be at least 1, not -1"},
		{"negative count", func(c *sensor.FleetConfig) { c.Count = -2 }, "count must not be negative, not -2"},
		{"bad range", func(c *sensor.FleetConfig) { c.Sensor.Min = 40 }, "invalid range: min 40.0 is above max 30.0"},
		{"bad topic", func(c *sensor.FleetConfig) { c.Topic = "s/{{.Seq}}" }, `topic: template: topic:1:4: executing "topic" at <.Seq>: can't evaluate field Seq in type sensor.TopicData`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			_, err := sensor.NewFleet(c)
			require.EqualError(t, err, tt.err)
		})
	}
	f, err := sensor.NewFleet(ok)
	require.NoError(t, err)
	require.Equal(t, 1, f.Sensors())
	require.Equal(t, []string{"t"}, f.Topics())
}

func TestReportStatusLines(t *testing.T) {
	clk := sensortest.NewClock(t0)
	f := fleet(t, sensor.FleetConfig{Sensors: 10, Interval: time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	lines := make(chan string, 10)
	done := make(chan struct{})
	start := f.Stats().Snapshot(clk.Now())
	go func() {
		defer close(done)
		sensor.Report(ctx, clk, f.Stats(), start, 5*time.Second, func(l string) { lines <- l })
	}()
	<-clk.Waiting()
	f.Stats().AddReconnect()
	f.Stats().AddError()
	clk.Advance(5 * time.Second)
	require.Equal(t, "sent=0 rate=0.0/s errors=1 reconnects=1 lag=0s", <-lines)
	cancel()
	<-done
}

func TestStatusLineRate(t *testing.T) {
	prev := sensor.Snapshot{Time: t0, Sent: 1000}
	cur := sensor.Snapshot{Time: t0.Add(4 * time.Second), Sent: 41000, Errors: 2, Reconnects: 1, MaxLag: 1400 * time.Microsecond}
	require.Equal(t, 10000.0, cur.Rate(prev))
	require.Equal(t, "sent=41000 rate=10000.0/s errors=2 reconnects=1 lag=1ms", cur.StatusLine(prev))
	require.Zero(t, cur.Rate(cur), "no time passed")
}
