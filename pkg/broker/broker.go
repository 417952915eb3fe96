// SPDX-License-Identifier: Apache-2.0

// Package broker runs an MQTT broker built on mochi-mqtt with mosquitto's
// defaults: local-only listeners unless configured otherwise.
package broker

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Listener describes one network listener.
type Listener struct {
	Address  string // host:port; port 0 picks a free port
	Protocol string // "mqtt" (default)
}

// Config configures a broker.
type Config struct {
	// Listeners to open. Empty means mosquitto's local-only mode:
	// 127.0.0.1 and ::1 on port Port (default 1883).
	Listeners []Listener
	// Port is used in local-only mode; 0 picks a free port.
	Port int
	// AllowAnonymous lets clients without a username connect.
	AllowAnonymous bool
	// Log receives broker logs; nil discards them.
	Log *slog.Logger
	// Inline enables the in-process client used by tests and `mqtt demo`.
	Inline bool
	// ConnectTimeout is how long a new connection may take to send its
	// CONNECT; 0 means DefaultConnectTimeout.
	ConnectTimeout time.Duration
}

// Broker is a running broker.
type Broker struct {
	srv       *mqtt.Server
	log       *slog.Logger
	listeners []BoundListener
	closeOnce sync.Once
}

// BoundListener is a listener that is accepting connections.
type BoundListener struct {
	Addr     string // the real address, with the port chosen by the OS
	Protocol string
}

// LocalOnly reports whether cfg is in mosquitto's local-only mode.
func (c *Config) LocalOnly() bool { return len(c.Listeners) == 0 }

// New creates a broker and binds its listeners; Start begins serving.
func New(cfg Config) (*Broker, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	caps := mqtt.NewDefaultServerCapabilities()
	srv := mqtt.New(&mqtt.Options{
		Logger:       log,
		InlineClient: cfg.Inline,
		Capabilities: caps,
	})
	if cfg.LocalOnly() || cfg.AllowAnonymous {
		if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
			return nil, err
		}
	}
	b := &Broker{srv: srv, log: log}
	ls := cfg.Listeners
	if cfg.LocalOnly() {
		port := cfg.Port
		ls = []Listener{{Address: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}}
		if ipv6Loopback() {
			ls = append(ls, Listener{Address: net.JoinHostPort("::1", strconv.Itoa(port))})
		}
	}
	for i, l := range ls {
		if l.Protocol == "" {
			l.Protocol = "mqtt"
		}
		if l.Protocol != "mqtt" {
			return nil, fmt.Errorf("listener %s: unsupported protocol %q", l.Address, l.Protocol)
		}
		ln, guard, err := listenMQTT(l.Address, nil, cfg.ConnectTimeout, log)
		if err != nil {
			_ = srv.Close()
			return nil, fmt.Errorf("listen on %s: %w", l.Address, err)
		}
		tl := newConnListener("tcp"+strconv.Itoa(i), ln, guard)
		if err := srv.AddListener(tl); err != nil {
			_ = ln.Close()
			_ = srv.Close()
			return nil, fmt.Errorf("listen on %s: %w", l.Address, err)
		}
		b.listeners = append(b.listeners, BoundListener{Addr: tl.Address(), Protocol: l.Protocol})
		// In local-only mode with an OS-chosen port, use the same port for ::1.
		if cfg.LocalOnly() && i == 0 && len(ls) > 1 {
			_, p, _ := net.SplitHostPort(tl.Address())
			ls[1].Address = net.JoinHostPort("::1", p)
		}
	}
	return b, nil
}

func ipv6Loopback() bool {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Start begins accepting connections. It does not block.
func (b *Broker) Start() error {
	return b.srv.Serve()
}

// Listeners returns the bound listeners.
func (b *Broker) Listeners() []BoundListener { return b.listeners }

// Addr returns the address of the first listener.
func (b *Broker) Addr() string {
	if len(b.listeners) == 0 {
		return ""
	}
	return b.listeners[0].Addr
}

// Port returns the port of the first listener.
func (b *Broker) Port() int {
	_, p, _ := net.SplitHostPort(b.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// Close stops the listeners and disconnects clients. It is safe to call more than once.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() { err = b.srv.Close() })
	return err
}

// Publish publishes a message from inside the broker (Config.Inline must be set).
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	return b.srv.Publish(topic, payload, retain, qos)
}

// InlineHandler receives messages on an inline subscription.
type InlineHandler func(topic string, payload []byte, retain bool, qos byte)

// Subscribe subscribes inside the broker (Config.Inline must be set).
func (b *Broker) Subscribe(filter string, id int, h InlineHandler) error {
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		h(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, pk.FixedHeader.Qos)
	})
}

// HasSubscriber reports whether some client other than the inline one
// subscribes to a filter that matches topic.
func (b *Broker) HasSubscriber(topic string) bool {
	subs := b.srv.Topics.Subscribers(topic)
	for id := range subs.Subscriptions {
		if id != mqtt.InlineClientId {
			return true
		}
	}
	return false
}
