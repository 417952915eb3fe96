// SPDX-License-Identifier: Apache-2.0

package loadgen

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/mqttkit/mqttkit/internal/bench/wire"
)

// WaitAccepting polls addr until a broker there answers a CONNECT with a
// successful CONNACK, and returns when it did. It retries every 200 µs,
// so start-up times are measured to well under a millisecond.
func WaitAccepting(ctx context.Context, addr string) error {
	var last error
	for {
		if err := tryConnect(addr); err == nil {
			return nil
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not accepting MQTT connections: %w (last error: %v)", addr, ctx.Err(), last)
		case <-time.After(200 * time.Microsecond):
		}
	}
}

func tryConnect(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := conn.Write(wire.ConnectPacket("bench-probe", 0)); err != nil {
		return err
	}
	if err := wire.ReadConnack(conn); err != nil {
		return err
	}
	_, _ = conn.Write([]byte{0xe0, 0}) // DISCONNECT
	return nil
}
