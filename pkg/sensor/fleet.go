// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Clock tells the time and waits. Fleets take one so that tests can drive
// them with a fake clock (see package sensortest) instead of sleeping.
type Clock interface {
	Now() time.Time
	// After returns a channel that receives the time once d has passed.
	After(d time.Duration) <-chan time.Time
}

// SystemClock returns the real clock.
func SystemClock() Clock { return systemClock{} }

type systemClock struct{}

func (systemClock) Now() time.Time                         { return time.Now() }
func (systemClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// FleetConfig describes a fleet of sensors.
type FleetConfig struct {
	Sensor   Config        // values of every sensor; each draws its own stream
	Sensors  int           // number of sensors; 0 means 1
	Interval time.Duration // time between two readings of one sensor; > 0
	Count    int           // readings per sensor; 0 means no limit
	Topic    string        // topic template over TopicData, e.g. "sensor/{{.Sensor}}/temp"
	Format   *Format       // payload format; nil means CourseFormat
}

// Message is one reading ready to publish.
type Message struct {
	Index   int       // sensor index, 0-based (Reading.Sensor is Index+1)
	Topic   string    // expanded topic of the sensor
	Payload []byte    // formatted payload; owned by the receiver
	Reading Reading   // the reading the payload was made from
	Due     time.Time // when the schedule wanted it sent
}

// Sink publishes a message. Returning nil counts it as sent. Returning an
// error that wraps ErrDropped counts it as an error and the fleet goes on;
// ErrQueued means the sink took the message and counts the outcome itself
// (Stats.AddSent, Stats.AddError); any other error stops the fleet.
type Sink func(ctx context.Context, m Message) error

// ErrDropped marks a message that could not be sent but must not stop the
// fleet, such as a QoS 0 publish while the connection is down.
var ErrDropped = errors.New("message dropped")

// ErrQueued marks a message that an asynchronous sink accepted; the sink
// reports later whether it was sent.
var ErrQueued = errors.New("message queued")

// Fleet schedules the readings of several sensors. Each sensor sends once
// per Interval, and the sends of the fleet are spread evenly over the
// interval: sensor i (0-based) sends at start + k*Interval + i*Interval/N.
type Fleet struct {
	gens     []*Generator
	topics   []string
	seqs     []uint64
	unit     Unit
	interval time.Duration
	count    int
	format   *Format
	stats    Stats
}

// NewFleet checks c and returns its fleet, ready to Run.
func NewFleet(c FleetConfig) (*Fleet, error) {
	n := c.Sensors
	switch {
	case n == 0:
		n = 1
	case n < 0:
		return nil, fmt.Errorf("number of sensors must be at least 1, not %d", c.Sensors)
	}
	if c.Interval <= 0 {
		return nil, fmt.Errorf("interval must be positive, not %v", c.Interval)
	}
	if c.Count < 0 {
		return nil, fmt.Errorf("count must not be negative, not %d", c.Count)
	}
	if c.Sensor.Unit == "" {
		c.Sensor.Unit = Celsius
	}
	if c.Format == nil {
		c.Format = CourseFormat()
	}
	f := &Fleet{
		gens:     make([]*Generator, n),
		seqs:     make([]uint64, n),
		unit:     c.Sensor.Unit,
		interval: c.Interval,
		count:    c.Count,
		format:   c.Format,
	}
	for i := range n {
		g, err := NewGenerator(c.Sensor, i+1)
		if err != nil {
			return nil, err
		}
		f.gens[i] = g
	}
	topics, err := Topics(c.Topic, n, c.Sensor.Unit)
	if err != nil {
		return nil, fmt.Errorf("topic: %w", err)
	}
	f.topics = topics
	return f, nil
}

// Sensors returns the number of sensors.
func (f *Fleet) Sensors() int { return len(f.gens) }

// Topics returns the expanded topic of each sensor, by index.
func (f *Fleet) Topics() []string { return f.topics }

// Stats returns the fleet's counters. Run counts sent messages and
// dropped ones (as errors), except those an asynchronous sink queued; the
// caller adds reconnects.
func (f *Fleet) Stats() *Stats { return &f.stats }

// Total returns the number of messages Run sends before it returns, or 0
// when it runs until cancelled.
func (f *Fleet) Total() uint64 { return uint64(f.count) * uint64(len(f.gens)) }

// Slot returns which sensor makes the j-th send (0-based) of the fleet and
// when, as an offset from the start of Run.
func (f *Fleet) Slot(j uint64) (index int, offset time.Duration) {
	n := uint64(len(f.gens))
	round, i := j/n, j%n
	// Split the computation so that it cannot overflow for any realistic j.
	return int(i), time.Duration(round)*f.interval + time.Duration(uint64(f.interval)*i/n)
}

// Run sends the fleet's readings to sink on schedule until the count is
// reached (nil), ctx is cancelled (ctx.Err()), or sink fails (its error).
// When sink is slower than the schedule, Run sends late messages at once
// to catch up; Stats records how late. Run must be called only once.
func (f *Fleet) Run(ctx context.Context, clk Clock, sink Sink) error {
	start := clk.Now()
	total := f.Total()
	for j := uint64(0); total == 0 || j < total; j++ {
		i, off := f.Slot(j)
		due := start.Add(off)
		if d := due.Sub(clk.Now()); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-clk.After(d):
			}
		} else if err := ctx.Err(); err != nil {
			return err
		}
		now := clk.Now()
		f.stats.observeLag(now.Sub(due))
		m, err := f.message(i, now)
		if err != nil {
			return err
		}
		m.Due = due
		switch err := sink(ctx, m); {
		case err == nil:
			f.stats.sent.Add(1)
		case errors.Is(err, ErrDropped):
			f.stats.errors.Add(1)
		case errors.Is(err, ErrQueued):
		default:
			return err
		}
	}
	return nil
}

// message takes the next reading of sensor i at time t and formats it.
func (f *Fleet) message(i int, t time.Time) (Message, error) {
	f.seqs[i]++
	r := Reading{
		Sensor: SensorName(i + 1),
		Seq:    f.seqs[i],
		Value:  Value(f.gens[i].Next(t)),
		Unit:   f.unit,
		Time:   t,
	}
	p, err := f.format.Append(nil, r)
	if err != nil {
		return Message{}, fmt.Errorf("format reading %d of sensor %s: %w", r.Seq, r.Sensor, err)
	}
	return Message{Index: i, Topic: f.topics[i], Payload: p, Reading: r}, nil
}
