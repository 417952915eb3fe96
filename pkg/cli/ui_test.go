// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testbroker"
	"github.com/mqttkit/mqttkit/internal/testutil"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/iostreams"
	"github.com/mqttkit/mqttkit/pkg/ui"
)

func parseUI(t *testing.T, d *Deps, args ...string) (*UIOptions, error) {
	t.Helper()
	return parseCmd(t, d, newUICmd, args...)
}

func TestNewUICmd(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		check   func(t *testing.T, o *UIOptions)
		wantErr string
	}{
		{name: "defaults", args: nil, check: func(t *testing.T, o *UIOptions) {
			require.Equal(t, stringList{"#"}, o.Topics)
			require.Equal(t, []client.Subscription{{Filter: "#"}}, o.subs)
			require.Equal(t, "127.0.0.1:0", o.HTTP)
			require.False(t, o.Open)
			require.Equal(t, "localhost", o.cfg.Host)
			require.Equal(t, 1883, o.cfg.Port)
		}},
		{name: "topics and qos", args: []string{"-t", "a/#", "-t", "b", "-q", "1"}, check: func(t *testing.T, o *UIOptions) {
			require.Equal(t, []client.Subscription{{Filter: "a/#", QoS: 1}, {Filter: "b", QoS: 1}}, o.subs)
		}},
		{name: "url adds its topic", args: []string{"-L", "ws://example.com:8080/s/+"}, check: func(t *testing.T, o *UIOptions) {
			require.Equal(t, stringList{"s/+"}, o.Topics)
			require.Equal(t, client.WebSocket, o.cfg.Transport)
			require.Equal(t, 8080, o.cfg.Port)
		}},
		{name: "profile", args: []string{"--profile", "hivemq"}, check: func(t *testing.T, o *UIOptions) {
			require.Equal(t, "broker.hivemq.com", o.cfg.Host)
		}},
		{name: "tls", args: []string{"-p", "8883"}, check: func(t *testing.T, o *UIOptions) {
			require.NotNil(t, o.cfg.TLS)
		}},
		{name: "bare port is loopback", args: []string{"--http", "8080"}, check: func(t *testing.T, o *UIOptions) {
			require.Equal(t, "127.0.0.1:8080", o.HTTP)
		}},
		{name: "all interfaces", args: []string{"--http", ":8080", "--open"}, check: func(t *testing.T, o *UIOptions) {
			require.Equal(t, ":8080", o.HTTP)
			require.True(t, o.Open)
		}},
		{name: "bad http", args: []string{"--http", "nonsense"}, wantErr: `--http "nonsense": want HOST:PORT, :PORT or PORT`},
		{name: "bad http port", args: []string{"--http", "70000"}, wantErr: "--http: invalid port 70000"},
		{name: "bad filter", args: []string{"-t", "a/#/b"}, wantErr: "a/#/b"},
		{name: "bad qos", args: []string{"-q", "3"}, wantErr: "Invalid QoS given: 3"},
		{name: "argument", args: []string{"extra"}, wantErr: `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := testDeps(t)
			o, err := parseUI(t, d, tc.args...)
			if tc.wantErr != "" {
				require.Error(t, err)
				require.Contains(t, err.Error(), tc.wantErr)
				require.Equal(t, ExitFailure, exitCode(err))
				return
			}
			require.NoError(t, err)
			tc.check(t, o)
		})
	}
}

// uiRunning is a runUI started by startUI.
type uiRunning struct {
	url    string
	hub    *ui.Hub
	cancel context.CancelFunc
	done   chan struct{} // closed when runUI returned
	err    error         // what it returned
	out    *testutil.Buffer
	errOut *testutil.Buffer
}

// startUI runs `mqtt ui` with args against the broker in the environment
// and returns once the dashboard serves.
func startUI(t *testing.T, env map[string]string, adjust func(o *UIOptions, d *Deps), args ...string) *uiRunning {
	t.Helper()
	io, _, _, _ := iostreams.Test()
	out, errOut := &testutil.Buffer{}, &testutil.Buffer{}
	io.Out, io.ErrOut = out, errOut
	io.Getenv = func(k string) string { return env[k] }
	d := newDeps(io)
	o, err := parseUI(t, d, args...)
	require.NoError(t, err)
	r := &uiRunning{done: make(chan struct{}), out: out, errOut: errOut}
	ready := make(chan struct{})
	o.ready = func(url string, h *ui.Hub) {
		r.url, r.hub = url, h
		close(ready)
	}
	o.retryDelay = 20 * time.Millisecond
	if adjust != nil {
		adjust(o, d)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.err = runUI(ctx, d, o)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(20 * time.Second):
			t.Error("mqtt ui did not stop")
		}
	})
	select {
	case <-ready:
	case <-r.done:
		t.Fatalf("mqtt ui ended early: %v", r.err)
	case <-time.After(20 * time.Second):
		t.Fatal("the dashboard did not start")
	}
	return r
}

func brokerEnv(b *testbroker.Broker) map[string]string {
	return map[string]string{"MQTT_HOST": b.Host, "MQTT_PORT": b.PortString()}
}

// waitState waits until the hub's connection state is status.
func waitState(t *testing.T, h *ui.Hub, status string) ui.State {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for h.State().Status != status {
		if time.Now().After(deadline) {
			t.Fatalf("state is %+v, want %s", h.State(), status)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return h.State()
}

func TestRunUI(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("from/#"))
	r := startUI(t, brokerEnv(b), nil, "-t", "sensor/#")
	require.Regexp(t, `^Dashboard: http://127\.0\.0\.1:\d+/\n$`, r.out.String())
	st := waitState(t, r.hub, ui.StatusConnected)
	require.Equal(t, b.Host+":"+b.PortString(), st.Broker)
	require.Contains(t, st.Detail, "subscribed to sensor/#")
	require.NoError(t, b.WaitSubscriber("sensor/temp", 10*time.Second))

	// Messages reach the model.
	require.NoError(t, b.Publish("sensor/temp", []byte("Temperature: 21.5°C"), false, 0))
	require.NoError(t, b.Publish("other", []byte("x"), false, 0))
	require.Eventually(t, func() bool { return r.hub.Caps().Messages == 1 }, 20*time.Second, 5*time.Millisecond)

	// The page is served, and the publish API reaches the broker.
	resp, err := http.Get(r.url)
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(page), "<title>mqtt ui</title>")
	resp, err = http.Post(r.url+"api/publish", "application/json", strings.NewReader(`{"topic":"from/page","payload":"hello","qos":1,"retain":true}`))
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	got, err := b.WaitMessages(1, 10*time.Second)
	require.NoError(t, err)
	require.Equal(t, testbroker.Msg{Topic: "from/page", Payload: "hello", Retain: true, QoS: 1}, got[0])

	r.cancel()
	select {
	case <-r.done:
		require.NoError(t, r.err, "Ctrl-C is a normal end")
	case <-time.After(20 * time.Second):
		t.Fatal("mqtt ui did not stop")
	}
}

func TestRunUIReconnects(t *testing.T) {
	b, err := testbroker.New()
	require.NoError(t, err)
	addr := b.Addr()
	r := startUI(t, brokerEnv(b), nil)
	waitState(t, r.hub, ui.StatusConnected)
	require.NoError(t, b.Close())
	st := waitState(t, r.hub, ui.StatusReconnecting)
	require.Contains(t, st.Detail, "lost")
	b2, err := testbroker.NewAt(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = b2.Close() })
	waitState(t, r.hub, ui.StatusConnected)
	require.NoError(t, b2.WaitSubscriber("x", 10*time.Second), "resubscribed")
	require.Contains(t, r.errOut.String(), "Connection to "+addr+" lost")
}

func TestRunUIStartsWithoutBroker(t *testing.T) {
	b, err := testbroker.New()
	require.NoError(t, err)
	port := b.PortString()
	require.NoError(t, b.Close()) // nothing listens there now
	r := startUI(t, map[string]string{"MQTT_HOST": "127.0.0.1", "MQTT_PORT": port}, nil)
	st := waitState(t, r.hub, ui.StatusReconnecting)
	require.Contains(t, st.Detail, "refused")
	// The publish form says why it cannot publish.
	resp, err := http.Post(r.url+"api/publish", "application/json", strings.NewReader(`{"topic":"a","payload":"b"}`))
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Contains(t, string(body), "not connected")
}

func TestRunUIRefused(t *testing.T) {
	b := testbroker.Start(t)
	var mu sync.Mutex
	dials := 0
	r := startUI(t, brokerEnv(b), func(o *UIOptions, d *Deps) {
		o.refusedDelay = time.Hour
		d.Dial = func(context.Context, *client.Config, client.Handler) (client.Client, error) {
			mu.Lock()
			dials++
			mu.Unlock()
			return nil, &client.ConnectError{Version: client.V5, Code: 135}
		}
	})
	st := waitState(t, r.hub, ui.StatusRefused)
	require.Equal(t, "Not authorized (retrying every 1h0m0s)", st.Detail)
	require.Contains(t, r.errOut.String(), "Cannot connect to "+b.Host+":"+b.PortString()+": Not authorized. Retrying every 1h0m0s.")
	mu.Lock()
	require.Equal(t, 1, dials, "a refusal is not retried at once")
	mu.Unlock()
}

func TestRunUIOpenAndWarning(t *testing.T) {
	b := testbroker.Start(t)
	var mu sync.Mutex
	var opened []string
	r := startUI(t, brokerEnv(b), func(o *UIOptions, _ *Deps) {
		o.open = func(url string) error {
			mu.Lock()
			opened = append(opened, url)
			mu.Unlock()
			return nil
		}
	}, "--http", "0.0.0.0:0", "--open")
	mu.Lock()
	require.Equal(t, []string{r.url}, opened, "--open opens the printed URL")
	mu.Unlock()
	require.Regexp(t, `^http://127\.0\.0\.1:\d+/$`, r.url, "a wildcard listener is opened through loopback")
	require.Contains(t, r.errOut.String(), "anyone who can reach it can read every message it shows and publish")
}
