// SPDX-License-Identifier: Apache-2.0

// Package testbroker starts an in-process broker on a random loopback
// port for tests, with helpers to publish and observe messages inside it.
package testbroker

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/pkg/broker"
)

// Broker is a running test broker.
type Broker struct {
	*broker.Broker
	Host string
	Port int

	mu   sync.Mutex
	got  []Msg
	cond *sync.Cond
	subs int
}

// Msg is a message seen by an inline subscription.
type Msg struct {
	Topic   string
	Payload string
	Retain  bool
	QoS     byte
}

// Start starts a broker on 127.0.0.1 with a free port, allowing anonymous
// clients. It is closed when the test ends.
func Start(t testing.TB) *Broker {
	t.Helper()
	b, err := New()
	if err != nil {
		t.Fatalf("start test broker: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// New starts a test broker without a testing.TB; the caller closes it.
func New() (*Broker, error) { return NewAt("127.0.0.1:0") }

// NewAt starts a test broker listening on addr (e.g. the address of a
// broker that was just closed, to test reconnects), recording the filters
// in record from before the first client can connect; the caller closes it.
func NewAt(addr string, record ...string) (*Broker, error) {
	bb, err := broker.New(broker.Config{
		Listeners:      []broker.Listener{{Address: addr}},
		AllowAnonymous: true,
	})
	if err != nil {
		return nil, err
	}
	b := &Broker{Broker: bb, Host: "127.0.0.1", Port: bb.Port()}
	b.cond = sync.NewCond(&b.mu)
	for _, f := range record {
		if err := b.Record(f); err != nil {
			bb.Close()
			return nil, err
		}
	}
	if err := bb.Start(); err != nil {
		bb.Close()
		return nil, err
	}
	return b, nil
}

// PortString returns the port as a string, for environment variables.
func (b *Broker) PortString() string { return strconv.Itoa(b.Port) }

// Record subscribes inside the broker to filter and records every message,
// for Wait and Messages.
func (b *Broker) Record(filter string) error {
	b.mu.Lock()
	b.subs++
	id := b.subs
	b.mu.Unlock()
	return b.Subscribe(filter, id, func(topic string, payload []byte, retain bool, qos byte) {
		b.mu.Lock()
		b.got = append(b.got, Msg{Topic: topic, Payload: string(payload), Retain: retain, QoS: qos})
		b.cond.Broadcast()
		b.mu.Unlock()
	})
}

// Messages returns the recorded messages so far.
func (b *Broker) Messages() []Msg {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Msg(nil), b.got...)
}

// WaitMessages waits until at least n messages were recorded or the timeout passes.
func (b *Broker) WaitMessages(n int, timeout time.Duration) ([]Msg, error) {
	deadline := time.Now().Add(timeout)
	timer := time.AfterFunc(timeout, func() {
		b.mu.Lock()
		b.cond.Broadcast()
		b.mu.Unlock()
	})
	defer timer.Stop()
	b.mu.Lock()
	defer b.mu.Unlock()
	for len(b.got) < n {
		if time.Now().After(deadline) {
			return append([]Msg(nil), b.got...), fmt.Errorf("got %d messages, want %d after %s", len(b.got), n, timeout)
		}
		b.cond.Wait()
	}
	return append([]Msg(nil), b.got...), nil
}

// WaitSubscriber polls until a client subscribes to a filter matching topic.
func (b *Broker) WaitSubscriber(topic string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !b.HasSubscriber(topic) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no subscriber for %q after %s", topic, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}
