// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/sensor"
)

// SensorOptions holds everything `mqtt simulate-sensor` needs once flags
// are parsed.
type SensorOptions struct {
	Conn        ConnOptions
	Topic       string
	QoS         int
	Retain      bool
	Interval    string // a duration ("2s", "500ms") or plain seconds ("2", "0.5")
	Count       int    // readings per sensor; 0 means until interrupted
	Min, Max    float64
	Unit        string
	Seed        uint64
	Model       string
	Format      string
	JSON        bool
	Sensors     int
	Connections int

	cfg      *client.Config
	fleet    *sensor.Fleet
	interval time.Duration

	// Set by tests; zero values mean the real thing.
	clock       sensor.Clock  // schedules readings and status lines
	retryDelay  time.Duration // between reconnect attempts; 0 means 1 s
	statusEvery time.Duration // between status lines; 0 means 5 s
	silent      bool          // no status lines, and "Sent:" lines only through sentLine: mqtt demo
	sentLine    func(string)  // when set, receives each "Sent:" line instead of stdout (mqtt demo)
}

const (
	defaultSensorTopic    = "sensor/temp"
	defaultFleetTopic     = "sensor/{{.Sensor}}/temp"
	defaultSensorInterval = 2 * time.Second
	defaultReconnectDelay = time.Second // libmosquitto's fixed delay
	defaultStatusEvery    = 5 * time.Second
	maxSensors            = 1_000_000
	disconnectTimeout     = 2 * time.Second
)

func newSimulateSensorCmd(d *Deps, runF func(context.Context, *Deps, *SensorOptions) error) *cli.Command {
	o := &SensorOptions{}
	return &cli.Command{
		Name:  "simulate-sensor",
		Usage: "publish simulated temperature readings (the course's sensor, or seeded fleets)",
		UsageText: `mqtt simulate-sensor
mqtt simulate-sensor --interval 500ms --count 10 --seed 42 --model walk
mqtt simulate-sensor --sensors 100 -t 'sensor/{{.Sensor}}/temp' --json`,
		Description: `With no flags: every 2 s publish "Temperature: 23.41°C" (uniform 20.0..30.0,
2 decimals) to sensor/temp on localhost:1883 and print "Sent: 23.41°C".
Ctrl-C disconnects cleanly; a lost broker is reconnected every second.
--min and --max are in --unit (default range: 20..30 °C, 68..86 °F, 293.15..303.15 K).
--format is a Go template over .Value .Unit .Sensor .Seq .Time; the topic
may use .Sensor and .Unit. --count counts readings per sensor. For fleets
and with --quiet a status line on stderr replaces the "Sent:" lines.`,
		Flags: append(connFlags(&o.Conn),
			&cli.StringFlag{Name: "topic", Aliases: []string{"t"}, Destination: &o.Topic, DefaultText: "the topic of -L, else " + defaultSensorTopic + ", or " + defaultFleetTopic + " with --sensors", Usage: "topic to publish to; a template over .Sensor and .Unit"},
			&cli.IntFlag{Name: "qos", Aliases: []string{"q"}, Destination: &o.QoS, Usage: "quality of service: 0, 1 or 2"},
			&cli.BoolFlag{Name: "retain", Aliases: []string{"r"}, Destination: &o.Retain, Usage: "ask the broker to retain the readings"},
			&cli.StringFlag{Name: "interval", Value: "2s", Destination: &o.Interval, Usage: "time between two readings of a sensor (e.g. 2s, 500ms, or seconds)"},
			&cli.IntFlag{Name: "count", Destination: &o.Count, DefaultText: "no limit", Usage: "stop after this many readings per sensor"},
			&cli.Float64Flag{Name: "min", Destination: &o.Min, DefaultText: "20 °C in --unit", Usage: "lowest value, in --unit"},
			&cli.Float64Flag{Name: "max", Destination: &o.Max, DefaultText: "30 °C in --unit", Usage: "highest value, in --unit"},
			&cli.StringFlag{Name: "unit", Value: "C", Destination: &o.Unit, Usage: "temperature unit: C, F or K"},
			&cli.Uint64Flag{Name: "seed", Destination: &o.Seed, DefaultText: "random", Usage: "seed: the same seed gives the same readings on every platform"},
			&cli.StringFlag{Name: "model", Value: "uniform", Destination: &o.Model, Usage: "how values move: uniform, walk (bounded random walk) or sine (daily cycle with noise)"},
			&cli.StringFlag{Name: "format", Destination: &o.Format, DefaultText: "Temperature: 23.41°C", Usage: "payload as a Go template over .Value .Unit .Sensor .Seq .Time"},
			&cli.BoolFlag{Name: "json", Destination: &o.JSON, Usage: `JSON payload: {"sensor":"1","value":23.41,"unit":"C","seq":1,"ts":"..."}`},
			&cli.IntFlag{Name: "sensors", Value: 1, Destination: &o.Sensors, Usage: "number of simulated sensors; sends are spread evenly over the interval"},
			&cli.IntFlag{Name: "connections", Value: 1, Destination: &o.Connections, Usage: "spread the sensors over this many connections"},
		),
		Action: func(c *cli.Context) error {
			if err := o.complete(c, d); err != nil {
				return withCmd(c, err)
			}
			if runF != nil {
				return runF(c.Context, d, o)
			}
			return runSimulateSensor(c.Context, d, o)
		},
	}
}

// complete checks every flag before anything connects, and builds the fleet.
func (o *SensorOptions) complete(c *cli.Context, d *Deps) error {
	if err := noArgs(c); err != nil {
		return err
	}
	cfg, err := o.Conn.clientConfig(d)
	if err != nil {
		return err
	}
	o.cfg = cfg
	return o.build(d, c.IsSet)
}

// build checks the sensor flags and builds the fleet; isSet reports
// whether a flag was given (its name without dashes).
func (o *SensorOptions) build(d *Deps, isSet func(name string) bool) error {
	var err error
	if o.QoS < 0 || o.QoS > 2 {
		return usageErrorf("Invalid QoS given: %d", o.QoS)
	}
	if o.interval, err = parseInterval(o.Interval); err != nil {
		return &UsageError{Err: err}
	}
	if o.Count < 0 {
		return usageErrorf("--count must be 0 (no limit) or more, not %d", o.Count)
	}
	if o.Sensors < 1 || o.Sensors > maxSensors {
		return usageErrorf("--sensors must be between 1 and %d, not %d", maxSensors, o.Sensors)
	}
	if o.Connections < 1 || o.Connections > o.Sensors {
		return usageErrorf("--connections must be between 1 and --sensors (%d), not %d", o.Sensors, o.Connections)
	}
	unit, err := sensor.ParseUnit(o.Unit)
	if err != nil {
		return usageErrorf("--unit: %v", err)
	}
	model, err := sensor.ParseModel(o.Model)
	if err != nil {
		return usageErrorf("--model: %v", err)
	}
	lo, hi := sensor.DefaultRange(unit)
	loFrom, hiFrom := "", ""
	if isSet("min") {
		lo = o.Min
	} else {
		loFrom = " (the default for " + unit.Symbol() + ")"
	}
	if isSet("max") {
		hi = o.Max
	} else {
		hiFrom = " (the default for " + unit.Symbol() + ")"
	}
	o.Min, o.Max = lo, hi
	switch {
	case math.IsNaN(lo) || math.IsInf(lo, 0):
		return usageErrorf("--min must be a finite number, not %v", lo)
	case math.IsNaN(hi) || math.IsInf(hi, 0):
		return usageErrorf("--max must be a finite number, not %v", hi)
	case lo > hi:
		return usageErrorf("--min %s%s is above --max %s%s", num(lo), loFrom, num(hi), hiFrom)
	}
	if !isSet("seed") {
		o.Seed = rand.Uint64()
	}
	d.Log.Debug("sensor seed", "seed", o.Seed)

	var format *sensor.Format
	switch {
	case o.JSON && isSet("format"):
		return usageErrorf("--format and --json cannot be used together")
	case o.JSON:
		format = sensor.JSONFormat()
	case isSet("format"):
		if format, err = sensor.TemplateFormat(o.Format); err != nil {
			return usageErrorf("--format: %v%s", err, fieldHint(err, ".Value .Unit .Sensor .Seq .Time"))
		}
	default:
		format = sensor.CourseFormat()
	}
	topicFlag := "-t"
	switch {
	case isSet("topic"):
	case o.Conn.URLTopic != "": // -L: -t wins when both are given, as in pub
		o.Topic, topicFlag = o.Conn.URLTopic, "-L topic"
	case o.Sensors > 1:
		o.Topic = defaultFleetTopic
	default:
		o.Topic = defaultSensorTopic
	}
	if _, err := sensor.Topics(o.Topic, 1, unit); err != nil {
		return usageErrorf("%s: %v%s", topicFlag, err, fieldHint(err, ".Sensor .Unit"))
	}
	fleet, err := sensor.NewFleet(sensor.FleetConfig{
		Sensor:   sensor.Config{Model: model, Min: lo, Max: hi, Unit: unit, Seed: o.Seed},
		Sensors:  o.Sensors,
		Interval: o.interval,
		Count:    o.Count,
		Topic:    o.Topic,
		Format:   format,
	})
	if err != nil {
		if errors.Is(err, sensor.ErrRange) {
			return usageErrorf("--min/--max: %s", strings.TrimPrefix(err.Error(), sensor.ErrRange.Error()+": "))
		}
		return &UsageError{Err: err}
	}
	for _, t := range fleet.Topics() {
		if err := client.ValidateTopic(t); err != nil {
			if t != o.Topic {
				return usageErrorf("%s %q gives topic %q: %v", topicFlag, o.Topic, t, err)
			}
			return &UsageError{Err: err}
		}
	}
	o.fleet = fleet
	return nil
}

// fieldHint lists the fields a template may use when err is about an
// unknown one.
func fieldHint(err error, fields string) string {
	if strings.Contains(err.Error(), "can't evaluate field") {
		return " (fields: " + fields + ")"
	}
	return ""
}

// num prints a flag value as the user would type it: 30, 20.5, -1e+20.
func num(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// parseInterval reads a Go duration ("2s", "1m30s", "250ms") or a plain
// number of seconds ("2", "0.5").
func parseInterval(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		secs, ferr := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if ferr != nil || secs != secs || secs > float64(1<<62)/1e9 || secs < -float64(1<<62)/1e9 {
			return 0, fmt.Errorf("invalid --interval %q: want a duration such as 2s, 500ms or 1m", s)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("--interval must be positive, not %s", s)
	}
	return d, nil
}

// statusMode reports whether progress goes to a periodic status line on
// stderr instead of a "Sent:" line per reading: for fleets and --quiet.
func (o *SensorOptions) statusMode() bool { return o.Sensors > 1 || o.Conn.Quiet }

// runSimulateSensor connects, publishes the fleet's readings on schedule
// and disconnects cleanly when the count is reached or ctx ends.
func runSimulateSensor(ctx context.Context, d *Deps, o *SensorOptions) error {
	clk := o.clock
	if clk == nil {
		clk = sensor.SystemClock()
	}
	stats := o.fleet.Stats()
	// stderr is shared by the publishing loop, the reconnecting goroutines
	// and the status reporter.
	errOut := &lockedWriter{w: d.IO.ErrOut}
	say := func(format string, a ...any) {
		if !o.Conn.Quiet {
			fmt.Fprintf(errOut, format+"\n", a...)
		}
	}

	conns := make([]*sensorConn, o.Connections)
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), disconnectTimeout)
		defer cancel()
		for _, c := range conns {
			if c != nil {
				c.close(dctx)
			}
		}
	}()
	for i := range conns {
		cfg := *o.cfg
		if o.Connections > 1 && cfg.ClientID != "" {
			cfg.ClientID += "-" + strconv.Itoa(i+1)
		}
		cl, err := d.Dial(ctx, &cfg, nil)
		if err != nil {
			if errors.Is(err, context.Canceled) && ctx.Err() != nil {
				return nil
			}
			return o.Conn.runtimeErr(err)
		}
		conns[i] = &sensorConn{cfg: &cfg, cl: cl}
	}

	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	fatal := make(chan error, len(conns))
	retry := o.retryDelay
	if retry <= 0 {
		retry = defaultReconnectDelay
	}
	for _, c := range conns {
		wg.Go(func() {
			if err := c.supervise(runCtx, d.Dial, d.Log, retry, stats, say); err != nil {
				fatal <- err
				cancel()
			}
		})
	}
	status := o.statusMode() && !o.silent
	sentLines := !o.statusMode() && (!o.silent || o.sentLine != nil)
	every := o.statusEvery
	if every <= 0 {
		every = defaultStatusEvery
	}
	start := stats.Snapshot(clk.Now())
	if status {
		wg.Go(func() {
			sensor.Report(runCtx, clk, stats, start, every, func(line string) { fmt.Fprintln(errOut, line) })
		})
	}

	qos, retain := byte(o.QoS), o.Retain
	single := o.Sensors == 1
	publish := func(ctx context.Context, m sensor.Message) error {
		c := conns[m.Index%len(conns)]
		return c.publish(ctx, &client.Message{Topic: m.Topic, Payload: m.Payload, QoS: qos, Retain: retain})
	}
	sink := func(ctx context.Context, m sensor.Message) error {
		err := publish(ctx, m)
		if err == nil {
			if sentLines && o.sentLine != nil {
				o.sentLine(m.Reading.SentLine())
			} else if sentLines {
				fmt.Fprintln(d.IO.Out, m.Reading.SentLine())
			}
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if single {
			say("Warning: reading %d not sent (%v)", m.Reading.Seq, err)
		}
		return fmt.Errorf("%w: %w", sensor.ErrDropped, err)
	}
	// With several connections each publishes from its own goroutine, so
	// that QoS 1 and 2 acknowledgements are awaited in parallel. A sensor
	// always uses the same connection, so its readings stay in order.
	var (
		workers sync.WaitGroup
		queues  []chan sensor.Message
	)
	if len(conns) > 1 {
		queues = make([]chan sensor.Message, len(conns))
		for i := range queues {
			q := make(chan sensor.Message, 256)
			queues[i] = q
			workers.Go(func() {
				for m := range q {
					if runCtx.Err() != nil {
						continue // stopping: drop what is left
					}
					if err := publish(runCtx, m); err == nil {
						stats.AddSent()
					} else if runCtx.Err() == nil {
						stats.AddError()
					}
				}
			})
		}
		sink = func(ctx context.Context, m sensor.Message) error {
			select {
			case queues[m.Index%len(queues)] <- m:
				return sensor.ErrQueued
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	err := o.fleet.Run(runCtx, clk, sink)
	for _, q := range queues {
		close(q) // the workers publish what is queued, then end
	}
	workers.Wait()
	cancel()
	wg.Wait()
	if status {
		end := stats.Snapshot(clk.Now())
		fmt.Fprintln(errOut, end.StatusLine(start))
	}
	select {
	case ferr := <-fatal:
		return o.Conn.runtimeErr(ferr)
	default:
	}
	if err != nil && errors.Is(err, context.Canceled) && ctx.Err() != nil {
		return nil // interrupted: a normal end for a long-running command
	}
	if err == nil && o.Count > 0 {
		// A finite run is a promise of Total readings: never exit 0
		// having lost some of them.
		if lost := stats.Errors(); lost > 0 {
			return o.Conn.runtimeErr(fmt.Errorf("%d of the %d readings were not sent", lost, o.fleet.Total()))
		}
	}
	return err
}

// sensorConn is one connection of the fleet; supervise replaces the client
// when the connection is lost.
type sensorConn struct {
	cfg *client.Config
	mu  sync.Mutex
	cl  client.Client // nil while reconnecting
}

func (c *sensorConn) current() client.Client {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cl
}

func (c *sensorConn) set(cl client.Client) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cl = cl
}

func (c *sensorConn) publish(ctx context.Context, m *client.Message) error {
	cl := c.current()
	if cl == nil {
		return client.ErrNotConnected
	}
	return cl.Publish(ctx, m)
}

func (c *sensorConn) close(ctx context.Context) {
	if cl := c.current(); cl != nil {
		_ = cl.Disconnect(ctx)
	}
}

// supervise waits for the connection to drop and then reconnects every
// delay until it succeeds, like libmosquitto. A refused CONNACK ends it
// with that error; ctx ending returns nil.
func (c *sensorConn) supervise(ctx context.Context, dial client.DialFunc, log *slog.Logger, delay time.Duration, stats *sensor.Stats, say func(string, ...any)) error {
	addr := c.cfg.Addr()
	for {
		cl := c.current()
		select {
		case <-ctx.Done():
			return nil
		case <-cl.Done():
		}
		c.set(nil)
		say("%s", lostLine(addr, cl.Err(), delay))
		ncl, err := c.reconnect(ctx, dial, log, delay)
		if err != nil || ncl == nil {
			return err
		}
		c.set(ncl)
		stats.AddReconnect()
		say("Reconnected to %s.", addr)
	}
}

// lostLine is the stderr line for a lost connection. The cause is shown
// when the client knows one; "not connected" would only repeat "lost".
func lostLine(addr string, err error, delay time.Duration) string {
	cause := ""
	if err != nil && !errors.Is(err, client.ErrNotConnected) {
		cause = " (" + err.Error() + ")"
	}
	return fmt.Sprintf("Connection to %s lost%s. Reconnecting every %v.", addr, cause, delay)
}

// reconnect dials every delay until it succeeds (the client), the broker
// refuses the connection (the error) or ctx ends (nil, nil).
func (c *sensorConn) reconnect(ctx context.Context, dial client.DialFunc, log *slog.Logger, delay time.Duration) (client.Client, error) {
	t := time.NewTimer(delay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, nil
		case <-t.C:
		}
		cl, err := dial(ctx, c.cfg, nil)
		switch {
		case err == nil:
			return cl, nil
		case ctx.Err() != nil:
			return nil, nil
		}
		var ce *client.ConnectError
		if errors.As(err, &ce) {
			return nil, err
		}
		log.Debug("reconnect failed", "broker", c.cfg.Addr(), "err", err)
		t.Reset(delay)
	}
}

// lockedWriter serialises writes from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
