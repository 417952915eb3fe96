// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
	"github.com/mqttkit/mqttkit/pkg/sensor"
)

// The sensor's readings, as the real mosquitto_sub receives them through
// a real mosquitto broker, are consecutive readings of the seeded sequence,
// for MQTT 5 and 3.1.1 and every QoS.
func TestInteropSensorToMosquittoSub(t *testing.T) {
	subBin := interop.Require(t, "mosquitto_sub")
	m := interop.StartMosquitto(t)
	port := strconv.Itoa(m.Port)

	// The first 2,000 readings of seed 42, as the course prints them.
	g, err := sensor.NewGenerator(sensor.DefaultConfig(42), 1)
	require.NoError(t, err)
	var seq []string
	for range 2000 {
		seq = append(seq, "Temperature: "+sensor.FormatValue(g.Next(time.Time{}))+"°C")
	}

	for _, tc := range []struct{ version, qos string }{{"5", "0"}, {"311", "1"}, {"5", "2"}} {
		t.Run("V"+tc.version+"/q"+tc.qos, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sub := exec.CommandContext(ctx, subBin, "-h", "127.0.0.1", "-p", port, "-t", "sensor/temp", "-q", tc.qos, "-C", "5")
			var subOut strings.Builder
			sub.Stdout = &subOut
			require.NoError(t, sub.Start())

			d, _, _, _ := sensorDeps(t)
			o, err := parseSensor(t, d, "-h", "127.0.0.1", "-p", port, "-V", tc.version, "-q", tc.qos, "--interval", "10ms", "--seed", "42")
			require.NoError(t, err)
			sctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- runSimulateSensor(sctx, d, o) }()

			require.NoError(t, sub.Wait(), "mosquitto_sub -C 5")
			stop()
			require.NoError(t, <-done)

			got := strings.Split(strings.TrimSuffix(subOut.String(), "\n"), "\n")
			require.Len(t, got, 5)
			found := false
			for i := 0; i+len(got) <= len(seq) && !found; i++ {
				found = slices.Equal(seq[i:i+len(got)], got)
			}
			require.True(t, found, "mosquitto_sub got %q, not consecutive readings of seed 42", got)
		})
	}
}
