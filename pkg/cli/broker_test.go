// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testutil"
	"github.com/mqttkit/mqttkit/pkg/broker"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/passwd"
)

// parseBroker runs `mqtt broker ARGS` up to the options.
func parseBroker(t *testing.T, args ...string) (*BrokerOptions, error) {
	t.Helper()
	d, _ := testDeps(t)
	var got *BrokerOptions
	cmd := newBrokerCmd(d, func(_ context.Context, _ *Deps, o *BrokerOptions) error { got = o; return nil })
	app := newApp(d)
	app.Commands = append(app.Commands[:0:0], cmd)
	err := app.Run(append([]string{"mqtt", "broker"}, args...))
	return got, err
}

func writeTemp(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
	return p
}

func addrs(ls []broker.Listener) []string {
	var out []string
	for _, l := range ls {
		s := l.Address
		if l.Protocol != "" {
			s += " " + l.Protocol
		}
		if l.TLS != nil {
			s += " tls"
		}
		out = append(out, s)
	}
	return out
}

func TestNewBrokerCmd(t *testing.T) {
	loop := broker.LoopbackHosts()
	on := func(port, suffix string) []string {
		var out []string
		for _, h := range loop {
			out = append(out, net.JoinHostPort(h, port)+suffix)
		}
		return out
	}
	conf := writeTemp(t, "mosquitto.conf", "listener 1884\npassword_file /etc/pw\nallow_anonymous false\nmax_queued_messages 10\n")
	localConf := writeTemp(t, "local.conf", "password_file /etc/pw\n")
	tests := []struct {
		name      string
		args      []string
		listeners []string
		anonymous bool
		port      int
		pwFile    string
		aclFile   string
	}{
		{name: "defaults: local only", args: nil, listeners: nil, anonymous: true, port: 1883},
		{name: "port", args: []string{"-p", "1999"}, listeners: nil, anonymous: true, port: 1999},
		{name: "bind refuses anonymous", args: []string{"--bind", "0.0.0.0"}, listeners: []string{"0.0.0.0:1883 mqtt"}, port: 1883},
		{name: "bind allowing anonymous", args: []string{"--bind", "0.0.0.0", "--allow-anonymous"}, listeners: []string{"0.0.0.0:1883 mqtt"}, anonymous: true, port: 1883},
		{name: "password file in local mode", args: []string{"--password-file", "pw"}, listeners: nil, port: 1883, pwFile: "pw"},
		{name: "tls and websockets on loopback", args: []string{"--tls-port", "8883", "--ws-port", "9001", "--cert", "c", "--key", "k"},
			listeners: append(append(on("1883", " mqtt"), on("8883", " mqtt tls")...), on("9001", " websockets")...), anonymous: true, port: 1883},
		{name: "wss on bind", args: []string{"--bind", "::", "--wss-port", "0", "--cert", "c", "--key", "k", "--acl-file", "acl"},
			listeners: []string{"[::]:1883 mqtt", "[::]:0 websockets tls"}, port: 1883, aclFile: "acl"},
		{name: "self-signed defaults to 8883", args: []string{"--tls-self-signed", "dir"},
			listeners: append(on("1883", " mqtt"), on("8883", " mqtt tls")...), anonymous: true, port: 1883},
		{name: "config file", args: []string{"-c", conf}, listeners: []string{":1884"}, port: 1883, pwFile: "/etc/pw"},
		{name: "config file, flags override", args: []string{"-c", conf, "--password-file", "other", "--acl-file", "acl", "--allow-anonymous"},
			listeners: []string{":1884"}, anonymous: true, port: 1883, pwFile: "other", aclFile: "acl"},
		{name: "config file plus a flag listener", args: []string{"-c", conf, "--bind", "127.0.0.1", "-p", "1999"},
			listeners: []string{":1884", "127.0.0.1:1999 mqtt"}, port: 1999, pwFile: "/etc/pw"},
		{name: "config file in local-only mode", args: []string{"-c", localConf, "-p", "1999"}, listeners: nil, port: 1999, pwFile: "/etc/pw"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseBroker(t, tt.args...)
			require.NoError(t, err)
			require.Equal(t, tt.listeners, addrs(o.cfg.Listeners))
			require.Equal(t, tt.anonymous, o.cfg.AllowAnonymous)
			require.Equal(t, tt.port, o.cfg.Port)
			require.Equal(t, tt.pwFile, o.cfg.PasswordFile)
			require.Equal(t, tt.aclFile, o.cfg.ACLFile)
		})
	}
}

func TestNewBrokerCmdErrors(t *testing.T) {
	bad := writeTemp(t, "bad.conf", "listener 1883\nallow_anonymous maybe\n")
	tests := []struct {
		args []string
		msg  string
	}{
		{[]string{"--tls-port", "8883"}, "--tls-port and --wss-port need --cert and --key (or --tls-self-signed DIR)"},
		{[]string{"--cert", "c", "--key", "k"}, "apply to --tls-port or --wss-port listeners: give one"},
		{[]string{"--tls-port", "1", "--cert", "c", "--key", "k", "--require-certificate"}, "need --cafile to verify client certificates"},
		{[]string{"--tls-self-signed", "d", "--cert", "c"}, "--tls-self-signed writes its own certificate"},
		{[]string{"-p", "70000"}, "Invalid port given: 70000"},
		{[]string{"-c", "/nonexistent.conf"}, "open config file: open /nonexistent.conf: no such file or directory"},
		{[]string{"-c", bad}, bad + ":2: Invalid allow_anonymous value (maybe)"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			_, err := parseBroker(t, tt.args...)
			require.ErrorContains(t, err, tt.msg)
			require.Equal(t, ExitFailure, exitCode(err))
		})
	}
}

// startBroker runs `mqtt broker ARGS` in the background with a reload
// channel and returns its address, stderr and the reload channel.
func startBroker(t *testing.T, args ...string) (addr string, stderr *testutil.Buffer, hup chan os.Signal) {
	t.Helper()
	ready := filepath.Join(t.TempDir(), "ready")
	o, err := parseBroker(t, append(args, "--ready-file", ready)...)
	require.NoError(t, err)
	d, io := testDeps(t)
	stderr = &testutil.Buffer{}
	io.ErrOut = stderr
	d = newDeps(io)
	hup = make(chan os.Signal, 1)
	o.hup = hup
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runBroker(ctx, d, o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(10 * time.Second):
			t.Error("broker did not stop")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, err := os.ReadFile(ready)
		if err == nil && len(b) > 0 {
			return strings.TrimSpace(string(b)), stderr, hup
		}
		select {
		case err := <-done:
			t.Fatalf("broker stopped: %v\n%s", err, stderr.String())
		default:
		}
		require.True(t, time.Now().Before(deadline), "no ready file\n%s", stderr.String())
		time.Sleep(5 * time.Millisecond)
	}
}

// connectAs dials the broker as user (MQTT 5) and returns the error.
func connectAs(t *testing.T, addr, user, password string) error {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	cfg := client.Config{Host: host, Version: client.V5, KeepAlive: 30, CleanStart: true, Username: user, Password: password}
	cfg.Port = atoiT(t, port)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, &cfg, func(*client.Message) {})
	if err == nil {
		_ = c.Disconnect(ctx)
	}
	return err
}

func TestRunBrokerStartupAndReload(t *testing.T) {
	hash := func(pw string) string {
		h, err := passwd.Hash(pw, passwd.HashOptions{})
		require.NoError(t, err)
		return h
	}
	pw := writeTemp(t, "passwd", "alice:"+hash("old")+"\n")
	acl := writeTemp(t, "acl", "user alice\ntopic readwrite #\n")
	addr, stderr, hup := startBroker(t, "--bind", "127.0.0.1", "-p", "0", "--password-file", pw, "--acl-file", acl)

	out := stderr.String()
	require.Contains(t, out, "listening on "+addr+" (mqtt)\n")
	require.Contains(t, out, "authentication: password file "+pw+"; anonymous clients refused\n")
	require.Contains(t, out, "access control: acl file "+acl+"\n")
	require.NotContains(t, out, "local only mode")

	require.NoError(t, connectAs(t, addr, "alice", "old"))
	require.Error(t, connectAs(t, addr, "", ""))

	// SIGHUP: the new password applies.
	require.NoError(t, os.WriteFile(pw, []byte("alice:"+hash("new")+"\n"), 0o600))
	hup <- syscall.SIGHUP
	waitForText(t, stderr, "reloaded password and ACL files")
	require.Error(t, connectAs(t, addr, "alice", "old"))
	require.NoError(t, connectAs(t, addr, "alice", "new"))

	// A broken ACL file keeps the old rules and says why.
	require.NoError(t, os.WriteFile(acl, []byte("user alice\ntopic bogus #\n"), 0o600))
	hup <- syscall.SIGHUP
	waitForText(t, stderr, `reload failed, the previous password and ACL files stay in force`)
	require.Contains(t, stderr.String(), `Invalid topic access type \"bogus\"`)
	require.NoError(t, connectAs(t, addr, "alice", "new"))
}

func TestRunBrokerLocalOnly(t *testing.T) {
	addr, stderr, _ := startBroker(t, "-p", "0")
	out := stderr.String()
	require.True(t, strings.HasPrefix(out, "Starting in local only mode."), out)
	require.Contains(t, out, "authentication: none; anonymous clients allowed\n")
	require.Contains(t, out, "access control: none")
	require.NoError(t, connectAs(t, addr, "", ""))
}

func TestRunBrokerSelfSigned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	_, stderr, _ := startBroker(t, "-p", "0", "--tls-port", "0", "--tls-self-signed", dir)
	out := stderr.String()
	ca, err := filepath.Abs(filepath.Join(dir, "ca.crt"))
	require.NoError(t, err)
	require.Contains(t, out, "TLS: throwaway CA written to "+ca)
	require.Regexp(t, `mqtt sub -h localhost -p \d+ --cafile `+ca+` -t '#' -v`, out)
	require.Regexp(t, `listening on 127\.0\.0\.1:\d+ \(mqtts\)`, out)
}

func TestRunBrokerMetrics(t *testing.T) {
	_, stderr, _ := startBroker(t, "-p", "0", "--metrics", "127.0.0.1:0")
	require.Regexp(t, `metrics: http://127\.0\.0\.1:\d+/metrics`, stderr.String())
}

func TestReloadSignals(t *testing.T) {
	ch, stop := reloadSignals()
	defer stop()
	if ch == nil {
		t.Skip("no SIGHUP on this platform")
	}
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGHUP not delivered")
	}
}

func waitForText(t *testing.T, b *testutil.Buffer, text string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(b.String(), text) {
		require.True(t, time.Now().Before(deadline), "%q not logged:\n%s", text, b.String())
		time.Sleep(5 * time.Millisecond)
	}
}

func atoiT(t *testing.T, s string) int {
	t.Helper()
	var n int
	for _, r := range s {
		require.True(t, r >= '0' && r <= '9', s)
		n = n*10 + int(r-'0')
	}
	return n
}

// TestRunBrokerPortInUse: a busy port names the flag that moves it.
func TestRunBrokerPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	code, out, errOut := run(t, "broker", "-p", port)
	require.Equal(t, ExitFailure, code)
	require.Empty(t, out)
	require.Regexp(t, `^Error: listen on 127\.0\.0\.1:`+port+`: listen tcp 127\.0\.0\.1:`+port+`: bind: address already in use: another program is listening on port `+port+
		`; choose another port with -p PORT \(-p 0 picks a free one\)\.\n$`, errOut)

	code, _, errOut = run(t, "broker", "-p", "0", "--ws-port", port)
	require.Equal(t, ExitFailure, code)
	require.Contains(t, errOut, "; choose another port with --ws-port PORT (--ws-port 0 picks a free one).")

	o := &BrokerOptions{Port: 1883}
	err = o.explainListen(&net.OpError{Op: "listen", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1883}, Err: os.NewSyscallError("bind", syscall.EADDRINUSE)})
	require.EqualError(t, err, "listen tcp 127.0.0.1:1883: bind: address already in use: another program is listening on port 1883 (often a system mosquitto: sudo systemctl stop mosquitto); choose another port with -p PORT (-p 0 picks a free one).")
}
