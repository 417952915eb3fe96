// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/internal/testbroker"
	"github.com/mqttkit/mqttkit/internal/testutil"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/iostreams"
	"github.com/mqttkit/mqttkit/pkg/sensor"
	"github.com/mqttkit/mqttkit/pkg/sensor/sensortest"
)

// sensorDeps returns Deps on synchronised buffers whose Dial counts calls.
func sensorDeps(t testing.TB) (d *Deps, out, errOut *testutil.Buffer, dials *int) {
	t.Helper()
	io, _, _, _ := iostreams.Test()
	out, errOut = &testutil.Buffer{}, &testutil.Buffer{}
	io.Out, io.ErrOut = out, errOut
	d = newDeps(io)
	var mu sync.Mutex
	n := 0
	d.Dial = func(ctx context.Context, cfg *client.Config, h client.Handler) (client.Client, error) {
		mu.Lock()
		n++
		mu.Unlock()
		return client.Dial(ctx, cfg, h)
	}
	return d, out, errOut, &n
}

// parseSensor runs the command's flag handling and returns the options.
func parseSensor(t testing.TB, d *Deps, args ...string) (*SensorOptions, error) {
	t.Helper()
	return parseCmd(t, d, newSimulateSensorCmd, args...)
}

func TestNewSimulateSensorCmd(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		topics   []string
		interval time.Duration
		lo, hi   float64
		unit     sensor.Unit
		count    int
		sensors  int
	}{
		{name: "course defaults", topics: []string{"sensor/temp"}, interval: 2 * time.Second, lo: 20, hi: 30, unit: "C", sensors: 1},
		{name: "fleet default topic", args: []string{"--sensors", "3"}, topics: []string{"sensor/1/temp", "sensor/2/temp", "sensor/3/temp"}, interval: 2 * time.Second, lo: 20, hi: 30, unit: "C", sensors: 3},
		{name: "fleet own topic", args: []string{"--sensors", "2", "-t", "home/{{.Sensor}}/{{.Unit}}"}, topics: []string{"home/1/C", "home/2/C"}, interval: 2 * time.Second, lo: 20, hi: 30, unit: "C", sensors: 2},
		{name: "one topic for a fleet", args: []string{"--sensors", "2", "--topic", "all"}, topics: []string{"all", "all"}, interval: 2 * time.Second, lo: 20, hi: 30, unit: "C", sensors: 2},
		{name: "fahrenheit default range", args: []string{"--unit", "F"}, topics: []string{"sensor/temp"}, interval: 2 * time.Second, lo: 68, hi: 86, unit: "F", sensors: 1},
		{name: "kelvin with min", args: []string{"--unit", "k", "--min", "290"}, topics: []string{"sensor/temp"}, interval: 2 * time.Second, lo: 290, hi: 303.15, unit: "K", sensors: 1},
		{name: "interval duration", args: []string{"--interval", "250ms", "--count", "4"}, topics: []string{"sensor/temp"}, interval: 250 * time.Millisecond, lo: 20, hi: 30, unit: "C", count: 4, sensors: 1},
		{name: "interval seconds", args: []string{"--interval", "0.5"}, topics: []string{"sensor/temp"}, interval: 500 * time.Millisecond, lo: 20, hi: 30, unit: "C", sensors: 1},
		{name: "topic of -L", args: []string{"-L", "mqtt://localhost/home/t"}, topics: []string{"home/t"}, interval: 2 * time.Second, lo: 20, hi: 30, unit: "C", sensors: 1},
		{name: "-L topic for a fleet", args: []string{"-L", "mqtt://localhost/home/{{.Sensor}}", "--sensors", "2"}, topics: []string{"home/1", "home/2"}, interval: 2 * time.Second, lo: 20, hi: 30, unit: "C", sensors: 2},
		{name: "-t wins over -L", args: []string{"-L", "mqtt://localhost/home/t", "-t", "mine"}, topics: []string{"mine"}, interval: 2 * time.Second, lo: 20, hi: 30, unit: "C", sensors: 1},
		{name: "negative range", args: []string{"--min", "-10", "--max", "-5.5"}, topics: []string{"sensor/temp"}, interval: 2 * time.Second, lo: -10, hi: -5.5, unit: "C", sensors: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _, _, dials := sensorDeps(t)
			o, err := parseSensor(t, d, tc.args...)
			require.NoError(t, err)
			require.Equal(t, tc.topics, o.fleet.Topics())
			require.Equal(t, tc.interval, o.interval)
			require.Equal(t, tc.lo, o.Min)
			require.Equal(t, tc.hi, o.Max)
			require.Equal(t, tc.count, o.Count)
			require.Equal(t, tc.sensors, o.fleet.Sensors())
			require.Equal(t, "localhost", o.cfg.Host)
			require.Equal(t, 1883, o.cfg.Port)
			require.Zero(t, *dials)
		})
	}
}

func TestSimulateSensorSeed(t *testing.T) {
	d, _, _, _ := sensorDeps(t)
	a, err := parseSensor(t, d, "--seed", "42")
	require.NoError(t, err)
	require.Equal(t, uint64(42), a.Seed)
	// Without --seed every run draws a fresh one.
	b, err := parseSensor(t, d)
	require.NoError(t, err)
	c, err := parseSensor(t, d)
	require.NoError(t, err)
	require.NotEqual(t, b.Seed, c.Seed)
	// -d shows the seed that was drawn, so that a run can be repeated.
	d, _, errOut, _ := sensorDeps(t)
	o, err := parseSensor(t, d, "-d")
	require.NoError(t, err)
	require.Contains(t, errOut.String(), fmt.Sprintf(`msg="sensor seed" seed=%d`, o.Seed))
}

// Every bad input is one clear line plus the help hint, exit 1, and
// nothing is dialled.
func TestSimulateSensorBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--min", "30", "--max", "20"}, "Error: --min 30 is above --max 20"},
		{[]string{"--min", "90", "--unit", "F"}, "Error: --min 90 is above --max 86 (the default for °F)"},
		{[]string{"--max", "10"}, "Error: --min 20 (the default for °C) is above --max 10"},
		{[]string{"--min", "NaN"}, "Error: --min must be a finite number, not NaN"},
		{[]string{"--max", "inf"}, "Error: --max must be a finite number, not +Inf"},
		{[]string{"--min", "20.001", "--max", "20.009"}, "Error: --min/--max: no value with 2 decimals lies between min 20.001 and max 20.009"},
		{[]string{"--interval", "0"}, "Error: --interval must be positive, not 0"},
		{[]string{"--interval", "-1s"}, "Error: --interval must be positive, not -1s"},
		{[]string{"--interval", "soon"}, `Error: invalid --interval "soon": want a duration such as 2s, 500ms or 1m`},
		{[]string{"--count", "-1"}, "Error: --count must be 0 (no limit) or more, not -1"},
		{[]string{"--model", "gauss"}, `Error: --model: unknown model "gauss" (want uniform, walk or sine)`},
		{[]string{"--unit", "R"}, `Error: --unit: unknown unit "R" (want C, F or K)`},
		{[]string{"--format", "{{.Value"}, "Error: --format: template: format:1: unclosed action"},
		{[]string{"--format", "{{.Foo}}"}, "Error: --format: template: format:1:2: executing \"format\" at <.Foo>: can't evaluate field Foo in type sensor.Reading (fields: .Value .Unit .Sensor .Seq .Time)"},
		{[]string{"--format", "{{index .Sensor 3}}"}, "Error: --format: template: format:1:2: executing \"format\" at <index .Sensor 3>: error calling index: index out of range: 3"},
		{[]string{"--json", "--format", "{{.Value}}"}, "Error: --format and --json cannot be used together"},
		{[]string{"-q", "3"}, "Error: Invalid QoS given: 3"},
		{[]string{"--sensors", "0"}, "Error: --sensors must be between 1 and 1000000, not 0"},
		{[]string{"--connections", "2"}, "Error: --connections must be between 1 and --sensors (1), not 2"},
		{[]string{"-t", "a/#"}, "Error: Invalid publish topic 'a/#', does it contain '+' or '#'?"},
		{[]string{"-t", ""}, "Error: empty topic"},
		{[]string{"-t", "s/{{.Value}}"}, "Error: -t: template: topic:1:4: executing \"topic\" at <.Value>: can't evaluate field Value in type sensor.TopicData (fields: .Sensor .Unit)"},
		{[]string{"--sensors", "2", "-t", "s/{{.Sensor}}/+"}, `Error: -t "s/{{.Sensor}}/+" gives topic "s/1/+": Invalid publish topic 's/1/+', does it contain '+' or '#'?`},
		{[]string{"-L", "mqtt://localhost/a/#"}, "Error: Invalid publish topic 'a/#', does it contain '+' or '#'?"},
		{[]string{"-L", "mqtt://localhost/s/{{.Value}}"}, "Error: -L topic: template: topic:1:4: executing \"topic\" at <.Value>: can't evaluate field Value"},
		{[]string{"--min", "warm"}, `Error: invalid value "warm" for flag -min: parse error`},
		{[]string{"-p", "70000"}, "Error: Invalid port given: 70000"},
		{[]string{"now"}, `Error: unexpected argument "now"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			d, out, errOut, dials := sensorDeps(t)
			code := Run(context.Background(), d, append([]string{"mqtt", "simulate-sensor"}, tc.args...))
			require.Equal(t, ExitFailure, code)
			lines := strings.Split(strings.TrimSuffix(errOut.String(), "\n"), "\n")
			require.Len(t, lines, 2, errOut.String())
			require.True(t, strings.HasPrefix(lines[0], tc.want), "got %q, want prefix %q", lines[0], tc.want)
			require.Equal(t, "Use 'mqtt simulate-sensor --help' to see usage.", lines[1])
			require.Empty(t, out.String())
			require.Zero(t, *dials, "bad input must be reported before connecting")
		})
	}
}

// runSensorCmd parses args against broker b, lets adjust change the
// options, runs the command and returns its error.
func runSensorCmd(t *testing.T, ctx context.Context, d *Deps, b *testbroker.Broker, adjust func(*SensorOptions), args ...string) error {
	t.Helper()
	o, err := parseSensor(t, d, append([]string{"-h", b.Host, "-p", b.PortString()}, args...)...)
	require.NoError(t, err)
	if adjust != nil {
		adjust(o)
	}
	return runSimulateSensor(ctx, d, o)
}

func wantValues(t *testing.T, seed uint64, sensorNum, n int) []string {
	t.Helper()
	g, err := sensor.NewGenerator(sensor.DefaultConfig(seed), sensorNum)
	require.NoError(t, err)
	out := make([]string, n)
	for i := range out {
		out[i] = sensor.FormatValue(g.Next(time.Time{})) + "°C"
	}
	return out
}

func TestRunSimulateSensorCourseOutput(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("#"))
	d, out, errOut, _ := sensorDeps(t)
	require.NoError(t, runSensorCmd(t, context.Background(), d, b, nil, "--count", "4", "--interval", "10ms", "--seed", "42"))

	vals := wantValues(t, 42, 1, 4)
	msgs, err := b.WaitMessages(4, 5*time.Second)
	require.NoError(t, err)
	var sent strings.Builder
	for i, v := range vals {
		require.Equal(t, testbroker.Msg{Topic: "sensor/temp", Payload: "Temperature: " + v}, msgs[i])
		sent.WriteString("Sent: " + v + "\n")
	}
	require.Equal(t, sent.String(), out.String())
	require.Empty(t, errOut.String())
}

// With the default interval the readings are 2 s apart; a fake clock
// shows it without waiting.
func TestRunSimulateSensorEveryTwoSeconds(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("#"))
	d, _, _, _ := sensorDeps(t)
	t0 := time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	clk := sensortest.NewClock(t0)
	done := make(chan error, 1)
	go func() {
		done <- runSensorCmd(t, context.Background(), d, b, func(o *SensorOptions) { o.clock = clk },
			"--count", "3", "--format", `{{.Seq}} {{.Time.Format "15:04:05.000"}}`)
	}()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-done:
			require.NoError(t, err)
			msgs, err := b.WaitMessages(3, 5*time.Second)
			require.NoError(t, err)
			require.Equal(t, "1 10:00:00.000", msgs[0].Payload)
			require.Equal(t, "2 10:00:02.000", msgs[1].Payload)
			require.Equal(t, "3 10:00:04.000", msgs[2].Payload)
			require.Equal(t, t0.Add(4*time.Second), clk.Now())
			return
		case <-clk.Waiting():
			clk.FireNext()
		case <-deadline:
			t.Fatal("simulate-sensor did not finish")
		}
	}
}

func TestRunSimulateSensorFleet(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("sensor/#"))
	d, out, errOut, dials := sensorDeps(t)
	err := runSensorCmd(t, context.Background(), d, b, nil,
		"--sensors", "4", "--connections", "2", "--count", "2", "--interval", "20ms", "--json", "--seed", "7", "-q", "1", "-r", "-i", "fleet")
	require.NoError(t, err)
	require.Equal(t, 2, *dials)

	msgs, err := b.WaitMessages(8, 5*time.Second)
	require.NoError(t, err)
	require.Len(t, msgs, 8)
	// Connections publish in parallel: only each sensor's own order is fixed.
	bySensor := map[int][]testbroker.Msg{}
	for _, m := range msgs {
		var n int
		_, err := fmt.Sscanf(m.Topic, "sensor/%d/temp", &n)
		require.NoError(t, err, m.Topic)
		bySensor[n] = append(bySensor[n], m)
	}
	require.Len(t, bySensor, 4)
	for n, ms := range bySensor {
		g, err := sensor.NewGenerator(sensor.DefaultConfig(7), n)
		require.NoError(t, err)
		require.Len(t, ms, 2)
		for j, m := range ms {
			require.True(t, m.Retain)
			require.Equal(t, byte(1), m.QoS)
			want := fmt.Sprintf(`{"sensor":"%d","value":%v,"unit":"C","seq":%d,"ts":"`, n, g.Next(time.Time{}), j+1)
			require.True(t, strings.HasPrefix(m.Payload, want), "got %s, want prefix %s", m.Payload, want)
		}
	}
	require.Empty(t, out.String(), "fleets print a status line instead of Sent lines")
	require.Regexp(t, `^sent=8 rate=[0-9.]+/s errors=0 reconnects=0 lag=\S+\n$`, errOut.String())
}

func TestRunSimulateSensorQuietPrintsStatusOnly(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("#"))
	d, out, errOut, _ := sensorDeps(t)
	require.NoError(t, runSensorCmd(t, context.Background(), d, b, nil, "--quiet", "--count", "3", "--interval", "5ms"))
	_, err := b.WaitMessages(3, 5*time.Second)
	require.NoError(t, err)
	require.Empty(t, out.String())
	require.Regexp(t, `^sent=3 rate=[0-9.]+/s errors=0 reconnects=0 lag=\S+\n$`, errOut.String())
}

// Status lines come every few seconds; a fake clock makes them exact.
func TestRunSimulateSensorStatusLines(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("#"))
	d, _, errOut, _ := sensorDeps(t)
	clk := sensortest.NewClock(time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC))
	done := make(chan error, 1)
	go func() {
		done <- runSensorCmd(t, context.Background(), d, b, func(o *SensorOptions) {
			o.clock = clk
			o.statusEvery = 4250 * time.Millisecond // never on a send
		}, "--sensors", "2", "--count", "5")
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			require.NoError(t, err)
			require.Equal(t, "sent=5 rate=1.2/s errors=0 reconnects=0 lag=0s\n"+
				"sent=9 rate=0.9/s errors=0 reconnects=0 lag=0s\n"+
				"sent=10 rate=1.1/s errors=0 reconnects=0 lag=0s\n", errOut.String())
			return
		default:
		}
		// Fire only when both the fleet and the reporter wait, so that
		// their order is the clock's, not the scheduler's.
		if clk.Pending() >= 2 {
			clk.FireNext()
		}
		require.False(t, time.Now().After(deadline), "simulate-sensor did not finish")
		time.Sleep(time.Millisecond)
	}
}

func TestRunSimulateSensorInterruptIsNormalEnd(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("#"))
	d, out, _, _ := sensorDeps(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runSensorCmd(t, ctx, d, b, nil, "--interval", "5ms") }()
	_, err := b.WaitMessages(3, 5*time.Second)
	require.NoError(t, err)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err, "Ctrl-C ends simulate-sensor with exit 0")
	case <-time.After(10 * time.Second):
		t.Fatal("simulate-sensor did not stop")
	}
	require.Contains(t, out.String(), "Sent: ")
}

// wireBroker is a minimal MQTT server that records, per connection, the
// packets a client sends until it closes the connection: enough to see on
// the wire whether a client ends with DISCONNECT or just hangs up.
type wireBroker struct {
	l        net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	sessions []*wireSession
}

type wireSession struct {
	conn    net.Conn
	packets []*rawmqtt.Packet // after CONNECT
	closed  chan struct{}     // closed when the client closed the connection
}

func startWireBroker(t *testing.T) *wireBroker {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w := &wireBroker{l: l}
	w.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s := &wireSession{conn: c, closed: make(chan struct{})}
			w.mu.Lock()
			w.sessions = append(w.sessions, s)
			w.mu.Unlock()
			w.wg.Go(func() { w.serve(c, s) })
		}
	})
	t.Cleanup(func() {
		l.Close()
		w.mu.Lock()
		for _, s := range w.sessions {
			s.conn.Close()
		}
		w.mu.Unlock()
		w.wg.Wait()
	})
	return w
}

func (w *wireBroker) port() string { return strconv.Itoa(w.l.Addr().(*net.TCPAddr).Port) }

func (w *wireBroker) serve(c net.Conn, s *wireSession) {
	defer close(s.closed)
	defer c.Close()
	rc := rawmqtt.NewConn(c, 4)
	p, err := rc.Read(5 * time.Second)
	if err != nil || p.Type != rawmqtt.CONNECT || len(p.Body) < 7 {
		return
	}
	rc.Version = p.Body[6] // protocol level: 4 (3.1.1) or 5
	connack := []byte{0, 0}
	if rc.Version == 5 {
		connack = append(connack, 0) // no properties
	}
	if rc.Send(rawmqtt.Fixed(rawmqtt.CONNACK<<4, connack)) != nil {
		return
	}
	for {
		p, err := rc.Read(30 * time.Second)
		if err != nil {
			return
		}
		w.mu.Lock()
		s.packets = append(s.packets, p)
		w.mu.Unlock()
		switch {
		case p.Type == rawmqtt.PUBLISH && p.QoS == 1:
			_ = rc.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID))
		case p.Type == rawmqtt.PINGREQ:
			_ = rc.Send([]byte{rawmqtt.PINGRESP << 4, 0})
		}
	}
}

// published counts the PUBLISH packets received on all connections.
func (w *wireBroker) published() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, s := range w.sessions {
		for _, p := range s.packets {
			if p.Type == rawmqtt.PUBLISH {
				n++
			}
		}
	}
	return n
}

// Ctrl-C ends simulate-sensor with a DISCONNECT (reason 0) on every
// connection, for both protocol versions, not with a dropped connection.
func TestRunSimulateSensorInterruptSendsDisconnect(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		conns int
	}{
		{"MQTT 5", []string{"-V", "5"}, 1},
		{"MQTT 3.1.1", []string{"-V", "311", "-q", "1"}, 1},
		{"fleet on three connections", []string{"--sensors", "6", "--connections", "3", "-q", "1"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := startWireBroker(t)
			d, _, errOut, _ := sensorDeps(t)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan int, 1)
			args := append([]string{"mqtt", "simulate-sensor", "-h", "127.0.0.1", "-p", w.port(), "--interval", "5ms"}, tc.args...)
			go func() { done <- Run(ctx, d, args) }()
			waitFor(t, func() bool { return w.published() >= 2*tc.conns })
			cancel()
			select {
			case code := <-done:
				require.Equal(t, 0, code, errOut.String())
			case <-time.After(10 * time.Second):
				t.Fatal("simulate-sensor did not stop")
			}
			w.mu.Lock()
			sessions := append([]*wireSession(nil), w.sessions...)
			w.mu.Unlock()
			require.Len(t, sessions, tc.conns)
			for i, s := range sessions {
				select {
				case <-s.closed:
				case <-time.After(5 * time.Second):
					t.Fatalf("connection %d still open", i+1)
				}
				last := s.packets[len(s.packets)-1]
				require.Equal(t, rawmqtt.DISCONNECT, last.Type, "connection %d ended with %s, not DISCONNECT", i+1, last)
				require.Equal(t, byte(0), last.Reason, "normal disconnection")
			}
		})
	}
}

func TestRunSimulateSensorConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	require.NoError(t, l.Close())
	d, out, errOut, _ := sensorDeps(t)
	code := Run(context.Background(), d, []string{"mqtt", "simulate-sensor", "-h", "127.0.0.1", "-p", port, "--count", "1"})
	require.Equal(t, ExitFailure, code)
	require.Contains(t, errOut.String(), "Error: Connection refused")
	require.Empty(t, out.String())
}

// proxy forwards TCP connections to a broker and can cut them all, as a
// broker restart or a network failure would.
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, target string) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{l: l, target: target}
	p.wg.Go(p.serve)
	t.Cleanup(func() {
		l.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *proxy) port() string { return strconv.Itoa(p.l.Addr().(*net.TCPAddr).Port) }

func (p *proxy) serve() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		u, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, u)
		p.mu.Unlock()
		p.wg.Go(func() { _, _ = io.Copy(u, c); u.Close(); c.Close() })
		p.wg.Go(func() { _, _ = io.Copy(c, u); u.Close(); c.Close() })
	}
}

func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func TestRunSimulateSensorReconnects(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("#"))
	p := startProxy(t, net.JoinHostPort(b.Host, b.PortString()))
	d, _, errOut, dials := sensorDeps(t)
	o, err := parseSensor(t, d, "-h", "127.0.0.1", "-p", p.port(), "--interval", "5ms", "--seed", "3")
	require.NoError(t, err)
	o.retryDelay = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- runSimulateSensor(ctx, d, o) }()

	_, err = b.WaitMessages(3, 5*time.Second)
	require.NoError(t, err)
	p.cut()
	waitFor(t, func() bool { return strings.Contains(errOut.String(), "Reconnected to 127.0.0.1:"+p.port()+".") })
	before := len(b.Messages())
	_, err = b.WaitMessages(before+3, 5*time.Second)
	require.NoError(t, err, "readings flow again after the reconnect")
	cancel()
	require.NoError(t, <-done)

	require.GreaterOrEqual(t, *dials, 2)
	require.Regexp(t, `(?m)^Connection to 127\.0\.0\.1:`+p.port()+` lost( \(.+\))?\. Reconnecting every 10ms\.$`, errOut.String())
	require.Equal(t, uint64(1), o.fleet.Stats().Snapshot(time.Now()).Reconnects)
}

// A broker that refuses the connection on a reconnect ends the command
// with the refusal, as mosquitto_sub does.
func TestRunSimulateSensorRefusedReconnectIsFatal(t *testing.T) {
	b := testbroker.Start(t)
	d, _, _, _ := sensorDeps(t)
	o, err := parseSensor(t, d, "-h", b.Host, "-p", b.PortString(), "--interval", "5ms")
	require.NoError(t, err)
	o.retryDelay = time.Millisecond
	require.NoError(t, b.Record("#"))
	refused := &client.ConnectError{Version: client.V5, Code: 135}
	var (
		mu    sync.Mutex
		first client.Client
	)
	d.Dial = func(ctx context.Context, cfg *client.Config, h client.Handler) (client.Client, error) {
		mu.Lock()
		defer mu.Unlock()
		if first != nil {
			return nil, refused
		}
		cl, err := client.Dial(ctx, cfg, h)
		first = cl
		return cl, err
	}
	go func() {
		// Once readings flow, drop the connection: the reconnect is refused.
		if _, err := b.WaitMessages(1, 5*time.Second); err == nil {
			mu.Lock()
			cl := first
			mu.Unlock()
			_ = cl.Disconnect(context.Background())
		}
	}()
	err = runSimulateSensor(context.Background(), d, o)
	require.ErrorIs(t, err, refused)
	require.Equal(t, 135, exitCode(err))
	require.False(t, errors.Is(err, context.Canceled))
}

// refusingClient is a real client whose broker refuses some publishes, as
// an MQTT 5 broker does with PUBACK 135 when an ACL forbids the topic.
type refusingClient struct {
	client.Client
	refuse func(payload string) bool
}

func (c *refusingClient) Publish(ctx context.Context, m *client.Message) error {
	if c.refuse(string(m.Payload)) {
		return &client.PublishError{Code: 0x87}
	}
	return c.Client.Publish(ctx, m)
}

// A run with --count promises that many readings: when some were not sent
// it does not exit 0, although it goes on after each loss.
func TestRunSimulateSensorCountWithLossFails(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		sent   int
		stderr string // a regexp
	}{
		{"one sensor", []string{"--count", "4"}, 3,
			`^Warning: reading 2 not sent \(` + regexp.QuoteMeta(client.ReasonText(0x87)) + `\)\nError: 1 of the 4 readings were not sent\n$`},
		{"fleet on two connections", []string{"--count", "2", "--sensors", "2", "--connections", "2"}, 3,
			`^sent=3 rate=\S+ errors=1 reconnects=0 lag=\S+\nError: 1 of the 4 readings were not sent\n$`},
		{"quiet: the status line says it", []string{"--count", "4", "--quiet"}, 3,
			`^sent=3 rate=\S+ errors=1 reconnects=0 lag=\S+\n$`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testbroker.Start(t)
			require.NoError(t, b.Record("#"))
			d, _, errOut, _ := sensorDeps(t)
			d.Dial = func(ctx context.Context, cfg *client.Config, h client.Handler) (client.Client, error) {
				cl, err := client.Dial(ctx, cfg, h)
				if err != nil {
					return nil, err
				}
				return &refusingClient{Client: cl, refuse: func(p string) bool { return strings.HasPrefix(p, "2 1 ") }}, nil
			}
			args := append([]string{"-h", b.Host, "-p", b.PortString(), "-q", "1", "--interval", "5ms", "--format", "{{.Seq}} {{.Sensor}} {{.Value}}"}, tc.args...)
			code := Run(context.Background(), d, append([]string{"mqtt", "simulate-sensor"}, args...))
			require.Equal(t, ExitFailure, code, errOut.String())
			require.Regexp(t, tc.stderr, errOut.String())
			msgs, err := b.WaitMessages(tc.sent, 5*time.Second)
			require.NoError(t, err)
			require.Len(t, msgs, tc.sent, "the run went on after the loss")
		})
	}
	t.Run("no loss is exit 0", func(t *testing.T) {
		b := testbroker.Start(t)
		d, _, errOut, _ := sensorDeps(t)
		code := Run(context.Background(), d, []string{"mqtt", "simulate-sensor", "-h", b.Host, "-p", b.PortString(), "-q", "1", "--interval", "5ms", "--count", "3"})
		require.Equal(t, 0, code, errOut.String())
	})
}

func TestLostLine(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{nil, "Connection to h:1 lost. Reconnecting every 1s."},
		{client.ErrNotConnected, "Connection to h:1 lost. Reconnecting every 1s."},
		{fmt.Errorf("publish: %w", client.ErrNotConnected), "Connection to h:1 lost. Reconnecting every 1s."},
		{io.EOF, "Connection to h:1 lost (EOF). Reconnecting every 1s."},
		{&client.DisconnectError{Code: 0x8b}, "Connection to h:1 lost (disconnected by the broker: " + client.ReasonText(0x8b) + "). Reconnecting every 1s."},
	} {
		require.Equal(t, tc.want, lostLine("h:1", tc.err, time.Second))
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// BenchmarkSimulateSensorFleet runs the whole command, 1,000 sensors at 10
// readings/s each for one second per iteration, against the in-process
// broker, and reports whether it kept up: every reading sent, the run no
// longer than the schedule plus one interval, and the worst lag.
func BenchmarkSimulateSensorFleet(b *testing.B) {
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"qos0", []string{"-q", "0"}},
		{"qos1-4conns", []string{"-q", "1", "--connections", "4"}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			br := testbroker.Start(b)
			lagRe := regexp.MustCompile(`sent=(\d+) .* lag=(\S+)\n$`)
			var worstLag, worstOverrun time.Duration
			for range b.N {
				d, _, errOut, _ := sensorDeps(b)
				args := append([]string{"-h", br.Host, "-p", br.PortString(), "--sensors", "1000", "--interval", "100ms", "--count", "10", "--seed", "1"}, tc.args...)
				o, err := parseSensor(b, d, args...)
				if err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				if err := runSimulateSensor(context.Background(), d, o); err != nil {
					b.Fatal(err)
				}
				// The last reading is due one slot before the end of the second.
				worstOverrun = max(worstOverrun, time.Since(start)-(time.Second-100*time.Microsecond))
				m := lagRe.FindStringSubmatch(errOut.String())
				if m == nil || m[1] != "10000" {
					b.Fatalf("status line: %q", errOut.String())
				}
				lag, err := time.ParseDuration(m[2])
				if err != nil {
					b.Fatal(err)
				}
				worstLag = max(worstLag, lag)
			}
			keepsUp := worstLag < 100*time.Millisecond && worstOverrun < 100*time.Millisecond
			b.ReportMetric(float64(worstLag)/float64(time.Millisecond), "ms-max-lag")
			b.ReportMetric(float64(worstOverrun)/float64(time.Millisecond), "ms-overrun")
			if keepsUp {
				b.ReportMetric(1, "keeps-up")
			} else {
				b.ReportMetric(0, "keeps-up")
				b.Logf("1000 sensors x 10 msg/s (%s): FELL BEHIND (lag %v, overrun %v)", tc.name, worstLag, worstOverrun)
			}
		})
	}
}
