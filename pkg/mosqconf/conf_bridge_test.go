// SPDX-License-Identifier: Apache-2.0

package mosqconf

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/acl"
)

// TestConfBridgeSections: connection sections become Conf.Bridges; the
// general directives around them keep applying to the broker; warnings
// and errors name file and line.
func TestConfBridgeSections(t *testing.T) {
	c, err := ParseConf("m.conf", strings.NewReader(`listener 1883
connection cloud
address 127.0.0.1:1884
topic sensors/# out 1
start_type once
max_queued_messages 50
connection other
address 127.0.0.1:1885
topic # in
`))
	require.NoError(t, err)
	require.Len(t, c.Bridges, 2)
	require.Equal(t, "cloud", c.Bridges[0].Name)
	require.Equal(t, 2, c.Bridges[0].ConfigLine)
	require.Equal(t, 50, c.MaxQueuedMessages, "a general directive inside a section is the broker's")
	require.Equal(t, []string{"m.conf:5: start_type once is not supported by mqtt broker, the bridge starts automatically"}, c.Warnings)

	_, err = ParseConf("m.conf", strings.NewReader("connection cloud\naddress h\ntopic # out 7\n"))
	require.EqualError(t, err, "m.conf:3: Invalid bridge topic QoS level '7'")
	_, err = ParseConf("m.conf", strings.NewReader("listener 1883\nconnection cloud\ntopic #\n"))
	require.EqualError(t, err, "m.conf:2: bridge cloud has no address")
	var fe *acl.FileError
	require.ErrorAs(t, err, &fe)
	require.Equal(t, acl.FileError{File: "m.conf", Line: 2, Msg: "bridge cloud has no address"}, *fe)
	_, err = ParseConf("m.conf", strings.NewReader("listener 1883\nconnection a\ntopic #\nconnection b\naddress h\n"))
	require.ErrorAs(t, err, &fe)
	require.Equal(t, acl.FileError{File: "m.conf", Line: 2, Msg: "bridge a has no address"}, *fe, "found when the next section starts")
	_, err = ParseConf("m.conf", strings.NewReader("topic #\n"))
	require.ErrorContains(t, err, "m.conf:1: topic: Invalid bridge configuration")
}
