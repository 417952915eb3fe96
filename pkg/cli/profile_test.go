// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testcert"
	"github.com/mqttkit/mqttkit/pkg/client"
)

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "config.yaml")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestParseProfilesErrors(t *testing.T) {
	for _, tc := range []struct {
		name, body, wantErr string
	}{
		{name: "unknown key", body: "profiles:\n  lab:\n    host: h\n    hots: x\n", wantErr: `config.yaml:4: unknown key "hots"`},
		{name: "unknown tls key", body: "profiles:\n  lab:\n    tls:\n      ca_file: x\n", wantErr: `config.yaml:4: unknown key "ca_file"`},
		{name: "unknown top key", body: "profile:\n  lab: {}\n", wantErr: `config.yaml:1: unknown key "profile"`},
		{name: "type", body: "profiles:\n  lab:\n    port: abc\n", wantErr: "config.yaml:3: cannot unmarshal !!str `abc` into int"},
		{name: "syntax", body: "profiles:\n  lab:\n    host: [\n", wantErr: "config.yaml:"},
		// yaml.v3 itself says line 1 (where the block began) or the line
		// before the fault for these.
		{name: "bad indent on line 4", body: "profiles:\n  lab:\n    host: x\n   port: 1\n", wantErr: "config.yaml:4: did not find expected key"},
		{name: "tab on line 4", body: "profiles:\n  lab:\n    host: x\n\tport: 1\n", wantErr: "config.yaml:4: found a tab character that violates indentation"},
		{name: "list item on line 5", body: "# lab\nprofiles:\n  lab:\n    host: x\n  - port\n", wantErr: "config.yaml:5: did not find expected key"},
		{name: "unclosed flow on line 4", body: "profiles:\n  lab:\n    host: x\n    port: [1\n", wantErr: "config.yaml:4: did not find expected ',' or ']'"},
		{name: "fault after a multi-line value", body: "profiles:\n  lab:\n    description: [a,\n      b]\n    host: x\n   port: 1\n", wantErr: "config.yaml:6: did not find expected key"},
		{name: "port range", body: "profiles:\n  lab:\n    port: 70000\n", wantErr: `config.yaml:2: profile "lab": port 70000 out of range`},
		{name: "tls_port with tls", body: "profiles:\n  lab:\n    tls_port: 8883\n    tls: {}\n", wantErr: `config.yaml:2: profile "lab": tls_port is for profiles without tls and url`},
		{name: "url and host", body: "profiles:\n  lab:\n    url: mqtt://h\n    host: h\n", wantErr: "url and host/port/transport/ws_path cannot be used together"},
		{name: "url scheme", body: "profiles:\n  lab:\n    url: http://h\n", wantErr: `url "http://h": want mqtt://`},
		{name: "url path on mqtt", body: "profiles:\n  lab:\n    url: mqtt://h/x\n", wantErr: "only ws:// and wss:// URLs have a path"},
		{name: "url credentials", body: "profiles:\n  lab:\n    url: mqtt://u:p@h\n", wantErr: "put credentials in username and password_env"},
		{name: "url port", body: "profiles:\n  lab:\n    url: mqtt://h:99999\n", wantErr: "bad host or port"},
		{name: "transport", body: "profiles:\n  lab:\n    transport: quic\n", wantErr: `transport "quic": want tcp or websockets`},
		{name: "ws path", body: "profiles:\n  lab:\n    ws_path: mqtt\n", wantErr: "must start with /"},
		{name: "two passwords", body: "profiles:\n  lab:\n    password: a\n    password_env: B\n", wantErr: "set password or password_env, not both"},
		{name: "two usernames", body: "profiles:\n  lab:\n    username: a\n    username_env: B\n", wantErr: "set username or username_env, not both"},
		{name: "version", body: "profiles:\n  lab:\n    protocol_version: 4\n", wantErr: `protocol_version "4": want 5, 311 or 31`},
		{name: "keepalive", body: "profiles:\n  lab:\n    keepalive: 2\n", wantErr: "keepalive 2 out of range"},
		{name: "timeout", body: "profiles:\n  lab:\n    connect_timeout: soon\n", wantErr: "connect_timeout: invalid timeout"},
		{name: "tls cert alone", body: "profiles:\n  lab:\n    tls:\n      cert: c.pem\n", wantErr: "tls: cert and key must be given together"},
		{name: "tls version", body: "profiles:\n  lab:\n    tls:\n      version: ssl3\n", wantErr: `tls: version "ssl3"`},
		{name: "two documents", body: "profiles: {}\n---\nprofiles: {}\n", wantErr: "only one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseProfiles([]byte(tc.body), "/etc/x/config.yaml")
			require.ErrorContains(t, err, tc.wantErr)
		})
	}
}

func TestParseProfiles(t *testing.T) {
	ps, err := parseProfiles([]byte(`# my brokers
profiles:
  lab:
    host: lab.example
    port: 1884
    username: alice
    password_env: LAB_PW
    protocol_version: 311
    keepalive: 30
    client_id: me
    connect_timeout: 2s
  cloud:
    url: wss://cloud.example:8084/mqtt/ws
    tls:
      cafile: certs/ca.pem
      insecure: true
      version: tlsv1.3
      alpn: mqtt
  empty:
`), "/home/a/.config/mqttkit/config.yaml")
	require.NoError(t, err)
	require.Len(t, ps, 3)
	lab := ps["lab"]
	require.Equal(t, "lab.example", lab.Host)
	require.Equal(t, 1884, lab.Port)
	require.Equal(t, 3, lab.line)
	require.Equal(t, `/home/a/.config/mqttkit/config.yaml:3: profile "lab"`, lab.where())
	require.Equal(t, "/home/a/.config/mqttkit/certs/ca.pem", ps["cloud"].path(ps["cloud"].TLS.CAFile, func(string) string { return "" }))
	require.Equal(t, "/home/a/x", ps["cloud"].path("~/x", func(k string) string { return map[string]string{"HOME": "/home/a"}[k] }))
	require.Equal(t, "/abs", ps["cloud"].path("/abs", func(string) string { return "" }))
	require.NotNil(t, ps["empty"])

	ps, err = parseProfiles(nil, "empty.yaml")
	require.NoError(t, err)
	require.Empty(t, ps)
}

func TestProfiles(t *testing.T) {
	xdg := t.TempDir()
	certs := testcert.WriteT(t)
	confDir := filepath.Join(xdg, "mqttkit")
	writeConfig(t, confDir, `profiles:
  lab:
    host: lab.example
    port: 1884
    username: alice
    password_env: LAB_PW
    protocol_version: 311
    keepalive: 30
    client_id: me
    connect_timeout: 2s
  cloud:
    url: wss://cloud.example:8084/ws
    tls:
      cafile: `+certs.CA+`
      cert: `+certs.ClientCert+`
      key: `+certs.ClientKey+`
  relative:
    host: r.example
    tls:
      cafile: ca.pem
  hivemq:
    host: my-own-hivemq.example
  lab2:
    host: lab2.example
    port: 1884
    tls_port: 9883
`)
	other := writeConfig(t, t.TempDir(), "profiles:\n  x:\n    host: x.example\n")
	env := map[string]string{"XDG_CONFIG_HOME": xdg, "LAB_PW": "labsecret"}
	withEnv := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range env {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}

	for _, tc := range []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(t *testing.T, c *client.Config)
		wantErr string
	}{
		{name: "file profile", args: []string{"--profile", "lab"}, env: env, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "lab.example", c.Host)
			require.Equal(t, 1884, c.Port)
			require.Equal(t, "alice", c.Username)
			require.Equal(t, "labsecret", c.Password)
			require.Equal(t, client.V311, c.Version)
			require.False(t, c.Fallback311)
			require.EqualValues(t, 30, c.KeepAlive)
			require.Equal(t, "me", c.ClientID)
			require.Equal(t, 2*time.Second, c.ConnectTimeout)
			require.Nil(t, c.TLS)
		}},
		{name: "MQTT_PROFILE", env: withEnv("MQTT_PROFILE", "lab"), check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "lab.example", c.Host)
		}},
		{name: "--profile beats MQTT_PROFILE", args: []string{"--profile", "cloud"}, env: withEnv("MQTT_PROFILE", "lab"), check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "cloud.example", c.Host)
		}},
		{name: "env beats profile", args: []string{"--profile", "lab"}, env: withEnv("MQTT_HOST", "envhost", "MQTT_USERNAME", "bob", "MQTT_PASSWORD", "envpw"),
			check: func(t *testing.T, c *client.Config) {
				require.Equal(t, "envhost", c.Host)
				require.Equal(t, 1884, c.Port)
				require.Equal(t, "bob", c.Username)
				require.Equal(t, "envpw", c.Password)
			}},
		{name: "flags beat env and profile", args: []string{"--profile", "lab", "-h", "flaghost", "-p", "1999", "-V", "5", "-k", "90", "-i", "flagid", "-u", "carol", "-P", "flagpw", "--connect-timeout", "3"},
			env: withEnv("MQTT_HOST", "envhost"),
			check: func(t *testing.T, c *client.Config) {
				require.Equal(t, "flaghost", c.Host)
				require.Equal(t, 1999, c.Port)
				require.Equal(t, client.V5, c.Version)
				require.EqualValues(t, 90, c.KeepAlive)
				require.Equal(t, "flagid", c.ClientID)
				require.Equal(t, "carol", c.Username)
				require.Equal(t, "flagpw", c.Password)
				require.Equal(t, 3*time.Second, c.ConnectTimeout)
			}},
		{name: "password_env unset", args: []string{"--profile", "lab"}, env: map[string]string{"XDG_CONFIG_HOME": xdg},
			wantErr: `profile "lab" needs a password: set LAB_PW, or use --password-prompt`},
		{name: "password_env unset but -P", args: []string{"--profile", "lab", "-P", "x"}, env: map[string]string{"XDG_CONFIG_HOME": xdg},
			check: func(t *testing.T, c *client.Config) { require.Equal(t, "x", c.Password) }},
		{name: "url profile with TLS", args: []string{"--profile", "cloud"}, env: env, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, client.WebSocket, c.Transport)
			require.Equal(t, "/ws", c.WSPath)
			require.Equal(t, 8084, c.Port)
			require.NotNil(t, c.TLS)
			require.NotNil(t, c.TLS.RootCAs)
			require.Len(t, c.TLS.Certificates, 1)
		}},
		{name: "-L replaces the profile's endpoint", args: []string{"--profile", "cloud", "-L", "mqtt://plain.example/t"}, env: env, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "plain.example", c.Host)
			require.Equal(t, client.TCP, c.Transport)
			require.Nil(t, c.TLS)
			require.Equal(t, 1883, c.Port)
		}},
		{name: "tls_port", args: []string{"--profile", "lab2", "--tls-use-os-certs"}, env: env, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, 9883, c.Port)
			require.NotNil(t, c.TLS)
		}},
		{name: "tls_port unused without TLS", args: []string{"--profile", "lab2"}, env: env, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, 1884, c.Port)
			require.Nil(t, c.TLS)
		}},
		{name: "relative cafile", args: []string{"--profile", "relative"}, env: env, wantErr: "File not found. --cafile " + filepath.Join(confDir, "ca.pem") + " does not exist."},
		{name: "file profile shadows a preset", args: []string{"--profile", "hivemq"}, env: env, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "my-own-hivemq.example", c.Host)
		}},
		{name: "--config", args: []string{"--config", other, "--profile", "x"}, env: env, check: func(t *testing.T, c *client.Config) {
			require.Equal(t, "x.example", c.Host)
		}},
		{name: "--config missing", args: []string{"--config", "/nonexistent/c.yaml", "--profile", "x"}, wantErr: "config file: open /nonexistent/c.yaml"},
		{name: "unknown profile", args: []string{"--profile", "nope"}, env: env, wantErr: `unknown profile "nope" (` + filepath.Join(confDir, "config.yaml") + ` has cloud, hivemq, lab, lab2, relative; built in: adafruit, adafruit-ws, emqx,`},
		{name: "unknown profile without file", args: []string{"--profile", "nope"}, env: map[string]string{"HOME": t.TempDir()}, wantErr: `unknown profile "nope" (no `},
		{name: "HOME fallback", args: []string{"--profile", "y"}, env: map[string]string{"HOME": homeWith(t, "profiles:\n  y:\n    host: y.example\n")},
			check: func(t *testing.T, c *client.Config) { require.Equal(t, "y.example", c.Host) }},
		{name: "broken file", args: []string{"--profile", "hivemq"}, env: map[string]string{"HOME": homeWith(t, "profiles:\n  y:\n    hots: y\n")},
			wantErr: `config.yaml:3: unknown key "hots"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, cfg, _, err := connRun{env: tc.env}.parse(t, tc.args...)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.Equal(t, ExitFailure, exitCode(err))
				return
			}
			require.NoError(t, err)
			tc.check(t, cfg)
		})
	}
}

// homeWith makes a home directory holding .config/mqttkit/config.yaml.
func homeWith(t *testing.T, body string) string {
	t.Helper()
	home := t.TempDir()
	writeConfig(t, filepath.Join(home, ".config", "mqttkit"), body)
	return home
}

func TestPresets(t *testing.T) {
	noFile := map[string]string{"HOME": t.TempDir()}
	for _, tc := range []struct {
		name      string
		env       map[string]string
		args      []string
		host      string
		port      int
		transport client.Transport
		tls       bool
		wsPath    string
		user      string
		pass      string
		wantErr   string
	}{
		{name: "hivemq", host: "broker.hivemq.com", port: 1883, transport: client.TCP},
		{name: "hivemq-tls", host: "broker.hivemq.com", port: 8883, transport: client.TCP, tls: true},
		{name: "hivemq-ws", host: "broker.hivemq.com", port: 8000, transport: client.WebSocket, wsPath: "/mqtt"},
		{name: "hivemq-wss", host: "broker.hivemq.com", port: 8884, transport: client.WebSocket, wsPath: "/mqtt", tls: true},
		{name: "emqx", host: "broker.emqx.io", port: 1883, transport: client.TCP},
		{name: "emqx-tls", host: "broker.emqx.io", port: 8883, transport: client.TCP, tls: true},
		{name: "emqx-ws", host: "broker.emqx.io", port: 8083, transport: client.WebSocket, wsPath: "/mqtt"},
		{name: "emqx-wss", host: "broker.emqx.io", port: 8084, transport: client.WebSocket, wsPath: "/mqtt", tls: true},
		{name: "mosquitto", host: "test.mosquitto.org", port: 1883, transport: client.TCP},
		{name: "adafruit", env: map[string]string{"ADAFRUIT_IO_USERNAME": "ada", "ADAFRUIT_IO_KEY": "aio_key"},
			host: "io.adafruit.com", port: 8883, transport: client.TCP, tls: true, user: "ada", pass: "aio_key"},
		{name: "adafruit", args: []string{"-u", "grace"}, env: map[string]string{"ADAFRUIT_IO_KEY": "aio_key"},
			host: "io.adafruit.com", port: 8883, transport: client.TCP, tls: true, user: "grace", pass: "aio_key"},
		{name: "adafruit", env: map[string]string{"ADAFRUIT_IO_KEY": "k"}, wantErr: `built-in profile "adafruit" needs a username: set ADAFRUIT_IO_USERNAME or pass -u`},
		{name: "adafruit", env: map[string]string{"ADAFRUIT_IO_USERNAME": "ada"}, wantErr: `built-in profile "adafruit" needs a password: set ADAFRUIT_IO_KEY, or use --password-prompt`},
		{name: "adafruit-ws", env: map[string]string{"ADAFRUIT_IO_USERNAME": "ada", "ADAFRUIT_IO_KEY": "k"},
			host: "io.adafruit.com", port: 443, transport: client.WebSocket, wsPath: "/mqtt", tls: true, user: "ada", pass: "k"},
		// A flag that turns TLS on moves a plain preset to its TLS port
		// (-d showed port=1883 for --profile hivemq --tls-use-os-certs).
		{name: "hivemq", args: []string{"--tls-use-os-certs"}, host: "broker.hivemq.com", port: 8883, transport: client.TCP, tls: true},
		{name: "hivemq-ws", args: []string{"--tls-use-os-certs"}, host: "broker.hivemq.com", port: 8884, transport: client.WebSocket, wsPath: "/mqtt", tls: true},
		{name: "emqx-ws", args: []string{"--tls-use-os-certs"}, host: "broker.emqx.io", port: 8084, transport: client.WebSocket, wsPath: "/mqtt", tls: true},
		{name: "mosquitto", args: []string{"--tls-use-os-certs"}, host: "test.mosquitto.org", port: 8883, transport: client.TCP, tls: true},
		// An explicit port stays.
		{name: "hivemq", args: []string{"--tls-use-os-certs", "-p", "1883"}, host: "broker.hivemq.com", port: 1883, transport: client.TCP, tls: true},
		{name: "hivemq", args: []string{"--tls-use-os-certs"}, env: map[string]string{"MQTT_PORT": "1884"}, host: "broker.hivemq.com", port: 1884, transport: client.TCP, tls: true},
		{name: "hivemq-tls", args: []string{"--tls-use-os-certs"}, host: "broker.hivemq.com", port: 8883, transport: client.TCP, tls: true},
		// --ws on an MQTT preset takes the WebSocket port of its -ws
		// sibling (it used 1883 or 8883 over WebSockets).
		{name: "hivemq", args: []string{"--ws"}, host: "broker.hivemq.com", port: 8000, transport: client.WebSocket, wsPath: "/mqtt"},
		{name: "hivemq", args: []string{"--ws", "--tls-use-os-certs"}, host: "broker.hivemq.com", port: 8884, transport: client.WebSocket, wsPath: "/mqtt", tls: true},
		{name: "hivemq-tls", args: []string{"--ws"}, host: "broker.hivemq.com", port: 8884, transport: client.WebSocket, wsPath: "/mqtt", tls: true},
		{name: "emqx", args: []string{"--ws", "--ws-path", "/x"}, host: "broker.emqx.io", port: 8083, transport: client.WebSocket, wsPath: "/x"},
		{name: "adafruit", args: []string{"--ws"}, env: map[string]string{"ADAFRUIT_IO_USERNAME": "ada", "ADAFRUIT_IO_KEY": "k"},
			host: "io.adafruit.com", port: 443, transport: client.WebSocket, wsPath: "/mqtt", tls: true, user: "ada", pass: "k"},
		{name: "hivemq", args: []string{"--ws", "-p", "9001"}, host: "broker.hivemq.com", port: 9001, transport: client.WebSocket},
		{name: "mosquitto", args: []string{"--ws"}, wantErr: `--ws: profile "mosquitto" gives the MQTT port 1883, not a WebSocket port: give the broker's WebSocket port with -p`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			for k, v := range noFile {
				env[k] = v
			}
			for k, v := range tc.env {
				env[k] = v
			}
			_, cfg, _, err := connRun{env: env}.parse(t, append([]string{"--profile", tc.name}, tc.args...)...)
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.host, cfg.Host)
			require.Equal(t, tc.port, cfg.Port)
			require.Equal(t, tc.transport, cfg.Transport)
			require.Equal(t, tc.wsPath, cfg.WSPath)
			require.Equal(t, tc.tls, cfg.TLS != nil)
			if tc.tls {
				require.Nil(t, cfg.TLS.RootCAs, "public brokers are checked against the system's CAs")
				require.False(t, cfg.TLS.InsecureSkipVerify)
			}
			require.Equal(t, tc.user, cfg.Username)
			require.Equal(t, tc.pass, cfg.Password)
			require.Equal(t, client.V5, cfg.Version)
		})
	}
	for _, name := range builtinNames() {
		p := *builtinProfiles.get()[name]
		p.name = name
		require.NoError(t, p.check(), name)
		require.NotEmpty(t, p.Description, name)
	}
}

// FuzzParseProfiles checks that no config file makes the parser panic,
// and that every accepted profile resolves to a configuration or a
// clear error.
func FuzzParseProfiles(f *testing.F) {
	for _, s := range []string{
		"profiles:\n  lab:\n    host: h\n    port: 1884\n",
		"profiles:\n  c:\n    url: wss://h:8084/mqtt\n    tls:\n      cafile: ca.pem\n      insecure: true\n",
		"profiles:\n  a:\n    username_env: U\n    password_env: P\n    protocol_version: 311\n",
		"profiles: {x: {port: 70000}}",
		"profiles:\n  - a\n",
		"",
		"profiles:\n  a: &x {host: h}\n  b: *x\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := parseProfiles([]byte(s), "/f/config.yaml")
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		for name, p := range ps {
			require.Equal(t, name, p.name)
			require.NoError(t, p.check())
			if _, err := p.transport(); err != nil {
				t.Fatal(err)
			}
			if p.URL != "" {
				u, err := p.parseURL()
				require.NoError(t, err)
				require.NotEmpty(t, u.host)
			}
		}
	})
}
