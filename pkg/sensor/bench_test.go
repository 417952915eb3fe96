// SPDX-License-Identifier: Apache-2.0

package sensor_test

import (
	"context"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/pkg/sensor"
)

// instantClock never waits: After moves its time forward at once. It
// measures the pure cost of producing messages.
type instantClock struct{ now time.Time }

func (c *instantClock) Now() time.Time { return c.now }
func (c *instantClock) After(d time.Duration) <-chan time.Time {
	c.now = c.now.Add(d)
	ch := make(chan time.Time, 1)
	ch <- c.now
	return ch
}

func noop(context.Context, sensor.Message) error { return nil }

const (
	benchSensors = 1000
	benchRate    = 10 // messages per second per sensor
	benchNeed    = benchSensors * benchRate
)

func benchFleet(b *testing.B, count int, format *sensor.Format) *sensor.Fleet {
	f, err := sensor.NewFleet(sensor.FleetConfig{
		Sensor:   sensor.DefaultConfig(1),
		Sensors:  benchSensors,
		Interval: time.Second / benchRate,
		Count:    count,
		Topic:    "sensor/{{.Sensor}}/temp",
		Format:   format,
	})
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkFleetGenerate measures what one message of a 1,000-sensor fleet
// costs the generator (value, payload, schedule) with a no-op sink, and
// reports the rate one core could sustain against the 10,000 msg/s needed.
func BenchmarkFleetGenerate(b *testing.B) {
	for _, tc := range []struct {
		name   string
		format func() *sensor.Format
	}{
		{"course", sensor.CourseFormat},
		{"json", sensor.JSONFormat},
		{"template", func() *sensor.Format {
			f, _ := sensor.TemplateFormat(`{"id":"{{.Sensor}}","t":{{.Value}},"n":{{.Seq}}}`)
			return f
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			count := (b.N + benchSensors - 1) / benchSensors
			f := benchFleet(b, count, tc.format())
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			if err := f.Run(context.Background(), &instantClock{now: time.Now()}, noop); err != nil {
				b.Fatal(err)
			}
			perMsg := time.Since(start) / time.Duration(f.Total())
			b.StopTimer()
			capacity := float64(time.Second) / float64(perMsg)
			b.ReportMetric(capacity, "msg/s-capacity")
			b.ReportMetric(capacity/benchNeed, "x-headroom")
		})
	}
}

// BenchmarkFleetRealtime runs 1,000 sensors at 10 msg/s each on the real
// clock for one second per iteration, publishing to a no-op sink, and
// reports whether the fleet kept up: every message sent, the run no longer
// than the schedule, and no send later than one sensor interval (100 ms).
func BenchmarkFleetRealtime(b *testing.B) {
	var worstLag, worstOverrun time.Duration
	for range b.N {
		f := benchFleet(b, benchRate, nil)
		start := time.Now()
		if err := f.Run(context.Background(), sensor.SystemClock(), noop); err != nil {
			b.Fatal(err)
		}
		elapsed := time.Since(start)
		s := f.Stats().Snapshot(time.Now())
		if s.Sent != benchNeed {
			b.Fatalf("sent %d messages, want %d", s.Sent, benchNeed)
		}
		// The last send is due one slot before the end of the second.
		if over := elapsed - (time.Second - time.Second/benchNeed); over > worstOverrun {
			worstOverrun = over
		}
		worstLag = max(worstLag, s.MaxLag)
	}
	keepsUp := worstLag < time.Second/benchRate
	b.ReportMetric(float64(worstLag)/float64(time.Millisecond), "ms-max-lag")
	b.ReportMetric(float64(worstOverrun)/float64(time.Millisecond), "ms-overrun")
	if keepsUp {
		b.ReportMetric(1, "keeps-up")
		b.Logf("1000 sensors x 10 msg/s: kept up (worst lag %v)", worstLag)
	} else {
		b.ReportMetric(0, "keeps-up")
		b.Logf("1000 sensors x 10 msg/s: FELL BEHIND (worst lag %v)", worstLag)
	}
}
