// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/internal/testutil"
)

// client runs an mqtt client command (pub, sub) as a child process.
type client struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *testutil.Buffer
	stderr *testutil.Buffer
	done   chan struct{}
	err    error
}

func startClient(t *testing.T, args ...string) *client {
	t.Helper()
	c := &client{stdout: &testutil.Buffer{}, stderr: &testutil.Buffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(mqttBin, args...)
	c.cmd.Env = append(os.Environ(), "NO_COLOR=1")
	c.cmd.Stdout, c.cmd.Stderr = c.stdout, c.stderr
	var err error
	if c.stdin, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { c.err = c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			_ = c.cmd.Process.Kill()
			<-c.done
		}
		if t.Failed() {
			t.Logf("mqtt %s\nstderr:\n%s", strings.Join(args, " "), c.stderr.String())
		}
	})
	return c
}

// wait waits for the command to exit and returns its exit code.
func (c *client) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(timeout):
		t.Fatalf("%s still running after %s", c.cmd.Args[1], timeout)
	}
	return c.cmd.ProcessState.ExitCode()
}

func (c *client) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// `mqtt pub -l` at QoS 1 writes every line through a broker killed with
// SIGKILL and restarted: it reconnects, resends what was not acknowledged
// and exits 0 once every line is delivered. A persistent-session
// subscriber, online throughout except while the broker is down, gets
// every line, in order.
func TestPubLinesThroughBrokerRestart(t *testing.T) {
	n := scale(20000, 2000)
	b := startPersistentBroker(t)
	topic := "lines"
	sub := newSubscriber(b.Addr, "line-subscriber", 5, 1, topic)
	sub.subscribe(t)
	sub.complete = func() bool { return len(sub.count) >= n }
	drained := make(chan error, 1)
	go func() { drained <- sub.drain(3*time.Minute, nil) }()

	pub := startClient(t, "pub", "-h", "127.0.0.1", "-p", b.Port(), "-i", "line-publisher", "-q", "1", "-t", topic, "-l")
	w := bufio.NewWriter(pub.stdin)
	write := func(from, to int) {
		for i := from; i < to; i++ {
			fmt.Fprintf(w, "%s\n", payloadOf(i))
		}
		if err := w.Flush(); err != nil {
			t.Fatalf("write to mqtt pub: %v", err)
		}
	}
	write(0, n/2)
	waitFor(t, time.Minute, "the subscriber to get a quarter of the lines", func() bool { return sub.distinct.Load() >= int64(n/4) })
	b.restart() // lines in flight, lines still buffered in pub, lines not yet read
	write(n/2, n)
	fmt.Fprintf(w, "%s\n", endPayload)
	if err := w.Flush(); err != nil {
		t.Fatalf("write to mqtt pub: %v", err)
	}
	if err := pub.stdin.Close(); err != nil {
		t.Fatal(err)
	}
	if code := pub.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("mqtt pub -l exited %d", code)
	}
	select {
	case err := <-drained:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(3 * time.Minute):
		t.Fatal("the subscriber did not get the end marker")
	}
	every := newPublisher(b.Addr, "", 5, 1, topic)
	for i := 0; i < n; i++ {
		every.acked[i] = true
	}
	check(t, every, sub)
}
