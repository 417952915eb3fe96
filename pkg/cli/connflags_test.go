// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"crypto/tls"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/internal/testcert"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/iostreams"
)

// connRun parses args as the connection flags of a command and returns
// the options and the client configuration clientConfig made.
type connRun struct {
	env       map[string]string
	stdin     string
	stdinBusy bool
	tty       func() (*os.File, error)
}

func (r connRun) parse(t *testing.T, args ...string) (*ConnOptions, *client.Config, string, error) {
	t.Helper()
	io, in, _, errOut := iostreams.Test()
	in.WriteString(r.stdin)
	io.Getenv = func(k string) string { return r.env[k] }
	d := newDeps(io)
	d.OpenTTY = r.tty
	if d.OpenTTY == nil {
		d.OpenTTY = func() (*os.File, error) { return nil, errors.New("no tty in tests") }
	}
	o := &ConnOptions{StdinBusy: r.stdinBusy}
	var cfg *client.Config
	app := newApp(d)
	app.Commands = []*cli.Command{{Name: "conn", Flags: connFlags(o), OnUsageError: onUsageError("conn"),
		Action: func(*cli.Context) error {
			var err error
			cfg, err = o.clientConfig(d)
			return err
		}}}
	err := app.Run(append([]string{"mqtt", "conn"}, args...))
	return o, cfg, errOut.String(), err
}

func parseConn(t *testing.T, args ...string) (*client.Config, error) {
	t.Helper()
	_, cfg, _, err := connRun{}.parse(t, args...)
	return cfg, err
}

func TestConnFlags(t *testing.T) {
	certs := testcert.WriteT(t)
	capath := t.TempDir()
	b, err := os.ReadFile(certs.CA)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(capath, "a1b2c3d4.0"), b, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(capath, "README"), []byte("not a cert"), 0o644))

	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, cfg *client.Config)
		wantErr string
	}{
		{name: "defaults", check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "localhost", c.Host)
			require.Equal(t, 1883, c.Port)
			require.Equal(t, client.V5, c.Version)
			require.True(t, c.Fallback311)
			require.EqualValues(t, 60, c.KeepAlive)
			require.True(t, c.CleanStart)
			require.Nil(t, c.TLS)
			require.Equal(t, client.TCP, c.Transport)
			require.Equal(t, 10*time.Second, c.ConnectTimeout)
			require.Nil(t, c.SessionExpiry)
			require.Nil(t, c.Will)
			require.Empty(t, c.ClientID)
		}},
		{name: "env", env: map[string]string{"MQTT_HOST": "envhost", "MQTT_PORT": "1999", "MQTT_USERNAME": "eu", "MQTT_PASSWORD": "ep", "MQTT_CLIENT_ID": "eid"},
			check: func(t *testing.T, c *client.Config) {
				require.Equal(t, "envhost", c.Host)
				require.Equal(t, 1999, c.Port)
				require.Equal(t, "eu", c.Username)
				require.Equal(t, "ep", c.Password)
				require.Equal(t, "eid", c.ClientID)
			}},
		{name: "flags beat env", args: []string{"-h", "fh", "-p", "2000", "-u", "fu", "-P", "fp", "-i", "fid"},
			env: map[string]string{"MQTT_HOST": "envhost", "MQTT_PORT": "1999", "MQTT_USERNAME": "eu", "MQTT_PASSWORD": "ep", "MQTT_CLIENT_ID": "eid"},
			check: func(t *testing.T, c *client.Config) {
				require.Equal(t, "fh", c.Host)
				require.Equal(t, 2000, c.Port)
				require.Equal(t, "fu", c.Username)
				require.Equal(t, "fp", c.Password)
				require.Equal(t, "fid", c.ClientID)
			}},
		{name: "bad MQTT_PORT", env: map[string]string{"MQTT_PORT": "x"}, wantErr: "Invalid port given in MQTT_PORT: x"},
		{name: "-V 311", args: []string{"-V", "311"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, client.V311, c.Version)
			require.False(t, c.Fallback311)
		}},
		{name: "-V 5 explicit", args: []string{"-V", "mqttv5"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, client.V5, c.Version)
			require.False(t, c.Fallback311)
		}},
		{name: "-V 31 makes up an id", args: []string{"-V", "31"}, check: func(t *testing.T, c *client.Config) {
			require.Regexp(t, `^mosq-[a-zA-Z0-9]{18}$`, c.ClientID)
		}},
		{name: "-V bad", args: []string{"-V", "4"}, wantErr: "Invalid protocol version argument given."},
		{name: "-k 0", args: []string{"-k", "0"}, wantErr: "Invalid keepalive given, it must be between 5 and 65535 inclusive."},
		{name: "-k 65536", args: []string{"-k", "65536"}, wantErr: "Invalid keepalive given"},
		{name: "-p 70000", args: []string{"-p", "70000"}, wantErr: "Invalid port given: 70000"},
		{name: "-i empty", args: []string{"-i", ""}, wantErr: "Invalid id."},
		{name: "-i -I", args: []string{"-i", "a", "-I", "b"}, wantErr: "-i and -I argument cannot be used together."},
		{name: "-I", args: []string{"-I", "pfx-"}, check: func(t *testing.T, c *client.Config) {
			require.True(t, strings.HasPrefix(c.ClientID, "pfx-"))
			require.Greater(t, len(c.ClientID), len("pfx-"))
		}},
		{name: "-P without -u in v3", args: []string{"-V", "311", "-P", "x"}, wantErr: "Problem setting username and/or password."},
		{name: "-P without -u in v5", args: []string{"-P", "x"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "x", c.Password)
			require.Empty(t, c.Username)
		}},
		{name: "empty password is sent", args: []string{"-u", "a", "-P", ""}, check: func(t *testing.T, c *client.Config) {
			require.True(t, c.PasswordSet)
		}},

		// TLS.
		{name: "--cafile", args: []string{"--cafile", certs.CA}, check: func(t *testing.T, c *client.Config) {
			require.NotNil(t, c.TLS)
			require.NotNil(t, c.TLS.RootCAs)
			require.Equal(t, 8883, c.Port)
			require.EqualValues(t, tls.VersionTLS12, c.TLS.MinVersion)
			require.False(t, c.TLS.InsecureSkipVerify)
		}},
		{name: "--cafile keeps -p", args: []string{"--cafile", certs.CA, "-p", "18883"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, 18883, c.Port)
			require.NotNil(t, c.TLS)
		}},
		{name: "--cafile missing", args: []string{"--cafile", "/nonexistent/ca.pem"}, wantErr: "Problem setting TLS options: File not found. --cafile /nonexistent/ca.pem does not exist."},
		{name: "--cafile not PEM", args: []string{"--cafile", filepath.Join(capath, "README")}, wantErr: "holds no PEM certificate"},
		{name: "--capath", args: []string{"--capath", capath}, check: func(t *testing.T, c *client.Config) {
			require.NotNil(t, c.TLS.RootCAs)
			require.Equal(t, 8883, c.Port)
		}},
		{name: "--capath empty", args: []string{"--capath", t.TempDir()}, wantErr: "holds no PEM certificate"},
		{name: "--capath missing", args: []string{"--capath", "/nonexistent"}, wantErr: "File not found."},
		{name: "-p 8883 means TLS with the system CAs", args: []string{"-p", "8883"}, check: func(t *testing.T, c *client.Config) {
			require.NotNil(t, c.TLS)
			require.Nil(t, c.TLS.RootCAs)
		}},
		{name: "MQTT_PORT 8883 too", env: map[string]string{"MQTT_PORT": "8883"}, check: func(t *testing.T, c *client.Config) {
			require.NotNil(t, c.TLS)
		}},
		{name: "--no-tls", args: []string{"-p", "8883", "--no-tls"}, check: func(t *testing.T, c *client.Config) {
			require.Nil(t, c.TLS)
			require.Equal(t, 8883, c.Port)
		}},
		{name: "--no-tls with --cafile", args: []string{"--cafile", certs.CA, "--no-tls"}, wantErr: "--no-tls cannot be used with --cafile"},
		{name: "--tls-use-os-certs", args: []string{"--tls-use-os-certs"}, check: func(t *testing.T, c *client.Config) {
			require.NotNil(t, c.TLS)
			require.Nil(t, c.TLS.RootCAs)
			require.Equal(t, 8883, c.Port)
		}},
		{name: "--cert without --key", args: []string{"--cafile", certs.CA, "--cert", certs.ClientCert}, wantErr: "Both certfile and keyfile must be provided if one of them is set."},
		{name: "--key without --cert", args: []string{"--key", certs.ClientKey}, wantErr: "Both certfile and keyfile must be provided if one of them is set."},
		{name: "--cert --key", args: []string{"--cafile", certs.CA, "--cert", certs.ClientCert, "--key", certs.ClientKey}, check: func(t *testing.T, c *client.Config) {
			require.Len(t, c.TLS.Certificates, 1)
		}},
		{name: "--cert --key alone turn TLS on", args: []string{"--cert", certs.ClientCert, "--key", certs.ClientKey}, check: func(t *testing.T, c *client.Config) {
			require.Len(t, c.TLS.Certificates, 1)
			require.Nil(t, c.TLS.RootCAs)
		}},
		{name: "--key missing", args: []string{"--cert", certs.ClientCert, "--key", "/nonexistent/k"}, wantErr: "File not found. --key /nonexistent/k does not exist."},
		{name: "--cert --key mismatch", args: []string{"--cert", certs.ClientCert, "--key", certs.ServerKey}, wantErr: "cannot use client certificate"},
		{name: "--tls-version", args: []string{"--cafile", certs.CA, "--tls-version", "tlsv1.3"}, check: func(t *testing.T, c *client.Config) {
			require.EqualValues(t, tls.VersionTLS13, c.TLS.MinVersion)
		}},
		{name: "--tls-version 1.1", args: []string{"--cafile", certs.CA, "--tls-version", "tlsv1.1"}, check: func(t *testing.T, c *client.Config) {
			require.EqualValues(t, tls.VersionTLS11, c.TLS.MinVersion)
		}},
		{name: "--tls-version bad", args: []string{"--cafile", certs.CA, "--tls-version", "ssl3"}, wantErr: "Problem setting TLS options, check the options are valid."},
		{name: "--tls-alpn", args: []string{"--cafile", certs.CA, "--tls-alpn", "mqtt"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, []string{"mqtt"}, c.TLS.NextProtos)
		}},
		{name: "--insecure", args: []string{"--cafile", certs.CA, "--insecure"}, check: func(t *testing.T, c *client.Config) {
			require.True(t, c.TLS.InsecureSkipVerify)
			require.NotNil(t, c.TLS.VerifyConnection, "the chain is still verified")
		}},
		{name: "--insecure alone does not turn TLS on", args: []string{"--insecure"}, check: func(t *testing.T, c *client.Config) {
			require.Nil(t, c.TLS)
		}},

		// URLs.
		{name: "-L mqtts", args: []string{"-L", "mqtts://alice:s3cret@broker.example:8884/a/b"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "broker.example", c.Host)
			require.Equal(t, 8884, c.Port)
			require.NotNil(t, c.TLS)
			require.Equal(t, "alice", c.Username)
			require.Equal(t, "s3cret", c.Password)
		}},
		{name: "-L mqtts default port", args: []string{"-L", "mqtts://h/t"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, 8883, c.Port)
		}},
		{name: "-L mqtt", args: []string{"-L", "mqtt://h/t"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, 1883, c.Port)
			require.Nil(t, c.TLS)
		}},
		{name: "-L ws", args: []string{"-L", "ws://h:8083/t"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, client.WebSocket, c.Transport)
			require.Equal(t, 8083, c.Port)
			require.Nil(t, c.TLS)
		}},
		{name: "-L wss", args: []string{"-L", "wss://h/t"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, client.WebSocket, c.Transport)
			require.Equal(t, 8883, c.Port)
			require.NotNil(t, c.TLS)
		}},
		{name: "-L beats env, -h beats -L", args: []string{"-L", "mqtt://u@h:1900/t", "-h", "other"}, env: map[string]string{"MQTT_USERNAME": "eu"},
			check: func(t *testing.T, c *client.Config) {
				require.Equal(t, "other", c.Host)
				require.Equal(t, 1900, c.Port)
				require.Equal(t, "u", c.Username)
			}},
		{name: "-L scheme", args: []string{"-L", "http://h/t"}, wantErr: "unsupported URL scheme."},
		{name: "-L topic", args: []string{"-L", "mqtt://h"}, wantErr: "Invalid URL for -L argument specified - topic missing."},

		// Transports.
		{name: "--ws", args: []string{"--ws", "--ws-path", "/ws", "-p", "9001"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, client.WebSocket, c.Transport)
			require.Equal(t, "/ws", c.WSPath)
			require.Equal(t, 9001, c.Port)
		}},
		{name: "--ws-path relative", args: []string{"--ws", "--ws-path", "ws"}, wantErr: "--ws-path must start with /"},
		{name: "--unix", args: []string{"--unix", "/run/mqtt.sock"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, client.Unix, c.Transport)
			require.Equal(t, "/run/mqtt.sock", c.Socket)
			require.Equal(t, "/run/mqtt.sock", c.Addr())
		}},
		{name: "-p 0 -h PATH", args: []string{"-p", "0", "-h", "/run/mqtt.sock"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, client.Unix, c.Transport)
			require.Equal(t, "/run/mqtt.sock", c.Socket)
		}},
		{name: "--unix with TLS", args: []string{"--unix", "/s", "--cafile", certs.CA}, wantErr: "TLS over a unix socket is not supported"},
		{name: "-A --nodelay", args: []string{"-A", "127.0.0.1", "--nodelay"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "127.0.0.1", c.BindAddress)
			require.True(t, c.NoDelay)
		}},
		{name: "--connect-timeout seconds", args: []string{"--connect-timeout", "2.5"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, 2500*time.Millisecond, c.ConnectTimeout)
		}},
		{name: "--connect-timeout duration", args: []string{"--connect-timeout", "300ms"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, 300*time.Millisecond, c.ConnectTimeout)
		}},
		{name: "--connect-timeout 0", args: []string{"--connect-timeout", "0"}, wantErr: "must be more than 0"},
		{name: "--connect-timeout junk", args: []string{"--connect-timeout", "soon"}, wantErr: `invalid timeout "soon"`},

		// Session.
		{name: "-c needs -i (v5)", args: []string{"-c"}, wantErr: "You must provide a client id if you are using an infinite session expiry interval."},
		{name: "-c needs -i (v3)", args: []string{"-c", "-V", "311"}, wantErr: "You must provide a client id if you are using the -c option."},
		{name: "-c -I is not enough (v3)", args: []string{"-c", "-V", "311", "-I", "p"}, wantErr: "You must provide a client id if you are using the -c option."},
		{name: "-c -i (v3)", args: []string{"-c", "-V", "311", "-i", "me"}, check: func(t *testing.T, c *client.Config) {
			require.False(t, c.CleanStart)
			require.Nil(t, c.SessionExpiry)
		}},
		{name: "-c -i (v5) never expires", args: []string{"-c", "-i", "me"}, check: func(t *testing.T, c *client.Config) {
			require.False(t, c.CleanStart)
			require.Equal(t, u32(math.MaxUint32), c.SessionExpiry)
		}},
		{name: "-c -x 60", args: []string{"-c", "-x", "60"}, check: func(t *testing.T, c *client.Config) {
			require.False(t, c.CleanStart)
			require.Equal(t, u32(60), c.SessionExpiry)
		}},
		{name: "-x 60 alone", args: []string{"-x", "60"}, check: func(t *testing.T, c *client.Config) {
			require.True(t, c.CleanStart)
			require.Equal(t, u32(60), c.SessionExpiry)
		}},
		{name: "-x hex", args: []string{"-x", "0x10"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, u32(16), c.SessionExpiry)
		}},
		{name: "-x -1", args: []string{"-x", "-1", "-i", "me"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, u32(math.MaxUint32), c.SessionExpiry)
		}},
		{name: "-x ∞", args: []string{"-x", "∞", "-c", "-i", "me"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, u32(math.MaxUint32), c.SessionExpiry)
		}},
		{name: "-x 4294967295 -c needs -i", args: []string{"-x", "4294967295", "-c"}, wantErr: "infinite session expiry interval"},
		{name: "-x too big", args: []string{"-x", "4294967296"}, wantErr: "session-expiry-interval out of range."},
		{name: "-x too small", args: []string{"-x", "-2"}, wantErr: "session-expiry-interval out of range."},
		{name: "-x huge", args: []string{"-x", "99999999999999999999"}, wantErr: "session-expiry-interval out of range."},
		{name: "-x junk", args: []string{"-x", "soon"}, wantErr: "session-expiry-interval not a number."},
		{name: "-x with v3", args: []string{"-x", "60", "-V", "311"}, wantErr: "-x (session expiry) needs MQTT 5: drop -V 311 or -x"},

		// Will.
		{name: "will", args: []string{"--will-topic", "dead/c1", "--will-payload", "bye", "--will-qos", "1", "--will-retain"}, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, &client.Message{Topic: "dead/c1", Payload: []byte("bye"), QoS: 1, Retain: true}, c.Will)
		}},
		{name: "will payload without topic", args: []string{"--will-payload", "x"}, wantErr: "Will payload given, but no will topic given."},
		{name: "will retain without topic", args: []string{"--will-retain"}, wantErr: "Will retain given, but no will topic given."},
		{name: "will qos", args: []string{"--will-topic", "a", "--will-qos", "3"}, wantErr: "Invalid will QoS 3."},
		{name: "will wildcard", args: []string{"--will-topic", "a/#"}, wantErr: "Invalid will topic 'a/#', does it contain '+' or '#'?"},
		{name: "will empty topic", args: []string{"--will-topic", ""}, wantErr: "Invalid will topic ''"},

		{name: "--config without profile", args: []string{"--config", "x.yaml"}, wantErr: "--config x.yaml given but no profile chosen"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cfg, _, err := connRun{env: tc.env}.parse(t, tc.args...)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.Equal(t, ExitFailure, exitCode(err))
				var ue *UsageError
				require.ErrorAs(t, err, &ue)
				return
			}
			require.NoError(t, err)
			tc.check(t, cfg)
		})
	}
}

func TestPasswordPrompt(t *testing.T) {
	_, cfg, _, err := connRun{stdin: "s3cret\r\nnext line\n"}.parse(t, "-u", "a", "--password-prompt")
	require.NoError(t, err)
	require.Equal(t, "s3cret", cfg.Password)

	_, cfg, _, err = connRun{stdin: "last"}.parse(t, "--password-prompt")
	require.NoError(t, err)
	require.Equal(t, "last", cfg.Password)

	_, _, _, err = connRun{}.parse(t, "--password-prompt")
	require.ErrorContains(t, err, "holds no password line")

	_, _, _, err = connRun{stdin: "x\n"}.parse(t, "--password-prompt", "-P", "y")
	require.ErrorContains(t, err, "use -P or --password-prompt, not both")

	// Messages come from stdin and there is no terminal: refuse rather
	// than eat the first message as the password.
	_, _, _, err = connRun{stdin: "msg1\nmsg2\n", stdinBusy: true}.parse(t, "--password-prompt")
	require.ErrorContains(t, err, "--password-prompt needs a terminal when the messages come from stdin")
}

func TestDebugHidesPassword(t *testing.T) {
	_, _, stderr, err := connRun{env: map[string]string{"MQTT_PASSWORD": "envsecret"}}.parse(t, "-d", "-u", "alice", "-L", "mqtt://bob:urlsecret@h/t")
	require.NoError(t, err)
	require.Contains(t, stderr, "connection settings")
	require.Contains(t, stderr, "username=alice", "-u beats the user of -L")
	require.NotContains(t, stderr, "password", "nothing about the password, not even its length")
	require.NotContains(t, stderr, "urlsecret")
	require.NotContains(t, stderr, "envsecret")

	_, _, stderr, err = connRun{}.parse(t, "-d", "-u", "alice", "-P", "flagsecret", "--cafile", testcert.WriteT(t).CA)
	require.NoError(t, err)
	require.NotContains(t, stderr, "flagsecret")
	require.NotContains(t, stderr, "password")
	require.Contains(t, stderr, "transport=mqtts")
	require.Contains(t, stderr, "tls_from=--cafile")

	_, _, stderr, err = connRun{}.parse(t, "-u", "alice", "-P", "flagsecret")
	require.NoError(t, err)
	require.Empty(t, stderr, "nothing is logged without -d")
}

func TestURLTopic(t *testing.T) {
	o, _, _, err := connRun{}.parse(t, "-L", "mqtt://h/sensors/+/temp")
	require.NoError(t, err)
	require.Equal(t, "sensors/+/temp", o.URLTopic)
	o, _, _, err = connRun{}.parse(t)
	require.NoError(t, err)
	require.Empty(t, o.URLTopic)
}
