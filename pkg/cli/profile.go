// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// Profile is a named set of connection settings, from the config file
// ($XDG_CONFIG_HOME/mqttkit/config.yaml) or built in. Flags and
// environment variables override what a profile says.
type Profile struct {
	Description string `yaml:"description"`
	// URL names the endpoint in one go: mqtt|mqtts|ws|wss://host[:port][/path];
	// for ws and wss the path is the WebSocket path.
	URL  string `yaml:"url"`
	Host string `yaml:"host"`
	Port int    `yaml:"port"`
	// TLSPort is the port used instead of Port when TLS is turned on by
	// a flag (--cafile, --tls-use-os-certs, ...) for a profile without
	// tls; 0 means 8883 for MQTT (WebSocket ports keep Port).
	TLSPort   int         `yaml:"tls_port"`
	Transport string      `yaml:"transport"` // tcp (default) or websockets (ws)
	WSPath    string      `yaml:"ws_path"`
	TLS       *ProfileTLS `yaml:"tls"` // present (even empty) means TLS on

	Username    string `yaml:"username"`
	UsernameEnv string `yaml:"username_env"` // name of the environment variable holding the username
	Password    string `yaml:"password"`
	PasswordEnv string `yaml:"password_env"` // name of the environment variable holding the password

	ProtocolVersion string `yaml:"protocol_version"` // 5, 311 or 31
	KeepAlive       int    `yaml:"keepalive"`
	ClientID        string `yaml:"client_id"`
	ConnectTimeout  string `yaml:"connect_timeout"` // seconds or a Go duration ("5s")

	// Topics is a hint for people, printed under -d: how the broker's
	// topics look (e.g. USER/feeds/FEED for Adafruit IO).
	Topics string `yaml:"topics"`

	name string // profile name
	file string // file it came from, "" when built in
	line int    // line of its name in the file
	dir  string // directory relative paths are resolved against
}

// ProfileTLS are the TLS settings of a profile.
type ProfileTLS struct {
	CAFile     string `yaml:"cafile"`
	CAPath     string `yaml:"capath"`
	Cert       string `yaml:"cert"`
	Key        string `yaml:"key"`
	Insecure   bool   `yaml:"insecure"`
	UseOSCerts bool   `yaml:"use_os_certs"`
	Version    string `yaml:"version"`
	ALPN       string `yaml:"alpn"`
}

// profileFile is the config file's layout.
type profileFile struct {
	Profiles map[string]*Profile `yaml:"profiles"`
}

// builtinProfiles are the documented presets for public brokers
// (docs/connect.md). A profile of the same name in the config file wins.
var builtinProfiles = lazy[map[string]*Profile]{build: func() map[string]*Profile {
	return map[string]*Profile{
		"hivemq":      {Description: "HiveMQ public broker, plain MQTT", Host: "broker.hivemq.com", Port: 1883, TLSPort: 8883},
		"hivemq-tls":  {Description: "HiveMQ public broker, MQTT over TLS", Host: "broker.hivemq.com", Port: 8883, TLS: &ProfileTLS{UseOSCerts: true}},
		"hivemq-ws":   {Description: "HiveMQ public broker, WebSockets", Host: "broker.hivemq.com", Port: 8000, TLSPort: 8884, Transport: "websockets", WSPath: "/mqtt"},
		"hivemq-wss":  {Description: "HiveMQ public broker, WebSockets over TLS", Host: "broker.hivemq.com", Port: 8884, Transport: "websockets", WSPath: "/mqtt", TLS: &ProfileTLS{UseOSCerts: true}},
		"emqx":        {Description: "EMQX public broker, plain MQTT", Host: "broker.emqx.io", Port: 1883, TLSPort: 8883},
		"emqx-tls":    {Description: "EMQX public broker, MQTT over TLS", Host: "broker.emqx.io", Port: 8883, TLS: &ProfileTLS{UseOSCerts: true}},
		"emqx-ws":     {Description: "EMQX public broker, WebSockets", Host: "broker.emqx.io", Port: 8083, TLSPort: 8084, Transport: "websockets", WSPath: "/mqtt"},
		"emqx-wss":    {Description: "EMQX public broker, WebSockets over TLS", Host: "broker.emqx.io", Port: 8084, Transport: "websockets", WSPath: "/mqtt", TLS: &ProfileTLS{UseOSCerts: true}},
		"mosquitto":   {Description: "test.mosquitto.org, plain MQTT", Host: "test.mosquitto.org", Port: 1883},
		"adafruit":    {Description: "Adafruit IO (TLS; username: your Adafruit IO user, password: your Adafruit IO key)", Host: "io.adafruit.com", Port: 8883, TLS: &ProfileTLS{UseOSCerts: true}, UsernameEnv: "ADAFRUIT_IO_USERNAME", PasswordEnv: "ADAFRUIT_IO_KEY", Topics: "USER/feeds/FEED"},
		"adafruit-ws": {Description: "Adafruit IO over WebSockets with TLS", Host: "io.adafruit.com", Port: 443, Transport: "websockets", WSPath: "/mqtt", TLS: &ProfileTLS{UseOSCerts: true}, UsernameEnv: "ADAFRUIT_IO_USERNAME", PasswordEnv: "ADAFRUIT_IO_KEY", Topics: "USER/feeds/FEED"},
	}
}}

// webSocketPort is the WebSocket port (and path) of the endpoint a
// built-in MQTT preset ("hivemq", "hivemq-tls") also serves, from its
// "-ws" sibling: the plain one, or the TLS one when tls. 0 when the
// profile is the user's or the preset has no such endpoint.
func (p *Profile) webSocketPort(tls bool) (port int, path string) {
	if p.file != "" || builtinProfiles.get()[p.name] == nil {
		return 0, ""
	}
	ws := builtinProfiles.get()[strings.TrimSuffix(p.name, "-tls")+"-ws"]
	switch {
	case ws == nil:
		return 0, ""
	case ws.TLS != nil: // a TLS-only WebSocket endpoint (adafruit-ws)
		if tls {
			return ws.Port, ws.WSPath
		}
		return 0, ""
	case tls:
		return ws.TLSPort, ws.WSPath
	}
	return ws.Port, ws.WSPath
}

// builtinNames lists the presets, sorted.
func builtinNames() []string {
	names := make([]string, 0, len(builtinProfiles.get()))
	for n := range builtinProfiles.get() {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// defaultConfigPath is $XDG_CONFIG_HOME/mqttkit/config.yaml, or
// $HOME/.config/mqttkit/config.yaml without XDG_CONFIG_HOME.
func defaultConfigPath(getenv func(string) string) string {
	if x := getenv("XDG_CONFIG_HOME"); x != "" {
		return filepath.Join(x, "mqttkit", "config.yaml")
	}
	if h := getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "mqttkit", "config.yaml")
	}
	return ""
}

// loadProfile finds profile name in the config file at path (explicit
// when the user named it with --config, so it must exist) or among the
// presets.
func loadProfile(name, path string, explicit bool, getenv func(string) string) (*Profile, error) {
	var profiles map[string]*Profile
	if path != "" {
		b, err := os.ReadFile(path)
		switch {
		case err == nil:
			profiles, err = parseProfiles(b, path)
			if err != nil {
				return nil, err
			}
		case errors.Is(err, fs.ErrNotExist) && !explicit:
		default:
			return nil, fmt.Errorf("config file: %w", err)
		}
	}
	if p, ok := profiles[name]; ok {
		return p, nil
	}
	if p, ok := builtinProfiles.get()[name]; ok {
		c := *p
		if c.TLS != nil {
			t := *c.TLS
			c.TLS = &t
		}
		c.name = name
		return &c, nil
	}
	var known []string
	for n := range profiles {
		known = append(known, n)
	}
	slices.Sort(known)
	where := "no config file"
	if profiles != nil {
		where = path + " has " + strings.Join(known, ", ")
		if len(known) == 0 {
			where = path + " has no profiles"
		}
	} else if path != "" {
		where = "no " + path
	}
	return nil, usageErrorf("unknown profile %q (%s; built in: %s)", name, where, strings.Join(builtinNames(), ", "))
}

// yamlLine and notFound are compiled on first use: a regexp at package
// init costs every run of the binary (start-up time).
var yamlLine = lazy[*regexp.Regexp]{build: func() *regexp.Regexp { return regexp.MustCompile(`^line (\d+): (.*)$`) }}

// parseProfiles reads a config file. Unknown keys are errors that name
// the file and line, so a typo never silently does nothing.
func parseProfiles(b []byte, path string) (map[string]*Profile, error) {
	var f profileFile
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, yamlErr(path, fixSyntaxLine(b, err))
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: only one YAML document is allowed", path)
	}
	lines := profileLines(b)
	for name, p := range f.Profiles {
		if p == nil {
			p = &Profile{}
			f.Profiles[name] = p
		}
		p.name, p.file, p.line, p.dir = name, path, lines[name], filepath.Dir(path)
		if err := p.check(); err != nil {
			return nil, err
		}
	}
	return f.Profiles, nil
}

// yamlErr rewrites yaml.v3's errors as FILE:LINE: message.
func yamlErr(path string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, 0, len(te.Errors))
		for _, e := range te.Errors {
			msgs = append(msgs, yamlMsg(path, e))
		}
		return errors.New(strings.Join(msgs, "\n"))
	}
	return errors.New(yamlMsg(path, strings.TrimPrefix(err.Error(), "yaml: ")))
}

// fixSyntaxLine corrects the line of a YAML syntax error. yaml.v3 names
// the line where the enclosing block began ("line 1: did not find expected
// key" for a bad indent on line 4) or, for some errors, the line before
// the fault. The fault is on the first line whose addition makes the
// document fail with the same message: the shortest failing prefix.
// (Prefixes cut inside a valid multi-line value fail with another message,
// such as an unexpected end of stream, and are passed over.)
func fixSyntaxLine(b []byte, err error) error {
	m := yamlLine.get().FindStringSubmatch(strings.TrimPrefix(err.Error(), "yaml: "))
	if m == nil || errors.As(err, new(*yaml.TypeError)) {
		return err
	}
	lines := bytes.SplitAfter(b, []byte("\n"))
	for n := 1; n <= len(lines); n++ {
		var v yaml.Node
		perr := yaml.Unmarshal(bytes.Join(lines[:n], nil), &v)
		if perr == nil {
			continue
		}
		if pm := yamlLine.get().FindStringSubmatch(strings.TrimPrefix(perr.Error(), "yaml: ")); pm != nil && pm[2] == m[2] {
			return fmt.Errorf("line %d: %s", n, m[2])
		}
	}
	return err
}

var notFound = lazy[*regexp.Regexp]{build: func() *regexp.Regexp { return regexp.MustCompile(`^field (\S+) not found in type \S+$`) }}

func yamlMsg(path, e string) string {
	m := yamlLine.get().FindStringSubmatch(e)
	if m == nil {
		return path + ": " + e
	}
	msg := m[2]
	if f := notFound.get().FindStringSubmatch(msg); f != nil {
		msg = fmt.Sprintf("unknown key %q", f[1])
	}
	msg = strings.ReplaceAll(msg, "cli.", "")
	return path + ":" + m[1] + ": " + msg
}

// profileLines maps profile names to the line they are declared on.
func profileLines(b []byte) map[string]int {
	lines := map[string]int{}
	var doc yaml.Node
	if yaml.Unmarshal(b, &doc) != nil || len(doc.Content) == 0 {
		return lines
	}
	root := doc.Content[0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != "profiles" {
			continue
		}
		m := root.Content[i+1]
		for j := 0; j+1 < len(m.Content); j += 2 {
			lines[m.Content[j].Value] = m.Content[j].Line
		}
	}
	return lines
}

// where names the profile for messages: FILE:LINE: profile "x" or
// built-in profile "x".
func (p *Profile) where() string {
	if p.file == "" {
		return fmt.Sprintf("built-in profile %q", p.name)
	}
	return fmt.Sprintf("%s:%d: profile %q", p.file, p.line, p.name)
}

func (p *Profile) errorf(format string, a ...any) error {
	return fmt.Errorf("%s: %s", p.where(), fmt.Sprintf(format, a...))
}

// check validates the values of a profile.
func (p *Profile) check() error {
	if p.URL != "" {
		if p.Host != "" || p.Port != 0 || p.Transport != "" || p.WSPath != "" {
			return p.errorf("url and host/port/transport/ws_path cannot be used together")
		}
		if _, err := p.parseURL(); err != nil {
			return err
		}
	}
	if p.Port < 0 || p.Port > 65535 {
		return p.errorf("port %d out of range (1..65535)", p.Port)
	}
	if p.TLSPort < 0 || p.TLSPort > 65535 {
		return p.errorf("tls_port %d out of range (1..65535)", p.TLSPort)
	}
	if p.TLSPort != 0 && (p.TLS != nil || p.URL != "") {
		return p.errorf("tls_port is for profiles without tls and url (it is the port used when a flag turns TLS on)")
	}
	if _, err := p.transport(); err != nil {
		return err
	}
	if p.WSPath != "" && !strings.HasPrefix(p.WSPath, "/") {
		return p.errorf("ws_path %q must start with /", p.WSPath)
	}
	if p.Username != "" && p.UsernameEnv != "" {
		return p.errorf("set username or username_env, not both")
	}
	if p.Password != "" && p.PasswordEnv != "" {
		return p.errorf("set password or password_env, not both")
	}
	if p.ProtocolVersion != "" {
		if _, err := client.ParseVersion(p.ProtocolVersion); err != nil {
			return p.errorf("protocol_version %q: want 5, 311 or 31", p.ProtocolVersion)
		}
	}
	if p.KeepAlive != 0 && (p.KeepAlive < 5 || p.KeepAlive > 65535) {
		return p.errorf("keepalive %d out of range (5..65535)", p.KeepAlive)
	}
	if p.ConnectTimeout != "" {
		if _, err := parseTimeout(p.ConnectTimeout); err != nil {
			return p.errorf("connect_timeout: %v", err)
		}
	}
	if t := p.TLS; t != nil {
		if (t.Cert == "") != (t.Key == "") {
			return p.errorf("tls: cert and key must be given together")
		}
		switch strings.ToLower(t.Version) {
		case "", "tlsv1.3", "tlsv1.2", "tlsv1.1":
		default:
			return p.errorf("tls: version %q: want tlsv1.3, tlsv1.2 or tlsv1.1", t.Version)
		}
	}
	return nil
}

// transport returns the profile's transport.
func (p *Profile) transport() (client.Transport, error) {
	switch strings.ToLower(p.Transport) {
	case "", "tcp", "mqtt":
		return client.TCP, nil
	case "ws", "websocket", "websockets":
		return client.WebSocket, nil
	}
	return "", p.errorf("transport %q: want tcp or websockets", p.Transport)
}

// profileURL is a profile's url: like -L but the path is the WebSocket
// path and may be empty.
type profileURL struct {
	transport client.Transport
	tls       bool
	host      string
	port      int
	wsPath    string
}

func (p *Profile) parseURL() (*profileURL, error) {
	s := p.URL
	i := strings.Index(s, "://")
	if i < 0 {
		return nil, p.errorf("url %q: want mqtt://, mqtts://, ws:// or wss://", s)
	}
	u := &profileURL{transport: client.TCP}
	switch strings.ToLower(s[:i]) {
	case "mqtt", "tcp":
	case "mqtts", "ssl", "tls":
		u.tls = true
	case "ws":
		u.transport = client.WebSocket
	case "wss":
		u.transport, u.tls = client.WebSocket, true
	default:
		return nil, p.errorf("url %q: want mqtt://, mqtts://, ws:// or wss://", s)
	}
	rest := s[i+3:]
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		rest, u.wsPath = rest[:j], rest[j:]
		if u.transport != client.WebSocket && u.wsPath != "/" {
			return nil, p.errorf("url %q: only ws:// and wss:// URLs have a path", s)
		}
		if u.transport != client.WebSocket {
			u.wsPath = ""
		}
	}
	if strings.Contains(rest, "@") {
		return nil, p.errorf("url %q: put credentials in username and password_env, not in the url", s)
	}
	host, port, err := splitHostPort(rest)
	if err != nil || host == "" {
		return nil, p.errorf("url %q: bad host or port", s)
	}
	u.host, u.port = host, port
	return u, nil
}

// path resolves a file name from the profile: ~/ is the home directory,
// relative names are relative to the config file's directory.
func (p *Profile) path(name string, getenv func(string) string) string {
	if name == "" {
		return ""
	}
	if rest, ok := strings.CutPrefix(name, "~/"); ok {
		if h := getenv("HOME"); h != "" {
			return filepath.Join(h, rest)
		}
	}
	if !filepath.IsAbs(name) && p.dir != "" {
		return filepath.Join(p.dir, name)
	}
	return name
}

// parseTimeout reads a timeout: plain seconds ("5", "2.5") or a Go
// duration ("1500ms", "1m").
func parseTimeout(s string) (time.Duration, error) {
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil && !math.IsNaN(f) && !math.IsInf(f, 0) && f < 1e9 {
		d = time.Duration(f * float64(time.Second))
	} else if d0, err := time.ParseDuration(s); err == nil {
		d = d0
	} else {
		return 0, fmt.Errorf("invalid timeout %q (want seconds, e.g. 5 or 2.5s)", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("invalid timeout %q (must be more than 0)", s)
	}
	return d, nil
}
