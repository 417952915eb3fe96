// SPDX-License-Identifier: Apache-2.0

// Package interop finds the real mosquitto tools for interoperability
// tests. Tests skip when a tool is missing, unless MQTT_INTEROP=require
// (set by CI), in which case they fail.
package interop

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Require returns the path of tool, skipping or failing the test when it is missing.
func Require(t testing.TB, tool string) string {
	t.Helper()
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
		p := filepath.Join(dir, tool)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if os.Getenv("MQTT_INTEROP") == "require" {
		t.Fatalf("%s is not installed and MQTT_INTEROP=require: install mosquitto, mosquitto-clients and python3-paho-mqtt", tool)
	}
	t.Skipf("%s not installed: skipping interop test (apt-get install mosquitto mosquitto-clients python3-paho-mqtt)", tool)
	return ""
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Mosquitto is a real mosquitto broker started for a test.
type Mosquitto struct {
	Port int
	Dir  string
	cmd  *exec.Cmd
	log  *os.File
	bin  string // for Restart
	conf string
}

// StartMosquitto starts the real broker on a free 127.0.0.1 port with the
// given extra configuration lines (e.g. "allow_anonymous true"). It is
// stopped when the test ends.
func StartMosquitto(t testing.TB, extra ...string) *Mosquitto {
	t.Helper()
	bin := Require(t, "mosquitto")
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		port := FreePort(t)
		conf := filepath.Join(dir, "mosquitto.conf")
		lines := append([]string{"listener " + strconv.Itoa(port) + " 127.0.0.1", "persistence false"}, extra...)
		if !hasPrefix(extra, "allow_anonymous") {
			lines = append(lines, "allow_anonymous true")
		}
		if err := os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(dir, "mosquitto.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "-c", conf)
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start mosquitto: %v", err)
		}
		m := &Mosquitto{Port: port, Dir: dir, cmd: cmd, log: logf, bin: bin, conf: conf}
		if err := waitPort(port, 5*time.Second); err != nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
			lastErr = fmt.Errorf("%w; log:\n%s", err, readFile(logf.Name()))
			continue
		}
		t.Cleanup(m.Stop)
		return m
	}
	t.Fatalf("mosquitto did not start: %v", lastErr)
	return nil
}

// Stop kills the broker and waits for it.
func (m *Mosquitto) Stop() {
	if m.cmd.ProcessState == nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
	}
	m.log.Close()
}

// Terminate stops the broker with SIGTERM, as a service manager does
// (mosquitto writes its persistence file on the way out), and waits for it.
func (m *Mosquitto) Terminate(t testing.TB) {
	t.Helper()
	if m.cmd.ProcessState != nil {
		return
	}
	if err := m.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop mosquitto: %v", err)
	}
	_ = m.cmd.Wait()
}

// Restart starts the broker again, after Terminate, with the same
// configuration on the same port (its log goes on in the same file).
func (m *Mosquitto) Restart(t testing.TB) {
	t.Helper()
	if m.cmd.ProcessState == nil {
		t.Fatal("mosquitto Restart: still running")
	}
	var err error
	// The port may take a moment to be free again.
	for attempt := 0; attempt < 5; attempt++ {
		cmd := exec.Command(m.bin, "-c", m.conf)
		cmd.Stdout, cmd.Stderr = m.log, m.log
		if err = cmd.Start(); err != nil {
			t.Fatalf("restart mosquitto: %v", err)
		}
		m.cmd = cmd
		if err = waitPort(m.Port, 5*time.Second); err == nil {
			return
		}
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	t.Fatalf("mosquitto did not restart on port %d: %v; log:\n%s", m.Port, err, m.Log())
}

// Log returns what the broker logged so far.
func (m *Mosquitto) Log() string { return readFile(m.log.Name()) }

func hasPrefix(lines []string, p string) bool {
	for _, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), p) {
			return true
		}
	}
	return false
}

func readFile(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	var b strings.Builder
	s := bufio.NewScanner(f)
	for s.Scan() {
		b.WriteString(s.Text() + "\n")
	}
	return b.String()
}

func waitPort(port int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("port %d not open after %s: %w", port, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
