// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/internal/testutil"
)

// mqttBin is the mqtt binary built once for the package's tests.
var mqttBin string

// TestMain builds the mqtt binary, or uses $MQTT_FAULTS_BIN when set (to
// run the fault tests against another build).
func TestMain(m *testing.M) {
	if bin := os.Getenv("MQTT_FAULTS_BIN"); bin != "" {
		mqttBin = bin
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "mqtt-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	mqttBin = filepath.Join(dir, "mqtt")
	build := exec.Command("go", "build", "-o", mqttBin, "github.com/mqttkit/mqttkit/cmd/mqtt")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build mqtt:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// brokerProc is `mqtt broker` running as a child process that the test
// can kill and restart on the same port with the same arguments.
type brokerProc struct {
	t      *testing.T
	args   []string
	noPort bool // the port comes from a listener in the -c file
	dir    string
	port   int
	cmd    *exec.Cmd
	done   chan struct{}
	log    *testutil.Buffer // stderr of every run, marked at each start
	runs   int
	mu     sync.Mutex
	alive  bool
}

// startBroker runs `mqtt broker ARGS` on a free port (local-only mode) and
// waits until it accepts connections. The broker is killed when the test ends.
func startBroker(t *testing.T, args ...string) *brokerProc {
	t.Helper()
	return startBrokerProc(t, &brokerProc{t: t, args: args, dir: t.TempDir(), log: &testutil.Buffer{}})
}

// startConfBroker runs `mqtt broker -c CONF` whose listener sets the port.
func startConfBroker(t *testing.T, conf string) *brokerProc {
	t.Helper()
	return startBrokerProc(t, &brokerProc{t: t, args: []string{"-c", conf}, noPort: true, dir: t.TempDir(), log: &testutil.Buffer{}})
}

func startBrokerProc(t *testing.T, b *brokerProc) *brokerProc {
	t.Helper()
	b.start()
	t.Cleanup(func() {
		b.kill()
		if t.Failed() {
			t.Logf("broker output:\n%s", b.log.String())
		}
	})
	return b
}

// Addr is host:port of the broker's IPv4 listener.
func (b *brokerProc) Addr() string { return net.JoinHostPort("127.0.0.1", b.Port()) }

// Port is the broker's port, as a string for flags.
func (b *brokerProc) Port() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strconv.Itoa(b.port)
}

func (b *brokerProc) start() {
	b.t.Helper()
	ready := filepath.Join(b.dir, "ready")
	_ = os.Remove(ready)
	args := append([]string{"broker", "--ready-file", ready}, b.args...)
	if !b.noPort {
		args = append([]string{"broker", "--port", b.Port()}, args[1:]...)
	}
	cmd := exec.Command(mqttBin, args...)
	b.runs++
	fmt.Fprintf(b.log, "---- run %d: mqtt %s\n", b.runs, strings.Join(args, " "))
	cmd.Stdout, cmd.Stderr = b.log, b.log
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("start broker: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	b.mu.Lock()
	b.cmd, b.done, b.alive = cmd, done, true
	b.mu.Unlock()

	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(ready)
		if err == nil && len(bytes.TrimSpace(data)) > 0 {
			_, p, err := net.SplitHostPort(strings.TrimSpace(string(data)))
			if err != nil {
				b.t.Fatalf("ready file %q: %v", data, err)
			}
			b.mu.Lock()
			b.port, _ = strconv.Atoi(p)
			b.mu.Unlock()
			return
		}
		select {
		case <-done:
			b.t.Fatalf("broker exited before it was ready:\n%s", b.log.String())
		default:
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("broker not ready after 30 s:\n%s", b.log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill9 kills the broker with SIGKILL and waits until it is gone.
func (b *brokerProc) kill9() {
	b.mu.Lock()
	cmd, done, alive := b.cmd, b.done, b.alive
	b.alive = false
	b.mu.Unlock()
	if !alive {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	<-done
	fmt.Fprintf(b.log, "---- killed with SIGKILL\n")
}

func (b *brokerProc) kill() { b.kill9() }

// signal sends sig to the running broker.
func (b *brokerProc) signal(sig os.Signal) {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.alive {
		b.t.Fatal("broker is not running")
	}
	if err := b.cmd.Process.Signal(sig); err != nil {
		b.t.Fatal(err)
	}
}

// restart kills the broker with SIGKILL and starts it again on the same port.
func (b *brokerProc) restart() {
	b.t.Helper()
	b.kill9()
	b.start()
}

// running reports whether the broker process is alive.
func (b *brokerProc) running() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.alive {
		return false
	}
	select {
	case <-b.done:
		return false
	default:
		return true
	}
}

func scale(full, short int) int {
	if testing.Short() {
		return short
	}
	return full
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminate stops the broker with SIGTERM and waits for it to exit.
func (b *brokerProc) terminate() {
	b.t.Helper()
	b.mu.Lock()
	cmd, done, alive := b.cmd, b.done, b.alive
	b.alive = false
	b.mu.Unlock()
	if !alive {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		b.t.Fatalf("broker did not stop within 30 s of SIGTERM")
	}
	fmt.Fprintf(b.log, "---- stopped with SIGTERM (exit %d)\n", cmd.ProcessState.ExitCode())
	if code := cmd.ProcessState.ExitCode(); code != 0 {
		b.t.Errorf("broker exited %d after SIGTERM", code)
	}
}

// startPersistentBroker runs a broker with --persistence whose sessions
// hold any number of unacknowledged messages (mosquitto's defaults, which
// `mqtt broker` follows, hold 1,020 and drop the rest with a log line).
func startPersistentBroker(t *testing.T) *brokerProc {
	t.Helper()
	dir := t.TempDir()
	conf := filepath.Join(dir, "mqtt.conf")
	if err := os.WriteFile(conf, []byte("max_queued_messages 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return startBroker(t, "-c", conf, "--persistence", filepath.Join(dir, "store"))
}
