// SPDX-License-Identifier: Apache-2.0

package loadgen

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mqttkit/mqttkit/internal/bench/wire"
)

// IdleConfig configures a crowd of idle connections.
type IdleConfig struct {
	Addr        string
	N           int
	Concurrency int    // connections being set up at once; default 64
	KeepAlive   uint16 // seconds; default 600 so no PINGREQ is needed during a run
	// Raw opens TCP connections that send nothing at all: connections
	// waiting for their CONNECT (half-open in the broker's sense).
	Raw bool
}

// IdleConns is a set of open, idle MQTT 3.1.1 connections.
type IdleConns struct {
	conns    []net.Conn
	Failed   int     // connections that could not be opened
	FirstErr error   // why the first failure happened
	Seconds  float64 // time to open them all
}

// Len returns how many connections are open.
func (ic *IdleConns) Len() int { return len(ic.conns) }

// Close closes every connection.
func (ic *IdleConns) Close() {
	for _, c := range ic.conns {
		c.Close()
	}
	ic.conns = nil
}

// Idle opens N connections, each a bare socket that sent a minimal
// CONNECT and got a successful CONNACK (with Raw: that sent nothing), and
// keeps them open until Close.
// A raw socket per client keeps the load generator's own cost tiny.
func Idle(ctx context.Context, c IdleConfig) (*IdleConns, error) {
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.KeepAlive == 0 {
		c.KeepAlive = 600
	}
	start := time.Now()
	ic := &IdleConns{conns: make([]net.Conn, 0, c.N)}
	var (
		mu   sync.Mutex
		next atomic.Int64
		wg   sync.WaitGroup
	)
	prefix := "bench-idle-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	for w := 0; w < c.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= c.N || ctx.Err() != nil {
					return
				}
				conn, err := openIdle(ctx, c.Addr, prefix+strconv.Itoa(i), c.KeepAlive, c.Raw)
				mu.Lock()
				if err != nil {
					if ic.FirstErr == nil {
						ic.FirstErr = err
					}
					ic.Failed++
				} else {
					ic.conns = append(ic.conns, conn)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	ic.Seconds = time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		ic.Close()
		return nil, err
	}
	return ic, nil
}

func openIdle(ctx context.Context, addr, id string, keepAlive uint16, raw bool) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil || raw {
		return conn, err
	}
	dl, _ := ctx.Deadline()
	_ = conn.SetDeadline(dl)
	if _, err := conn.Write(wire.ConnectPacket(id, keepAlive)); err != nil {
		conn.Close()
		return nil, err
	}
	if err := wire.ReadConnack(conn); err != nil {
		conn.Close()
		return nil, fmt.Errorf("client %s: %w", id, err)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}
