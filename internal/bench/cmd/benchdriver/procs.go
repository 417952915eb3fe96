// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mqttkit/mqttkit/internal/bench/loadgen"
)

// procs remembers every child process so that an interrupted run kills
// them all (brokers included) before it exits.
type procs struct {
	mu  sync.Mutex
	set map[*exec.Cmd]struct{}
}

func (p *procs) add(c *exec.Cmd) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.set == nil {
		p.set = map[*exec.Cmd]struct{}{}
	}
	p.set[c] = struct{}{}
}

func (p *procs) remove(c *exec.Cmd) {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.set, c)
}

// killAll kills every process still registered.
func (p *procs) killAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.set {
		if c.Process != nil {
			_ = c.Process.Kill()
		}
	}
}

// command prepares a child that dies with the driver.
func (e *env) command(ctx context.Context, args ...string) *exec.Cmd {
	c := exec.CommandContext(ctx, args[0], args[1:]...)
	c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	c.WaitDelay = 2 * time.Second
	return c
}

// start starts c and registers it for clean-up.
func (e *env) start(c *exec.Cmd) error {
	if err := c.Start(); err != nil {
		return err
	}
	e.procs.add(c)
	return nil
}

// wait waits for c and unregisters it.
func (e *env) wait(c *exec.Cmd) error {
	err := c.Wait()
	e.procs.remove(c)
	return err
}

// timed is the outcome of one timed process run.
type timed struct {
	wall     time.Duration
	exitCode int
	timedOut bool
	stderr   string
}

// runTimed runs args with stdin from the file stdinPath ("" for none) and
// stdout to stdoutPath ("" discards it), bounded by timeout, and measures
// the wall time from start to exit.
func (e *env) runTimed(timeout time.Duration, stdinPath, stdoutPath string, args ...string) (timed, error) {
	return e.runTimedCtx(e.ctx, timeout, stdinPath, stdoutPath, args...)
}

// runTimedCtx is runTimed with a parent context: cancelling it stops the
// process, which then counts as timed out.
func (e *env) runTimedCtx(parent context.Context, timeout time.Duration, stdinPath, stdoutPath string, args ...string) (timed, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	c := e.command(ctx, args...)
	if stdinPath != "" {
		f, err := os.Open(stdinPath)
		if err != nil {
			return timed{}, err
		}
		defer f.Close()
		c.Stdin = f
	}
	if stdoutPath != "" {
		f, err := os.Create(stdoutPath)
		if err != nil {
			return timed{}, err
		}
		defer f.Close()
		c.Stdout = f
	}
	var stderr bytes.Buffer
	c.Stderr = &limitedWriter{w: &stderr, n: 4096}
	t0 := time.Now()
	if err := e.start(c); err != nil {
		return timed{}, err
	}
	err := e.wait(c)
	res := timed{wall: time.Since(t0), stderr: strings.TrimSpace(stderr.String())}
	if c.ProcessState != nil {
		res.exitCode = c.ProcessState.ExitCode()
	}
	if ctx.Err() != nil && e.ctx.Err() == nil {
		res.timedOut = true
		return res, nil
	}
	if e.ctx.Err() != nil {
		return res, e.ctx.Err()
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return res, err
	}
	return res, nil
}

// gnuTime is GNU time (Debian package time), which measures a command's
// peak resident set truthfully (see peakRSS).
const gnuTime = "/usr/bin/time"

// peakRSS runs args once under GNU time and returns the command's peak
// resident set in KiB. The rusage of a process that os/exec started does
// not tell it: os/exec starts children with vfork (CLONE_VM), and Linux
// folds the peak RSS of the address space the child shared until exec
// (the driver's own, about 10 MiB) into the child's ru_maxrss, so every
// client smaller than the driver read as the driver's size (mosquitto_pub
// as 10.2 MiB instead of about 4). GNU time forks the command from its own
// small process (about 2 MiB) and reports the command's rusage.
func (e *env) peakRSS(timeout time.Duration, args ...string) (int64, error) {
	out, err := os.CreateTemp(e.run, "rss-*.txt")
	if err != nil {
		return 0, err
	}
	out.Close()
	defer os.Remove(out.Name())
	t, err := e.runTimed(timeout, "", "", append([]string{gnuTime, "-f", "%M", "-o", out.Name()}, args...)...)
	switch {
	case err != nil:
		return 0, err
	case t.timedOut:
		return 0, errTimedOut
	case t.exitCode != 0:
		return 0, fmt.Errorf("exit %d: %s", t.exitCode, firstLine(t.stderr))
	}
	b, err := os.ReadFile(out.Name())
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

type limitedWriter struct {
	w io.Writer
	n int
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if l.n > 0 {
		k := min(len(p), l.n)
		l.w.Write(p[:k])
		l.n -= k
	}
	return len(p), nil
}

// lg is a running load generator process that talks in lines.
type lg struct {
	e      *env
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr bytes.Buffer
	cancel context.CancelFunc
}

// lgArgs returns the full command line of a load generator run bounded
// by timeout.
func (e *env) lgArgs(timeout time.Duration, args ...string) []string {
	full := append([]string{e.loadgen}, args...)
	return append(full, "-timeout", timeout.String())
}

// startLoadgen starts a load generator command line from lgArgs.
func (e *env) startLoadgen(timeout time.Duration, full []string) (*lg, error) {
	ctx, cancel := context.WithTimeout(e.ctx, timeout+5*time.Second)
	c := e.command(ctx, full...)
	p := &lg{e: e, cmd: c, lines: make(chan string, 16), cancel: cancel}
	c.Stderr = &limitedWriter{w: &p.stderr, n: 4096}
	in, err := c.StdinPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	out, err := c.StdoutPipe()
	if err != nil {
		cancel()
		return nil, err
	}
	p.stdin = in
	if err := e.start(c); err != nil {
		cancel()
		return nil, err
	}
	go func() {
		s := bufio.NewScanner(out)
		s.Buffer(make([]byte, 64<<10), 1<<20)
		for s.Scan() {
			p.lines <- s.Text()
		}
		close(p.lines)
	}()
	return p, nil
}

// line waits for the next output line.
func (p *lg) line(timeout time.Duration) (string, error) {
	select {
	case l, ok := <-p.lines:
		if !ok {
			err := p.finish()
			return "", fmt.Errorf("loadgen ended early: %v: %s", err, strings.TrimSpace(p.stderr.String()))
		}
		return l, nil
	case <-time.After(timeout):
		p.kill()
		return "", fmt.Errorf("loadgen: no output within %s", timeout)
	case <-p.e.ctx.Done():
		p.kill()
		return "", p.e.ctx.Err()
	}
}

// waitReady waits for the line starting with "ready" and returns the rest.
func (p *lg) waitReady(timeout time.Duration) (string, error) {
	l, err := p.line(timeout)
	if err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(l, "ready")
	if !ok {
		p.kill()
		return "", fmt.Errorf("loadgen: expected ready, got %q", l)
	}
	return strings.TrimSpace(rest), nil
}

// result closes stdin (telling a -wait-stdin subscriber that publishing is
// done), decodes the JSON result line into v and waits for the exit.
func (p *lg) result(v any, timeout time.Duration) error {
	p.stdin.Close()
	l, err := p.line(timeout)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(l), v); err != nil {
		p.kill()
		return fmt.Errorf("loadgen result %q: %w", l, err)
	}
	if err := p.finish(); err != nil {
		return fmt.Errorf("loadgen: %v: %s", err, strings.TrimSpace(p.stderr.String()))
	}
	return nil
}

func (p *lg) finish() error {
	p.stdin.Close()
	for range p.lines {
	}
	err := p.e.wait(p.cmd)
	p.cancel()
	return err
}

func (p *lg) kill() {
	if p.cmd.Process != nil {
		_ = p.cmd.Process.Kill()
	}
	_ = p.finish()
}

// runLoadgen runs a load generator command line from lgArgs to completion
// and decodes its result.
func (e *env) runLoadgen(timeout time.Duration, v any, full []string) error {
	p, err := e.startLoadgen(timeout, full)
	if err != nil {
		return err
	}
	return p.result(v, timeout+5*time.Second)
}

// broker is a running broker process.
type broker struct {
	name string // "ours" or "mosquitto"
	cmd  *exec.Cmd
	args []string
	conf string // mosquitto's configuration text
	port int
	log  string
	e    *env

	startup time.Duration // from just before exec to the first CONNACK
	exited  chan struct{}
	waitErr error
}

// alive reports whether the broker process is still running.
func (b *broker) alive() bool {
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

func (b *broker) addr() string { return "127.0.0.1:" + strconv.Itoa(b.port) }

func (b *broker) pid() int { return b.cmd.Process.Pid }

// freePort asks the kernel for a free 127.0.0.1 port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// mosquittoConf is both brokers' configuration: defaults, except that
// queues are unbounded so that neither drops messages for a busy
// subscriber (the default of 1000 queued messages per client, mosquitto's
// and ours, would turn a throughput run into a loss count). mqtt broker
// reads the same mosquitto.conf.
func mosquittoConf(port int) string {
	return fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\n", port)
}

// brokerArgs returns the command line for a broker on port and writes its
// configuration file.
func (e *env) brokerArgs(ours bool, port int) ([]string, string, error) {
	conf := mosquittoConf(port)
	name, bin := "mosquitto", e.mosquitto
	if ours {
		name, bin = "ours", e.mqtt
	}
	path := filepath.Join(e.run, fmt.Sprintf("%s-%d.conf", name, port))
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, "", err
	}
	if ours {
		return []string{bin, "broker", "-c", path}, conf, nil
	}
	return []string{bin, "-c", path}, conf, nil
}

// startBroker starts one broker on a random port and waits until it
// accepts MQTT connections. It retries on another port when the chosen
// one was taken in between.
func (e *env) startBroker(ours bool) (*broker, error) {
	name := map[bool]string{true: "ours", false: "mosquitto"}[ours]
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		args, conf, err := e.brokerArgs(ours, port)
		if err != nil {
			return nil, err
		}
		b := &broker{name: name, args: args, conf: conf, port: port, e: e,
			log: filepath.Join(e.run, fmt.Sprintf("%s-broker-%d.log", name, port))}
		logf, err := os.Create(b.log)
		if err != nil {
			return nil, err
		}
		b.cmd = e.command(e.ctx, args...)
		b.cmd.Stdout, b.cmd.Stderr = logf, logf
		b.exited = make(chan struct{})
		t0 := time.Now()
		if err := e.start(b.cmd); err != nil {
			logf.Close()
			return nil, err
		}
		logf.Close()
		go func() { b.waitErr = e.wait(b.cmd); close(b.exited) }()
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		go func() {
			select {
			case <-b.exited: // no point waiting for a broker that died
				cancel()
			case <-ctx.Done():
			}
		}()
		err = loadgen.WaitAccepting(ctx, b.addr())
		b.startup = time.Since(t0)
		cancel()
		if err == nil && b.alive() {
			return b, nil
		}
		b.stop()
		if !b.alive() && b.waitErr != nil {
			err = fmt.Errorf("exited (%v)", b.waitErr)
		} else {
			err = errors.New("not accepting connections within 10 s")
		}
		lastErr = fmt.Errorf("%s broker did not start: %v; %s", name, err, strings.ReplaceAll(tail(b.log, 2), "\n", " / "))
		if !strings.Contains(strings.ToLower(tail(b.log, 5)), "in use") {
			break // only a port taken in between is worth another try
		}
	}
	return nil, lastErr
}

// stop terminates the broker: SIGTERM, then SIGKILL after 3 s.
func (b *broker) stop() {
	if b == nil || b.cmd == nil || b.cmd.Process == nil {
		return
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
	case <-time.After(3 * time.Second):
		_ = b.cmd.Process.Kill()
		<-b.exited
	}
}

// rssKiB reads VmRSS of pid from /proc.
func rssKiB(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}

// tail returns the last n lines of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
