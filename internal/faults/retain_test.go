// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// Retained messages acknowledged by a broker with --persistence survive a
// restart, whether the broker was stopped (SIGTERM) or killed (SIGKILL):
// set, replaced and cleared ones alike.
func TestRetainedSurviveRestart(t *testing.T) {
	for _, stop := range []string{"SIGKILL", "SIGTERM"} {
		t.Run(stop, func(t *testing.T) {
			b := startPersistentBroker(t)
			c, _, err := dialRetry(b.Addr, 5, rawConnect("retainer"), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range []struct {
				topic, payload string
				qos            byte
			}{
				{"ret/a", "a1", 1},
				{"ret/b", "b1", 1},
				{"ret/c", "c1", 2},
				{"ret/b", "", 1},      // cleared
				{"ret/c", "c2", 1},    // replaced
				{"ret/d/e", "de1", 2}, // deeper
			} {
				if err := publishOne(c, 5, m.topic, m.payload, m.qos, true); err != nil {
					t.Fatal(err)
				}
			}
			c.Close()
			if stop == "SIGKILL" {
				b.kill9()
			} else {
				b.terminate()
			}
			b.start()

			got := retained(t, b, "ret/#")
			want := map[string]string{"ret/a": "a1", "ret/c": "c2", "ret/d/e": "de1"}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("retained after restart: %v, want %v", got, want)
			}
		})
	}
}

// retained subscribes to filter and returns the retained messages the
// broker sends (topic -> payload). mochi queues them for the subscriber
// while it handles the SUBSCRIBE; a PINGREQ is handled after that, and a
// message published once the PINGRESP is back is queued after them: when
// it arrives, all retained messages have.
func retained(t *testing.T, b *brokerProc, filter string) map[string]string {
	t.Helper()
	c, _, err := dialRetry(b.Addr, 5, rawConnect("retained-reader"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := map[string]string{}
	take := func(p *rawmqtt.Packet) bool {
		if p.Type != rawmqtt.PUBLISH {
			return false
		}
		if p.QoS > 0 {
			_ = c.Send(rawmqtt.Ack(rawmqtt.PUBACK, p.PacketID))
		}
		if !p.Retain {
			return string(p.Payload) == endPayload
		}
		if _, dup := got[p.Topic]; dup {
			t.Errorf("retained message on %s sent twice", p.Topic)
		}
		got[p.Topic] = string(p.Payload)
		return false
	}
	read := func(until func(*rawmqtt.Packet) bool) {
		t.Helper()
		for {
			p, err := c.Read(30 * time.Second)
			if err != nil {
				t.Fatalf("reading retained messages: %v (got %v)", err, got)
			}
			take(p)
			if until(p) {
				return
			}
		}
	}
	_, early, err := c.Subscribe(1, filter, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range early {
		take(p)
	}
	if err := c.Send(rawmqtt.Pingreq()); err != nil {
		t.Fatal(err)
	}
	read(func(p *rawmqtt.Packet) bool { return p.Type == rawmqtt.PINGRESP })
	m, _, err := dialRetry(b.Addr, 5, rawConnect("retained-marker"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := publishOne(m, 5, "ret/zz-end", endPayload, 1, false); err != nil {
		t.Fatal(err)
	}
	read(func(p *rawmqtt.Packet) bool {
		return p.Type == rawmqtt.PUBLISH && !p.Retain && string(p.Payload) == endPayload
	})
	return got
}
