// SPDX-License-Identifier: Apache-2.0

package bridge_test

import (
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/bridge"
	"github.com/mqttkit/mqttkit/pkg/mosqconf"
)

// docBlock returns the first fenced code block of docs/broker.md that
// contains marker.
func docBlock(t *testing.T, marker string) string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/broker.md")
	require.NoError(t, err)
	parts := strings.Split(string(doc), "```")
	for i := 1; i < len(parts); i += 2 {
		if strings.Contains(parts[i], marker) {
			return strings.TrimPrefix(parts[i], "\n")
		}
	}
	t.Fatalf("docs/broker.md has no code block with %q", marker)
	return ""
}

// TestDocsHiveMQExample: the HiveMQ bridge example of docs/broker.md is a
// valid configuration and configures what the text around it says: TLS to
// broker.hivemq.com:8883 verified with the OS's CAs, the client id, and
// sensors/# out and cmd/# in under workshop/pi7/ on the remote.
func TestDocsHiveMQExample(t *testing.T) {
	text := docBlock(t, "connection hivemq")
	conf, err := mosqconf.ParseConf("edge.conf", strings.NewReader(text))
	require.NoError(t, err, text)
	require.Empty(t, conf.Warnings)
	require.Len(t, conf.Listeners, 1)
	require.Equal(t, 1883, conf.Listeners[0].Port)
	require.True(t, conf.Config().AllowAnonymous)
	require.Len(t, conf.Bridges, 1)
	c := conf.Bridges[0]
	require.Equal(t, "hivemq", c.Name)
	require.Equal(t, []bridge.Address{{Host: "broker.hivemq.com", Port: 8883}}, c.Addresses)
	require.True(t, c.TLS())
	require.Equal(t, "/etc/ssl/certs", c.CAPath)
	require.Empty(t, c.CAFile)
	require.False(t, c.Insecure)
	require.Equal(t, "workshop-pi-7", c.RemoteClientID)
	require.Equal(t, []bridge.Topic{
		{Pattern: "sensors/#", Direction: bridge.Out, QoS: 1, RemotePrefix: "workshop/pi7/"},
		{Pattern: "cmd/#", Direction: bridge.In, QoS: 1, RemotePrefix: "workshop/pi7/"},
	}, c.Topics)
	// What the text says about the topics.
	out, ok := c.Topics[0].ToRemote("sensors/temp")
	require.True(t, ok)
	require.Equal(t, "workshop/pi7/sensors/temp", out)
	in, ok := c.Topics[1].ToLocal("workshop/pi7/cmd/led")
	require.True(t, ok)
	require.Equal(t, "cmd/led", in)
}
