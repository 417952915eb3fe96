// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
	"go.uber.org/goleak"
)

func TestDemoBadInput(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--interval", "0"}, "Error: --interval must be positive, not 0"},
		{[]string{"--model", "gauss"}, `Error: --model: unknown model "gauss" (want uniform, walk or sine)`},
		{[]string{"--count", "-1"}, "Error: --count must be 0 (no limit) or more, not -1"},
		{[]string{"--duration", "-1s"}, "Error: --duration must not be negative, not -1s"},
		{[]string{"--sensors", "0"}, "Error: --sensors must be between 1 and 1000000, not 0"},
		{[]string{"extra"}, `Error: unexpected argument "extra"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			d, out, errOut, dials := sensorDeps(t)
			code := Run(context.Background(), d, append([]string{"mqtt", "demo"}, tc.args...))
			require.Equal(t, ExitFailure, code)
			require.True(t, strings.HasPrefix(errOut.String(), tc.want+"\n") || strings.HasPrefix(errOut.String(), tc.want), errOut.String())
			require.Contains(t, errOut.String(), "Use 'mqtt demo --help' to see usage.")
			require.Empty(t, out.String())
			require.Zero(t, *dials)
		})
	}
}

func TestRunDemoCount(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	d, out, errOut, _ := sensorDeps(t)
	code := Run(context.Background(), d, []string{"mqtt", "demo", "--count", "4", "--interval", "10ms", "--seed", "42"})
	require.Equal(t, 0, code, errOut.String())
	requireDemoOrder(t, wantValues(t, 42, 1, 4), out.String())
	require.Regexp(t, `^Demo broker listening on 127\.0\.0\.1:\d+\.\n`+
		`A simulated sensor publishes to sensor/temp every 10ms; a subscriber to sensor/# prints what arrives\.\n`+
		`Join in from another terminal: mqtt sub -h 127\.0\.0\.1 -p \d+ -t 'sensor/#' -v\n`+
		`Press Ctrl-C to stop\.\n$`, errOut.String())
}

func TestRunDemoFleet(t *testing.T) {
	d, out, errOut, _ := sensorDeps(t)
	code := Run(context.Background(), d, []string{"mqtt", "demo", "--count", "2", "--sensors", "3", "--interval", "30ms", "--seed", "5", "--model", "walk"})
	require.Equal(t, 0, code, errOut.String())
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	require.Len(t, lines, 6)
	for i, l := range lines {
		require.Regexp(t, `^sensor/`+string(rune('1'+i%3))+`/temp Temperature: \d\d\.\d\d?°C$`, l)
	}
	require.Contains(t, errOut.String(), "3 simulated sensors publish to sensor/1/temp ... sensor/3/temp, each every 30ms")
}

func TestRunDemoStopsCleanly(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	t.Run("duration", func(t *testing.T) {
		d, out, errOut, _ := sensorDeps(t)
		code := Run(context.Background(), d, []string{"mqtt", "demo", "--duration", "100ms", "--interval", "10ms"})
		require.Equal(t, 0, code, errOut.String())
		for _, l := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
			require.Regexp(t, `^(sensor/temp Temperature: \d\d\.\d\d?°C|Sent: \d\d\.\d\d?°C)?$`, l)
		}
	})
	t.Run("interrupt", func(t *testing.T) {
		d, out, errOut, _ := sensorDeps(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan int, 1)
		go func() { done <- Run(ctx, d, []string{"mqtt", "demo", "--interval", "5ms", "--seed", "42"}) }()
		v := wantValues(t, 42, 1, 1)[0]
		waitFor(t, func() bool {
			o := out.String()
			return strings.HasPrefix(o, "Sent: "+v+"\n") && strings.Contains(o, "\nsensor/temp Temperature: "+v+"\n")
		})
		cancel()
		select {
		case code := <-done:
			require.Equal(t, 0, code, "Ctrl-C ends the demo with exit 0; stderr: %s", errOut.String())
		case <-time.After(10 * time.Second):
			t.Fatal("the demo did not stop")
		}
		require.NotContains(t, errOut.String(), "level=")
	})
}

// On a terminal the demo prints the topic and the payload in colour;
// NO_COLOR or a pipe turn colour off.
func TestRunDemoColour(t *testing.T) {
	for _, tc := range []struct {
		name    string
		tty     bool
		noColor string
		colour  bool
	}{
		{"terminal", true, "", true},
		{"terminal with NO_COLOR", true, "1", false},
		{"pipe", false, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, out, errOut, _ := sensorDeps(t)
			d.IO.OutTTY = tc.tty
			d.IO.Getenv = func(k string) string {
				if k == "NO_COLOR" {
					return tc.noColor
				}
				return ""
			}
			code := Run(context.Background(), d, []string{"mqtt", "demo", "--count", "1", "--interval", "10ms", "--seed", "42"})
			require.Equal(t, 0, code, errOut.String())
			v := wantValues(t, 42, 1, 1)[0]
			plain := "Sent: " + v + "\nsensor/temp Temperature: " + v + "\n"
			if !tc.colour {
				require.Equal(t, plain, out.String())
				return
			}
			require.Contains(t, out.String(), "\x1b[2mSent: "+v+"\x1b[22m\n", "the sensor's line is dimmed")
			require.Equal(t, plain, stripANSI(out.String()))
		})
	}
}

func stripANSI(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '[' {
			j := i + 2
			for j < len(s) && (s[j] < 0x40 || s[j] > 0x7e) {
				j++
			}
			i = j
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestRunDemoUI(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	d, out, errOut, _ := sensorDeps(t)
	var opened []string
	cmd := newDemoCmd(d, func(ctx context.Context, d *Deps, o *DemoOptions) error {
		require.True(t, o.UI, "--open implies --ui")
		o.adjustUI = func(u *UIOptions) {
			u.open = func(url string) error {
				opened = append(opened, url)
				return nil
			}
		}
		return runDemo(ctx, d, o)
	})
	app := newApp(d)
	app.Commands = []*cli.Command{cmd}
	err := app.Run([]string{"mqtt", "demo", "--open", "--count", "3", "--interval", "10ms", "--seed", "42"})
	require.NoError(t, err, errOut.String())
	requireDemoOrder(t, wantValues(t, 42, 1, 3), out.String()) // stdout carries the readings and messages only
	require.Regexp(t, `\nDashboard: http://127\.0\.0\.1:\d+/\n`, errOut.String())
	require.Len(t, opened, 1)
	require.Contains(t, errOut.String(), "Dashboard: "+opened[0]+"\n")
}

func TestDemoUIFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ui   bool
		http string
	}{
		{nil, false, ""},
		{[]string{"--ui"}, true, "127.0.0.1:0"},
		{[]string{"--http", "8081"}, true, "127.0.0.1:8081"},
	} {
		d, _, _, _ := sensorDeps(t)
		var got *DemoOptions
		cmd := newDemoCmd(d, func(_ context.Context, _ *Deps, o *DemoOptions) error { got = o; return nil })
		app := newApp(d)
		app.Commands = []*cli.Command{cmd}
		require.NoError(t, app.Run(append([]string{"mqtt", "demo"}, tc.args...)))
		require.Equal(t, tc.ui, got.UI, tc.args)
		require.Equal(t, tc.http, got.HTTP, tc.args)
	}
	d, _, errOut, _ := sensorDeps(t)
	require.Equal(t, ExitFailure, Run(context.Background(), d, []string{"mqtt", "demo", "--http", "x"}))
	require.Contains(t, errOut.String(), `--http "x": want HOST:PORT, :PORT or PORT`)
}

// requireDemoOrder checks the demo's stdout for one sensor: a "Sent:" line
// per reading and the reading as received, each after its "Sent:" line.
// With a short --interval the next "Sent:" line may come before the
// previous reading arrived, so the lines need not alternate.
func requireDemoOrder(t *testing.T, values []string, out string) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	require.Len(t, lines, 2*len(values), out)
	var sent, got []string
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "Sent: "):
			sent = append(sent, strings.TrimPrefix(l, "Sent: "))
		case strings.HasPrefix(l, "sensor/temp Temperature: "):
			v := strings.TrimPrefix(l, "sensor/temp Temperature: ")
			require.Less(t, len(got), len(sent), "line %d: %q arrived before its Sent: line\n%s", i+1, l, out)
			got = append(got, v)
		default:
			t.Fatalf("line %d: unexpected %q", i+1, l)
		}
	}
	require.Equal(t, values, sent)
	require.Equal(t, values, got)
}
