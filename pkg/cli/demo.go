// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/fatih/color"
	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/broker"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/format"
)

// DemoOptions holds everything `mqtt demo` needs once flags are parsed.
type DemoOptions struct {
	Interval string
	Count    int
	Duration time.Duration
	Seed     uint64
	Model    string
	Sensors  int
	UI       bool   // --ui: serve the dashboard too
	Open     bool   // --open: and open it (implies --ui)
	HTTP     string // --http: where the dashboard listens (implies --ui)

	sensor *SensorOptions
	// adjustUI lets tests change the dashboard's options (its opener).
	adjustUI func(*UIOptions)
	// deliverTimeout bounds the wait for the last readings after the
	// sensor sent them all (--count); 0 means 10 s.
	deliverTimeout time.Duration
}

const (
	demoTopicFilter = "sensor/#"
	demoSubID       = "mqtt-demo-subscriber"
	demoSensorID    = "mqtt-demo-sensor"
	demoUIID        = "mqtt-demo-ui"
)

func newDemoCmd(d *Deps, runF func(context.Context, *Deps, *DemoOptions) error) *cli.Command {
	o := &DemoOptions{}
	return &cli.Command{
		Name:  "demo",
		Usage: "run a broker, a simulated sensor and a subscriber, and show the messages",
		UsageText: `mqtt demo
mqtt demo --interval 500ms --model sine
mqtt demo --count 5 --seed 42
mqtt demo --ui --open --sensors 3`,
		Description: `Starts a broker on a free 127.0.0.1 port, subscribes to sensor/# and
publishes the course's simulated temperature sensor to sensor/temp. As in
the course's two terminals, each reading's "Sent:" line (dimmed on a
terminal) is followed by the message as it arrives, "topic payload" (in
colour on a terminal); a fleet (--sensors N) shows the arrivals only.
Other clients can join on the printed port. Ctrl-C stops
everything cleanly; --count and --duration stop it by themselves.
--ui also serves the live dashboard of mqtt ui (docs/ui.md) on the demo
broker and prints its address; --open opens it in the browser.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "interval", Value: "2s", Destination: &o.Interval, Usage: "time between two readings of a sensor (e.g. 2s, 500ms, or seconds)"},
			&cli.IntFlag{Name: "count", Destination: &o.Count, DefaultText: "no limit", Usage: "stop once this many readings per sensor arrived"},
			&cli.DurationFlag{Name: "duration", Destination: &o.Duration, DefaultText: "until Ctrl-C", Usage: "stop after this long (e.g. 30s, 5m)"},
			&cli.Uint64Flag{Name: "seed", Destination: &o.Seed, DefaultText: "random", Usage: "seed: the same seed gives the same readings"},
			&cli.StringFlag{Name: "model", Value: "uniform", Destination: &o.Model, Usage: "uniform, walk or sine"},
			&cli.IntFlag{Name: "sensors", Value: 1, Destination: &o.Sensors, Usage: "number of simulated sensors, each on sensor/N/temp when more than one"},
			&cli.BoolFlag{Name: "ui", Destination: &o.UI, Usage: "also serve the live dashboard (mqtt ui) and print its address"},
			&cli.BoolFlag{Name: "open", Destination: &o.Open, Usage: "open the dashboard in the default browser (implies --ui)"},
			&cli.StringFlag{Name: "http", Destination: &o.HTTP, DefaultText: "127.0.0.1 on a free port", Usage: "address the dashboard listens on, HOST:PORT or PORT (implies --ui)"},
		},
		Action: func(c *cli.Context) error {
			if err := o.complete(c, d); err != nil {
				return withCmd(c, err)
			}
			if runF != nil {
				return runF(c.Context, d, o)
			}
			return runDemo(c.Context, d, o)
		},
	}
}

// complete checks the flags with simulate-sensor's rules, so that the
// demo rejects exactly what simulate-sensor rejects, before anything starts.
func (o *DemoOptions) complete(c *cli.Context, d *Deps) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if o.Duration < 0 {
		return usageErrorf("--duration must not be negative, not %v", o.Duration)
	}
	if c.IsSet("http") || o.Open {
		o.UI = true
	}
	if o.UI {
		if o.HTTP == "" {
			o.HTTP = "127.0.0.1:0"
		}
		addr, err := httpAddr(o.HTTP)
		if err != nil {
			return err
		}
		o.HTTP = addr
	}
	s := &SensorOptions{
		QoS:         1,
		Interval:    o.Interval,
		Count:       o.Count,
		Unit:        "C",
		Seed:        o.Seed,
		Model:       o.Model,
		Sensors:     o.Sensors,
		Connections: 1,
		silent:      true,
	}
	if err := s.build(d, func(name string) bool { return name == "seed" && c.IsSet("seed") }); err != nil {
		return err
	}
	o.sensor = s
	return nil
}

// runDemo runs the broker, the subscriber and the sensor until ctx ends,
// --duration passes or --count readings per sensor arrived.
func runDemo(ctx context.Context, d *Deps, o *DemoOptions) error {
	// The broker's own warnings (such as connections closing while the
	// demo stops) would drown the demo's output: only errors are shown.
	blog := slog.New(slog.NewTextHandler(d.IO.ErrOut, &slog.HandlerOptions{Level: slog.LevelError}))
	b, err := broker.New(broker.Config{
		Listeners:      []broker.Listener{{Address: "127.0.0.1:0"}},
		AllowAnonymous: true,
		Log:            blog,
	})
	if err != nil {
		return fmt.Errorf("start the demo broker: %w", err)
	}
	defer b.Close()
	if err := b.Start(); err != nil {
		return fmt.Errorf("start the demo broker: %w", err)
	}
	host, portStr, _ := net.SplitHostPort(b.Addr())
	port, _ := strconv.Atoi(portStr)
	base := client.Config{Host: host, Port: port, Version: client.V5, KeepAlive: 60, CleanStart: true, Log: d.Log}

	// The subscriber hands messages to this goroutine, which alone prints.
	msgs := make(chan *client.Message, 1024)
	stop := make(chan struct{}) // closed when runDemo returns, before the subscriber disconnects
	subCfg := base
	subCfg.ClientID = demoSubID
	sub, err := d.Dial(ctx, &subCfg, func(m *client.Message) {
		select {
		case msgs <- m:
		case <-stop:
		}
	})
	if err != nil {
		return demoEnd(ctx, fmt.Errorf("connect the demo subscriber: %w", err))
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), disconnectTimeout)
		defer cancel()
		_ = sub.Disconnect(dctx)
	}()
	defer close(stop)
	if _, err := sub.Subscribe(ctx, []client.Subscription{{Filter: demoTopicFilter, QoS: 1}}); err != nil {
		return demoEnd(ctx, fmt.Errorf("subscribe to %s: %w", demoTopicFilter, err))
	}

	// The sensor's "Sent:" lines and the subscriber's lines share stdout,
	// as the course's two terminals side by side: the sensor's dimmed on a
	// terminal, so what arrived stands out.
	out := &lockedWriter{w: d.IO.Out}
	s := *o.sensor
	// A reading's line is printed after its "Sent:" line: at QoS 1 the
	// subscriber may get the message before the sensor has its PUBACK.
	// One sensor only: a fleet prints no "Sent:" lines (simulate-sensor
	// shows a status line for those).
	sent := make(chan struct{}, 1<<16)
	single := s.Sensors == 1
	dim := color.New(color.Faint)
	dim.EnableColor()
	colour := d.IO.ColorEnabled()
	s.sentLine = func(line string) {
		if colour {
			line = dim.Sprint(line)
		}
		fmt.Fprintln(out, line)
		select {
		case sent <- struct{}{}:
		default:
		}
	}
	sensorCfg := base
	sensorCfg.ClientID = demoSensorID
	s.cfg = &sensorCfg
	who := "A simulated sensor publishes to " + s.fleet.Topics()[0]
	if n := len(s.fleet.Topics()); n > 1 {
		who = fmt.Sprintf("%d simulated sensors publish to %s ... %s, each", n, s.fleet.Topics()[0], s.fleet.Topics()[n-1])
	}
	fmt.Fprintf(d.IO.ErrOut, "Demo broker listening on %s.\n"+
		"%s every %v; a subscriber to %s prints what arrives.\n"+
		"Join in from another terminal: mqtt sub -h %s -p %d -t '%s' -v\n"+
		"Press Ctrl-C to stop.\n",
		b.Addr(), who, s.interval, demoTopicFilter, host, port, demoTopicFilter)

	if o.UI {
		stopUI, err := startDemoUI(ctx, d, o, base)
		if err != nil {
			return demoEnd(ctx, err)
		}
		defer stopUI()
	}

	// --duration counts from here, once broker and subscriber are ready.
	if o.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.Duration)
		defer cancel()
	}
	sensorCtx, stopSensor := context.WithCancel(ctx)
	var wg sync.WaitGroup
	sensorDone := make(chan error, 1)
	wg.Go(func() { sensorDone <- runSimulateSensor(sensorCtx, d, &s) })
	defer func() { // stop the sensor before the subscriber and the broker
		stopSensor()
		wg.Wait()
	}()

	printer := newDemoPrinter(d, out)
	want := uint64(s.Count) * uint64(s.Sensors) // 0: no limit
	var got uint64
	var drain <-chan time.Time // armed once the sensor sent everything
	timeout := o.deliverTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	for {
		select {
		case m := <-msgs:
			if single {
				// Its "Sent:" line first; a reading that arrived although
				// the sensor's publish failed (no "Sent:" line) is not held
				// up for long.
				select {
				case <-sent:
				case <-time.After(2 * time.Second):
				case <-ctx.Done():
				}
			}
			if err := printer(m); err != nil {
				return err
			}
			got++
			if want > 0 && got >= want {
				return nil
			}
		case err := <-sensorDone:
			sensorDone = nil
			if err != nil {
				return demoEnd(ctx, err)
			}
			if ctx.Err() != nil {
				return nil
			}
			drain = time.After(timeout)
		case <-drain:
			return fmt.Errorf("the subscriber received %d of the %d readings sent", got, want)
		case <-ctx.Done():
			return nil
		}
	}
}

// demoEnd turns an error caused by the demo being stopped into a normal end.
func demoEnd(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
		return nil
	}
	return err
}

// newDemoPrinter returns the function that prints a received message as
// `mqtt sub -v` does, "topic payload", in colour on a terminal.
func newDemoPrinter(d *Deps, out io.Writer) func(m *client.Message) error {
	p, _ := format.NewPrinter(format.Options{Verbose: true, Palette: format.NewPalette(d.IO.ColorEnabled())})
	return func(m *client.Message) error {
		_, err := p.Print(out, &format.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, MID: m.MID, Time: m.Time})
		return err
	}
}

// startDemoUI runs `mqtt ui` on the demo broker, subscribed to everything,
// and returns once it is connected (so that it shows the first reading)
// with the function that stops it. Its address goes to stderr with the
// demo's other explanations: stdout carries the messages.
func startDemoUI(ctx context.Context, d *Deps, o *DemoOptions, base client.Config) (stop func(), err error) {
	cfg := base
	cfg.ClientID = demoUIID
	u := &UIOptions{
		Topics: stringList{"#"},
		HTTP:   o.HTTP,
		Open:   o.Open,
		cfg:    &cfg,
		subs:   uiSubscriptions([]string{"#"}, 1),
		urlOut: d.IO.ErrOut,
	}
	connected := make(chan struct{})
	var once sync.Once
	u.onConnect = func() { once.Do(func() { close(connected) }) }
	if o.adjustUI != nil {
		o.adjustUI(u)
	}
	uctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- runUI(uctx, d, u) }()
	stop = func() {
		cancel()
		<-done
	}
	select {
	case <-connected:
		return stop, nil
	case err := <-done:
		cancel()
		if err == nil {
			err = ctx.Err()
		}
		return nil, err
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
}
