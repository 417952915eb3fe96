// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Broker is the local broker of a Set: Local, plus the length of a
// session's queue for $SYS and metrics.
type Broker interface {
	Local
	// SessionQueued returns the QoS 1/2 messages a session holds.
	SessionQueued(clientID string) int
}

// Set is the running bridges of one broker.
type Set struct {
	bridges []*Bridge
	broker  Broker

	stopSys chan struct{}
	sysDone chan struct{}
	once    sync.Once
}

// Start creates and starts a bridge for each configuration. When one
// cannot start, those started are stopped and the error says which.
func Start(cfgs []*Config, broker Broker, log *slog.Logger) (*Set, error) {
	s := &Set{broker: broker}
	for _, c := range cfgs {
		b, err := New(c, broker, log)
		if err == nil {
			err = b.Start()
		}
		if err != nil {
			s.Stop()
			return nil, err
		}
		s.bridges = append(s.bridges, b)
	}
	return s, nil
}

// Bridges returns the bridges in configuration order.
func (s *Set) Bridges() []*Bridge { return s.bridges }

// Stop stops every bridge and the $SYS publisher.
func (s *Set) Stop() {
	s.once.Do(func() {
		if s.stopSys != nil {
			close(s.stopSys)
			<-s.sysDone
		}
		for _, b := range s.bridges {
			b.Stop()
		}
	})
}

// SetStats is a bridge's Stats with the length of its local queue.
type SetStats struct {
	Stats
	Queued int // QoS 1/2 messages waiting in the local session for the remote
}

// Stats returns every bridge's state.
func (s *Set) Stats() []SetStats {
	var out []SetStats
	for _, b := range s.bridges {
		out = append(out, SetStats{Stats: b.Stats(), Queued: s.broker.SessionQueued(b.cfg.LocalClientID)})
	}
	return out
}

// sysValues returns the $SYS topics of the bridges and their values.
func (s *Set) sysValues() map[string]string {
	m := map[string]string{}
	for _, st := range s.Stats() {
		p := "$SYS/broker/bridges/" + st.Name + "/"
		state := "0"
		if st.Connected {
			state = "1"
		}
		m[p+"state"] = state
		m[p+"queued"] = strconv.Itoa(st.Queued)
		m[p+"messages/sent"] = strconv.FormatInt(st.Sent, 10)
		m[p+"messages/received"] = strconv.FormatInt(st.Received, 10)
	}
	return m
}

// PublishSys publishes $SYS/broker/bridges/NAME/{state,queued,
// messages/sent,messages/received} (retained) now and every interval,
// each only when it changed, until Stop.
func (s *Set) PublishSys(interval time.Duration) {
	if interval <= 0 || len(s.bridges) == 0 {
		return
	}
	s.stopSys, s.sysDone = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(s.sysDone)
		last := map[string]string{}
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			for topic, v := range s.sysValues() {
				if last[topic] != v {
					if s.broker.Publish(topic, []byte(v), true, 0) == nil {
						last[topic] = v
					}
				}
			}
			select {
			case <-s.stopSys:
				return
			case <-t.C:
			}
		}
	}()
}

// WriteMetrics writes the bridges' samples in the Prometheus text format:
// mqtt_bridge_connected, mqtt_bridge_queued_messages and
// mqtt_bridge_messages_total{direction="out"|"in"}, labelled by bridge.
func (s *Set) WriteMetrics(w io.Writer) {
	if len(s.bridges) == 0 {
		return
	}
	var sb strings.Builder
	stats := s.Stats()
	label := func(name string) string { return strconv.Quote(name) }
	sb.WriteString("# HELP mqtt_bridge_connected Whether the bridge is connected to its remote broker (1) or not (0).\n# TYPE mqtt_bridge_connected gauge\n")
	for _, st := range stats {
		v := 0
		if st.Connected {
			v = 1
		}
		fmt.Fprintf(&sb, "mqtt_bridge_connected{bridge=%s} %d\n", label(st.Name), v)
	}
	sb.WriteString("# HELP mqtt_bridge_queued_messages QoS 1/2 messages waiting in the local broker for the bridge's remote.\n# TYPE mqtt_bridge_queued_messages gauge\n")
	for _, st := range stats {
		fmt.Fprintf(&sb, "mqtt_bridge_queued_messages{bridge=%s} %d\n", label(st.Name), st.Queued)
	}
	sb.WriteString("# HELP mqtt_bridge_messages_total Messages forwarded by the bridge, out (to the remote) and in (from the remote).\n# TYPE mqtt_bridge_messages_total counter\n")
	for _, st := range stats {
		fmt.Fprintf(&sb, "mqtt_bridge_messages_total{bridge=%s,direction=\"out\"} %d\n", label(st.Name), st.Sent)
		fmt.Fprintf(&sb, "mqtt_bridge_messages_total{bridge=%s,direction=\"in\"} %d\n", label(st.Name), st.Received)
	}
	_, _ = io.WriteString(w, sb.String())
}
