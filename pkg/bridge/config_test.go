// SPDX-License-Identifier: Apache-2.0

package bridge

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/acl"
)

func parseText(text string) (*Parser, []string, error) {
	p := &Parser{Hostname: "pi"}
	var warns []string
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		key, value, _ := strings.Cut(line, " ")
		handled, warn, err := p.Directive("b.conf", i+1, key, strings.TrimSpace(value))
		if !handled {
			return nil, nil, &acl.FileError{File: "b.conf", Line: i + 1, Msg: "not a bridge directive: " + key}
		}
		if err != nil {
			return nil, nil, err
		}
		if warn != "" {
			warns = append(warns, warn)
		}
	}
	return p, warns, p.Finish()
}

func TestParseDefaults(t *testing.T) {
	p, warns, err := parseText("connection cloud\naddress broker.example.com\ntopic #")
	require.NoError(t, err)
	require.Empty(t, warns)
	c := p.Bridges[0]
	require.Equal(t, []Address{{Host: "broker.example.com", Port: 1883}}, c.Addresses)
	require.Equal(t, []Topic{{Pattern: "#", Direction: Out}}, c.Topics)
	require.Equal(t, "pi.cloud", c.RemoteClientID)
	require.Equal(t, "local.pi.cloud", c.LocalClientID)
	require.Equal(t, byte(4), c.ProtocolVersion)
	require.True(t, c.TryPrivate)
	require.True(t, c.Notifications)
	require.True(t, c.OutgoingRetain)
	require.False(t, c.CleanSession)
	require.False(t, c.LocalClean())
	require.Equal(t, 60*time.Second, c.Keepalive)
	require.Equal(t, 5*time.Second, c.RestartTimeout)
	require.Equal(t, 30*time.Second, c.RestartCap)
	require.False(t, c.TLS())
	require.Equal(t, "$SYS/broker/connection/pi.cloud/state", c.StateTopic())
}

func TestParseAll(t *testing.T) {
	p, warns, err := parseText(`connection hivemq
addresses broker.hivemq.com:8883 [::1]:1884 10.0.0.1
round_robin true
topic sensors/# out 1 local/ remote/
topic "" in 2 cmd/led devices/pi/led
topic chat/+ both
remote_clientid pi-bridge
local_clientid pi-local
remote_username u
remote_password p
local_username lu
local_password lp
cleansession true
local_cleansession false
bridge_protocol_version mqttv50
try_private false
notifications false
notification_topic bridges/pi
notifications_local_only true
keepalive_interval 30
restart_timeout 10
start_type lazy
bridge_capath /etc/ssl/certs
bridge_insecure true
bridge_tls_version tlsv1.3
bridge_max_packet_size 1000
bridge_outgoing_retain false
bridge_attempt_unsubscribe false
bridge_bind_address 10.0.0.2
connection second
address localhost`)
	require.NoError(t, err)
	require.Len(t, p.Bridges, 2)
	c := p.Bridges[0]
	require.Equal(t, []Address{{"broker.hivemq.com", 8883}, {"::1", 1884}, {"10.0.0.1", 1883}}, c.Addresses)
	require.True(t, c.RoundRobin)
	require.Equal(t, []Topic{
		{Pattern: "sensors/#", Direction: Out, QoS: 1, LocalPrefix: "local/", RemotePrefix: "remote/"},
		{Pattern: "", Direction: In, QoS: 2, LocalPrefix: "cmd/led", RemotePrefix: "devices/pi/led"},
		{Pattern: "chat/+", Direction: Both},
	}, c.Topics)
	require.Equal(t, "pi-bridge", c.RemoteClientID)
	require.Equal(t, "pi-local", c.LocalClientID)
	require.Equal(t, []string{"u", "p", "lu", "lp"}, []string{c.RemoteUsername, c.RemotePassword, c.LocalUsername, c.LocalPassword})
	require.True(t, c.CleanSession)
	require.False(t, c.LocalClean())
	require.Equal(t, byte(5), c.ProtocolVersion)
	require.False(t, c.TryPrivate)
	require.False(t, c.Notifications)
	require.Equal(t, "bridges/pi", c.StateTopic())
	require.True(t, c.NotificationsLocalOnly)
	require.Equal(t, 30*time.Second, c.Keepalive)
	require.Equal(t, 10*time.Second, c.RestartTimeout)
	require.Zero(t, c.RestartCap)
	require.True(t, c.TLS())
	require.True(t, c.Insecure)
	require.Equal(t, "tlsv1.3", c.TLSVersion)
	require.Equal(t, 1000, c.MaxPacketSize)
	require.False(t, c.OutgoingRetain)
	require.Len(t, warns, 2)
	require.Contains(t, warns[0], "start_type lazy is not supported")
	require.Contains(t, warns[1], "bridge_bind_address is not supported")
	require.Equal(t, "pi.second", p.Bridges[1].RemoteClientID)
}

func TestParseErrors(t *testing.T) {
	for text, want := range map[string]string{
		"address localhost":                                                                    "Invalid bridge configuration",
		"connection a\naddress localhost:0":                                                    "Invalid port value (0)",
		"connection a\naddress localhost\ntopic # sideways":                                    "Invalid bridge topic direction 'sideways'",
		"connection a\naddress localhost\ntopic # out 3":                                       "Invalid bridge topic QoS level '3'",
		"connection a\naddress localhost\ntopic # out 1 a/# b/":                                "Invalid bridge topic local prefix 'a/#'",
		"connection a\naddress localhost\ntopic # out 1 a/ b/+":                                "Invalid bridge topic remote prefix 'b/+'",
		"connection a\naddress localhost\ntopic \"\" out":                                      "an empty pattern needs a prefix",
		"connection a\naddress localhost\ntopic a/#/b":                                         "Invalid bridge topic pattern",
		"connection a\naddress localhost\ncleansession maybe":                                  "Invalid cleansession value (maybe)",
		"connection a\naddress localhost\nbridge_protocol_version 6":                           "Invalid bridge_protocol_version value (6)",
		"connection a\naddress localhost\nkeepalive_interval x":                                "Invalid keepalive_interval value (x)",
		"connection a\naddress localhost\nrestart_timeout 0":                                   "Invalid restart_timeout value (0)",
		"connection a\naddress localhost\nrestart_timeout 30 5":                                "the cap is below the base",
		"connection a\naddress localhost\nstart_type often":                                    "Invalid start_type value (often)",
		"connection a\naddress localhost\nbridge_tls_version ssl3":                             "Invalid bridge_tls_version value (ssl3)",
		"connection a\naddress localhost\nremote_clientid x\nremote_clientid y":                "Duplicate remote_clientid value",
		"connection a\ntopic #":                                                                "bridge a has no address",
		"connection a\naddress h\nconnection a":                                                "Duplicate bridge name",
		"connection a\naddress h\nlocal_clientid x\nconnection b\naddress h\nlocal_clientid x": "local_clientid 'x' is not unique",
		"connection a\naddress h\nbridge_certfile c":                                           "both bridge_certfile and bridge_keyfile",
		"connection a\naddress h\nbridge_insecure true":                                        "need bridge_cafile or bridge_capath",
	} {
		_, _, err := parseText(text)
		require.Error(t, err, text)
		require.Contains(t, err.Error(), want, text)
	}
}

func TestTopicMapping(t *testing.T) {
	for _, c := range []struct {
		topic         Topic
		local, remote string
		outOK         bool
	}{
		{Topic{Pattern: "#", LocalPrefix: "local/topic/", RemotePrefix: "remote/topic/"}, "local/topic/some/t/h/i/n/g", "remote/topic/some/t/h/i/n/g", true},
		{Topic{Pattern: "prefix/#", LocalPrefix: "local2/topic/", RemotePrefix: "remote2/topic/"}, "local2/topic/something", "", false},
		{Topic{Pattern: "+/value", LocalPrefix: "local3/topic/", RemotePrefix: "remote3/topic/"}, "local3/topic/something/value", "remote3/topic/something/value", true},
		{Topic{Pattern: "ic/+", LocalPrefix: "local4/top", RemotePrefix: "remote4/tip"}, "local4/topic/something", "remote4/tipic/something", true},
		{Topic{Pattern: "", LocalPrefix: "cmd/led", RemotePrefix: "devices/pi/led"}, "cmd/led", "devices/pi/led", true},
		{Topic{Pattern: "a/b"}, "a/b", "a/b", true},
		{Topic{Pattern: "#"}, "$SYS/x", "", false},
	} {
		got, ok := c.topic.ToRemote(c.local)
		require.Equal(t, c.outOK, ok, c.local)
		require.Equal(t, c.remote, got, c.local)
		if ok {
			back, ok := c.topic.ToLocal(got)
			require.True(t, ok)
			require.Equal(t, c.local, back)
		}
	}
}

func TestIDs(t *testing.T) {
	var m ids
	require.Equal(t, uint16(1), m.next())
	require.Equal(t, uint16(2), m.next())
	m.free(1)
	require.Equal(t, uint16(3), m.next(), "the counter goes on, as mosquitto's")
	m.last = 65535
	require.Equal(t, uint16(1), m.next(), "wraps, skipping 0; 1 was free again")
	require.Equal(t, uint16(4), m.next(), "skips 2 and 3, still in use")
}
