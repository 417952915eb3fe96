// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"time"
)

// ServeMetrics serves Prometheus metrics at http://ADDR/metrics and a
// health check at /healthz until Close. It returns the bound address
// (ADDR may use port 0). The text format is written by hand: a metrics
// library would cost every mqtt command start-up time.
func (b *Broker) ServeMetrics(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/metrics", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		b.writeMetrics(w)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	b.metricsStop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			b.log.Error("metrics server stopped", "error", err)
		}
	}()
	return ln.Addr().String(), nil
}

// metric is one sample of the exposition.
type metric struct {
	name, help, kind string
	value            float64
	labels           string // `{k="v"}` or ""
}

// metrics returns the current samples.
func (b *Broker) metrics() []metric {
	info := b.srv.Info
	load := func(v *int64) float64 { return float64(atomic.LoadInt64(v)) }
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	sessions := float64(b.srv.Clients.Len() - 1) // without the inline client
	packetsIn, messagesIn := b.received()
	_, waiting, evicted := b.conns.counts()
	return []metric{
		{"mqtt_clients_connected", "Clients connected now.", "gauge", load(&info.ClientsConnected), ""},
		{"mqtt_clients_maximum", "Most clients connected at once since start.", "gauge", load(&info.ClientsMaximum), ""},
		{"mqtt_sessions", "Sessions held, connected or not.", "gauge", sessions, ""},
		{"mqtt_subscriptions", "Subscriptions held.", "gauge", load(&info.Subscriptions), ""},
		{"mqtt_retained_messages", "Retained messages held.", "gauge", float64(b.retainedCount()), ""},
		{"mqtt_inflight_messages", "QoS 1/2 messages awaiting acknowledgement or queued in sessions.", "gauge", load(&info.Inflight), ""},
		{"mqtt_messages_received_total", "PUBLISH packets received.", "counter", float64(messagesIn), ""},
		{"mqtt_messages_sent_total", "PUBLISH packets sent.", "counter", load(&info.MessagesSent), ""},
		{"mqtt_packets_received_total", "MQTT packets received.", "counter", float64(packetsIn), ""},
		{"mqtt_packets_sent_total", "MQTT packets sent.", "counter", load(&info.PacketsSent), ""},
		{"mqtt_bytes_received_total", "Bytes received from clients.", "counter", load(&info.BytesReceived), ""},
		{"mqtt_bytes_sent_total", "Bytes sent to clients.", "counter", load(&info.BytesSent), ""},
		{"mqtt_messages_dropped_total", "Messages not delivered, by reason.", "counter", load(&info.MessagesDropped), `{reason="qos0_queue_full"}`},
		{"mqtt_messages_dropped_total", "", "", load(&info.InflightDropped), `{reason="session_limit"}`},
		{"mqtt_messages_dropped_total", "", "", float64(b.limits.oversize.Load()), `{reason="message_size_limit"}`},
		{"mqtt_messages_dropped_total", "", "", float64(b.security.aclDenied.Load()), `{reason="acl_denied"}`},
		{"mqtt_slow_clients_disconnected_total", "Clients disconnected because their outbound queue stayed full.", "counter", float64(b.slowCut.Load() + b.engine.cut.Load()), ""},
		{"mqtt_publisher_waits_total", "Times a publisher waited for room in a slow subscriber's connection.", "counter", float64(b.waits.Load()), ""},
		{"mqtt_auth_failures_total", "CONNECTs refused for bad credentials or anonymous access.", "counter", float64(b.security.authFailures.Load()), ""},
		{"mqtt_malformed_packets_total", "Connections ended because the client sent a malformed packet.", "counter", float64(b.wire.malformed.Load()), ""},
		{"mqtt_connection_panics_total", "Connections ended by a recovered panic on their goroutine (a broker defect; see the log).", "counter", float64(b.wire.panics.Load()), ""},
		{"mqtt_connections_refused_total", "Connections refused at max_connections.", "counter", float64(b.refused()), ""},
		{"mqtt_connections_waiting", "Connections that have not sent their CONNECT yet.", "gauge", float64(waiting), ""},
		{"mqtt_connections_waiting_closed_total", "Connections closed because too many were waiting for their CONNECT.", "counter", float64(evicted), ""},
		{"mqtt_uptime_seconds", "Seconds since the broker started.", "gauge", time.Since(b.started).Seconds(), ""},
		{"go_goroutines", "Goroutines.", "gauge", float64(runtime.NumGoroutine()), ""},
		{"go_memstats_heap_inuse_bytes", "Heap bytes in use.", "gauge", float64(ms.HeapInuse), ""},
	}
}

// writeMetrics writes the Prometheus text format (version 0.0.4).
func (b *Broker) writeMetrics(w io.Writer) {
	var sb strings.Builder
	for _, m := range b.metrics() {
		if m.help != "" {
			fmt.Fprintf(&sb, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.kind)
		}
		fmt.Fprintf(&sb, "%s%s %v\n", m.name, m.labels, m.value)
	}
	_, _ = io.WriteString(w, sb.String())
	if f := b.extraMetrics.Load(); f != nil {
		(*f)(w)
	}
}

// AddMetrics makes the metrics endpoint also write what f writes (in the
// Prometheus text format), after the broker's own samples: the bridges'.
func (b *Broker) AddMetrics(f func(io.Writer)) { b.extraMetrics.Store(&f) }

// refused counts connections refused at max_connections on all listeners.
func (b *Broker) refused() int64 {
	var n int64
	for _, bd := range b.bound {
		if bd.limit != nil {
			n += bd.limit.refused.Load()
		}
	}
	return n
}
