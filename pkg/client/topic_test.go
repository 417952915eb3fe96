// SPDX-License-Identifier: Apache-2.0

package client

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestValidateTopic(t *testing.T) {
	for _, tc := range []struct {
		topic string
		ok    bool
	}{
		{"a", true}, {"a/b/c", true}, {"/", true}, {"$SYS/x", true},
		{"", false}, {"a/#", false}, {"a/+/b", false}, {"a+", false},
		{"\xff", false}, {"a\x00b", false}, {strings.Repeat("a", 65536), false},
	} {
		err := ValidateTopic(tc.topic)
		require.Equal(t, tc.ok, err == nil, "topic %q: %v", tc.topic, err)
	}
}

func TestValidateFilter(t *testing.T) {
	for _, tc := range []struct {
		filter string
		ok     bool
	}{
		{"a", true}, {"#", true}, {"+", true}, {"a/+/b", true}, {"a/#", true}, {"+/+/#", true}, {"$share/g/a", true},
		{"", false}, {"a/#/b", false}, {"a+", false}, {"a/b#", false}, {"#/a", false}, {"\xfe", false},
	} {
		err := ValidateFilter(tc.filter)
		require.Equal(t, tc.ok, err == nil, "filter %q: %v", tc.filter, err)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]Version{"5": V5, "mqttv5": V5, "311": V311, "MQTTV311": V311, "31": V31, "mqttv31": V31} {
		v, err := ParseVersion(in)
		require.NoError(t, err)
		require.Equal(t, want, v)
	}
	_, err := ParseVersion("4")
	require.Error(t, err)
}

func TestConnectErrorText(t *testing.T) {
	require.Equal(t, "Connection Refused: not authorised.", (&ConnectError{Version: V311, Code: 5}).Error())
	require.Equal(t, "Connection Refused: unknown reason.", (&ConnectError{Version: V311, Code: 9}).Error())
	require.Equal(t, "Not authorized", (&ConnectError{Version: V5, Code: 135}).Error())
	require.Contains(t, (&ConnectError{Version: V5, Code: 132}).Error(), "Try connecting to an MQTT v5 broker")
}
