// SPDX-License-Identifier: Apache-2.0

//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testutil"
)

// TestTutorialAsWritten runs docs/tutorial.md from top to bottom: every
// command of its ```sh blocks, as written (with sh, in a fresh folder that
// is also $HOME), in the document's order, and checks every ```text block
// against what the commands printed. Nothing is run that the document does
// not say, so a tutorial that hangs or fails as written fails here.
//
// To run the commands as written, on the ports they name (1883, 8883),
// the test runs itself in a network namespace of its own (unshare -n; as
// a user that is not root, unshare -rn), where those ports are free and
// nothing else listens. What the test adds, and why:
//   - Long-running commands (mqtt broker, mqtt sub without -C/-W/-E/
//     --retained-only, mqtt ui, mqtt simulate-sensor without --count) run in the
//     background, as in the tutorial's other terminals. Ctrl-C (SIGINT)
//     stops them where the reader would: a new broker replaces the old one
//     (and the clients of the old one are stopped with it), a new
//     subscriber (or mqtt ui) replaces the old one, a sensor is stopped before the next
//     command. Everything still running is stopped at the end.
//   - The test waits where the reader would: until a broker accepts
//     connections, until a background subscriber has subscribed (it
//     adds --metrics 127.0.0.1:9100 to mqtt broker and reads
//     mqtt_subscriptions; only its log changes), and until a background
//     sensor has printed its first "Sent:" line. Ctrl-C goes to the
//     process group of `sh -c COMMAND`: sent before sh has started mqtt,
//     it reaches only sh (dash catches SIGINT under -c and waits for its
//     child) or sh's forked child before it executes mqtt, and mqtt never
//     sees it; the waits make sure mqtt runs when Ctrl-C is pressed.
//   - mqtt passwd without -b reads the password `secret` twice from stdin,
//     as the reader types it; /home/you stands for $HOME.
//   - A ```text block is the output of the commands since the previous one:
//     each of its lines must appear (as a whole line; "..." matches
//     anything), waiting up to a minute for background processes.
//     <!-- tutorial test: not checked, REASON --> before a block skips it.
//   - Left out: `go install` (mqtt is the binary under test) and the public
//     brokers' profiles of step 11 (no internet here; tutorial_tls.txtar
//     runs them against local brokers), with the text blocks that follow
//     them; mosquitto_pub without mosquitto-clients (MQTT_INTEROP=require
//     makes that a failure).
//   - A foreground command that has not ended after a minute fails the test
//     (it hangs as written); one that exits non-zero must be followed by a
//     text block (the document shows the error).
func TestTutorialAsWritten(t *testing.T) {
	if os.Getenv("MQTTKIT_TUTORIAL_NETNS") != "1" {
		runInNetns(t)
		return
	}
	require.NoError(t, exec.Command("ip", "link", "set", "lo", "up").Run(), "ip link set lo up in the test's network namespace")
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "tutorial.md"))
	require.NoError(t, err)
	steps := parseTutorial(string(doc))
	require.NotEmpty(t, steps)

	home := t.TempDir()
	r := &tutorialRun{t: t, home: home}
	defer r.stopAll()
	for _, s := range steps {
		if s.text != nil {
			r.expect(s)
			continue
		}
		r.run(s)
	}
	require.Greater(t, r.ran, 30, "too few tutorial commands ran")
}

// runInNetns runs TestTutorialAsWritten again in a new network namespace.
func runInNetns(t *testing.T) {
	// Read the document here too: go test caches a result by the files
	// the test process opened, and the run in the namespace is another
	// process.
	_, err := os.ReadFile(filepath.Join("..", "..", "docs", "tutorial.md"))
	require.NoError(t, err)
	unshare, err := exec.LookPath("unshare")
	if err == nil {
		_, err = exec.LookPath("ip")
	}
	if err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("MQTT_INTEROP") == "require" {
			t.Fatalf("unshare or ip (util-linux, iproute2) missing: %v", err)
		}
		t.Skipf("unshare or ip (util-linux, iproute2) missing: %v", err)
	}
	args := []string{"-n"}
	if os.Geteuid() != 0 {
		args = []string{"-rn"}
	}
	if out, err := exec.Command(unshare, append(args, "true")...).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" || os.Getenv("MQTT_INTEROP") == "require" {
			t.Fatalf("cannot make a network namespace: %v: %s", err, out)
		}
		t.Skipf("cannot make a network namespace: %v: %s", err, out)
	}
	args = append(args, os.Args[0], "-test.run", "^TestTutorialAsWritten$", "-test.v")
	cmd := exec.Command(unshare, args...)
	cmd.Env = append(os.Environ(), "MQTTKIT_TUTORIAL_NETNS=1")
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	require.NoError(t, err, "the tutorial as written failed (output above)")
}

// tutorialStep is one command (sh) or one expected output (text) of the
// tutorial, in order.
type tutorialStep struct {
	line    int
	cmd     string   // a shell command, with a here-document's body
	text    []string // expected lines; nil for a command
	skip    string   // why a text block is not checked
	endsSh  bool     // the last command of its ```sh block
	inBlock int      // the ```sh block a command belongs to
}

var notChecked = regexp.MustCompile(`^<!-- tutorial test: not checked, (.*) -->$`)

// parseTutorial returns the commands and text blocks of md in order.
func parseTutorial(md string) []tutorialStep {
	var steps []tutorialStep
	lines := strings.Split(md, "\n")
	block := 0
	skip := ""
	for i := 0; i < len(lines); i++ {
		l := strings.TrimSpace(lines[i])
		if m := notChecked.FindStringSubmatch(l); m != nil {
			skip = m[1]
			continue
		}
		switch l {
		case "```sh":
			block++
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				start := i
				c := lines[i]
				for strings.HasSuffix(c, "\\") && i+1 < len(lines) {
					i++
					c = strings.TrimSuffix(c, "\\") + " " + strings.TrimSpace(lines[i])
				}
				if m := regexp.MustCompile(`<<'?(\w+)'?\s*$`).FindStringSubmatch(c); m != nil {
					for i++; i < len(lines) && strings.TrimSpace(lines[i]) != m[1]; i++ {
						c += "\n" + lines[i]
					}
					c += "\n" + m[1]
				}
				if strings.TrimSpace(c) == "" || strings.HasPrefix(strings.TrimSpace(c), "#") {
					continue
				}
				steps = append(steps, tutorialStep{line: start + 1, cmd: c, inBlock: block})
			}
			if n := len(steps); n > 0 && steps[n-1].text == nil {
				steps[n-1].endsSh = true
			}
			skip = ""
		case "```text":
			st := tutorialStep{line: i + 1, text: []string{}, skip: skip}
			for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				st.text = append(st.text, lines[i])
			}
			steps = append(steps, st)
			skip = ""
		default:
			if strings.HasPrefix(l, "```") {
				for i++; i < len(lines) && strings.TrimSpace(lines[i]) != "```"; i++ {
				}
			}
		}
	}
	return steps
}

// tutorialRun is the state of one run: the background processes, the
// output so far and where the last text block matched.
type tutorialRun struct {
	t    *testing.T
	home string
	ran  int

	out  testutil.Buffer
	mark int // output before mark was matched by an earlier text block

	broker  *bgProc
	clients []*bgProc // background subscribers of the current broker
	sensor  *bgProc   // a simulate-sensor running until Ctrl-C

	skipText   string // why the next text block is not checked
	lastFailed string // a foreground command that failed, until a text block follows
	lastBlock  int
}

// bgProc is a command running in the background, as in another terminal.
type bgProc struct {
	cmd  *exec.Cmd
	line int
	done chan struct{}
}

func (p *bgProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// interrupt presses Ctrl-C and waits for the process to end.
func (p *bgProc) interrupt(t *testing.T) {
	if p == nil || p.exited() {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("docs/tutorial.md:%d: %q did not stop on Ctrl-C", p.line, p.cmd.Args[len(p.cmd.Args)-1])
	}
}

func (r *tutorialRun) stopAll() {
	r.sensor.interrupt(r.t)
	for _, c := range r.clients {
		c.interrupt(r.t)
	}
	r.broker.interrupt(r.t)
}

// publicProfile matches the built-in profiles of public brokers.
var publicProfile = regexp.MustCompile(`--profile (hivemq|emqx|adafruit)`)

func fields(c string) []string {
	f := strings.Fields(c)
	for len(f) > 0 && strings.Contains(f[0], "=") {
		f = f[1:]
	}
	return f
}

func has(f []string, flags ...string) bool {
	for _, w := range f {
		for _, fl := range flags {
			if w == fl {
				return true
			}
		}
	}
	return false
}

func (r *tutorialRun) command(c string) *exec.Cmd {
	cmd := exec.Command("sh", "-c", c)
	cmd.Dir = r.home
	env := []string{"HOME=" + r.home, "NO_COLOR=1", "LANG=C.UTF-8"}
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "MQTT_") || strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "XDG_CONFIG_HOME=") {
			continue
		}
		env = append(env, kv)
	}
	cmd.Env = append(env, "PATH="+os.Getenv("PATH")+":/usr/sbin")
	cmd.Stdout, cmd.Stderr = &r.out, &r.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func (r *tutorialRun) start(s tutorialStep, c string) *bgProc {
	cmd := r.command(c)
	require.NoError(r.t, cmd.Start(), "docs/tutorial.md:%d", s.line)
	p := &bgProc{cmd: cmd, line: s.line, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	return p
}

func (r *tutorialRun) run(s tutorialStep) {
	t := r.t
	c := strings.ReplaceAll(s.cmd, "/home/you", r.home)
	f := fields(c)
	if s.inBlock != r.lastBlock {
		// A new ```sh block: a sensor left running is stopped (Ctrl-C).
		r.sensor.interrupt(t)
		r.sensor = nil
		r.lastBlock = s.inBlock
	}
	if r.lastFailed != "" {
		t.Fatalf("%s exited with an error, and the tutorial shows no output for it", r.lastFailed)
	}
	switch {
	case len(f) >= 2 && f[0] == "go" && f[1] == "install":
		r.skipText = "go install"
		return
	case publicProfile.MatchString(c):
		r.skipText = "a public broker"
		return
	case len(f) > 0 && strings.HasPrefix(f[0], "mosquitto_"):
		if _, err := exec.LookPath(f[0]); err != nil {
			if os.Getenv("MQTT_INTEROP") == "require" {
				t.Fatalf("docs/tutorial.md:%d: %s is missing (MQTT_INTEROP=require)", s.line, f[0])
			}
			r.skipText = f[0] + " is not installed"
			return
		}
	}
	r.skipText = ""
	r.ran++
	t.Logf("docs/tutorial.md:%d: %s", s.line, c)

	switch {
	case len(f) >= 2 && f[0] == "mqtt" && f[1] == "broker":
		for _, cl := range r.clients {
			cl.interrupt(t)
		}
		r.clients = nil
		r.sensor.interrupt(t)
		r.sensor = nil
		r.broker.interrupt(t)
		r.broker = r.start(s, c+" --metrics 127.0.0.1:9100")
		r.waitListening(s, "127.0.0.1:1883")
		if strings.Contains(c, "tls") {
			r.waitListening(s, "127.0.0.1:8883")
		}
		r.waitListening(s, "127.0.0.1:9100")
		return
	case len(f) >= 2 && f[0] == "mqtt" && (f[1] == "sub" && !has(f, "-C", "--count", "-W", "--timeout", "-E", "--retained-only") || f[1] == "ui"):
		for _, cl := range r.clients {
			cl.interrupt(t)
		}
		before := r.subscriptions(s)
		p := r.start(s, c)
		r.clients = []*bgProc{p}
		r.waitSubscribed(s, p, before)
		return
	case len(f) >= 2 && f[0] == "mqtt" && f[1] == "simulate-sensor" && !has(f, "--count"):
		from := len(r.out.String())
		r.sensor = r.start(s, c)
		r.waitSent(s, r.sensor, from)
		return
	}

	cmd := r.command(c)
	if len(f) >= 2 && f[0] == "mqtt" && f[1] == "passwd" && !has(f, "-b", "--batch") {
		cmd.Stdin = strings.NewReader("secret\nsecret\n") // what the reader types
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		t.Fatalf("docs/tutorial.md:%d: %q did not end within a minute: it hangs as written\noutput since the last example:\n%s", s.line, c, r.out.String()[r.mark:])
	}
	if err != nil {
		r.lastFailed = fmt.Sprintf("docs/tutorial.md:%d: %q (%v)", s.line, c, err)
		if !s.endsSh {
			t.Fatalf("%s, and more commands follow in its block", r.lastFailed)
		}
	}
}

// waitListening waits until addr accepts TCP connections.
func (r *tutorialRun) waitListening(s tutorialStep, addr string) {
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		if r.broker.exited() || time.Now().After(deadline) {
			r.t.Fatalf("docs/tutorial.md:%d: the broker does not listen on %s: %v\n%s", s.line, addr, err, r.out.String()[r.mark:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var subsGauge = regexp.MustCompile(`(?m)^mqtt_subscriptions (\d+)`)

// subscriptions reads the broker's mqtt_subscriptions gauge.
func (r *tutorialRun) subscriptions(s tutorialStep) int {
	resp, err := http.Get("http://127.0.0.1:9100/metrics")
	require.NoError(r.t, err, "docs/tutorial.md:%d: no broker runs for this subscriber", s.line)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(r.t, err)
	m := subsGauge.FindSubmatch(b)
	require.NotNil(r.t, m, "no mqtt_subscriptions in\n%s", b)
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// waitSubscribed waits until the broker holds more subscriptions than
// before, or p ended (a refused subscription).
func (r *tutorialRun) waitSubscribed(s tutorialStep, p *bgProc, before int) {
	deadline := time.Now().Add(time.Minute)
	for !p.exited() && r.subscriptions(s) <= before {
		if time.Now().After(deadline) {
			r.t.Fatalf("docs/tutorial.md:%d: the subscriber did not subscribe within a minute\n%s", s.line, r.out.String()[r.mark:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

var sentLine = regexp.MustCompile(`(?m)^Sent: `)

// waitSent waits until the output since from has a sensor's "Sent:" line,
// or p ended (no broker, a refused connection).
func (r *tutorialRun) waitSent(s tutorialStep, p *bgProc, from int) {
	deadline := time.Now().Add(time.Minute)
	for !p.exited() && !sentLine.MatchString(r.out.String()[from:]) {
		if time.Now().After(deadline) {
			r.t.Fatalf("docs/tutorial.md:%d: the sensor sent nothing within a minute\n%s", s.line, r.out.String()[r.mark:])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expect checks a text block against the output since the last one.
func (r *tutorialRun) expect(s tutorialStep) {
	r.lastFailed = ""
	if s.skip != "" || r.skipText != "" {
		r.t.Logf("docs/tutorial.md:%d: example not checked (%s)", s.line, s.skip+r.skipText)
		r.mark = len(r.out.String())
		return
	}
	var res []*regexp.Regexp
	for _, l := range s.text {
		l = strings.ReplaceAll(l, "/home/you", r.home)
		if strings.TrimSpace(l) == "" {
			continue
		}
		parts := strings.Split(l, "...")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		res = append(res, regexp.MustCompile(`(?m)^`+strings.Join(parts, ".*")+`\s*$`))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out := r.out.String()[r.mark:]
		var missing []string
		for _, re := range res {
			if !re.MatchString(out) {
				missing = append(missing, re.String())
			}
		}
		if len(missing) == 0 {
			r.mark += len(out)
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("docs/tutorial.md:%d: the example's lines\n%s\ndid not appear in the output since the previous example:\n%s", s.line, strings.Join(missing, "\n"), out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
