// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/client"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    BrokerURL
		wantErr string
	}{
		{in: "mqtt://broker/a/b", want: BrokerURL{Scheme: "mqtt", Transport: client.TCP, Host: "broker", Topic: "a/b"}},
		{in: "MQTTS://broker:8884/t", want: BrokerURL{Scheme: "mqtts", Transport: client.TCP, TLS: true, Host: "broker", Port: 8884, Topic: "t"}},
		{in: "ws://h:8083/t", want: BrokerURL{Scheme: "ws", Transport: client.WebSocket, Host: "h", Port: 8083, Topic: "t"}},
		{in: "wss://h/t", want: BrokerURL{Scheme: "wss", Transport: client.WebSocket, TLS: true, Host: "h", Topic: "t"}},
		{in: "mqtt://alice@h/t", want: BrokerURL{Scheme: "mqtt", Transport: client.TCP, HasUser: true, Username: "alice", Host: "h", Topic: "t"}},
		{in: "mqtt://alice:s3:cr@t@h:1884/t", want: BrokerURL{Scheme: "mqtt", Transport: client.TCP, HasUser: true, HasPass: true, Username: "alice", Password: "s3:cr", Host: "t@h", Port: 1884, Topic: "t"}},
		{in: "mqtt://alice:@h/t", want: BrokerURL{Scheme: "mqtt", Transport: client.TCP, HasUser: true, HasPass: true, Username: "alice", Host: "h", Topic: "t"}},
		{in: "mqtt://h/sensors/+/temp", want: BrokerURL{Scheme: "mqtt", Transport: client.TCP, Host: "h", Topic: "sensors/+/temp"}},
		{in: "mqtt://h/a%20b", want: BrokerURL{Scheme: "mqtt", Transport: client.TCP, Host: "h", Topic: "a%20b"}},
		{in: "mqtt://[::1]:1884/t", want: BrokerURL{Scheme: "mqtt", Transport: client.TCP, Host: "::1", Port: 1884, Topic: "t"}},
		{in: "mqtt://[::1]/t", want: BrokerURL{Scheme: "mqtt", Transport: client.TCP, Host: "::1", Topic: "t"}},
		{in: "mqtt://h//t", want: BrokerURL{Scheme: "mqtt", Transport: client.TCP, Host: "h", Topic: "/t"}},
		{in: "http://h/t", wantErr: "unsupported URL scheme."},
		{in: "h/t", wantErr: "unsupported URL scheme."},
		{in: "tcp://h/t", wantErr: "unsupported URL scheme."},
		{in: "mqtt://h", wantErr: "Invalid URL for -L argument specified - topic missing."},
		{in: "mqtt://h/", wantErr: "Invalid URL for -L argument specified - topic missing."},
		{in: "mqtt:///t", wantErr: "host missing"},
		{in: "mqtt://u:p@/t", wantErr: "host missing"},
		{in: "mqtt://h:x/t", wantErr: "Invalid port given: x"},
		{in: "mqtt://h:70000/t", wantErr: "Invalid port given: 70000"},
		{in: "mqtt://h:0/t", wantErr: "Invalid port given: 0"},
		{in: "mqtt://[::1/t", wantErr: "missing ']'"},
		{in: "mqtt://[nope]/t", wantErr: "is not an IPv6 address"},
		{in: "mqtt://[::1]x/t", wantErr: "unexpected"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseURL(tc.in)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, *got)
		})
	}
}

func TestURLString(t *testing.T) {
	u, err := ParseURL("mqtts://alice:secret@[::1]:8883/a/b")
	require.NoError(t, err)
	require.Equal(t, "mqtts://alice:***@[::1]:8883/a/b", u.String())
	require.Equal(t, "mqtts://alice:secret@[::1]:8883/a/b", u.format(false))
}

// FuzzParseURL checks that ParseURL never panics, that what it accepts
// is complete, and that formatting an accepted URL parses back the same.
func FuzzParseURL(f *testing.F) {
	for _, s := range []string{
		"mqtt://broker/a/b", "mqtts://u:p@h:8883/t", "ws://h:8083/t", "wss://[::1]:8084/#",
		"mqtt://h", "mqtt://:1/t", "mqtt://h:99999/t", "x://h/t", "mqtt://a@b@c:1/t", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURL(s)
		if err != nil {
			require.Nil(t, u)
			require.NotEmpty(t, err.Error())
			return
		}
		require.NotEmpty(t, u.Host)
		require.NotEmpty(t, u.Topic)
		require.True(t, u.Port >= 0 && u.Port <= 65535)
		require.Contains(t, []string{"mqtt", "mqtts", "ws", "wss"}, u.Scheme)
		if strings.ContainsAny(u.Host, "@/[]") || strings.Contains(u.Username, ":") {
			return // not expressible in a canonical URL
		}
		again, err := ParseURL(u.format(false))
		require.NoError(t, err, u.format(false))
		require.Equal(t, u, again)
	})
}
