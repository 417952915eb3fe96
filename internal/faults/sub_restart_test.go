// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// `mqtt sub` keeps running through a broker killed with SIGKILL and
// restarted (without persistence, so its session is gone): it reconnects,
// subscribes again and prints what is published afterwards.
func TestSubThroughBrokerRestart(t *testing.T) {
	b := startBroker(t)
	topic := "sub/restart"
	sub := startClient(t, "sub", "-h", "127.0.0.1", "-p", b.Port(), "-q", "1", "-t", topic)
	pub := newPublisher(b.Addr, "sub-feeder", 5, 1, topic)

	// Until a probe shows up the subscription may not be in place yet.
	mark := 0 // probes count from this offset of the output
	probe := func() {
		t.Helper()
		k := 0
		waitFor(t, time.Minute, "mqtt sub to receive a probe", func() bool {
			if sub.exited() {
				t.Fatalf("mqtt sub exited (%v):\n%s", sub.err, sub.stderr.String())
			}
			k++
			if k%10 == 1 {
				pub.runPayload(t, fmt.Sprintf("probe-%d", k))
			}
			return strings.Contains(sub.stdout.String()[mark:], "probe-")
		})
	}
	batch := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			pub.runPayload(t, string(payloadOf(i)))
		}
		waitFor(t, time.Minute, fmt.Sprintf("mqtt sub to print message %d", to-1), func() bool {
			return strings.Contains(sub.stdout.String(), string(payloadOf(to-1)))
		})
	}
	probe()
	batch(0, 100)
	b.restart()
	mark = len(sub.stdout.String())
	probe()
	batch(100, 200)
	if sub.exited() {
		t.Fatalf("mqtt sub exited: %v", sub.err)
	}

	var got []int
	for _, line := range strings.Split(sub.stdout.String(), "\n") {
		if n, err := strconv.Atoi(line); err == nil {
			got = append(got, n)
		}
	}
	want := make([]int, 200)
	for i := range want {
		want[i] = i
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("mqtt sub printed %v, want 0..199 in order", got)
	}
	_ = sub.cmd.Process.Signal(syscall.SIGINT)
	if code := sub.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("mqtt sub exited %d after SIGINT", code)
	}
}

// runPayload publishes one message at the publisher's QoS and waits for
// its acknowledgement (reconnecting if needed).
func (p *publisher) runPayload(t *testing.T, payload string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for ctx.Err() == nil {
		c, _, err := dialRetry(p.addr, p.version, rawConnect(p.id), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		err = publishOne(c, p.version, p.topic, payload, p.qos, false)
		c.Close()
		if err == nil {
			return
		}
	}
	t.Fatalf("could not publish %q", payload)
}
