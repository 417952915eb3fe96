// SPDX-License-Identifier: Apache-2.0

package mosqconf

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/pkg/acl"
	"github.com/mqttkit/mqttkit/pkg/broker"
	"github.com/mqttkit/mqttkit/pkg/logdest"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
	"github.com/stretchr/testify/require"
)

func parseConf(t *testing.T, text string) *Conf {
	t.Helper()
	c, err := ParseConf("m.conf", strings.NewReader(text))
	require.NoError(t, err)
	return c
}

func TestParseConfDefaults(t *testing.T) {
	c := parseConf(t, "")
	require.Equal(t, NewConf(), c)
	require.True(t, c.LocalOnly())
	require.True(t, c.Config().AllowAnonymous)
	require.Equal(t, 20, c.MaxInflightMessages)
	require.Equal(t, 1000, c.MaxQueuedMessages)
	require.Equal(t, 0, c.MessageSizeLimit)
	require.True(t, c.RetainAvailable)
	require.Equal(t, 10*time.Second, c.SysInterval)
	require.Equal(t, 30*time.Minute, c.AutosaveInterval)
}

func TestParseConfAnonymous(t *testing.T) {
	tests := []struct {
		name      string
		conf      string
		localOnly bool
		anonymous bool
	}{
		{"no config", "", true, true},
		{"course config without listener", "allow_anonymous false\npassword_file /etc/mosquitto/passwd\n", true, false},
		{"listener refuses anonymous by default", "listener 1883\n", false, false},
		{"listener with password file", "listener 1883\npassword_file p\n", false, false},
		{"listener allowing anonymous", "listener 1883\nallow_anonymous true\n", false, true},
		{"allow_anonymous is global", "allow_anonymous true\nlistener 1883\nlistener 1884\n", false, true},
		{"port makes a listener", "port 1884\n", false, false},
		{"bind_address makes a listener", "bind_address 127.0.0.1\n", false, false},
		{"explicit true in local-only mode", "allow_anonymous 1\n", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := parseConf(t, tt.conf)
			require.Equal(t, tt.localOnly, c.LocalOnly())
			require.Equal(t, tt.anonymous, c.Config().AllowAnonymous)
		})
	}
}

func TestParseConfListeners(t *testing.T) {
	c := parseConf(t, `# defaults before any listener go to the default listener
port 1884
bind_address 127.0.0.1
max_connections 10

listener 8883 0.0.0.0
cafile /etc/ca.pem
certfile /etc/server.pem
keyfile /etc/server.key
require_certificate true
use_identity_as_username true

listener 8080
protocol websockets
max_connections 5

listener 0 /run/mqtt.sock
listener 9001 ::1
protocol websockets
certfile c.pem
keyfile k.pem
`)
	require.Equal(t, []ConfListener{
		{Port: 8883, Bind: "0.0.0.0", CAFile: "/etc/ca.pem", CertFile: "/etc/server.pem", KeyFile: "/etc/server.key",
			RequireCertificate: true, UseIdentityAsUsername: true, MaxConnections: -1, File: "m.conf", Line: 6},
		{Port: 8080, WebSockets: true, MaxConnections: 5, File: "m.conf", Line: 13},
		{Socket: "/run/mqtt.sock", MaxConnections: -1, File: "m.conf", Line: 17},
		{Port: 9001, Bind: "::1", WebSockets: true, CertFile: "c.pem", KeyFile: "k.pem", MaxConnections: -1, File: "m.conf", Line: 18},
		{Port: 1884, Bind: "127.0.0.1", MaxConnections: 10, File: "m.conf", Line: 2},
	}, c.Listeners)
	require.Equal(t, "0.0.0.0:8883", c.Listeners[0].Address())
	require.Equal(t, ":8080", c.Listeners[1].Address())
	require.Equal(t, "/run/mqtt.sock", c.Listeners[2].Address())
	require.Equal(t, "[::1]:9001", c.Listeners[3].Address())
	require.True(t, c.Listeners[0].TLS())
	require.False(t, c.Listeners[1].TLS())
	require.True(t, c.Listeners[3].TLS())
	require.False(t, c.LocalOnly())
}

func TestParseConfDefaultListenerFromTLSOptions(t *testing.T) {
	// mosquitto: TLS options before any listener create the default
	// listener on port 1883, all interfaces.
	c := parseConf(t, "certfile s.pem\nkeyfile s.key\n")
	require.Equal(t, []ConfListener{{Port: 1883, CertFile: "s.pem", KeyFile: "s.key", MaxConnections: -1, File: "m.conf", Line: 1}}, c.Listeners)
}

func TestParseConfGlobals(t *testing.T) {
	c := parseConf(t, `listener 1883
allow_anonymous false
password_file /etc/mosquitto/passwd
acl_file   /etc/mosquitto/acl   
persistence true
persistence_location /var/lib/mosquitto/
autosave_interval 60
max_inflight_messages 0
max_queued_messages 5000
message_size_limit 1048576
retain_available false
sys_interval 0
log_type error
log_type all
per_listener_settings false
`)
	no := false
	want := NewConf()
	want.Listeners = []ConfListener{{Port: 1883, MaxConnections: -1, File: "m.conf", Line: 1}}
	want.AllowAnonymous = &no
	want.PasswordFile = "/etc/mosquitto/passwd"
	want.ACLFile = "/etc/mosquitto/acl"
	want.Persistence = true
	want.PersistenceLocation = "/var/lib/mosquitto/"
	want.AutosaveInterval = time.Minute
	want.MaxInflightMessages = 0
	want.MaxQueuedMessages = 5000
	want.MessageSizeLimit = 1 << 20
	want.RetainAvailable = false
	want.SysInterval = 0
	want.LogTypes = []string{"error", "all"}
	require.Equal(t, want, c)
}

// per_listener_settings true: the security options after a listener line
// are that listener's; before the first one, the default listener's.
func TestParseConfPerListenerSettings(t *testing.T) {
	c := parseConf(t, `per_listener_settings true
port 1883
allow_anonymous true
listener 8883 0.0.0.0
password_file pw
acl_file acl
allow_zero_length_clientid false
auto_id_prefix dev-
listener 9001
`)
	yes := true
	no := false
	require.True(t, c.PerListenerSettings)
	require.Equal(t, ConfSecurity{}, c.ConfSecurity)
	require.Len(t, c.Listeners, 3)
	require.Equal(t, 8883, c.Listeners[0].Port)
	require.Equal(t, ConfSecurity{PasswordFile: "pw", ACLFile: "acl", AllowZeroLengthClientID: &no, AutoIDPrefix: "dev-"}, c.Listeners[0].Security)
	require.Equal(t, ConfSecurity{}, c.Listeners[1].Security)
	require.Equal(t, 1883, c.Listeners[2].Port, "the default listener comes last")
	require.Equal(t, ConfSecurity{AllowAnonymous: &yes}, c.Listeners[2].Security)

	cfg := c.Config()
	require.False(t, cfg.AllowAnonymous)
	require.Equal(t, &broker.SecurityConfig{PasswordFile: "pw", ACLFile: "acl", RefuseZeroLengthClientID: true, AutoIDPrefix: "dev-"}, cfg.Listeners[0].Security)
	require.Equal(t, &broker.SecurityConfig{}, cfg.Listeners[1].Security, "nothing set: anonymous refused, as in mosquitto")
	require.Equal(t, &broker.SecurityConfig{AllowAnonymous: true}, cfg.Listeners[2].Security)
	sec := cfg.Security()
	require.Len(t, sec.PerListener, 3)
	require.Equal(t, cfg.Listeners[0].Security, sec.PerListener[0])

	// Without per_listener_settings the same options are global.
	c = parseConf(t, "listener 1\nallow_anonymous true\nlistener 2\nauto_id_prefix x-\n")
	require.Equal(t, ConfSecurity{AllowAnonymous: &yes, AutoIDPrefix: "x-"}, c.ConfSecurity)
	cfg = c.Config()
	require.Nil(t, cfg.Listeners[0].Security)
	require.Equal(t, "x-", cfg.AutoIDPrefix)
}

func TestParseConfLenientSyntax(t *testing.T) {
	c := parseConf(t, "  # indented comment\n\tlistener\t1883   \r\n\n   \nallow_anonymous\ttrue\r\n")
	require.Len(t, c.Listeners, 1)
	require.Equal(t, 1883, c.Listeners[0].Port)
	require.True(t, c.Config().AllowAnonymous)
}

func TestParseConfWarnings(t *testing.T) {
	// Debian's /etc/mosquitto/mosquitto.conf, minus include_dir.
	c := parseConf(t, `pid_file /run/mosquitto/mosquitto.pid

persistence true
persistence_location /var/lib/mosquitto/

log_dest file /var/log/mosquitto/mosquitto.log
log_dest stderr
auth_opt_backend files
tls_version tlsv1.2
`)
	require.Equal(t, []string{
		"m.conf:8: auth_opt_backend is not supported by mqtt broker, ignored",
	}, c.Warnings)
	require.Equal(t, "tlsv1.2", c.Listeners[0].TLSVersion, "a listener option before any listener: the default listener")
	require.Equal(t, "/run/mosquitto/mosquitto.pid", c.PIDFile)
	require.Equal(t, []logdest.Dest{{Kind: "file", Path: "/var/log/mosquitto/mosquitto.log"}, {Kind: "stderr"}}, c.Log.Dests)
	require.True(t, c.Persistence)
	require.Equal(t, "/var/lib/mosquitto/", c.PersistenceLocation)
}

func TestParseConfErrors(t *testing.T) {
	tests := []struct {
		name string
		conf string
		line int
		msg  string
	}{
		{"unknown variable", "listener 1883\nfoo bar\n", 2, `Unknown configuration variable "foo"`},
		{"bad bool", "allow_anonymous yes\n", 1, `Invalid allow_anonymous value (yes)`},
		{"empty bool", "persistence\n", 1, `Empty persistence value in configuration`},
		{"bad int", "\nmax_inflight_messages abc\n", 2, `Invalid max_inflight_messages value (abc), must be a number from 0 to 65535`},
		{"int out of range", "max_inflight_messages 70000\n", 1, `Invalid max_inflight_messages value (70000), must be a number from 0 to 65535`},
		{"negative queue", "max_queued_messages -1\n", 1, `Invalid max_queued_messages value (-1), must be a number from 0 to 2147483647`},
		{"message size", "message_size_limit 268435456\n", 1, `Invalid message_size_limit value (268435456), must be between 0 and 268435455`},
		{"duplicate password_file", "listener 1883\npassword_file a\npassword_file b\n", 3, `Duplicate password_file value in configuration`},
		{"duplicate certfile on a listener", "listener 1\ncertfile a\ncertfile b\n", 3, `Duplicate certfile value in configuration`},
		{"empty password_file", "password_file\n", 1, `Empty password_file value in configuration`},
		{"empty listener", "listener\n", 1, `Empty listener value in configuration`},
		{"listener port too big", "listener 70000\n", 1, `Invalid port value (70000)`},
		{"listener port not a number", "listener x\n", 1, `Invalid port value (x)`},
		{"listener with extra words", "listener 1 a b\n", 1, `Invalid listener value (1 a b)`},
		{"unix listener without path", "listener 0\n", 1, `A listener with port 0 must provide a Unix socket path`},
		{"port zero", "port 0\n", 1, `Invalid port value (0)`},
		{"bad protocol", "listener 1\nprotocol http\n", 2, `Invalid protocol value (http)`},
		{"bad log_type", "log_type verbose\n", 1, `Invalid log_type value (verbose)`},
		{"bad tls_version", "listener 1\ntls_version tlsv1.0\n", 2, `Invalid tls_version value (tlsv1.0), must be tlsv1.3, tlsv1.2 or tlsv1.1`},
		{"cipher classes", "listener 1\nciphers HIGH:!aNULL\n", 2, `ciphers: HIGH, !aNULL: not a TLS 1.2 cipher suite name mqtt broker knows (give names such as ECDHE-RSA-AES128-GCM-SHA256; OpenSSL classes like HIGH or !aNULL are not understood)`},
		{"bad expiration", "persistent_client_expiration 14\n", 1, `Invalid persistent_client_expiration duration (14), must be a number followed by h, d, w, m or y`},
		{"max_keepalive too big", "max_keepalive 65536\n", 1, `Invalid max_keepalive value (65536)`},
		{"bad log_dest", "log_dest journal\n", 1, `Invalid log_dest value (journal)`},
		{"log_dest file without path", "log_dest file\n", 1, `Empty "log_dest file" value in configuration`},
		{"max_packet_size too small", "max_packet_size 10\n", 1, `Invalid max_packet_size value (10), must be between 20 and 268435460`},
		{"per_listener_settings after a security option", "allow_anonymous true\nper_listener_settings true\n", 2, `per_listener_settings must be set before any other security settings`},
		{"duplicate acl_file on one listener", "per_listener_settings true\nlistener 1\nacl_file a\nlistener 2\nacl_file b\nacl_file c\n", 6, `Duplicate acl_file value in configuration`},
		{"certfile without keyfile", "\nlistener 8883\ncertfile s.pem\n", 2, `Both certfile and keyfile must be provided to enable TLS on the listener on :8883`},
		{"keyfile without certfile on default listener", "\n\nkeyfile s.key\n", 3, `Both certfile and keyfile must be provided to enable TLS on the listener on :1883`},
		{"missing include_dir", "include_dir /nonexistent/conf.d\n", 1, `Unable to open include_dir "/nonexistent/conf.d": open /nonexistent/conf.d: no such file or directory`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConf("m.conf", strings.NewReader(tt.conf))
			var fe *acl.FileError
			require.True(t, errors.As(err, &fe), "%v", err)
			require.Equal(t, acl.FileError{File: "m.conf", Line: tt.line, Msg: tt.msg}, *fe)
		})
	}
}

func TestParseConfIncludeDir(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600))
	}
	// mosquitto's order: 00, 01, A, a, B, b.
	for _, n := range []string{"b", "A", "01", "a", "B", "00"} {
		write(n+".conf", "log_type "+map[string]string{"00": "error", "01": "warning", "A": "notice", "a": "information", "B": "debug", "b": "all"}[n]+"\n")
	}
	write("ignored.txt", "garbage here\n")
	require.NoError(t, os.Mkdir(filepath.Join(dir, "sub.conf"), 0o700))

	c := parseConf(t, "listener 1883\ninclude_dir "+dir+"\nsys_interval 5\n")
	require.Equal(t, []string{"error", "warning", "notice", "information", "debug", "all"}, c.LogTypes)
	require.Equal(t, 5*time.Second, c.SysInterval)

	t.Run("errors name the included file", func(t *testing.T) {
		write("c.conf", "\nallow_anonymous maybe\n")
		_, err := ParseConf("m.conf", strings.NewReader("include_dir "+dir+"\n"))
		require.EqualError(t, err, filepath.Join(dir, "c.conf")+":2: Invalid allow_anonymous value (maybe)")
	})
	t.Run("only from the main file", func(t *testing.T) {
		require.NoError(t, os.Remove(filepath.Join(dir, "c.conf")))
		write("d.conf", "include_dir "+dir+"\n")
		_, err := ParseConf("m.conf", strings.NewReader("include_dir "+dir+"\n"))
		require.EqualError(t, err, filepath.Join(dir, "d.conf")+":1: include_dir is only valid in the main configuration file")
	})
}

func TestLoadConf(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mosquitto.conf")
	require.NoError(t, os.WriteFile(path, []byte("listener 1883\nallow_anonymous false\npassword_file pw\nbogus 1\n"), 0o600))
	_, err := LoadConf(path)
	require.EqualError(t, err, path+`:4: Unknown configuration variable "bogus"`)

	_, err = LoadConf(filepath.Join(dir, "missing.conf"))
	require.ErrorIs(t, err, os.ErrNotExist)
}

// FuzzParseConf checks that no input panics the parser, that errors name a
// line of the input and that accepted files give valid listeners.
func FuzzParseConf(f *testing.F) {
	f.Add("listener 1883\nallow_anonymous false\npassword_file /etc/pw\n")
	f.Add("port 1884\ncertfile a\nkeyfile b\nlistener 0 /tmp/s\nprotocol websockets\n")
	f.Add("max_inflight_messages 9999999999999999999999\nlog_type all\n")
	f.Fuzz(func(t *testing.T, text string) {
		if strings.Contains(text, "include_dir") {
			return // reads the file system
		}
		c, err := ParseConf("f", strings.NewReader(text))
		if err != nil {
			var fe *acl.FileError
			require.True(t, errors.As(err, &fe), "%T %v", err, err)
			require.GreaterOrEqual(t, fe.Line, 1)
			require.LessOrEqual(t, fe.Line, strings.Count(text, "\n")+1)
			return
		}
		for _, l := range c.Listeners {
			if l.Socket == "" {
				require.True(t, l.Port >= 1 && l.Port <= 65535, "port %d", l.Port)
			}
			require.Equal(t, l.CertFile == "", l.KeyFile == "")
		}
		require.True(t, c.MaxInflightMessages >= 0 && c.MaxInflightMessages <= 65535)
	})
}

func TestConfConfig(t *testing.T) {
	c := parseConf(t, `listener 8883
certfile s.pem
keyfile s.key
cafile ca.pem
require_certificate true
use_identity_as_username true
max_connections 5
listener 9001 127.0.0.1
protocol websockets
listener 0 /run/mqtt.sock
password_file pw
acl_file acl
persistence true
max_inflight_messages 10
max_queued_messages 100
message_size_limit 1000
retain_available false
sys_interval 0
`)
	cfg := c.Config()
	require.Equal(t, []broker.Listener{
		{Address: ":8883", TLS: &tlsfiles.Files{CertFile: "s.pem", KeyFile: "s.key", CAFile: "ca.pem", RequireCertificate: true}, UseIdentityAsUsername: true, MaxConnections: 5},
		{Address: "127.0.0.1:9001", Protocol: "websockets"},
		{Address: "/run/mqtt.sock", Protocol: "unix"},
	}, cfg.Listeners)
	require.Equal(t, broker.SecurityConfig{PasswordFile: "pw", ACLFile: "acl"}, cfg.Security())
	require.Equal(t, ".", cfg.PersistenceDir, "persistence without location: the working directory")
	require.Equal(t, 10, cfg.MaxInflight)
	require.Equal(t, 100, cfg.MaxQueued)
	require.Equal(t, 1000, cfg.MessageSizeLimit)
	require.True(t, cfg.DisableRetain)
	require.Negative(t, cfg.SysInterval, "sys_interval 0 turns $SYS off")

	d := NewConf().Config()
	require.True(t, d.AllowAnonymous)
	require.Equal(t, 10*time.Second, d.SysInterval)
	require.Empty(t, d.PersistenceDir)
}

func TestConfLogLevel(t *testing.T) {
	for _, tt := range []struct {
		conf string
		want slog.Level
	}{
		{"", slog.LevelInfo},
		{"log_type error\n", slog.LevelError},
		{"log_type error\nlog_type warning\n", slog.LevelWarn},
		{"log_type notice\n", slog.LevelInfo},
		{"log_type error\nlog_type all\n", slog.LevelDebug},
		{"log_type subscribe\n", slog.LevelDebug},
		{"log_type none\n", slog.Level(12)},
	} {
		require.Equal(t, tt.want, parseConf(t, tt.conf).LogLevel(), tt.conf)
	}
}

func TestParseConfSessionOptions(t *testing.T) {
	c := parseConf(t, "persistent_client_expiration 2w\nmax_keepalive 60\nqueue_qos0_messages true\nmax_queued_bytes 1000000\nupgrade_outgoing_qos true\n")
	require.Equal(t, 14*24*time.Hour, c.PersistentClientExpiration)
	cfg := c.Config()
	require.Equal(t, 14*24*time.Hour, cfg.PersistentClientExpiration)
	require.Equal(t, 60, cfg.MaxKeepalive)
	require.True(t, cfg.QueueQoS0Messages)
	require.Equal(t, 1000000, cfg.MaxQueuedBytes)
	require.True(t, cfg.UpgradeOutgoingQoS)
	require.Empty(t, c.Warnings, "applied by the delivery engine")
	require.Zero(t, NewConf().Config().MaxKeepalive, "65535, mosquitto's default, is no limit")
}

func TestConfMaximumQoS(t *testing.T) {
	c, err := ParseConf("m.conf", strings.NewReader("listener 1883\nlistener 1884\nmaximum_qos 0\nlistener 1885\nmaximum_qos 2\n"))
	require.NoError(t, err)
	ls := c.Config().Listeners
	require.Len(t, ls, 3)
	require.Nil(t, ls[0].MaximumQoS)
	require.NotNil(t, ls[1].MaximumQoS)
	require.Equal(t, byte(0), *ls[1].MaximumQoS)
	require.Nil(t, ls[2].MaximumQoS)
	_, err = ParseConf("m.conf", strings.NewReader("listener 1883\nmaximum_qos 3\n"))
	require.ErrorContains(t, err, "m.conf:2: Invalid maximum_qos value (3)")
}

func TestConfMountPoint(t *testing.T) {
	c, err := ParseConf("m.conf", strings.NewReader("listener 1883\nlistener 1884\nmount_point m/\n"))
	require.NoError(t, err)
	ls := c.Config().Listeners
	require.Equal(t, "", ls[0].MountPoint)
	require.Equal(t, "m/", ls[1].MountPoint)
	_, err = ParseConf("m.conf", strings.NewReader("listener 1883\nmount_point m/#\n"))
	require.ErrorContains(t, err, "m.conf:2: Invalid mount_point (m/#)")
}
