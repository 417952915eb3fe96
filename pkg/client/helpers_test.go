// SPDX-License-Identifier: Apache-2.0

package client

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
	"github.com/mqttkit/mqttkit/internal/testbroker"
)

// relay copies between a and b until either side ends, then closes both.
func relay(a, b net.Conn) {
	var once sync.Once
	done := func() { once.Do(func() { a.Close(); b.Close() }) }
	go func() { _, _ = io.Copy(a, b); done() }()
	_, _ = io.Copy(b, a)
	done()
}

// proxy accepts connections on l and relays each to backend (a TCP
// address). With a TLS listener this is a TLS-terminating front end for
// the test broker. It stops when the test ends.
func proxy(t *testing.T, l net.Listener, backend string) string {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				if tc, ok := c.(*tls.Conn); ok {
					_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
					if err := tc.Handshake(); err != nil {
						c.Close()
						return
					}
					_ = tc.SetDeadline(time.Time{})
				}
				bc, err := net.Dial("tcp", backend)
				if err != nil {
					c.Close()
					return
				}
				relay(c, bc)
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().String()
}

// wsProxy serves MQTT over WebSocket on path and relays to backend. It
// records the subprotocols clients asked for. With tlsCfg it serves wss.
type wsProxy struct {
	URL     string
	Port    int
	mu      sync.Mutex
	asked   [][]string
	srv     *httptest.Server
	backend string
}

func newWSProxy(t *testing.T, path, backend string, tlsCfg *tls.Config) *wsProxy {
	t.Helper()
	p := &wsProxy{backend: backend}
	up := websocket.Upgrader{Subprotocols: []string{"mqtt"}}
	mux := http.NewServeMux()
	var wg sync.WaitGroup
	mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		p.mu.Lock()
		p.asked = append(p.asked, websocket.Subprotocols(r))
		p.mu.Unlock()
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		bc, err := net.Dial("tcp", backend)
		if err != nil {
			ws.Close()
			return
		}
		wg.Add(1)
		defer wg.Done()
		relay(&wsConn{ws: ws}, bc)
	})
	p.srv = httptest.NewUnstartedServer(mux)
	if tlsCfg != nil {
		p.srv.TLS = tlsCfg
		p.srv.StartTLS()
	} else {
		p.srv.Start()
	}
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
		wg.Wait()
	})
	_, port, _ := net.SplitHostPort(p.srv.Listener.Addr().String())
	p.Port, _ = strconv.Atoi(port)
	return p
}

func (p *wsProxy) subprotocols() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([][]string(nil), p.asked...)
}

// silent accepts connections and never answers, like a firewall that
// lets the SYN through or a hung broker. Returns its port.
func silent(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return l.Addr().(*net.TCPAddr).Port
}

// dropper accepts connections, reads what the client sends and closes
// the connection on the first byte that is not an MQTT CONNECT, like
// mosquitto's plain listener does with a TLS ClientHello. Returns its port.
func dropper(t *testing.T) int {
	t.Helper()
	return rawmqtt.Serve(t, 5*time.Second, func(c net.Conn) {
		var b [1]byte
		_, _ = c.Read(b[:])
	})
}

// roundTrip connects with cfg, publishes one message and checks that the
// test broker got it.
func roundTrip(t *testing.T, b *testbroker.Broker, cfg *Config, topic string) {
	t.Helper()
	require.NoError(t, b.Record(topic))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg, nil)
	require.NoError(t, err)
	require.NoError(t, c.Publish(ctx, &Message{Topic: topic, Payload: []byte("hello"), QoS: 1}))
	require.NoError(t, c.Disconnect(ctx))
	waitFor(t, b, topic, "hello")
}

// waitFor waits until the test broker recorded a message with topic and payload.
func waitFor(t *testing.T, b *testbroker.Broker, topic, payload string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, m := range b.Messages() {
			if m.Topic == topic && m.Payload == payload {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker did not get %s: %v", topic, b.Messages())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return n
}
