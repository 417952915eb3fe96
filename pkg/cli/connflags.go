// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// ConnOptions are the connection flags shared by every client command
// (pub, sub, simulate-sensor). They are declared once, here: commands
// append connFlags to their own flags and call clientConfig in complete.
//
// Settings are taken, from strongest to weakest, from flags (-L counts
// as a flag), environment variables (MQTT_HOST, MQTT_PORT,
// MQTT_USERNAME, MQTT_PASSWORD, MQTT_CLIENT_ID), the profile
// (--profile or MQTT_PROFILE) and the defaults.
type ConnOptions struct {
	Host      string
	Port      int
	ID        string
	IDPrefix  string
	KeepAlive int
	Username  string
	Password  string
	Version   string
	Debug     bool
	Quiet     bool

	// URL is -L: mqtt|mqtts|ws|wss://[user[:pass]@]host[:port]/topic.
	URL string
	// URLTopic is the topic of -L, set by clientConfig. pub publishes to
	// it when -t is not given; sub subscribes to it as well as to its -t
	// filters. Each command validates it like -t.
	URLTopic string

	CAFile        string
	CAPath        string
	CertFile      string
	KeyFile       string
	Insecure      bool
	TLSVersion    string
	TLSUseOSCerts bool
	ALPN          string
	NoTLS         bool

	WebSocket      bool
	WSPath         string
	Unix           string
	BindAddress    string
	NoDelay        bool
	ConnectTimeout string

	NoCleanSession bool   // -c
	SessionExpiry  string // -x

	WillTopic   string
	WillPayload string
	WillQoS     int
	WillRetain  bool

	PasswordPrompt bool
	ConfigFile     string
	Profile        string

	// StdinBusy must be set by a command that reads its messages from
	// stdin (pub -s, pub -l) before clientConfig: --password-prompt then
	// reads from the terminal (/dev/tty) or refuses.
	StdinBusy bool

	given map[string]bool // flags given on the command line, by name
	eff   effective       // what clientConfig decided, for -d and error hints
}

// effective records where the connection settings came from, for -d and
// for error messages that say which flag to change.
type effective struct {
	profile   *Profile
	tlsFrom   string // what turned TLS on: "--cafile", "-p 8883", "-L mqtts://", ...
	caFrom    string // what the broker's certificate is checked against
	certFile  string // client certificate file
	insecure  bool
	transport client.Transport
}

const (
	defaultPort      = 1883
	defaultTLSPort   = 8883
	defaultKeepAlive = 60
	defaultTimeout   = 10 * time.Second
	// neverExpires is the MQTT 5 session expiry meaning "never" (-x -1).
	neverExpires = math.MaxUint32
)

// Flag categories in --help.
const (
	catConn = "Connection"
	catAuth = "Authentication"
	catTLS  = "TLS"
	catWill = "Session and will"
)

// mark returns a flag Action that records that the flag was given on
// the command line (urfave runs Actions only for flags that were set).
func mark[T any](o *ConnOptions, name string) func(*cli.Context, T) error {
	return func(*cli.Context, T) error {
		if o.given == nil {
			o.given = map[string]bool{}
		}
		o.given[name] = true
		return nil
	}
}

// connFlags declares the shared connection flags bound to o.
func connFlags(o *ConnOptions) []cli.Flag {
	str := func(name string, aliases []string, dst *string, cat, usage string) *cli.StringFlag {
		return &cli.StringFlag{Name: name, Aliases: aliases, Destination: dst, Category: cat, Usage: usage, Action: mark[string](o, name)}
	}
	boolean := func(name string, aliases []string, dst *bool, cat, usage string) *cli.BoolFlag {
		return &cli.BoolFlag{Name: name, Aliases: aliases, Destination: dst, Category: cat, Usage: usage, Action: mark[bool](o, name)}
	}
	integer := func(name string, aliases []string, dst *int, cat, usage, def string) *cli.IntFlag {
		return &cli.IntFlag{Name: name, Aliases: aliases, Destination: dst, Category: cat, Usage: usage, DefaultText: def, Action: mark[int](o, name)}
	}
	return []cli.Flag{
		str("host", []string{"h"}, &o.Host, catConn, "broker host (default: localhost; env MQTT_HOST)"),
		integer("port", []string{"p"}, &o.Port, catConn, "broker port (env MQTT_PORT; 8883 turns TLS on)", "1883, or 8883 with TLS"),
		str("url", []string{"L"}, &o.URL, catConn, "broker and topic as a URL: mqtt|mqtts|ws|wss://[user[:pass]@]host[:port]/topic"),
		str("profile", nil, &o.Profile, catConn, "use the named connection profile from the config file or a built-in one (env MQTT_PROFILE)"),
		str("config", nil, &o.ConfigFile, catConn, "profiles file (default: $XDG_CONFIG_HOME/mqttkit/config.yaml)"),
		str("protocol-version", []string{"V"}, &o.Version, catConn, "MQTT version: 5, 311 or 31 (also mqttv5, mqttv311, mqttv31) (default: 5, falling back to 311 if the broker refuses 5)"),
		str("id", []string{"i"}, &o.ID, catConn, "client id (default: assigned by the broker; env MQTT_CLIENT_ID)"),
		str("id-prefix", []string{"I"}, &o.IDPrefix, catConn, "client id prefix; the process id is appended"),
		integer("keepalive", []string{"k"}, &o.KeepAlive, catConn, "keepalive in seconds (5..65535)", "60"),
		str("connect-timeout", nil, &o.ConnectTimeout, catConn, "give up when TCP, TLS and CONNACK take longer than this (seconds or e.g. 1500ms) (default: 10)"),
		boolean("ws", nil, &o.WebSocket, catConn, "connect over WebSockets (like ws:// and wss:// URLs)"),
		str("ws-path", nil, &o.WSPath, catConn, "HTTP path for WebSockets (default: /mqtt)"),
		str("unix", nil, &o.Unix, catConn, "connect to the broker's unix socket at this path"),
		str("bind-address", []string{"A"}, &o.BindAddress, catConn, "local address to bind the connection to"),
		boolean("nodelay", nil, &o.NoDelay, catConn, "accepted for mosquitto compatibility: Nagle's algorithm is always off"),

		str("username", []string{"u"}, &o.Username, catAuth, "username (env MQTT_USERNAME)"),
		str("password", []string{"P", "pw"}, &o.Password, catAuth, "password (prefer MQTT_PASSWORD or --password-prompt: argv is visible to other users)"),
		boolean("password-prompt", nil, &o.PasswordPrompt, catAuth, "ask for the password without echoing it (reads a line from stdin when it is not a terminal)"),

		str("cafile", nil, &o.CAFile, catTLS, "PEM file of CA certificates to trust; turns TLS on"),
		str("capath", nil, &o.CAPath, catTLS, "directory of PEM CA certificates to trust; turns TLS on"),
		str("cert", nil, &o.CertFile, catTLS, "client certificate (PEM), with --key"),
		str("key", nil, &o.KeyFile, catTLS, "client private key (PEM), with --cert"),
		boolean("insecure", nil, &o.Insecure, catTLS, "do not check the broker's host name against its certificate (the chain is still verified)"),
		str("tls-version", nil, &o.TLSVersion, catTLS, "lowest TLS version: tlsv1.3, tlsv1.2 or tlsv1.1 (default: tlsv1.2)"),
		boolean("tls-use-os-certs", nil, &o.TLSUseOSCerts, catTLS, "trust the system's CA certificates; turns TLS on"),
		str("tls-alpn", nil, &o.ALPN, catTLS, "TLS ALPN protocol to ask for"),
		boolean("no-tls", nil, &o.NoTLS, catTLS, "no TLS, even when the port (8883), -L or the profile implies it"),

		boolean("disable-clean-session", []string{"c"}, &o.NoCleanSession, catWill, "keep the session when disconnected (needs -i)"),
		str("session-expiry", []string{"x"}, &o.SessionExpiry, catWill, "MQTT 5 session expiry interval in seconds; -1 or ∞ for never"),
		str("will-topic", nil, &o.WillTopic, catWill, "topic of the will message"),
		str("will-payload", nil, &o.WillPayload, catWill, "payload of the will message"),
		integer("will-qos", nil, &o.WillQoS, catWill, "QoS of the will message", "0"),
		boolean("will-retain", nil, &o.WillRetain, catWill, "retain the will message"),

		boolean("debug", []string{"d"}, &o.Debug, "", "print every MQTT packet sent and received, in mosquitto's words, and the effective connection settings, on stderr"),
		boolean("quiet", nil, &o.Quiet, "", "do not print runtime errors"),
	}
}

// traceTo returns a client.Config.Trace that writes mosquitto's -d packet
// lines to w (stderr: stdout carries messages only), one whole line per
// write. With quiet (--quiet) the "Subscribed (mid: 1): 0, 135" line is
// left out, as mosquitto_sub -d --quiet leaves it out: it is the
// subscriber's own line, not one of the library's packet lines, which
// --quiet keeps.
func traceTo(w io.Writer, quiet bool) func(string) {
	var mu sync.Mutex
	return func(line string) {
		if quiet && strings.HasPrefix(line, "Subscribed (") {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		_, _ = io.WriteString(w, line+"\n")
	}
}

// set reports whether flag name was given on the command line.
func (o *ConnOptions) set(name string) bool { return o.given[name] }

// clientConfig checks the connection flags, merges them with the
// environment and the profile, and returns the client configuration.
func (o *ConnOptions) clientConfig(d *Deps) (*client.Config, error) {
	if o.Debug {
		d.Level.Set(slog.LevelDebug)
	}
	getenv := d.IO.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	o.eff = effective{}
	cfg := &client.Config{Host: "localhost", KeepAlive: defaultKeepAlive, CleanStart: true, Log: d.Log, Transport: client.TCP}
	if o.Debug {
		cfg.Trace = traceTo(d.IO.ErrOut, o.Quiet)
	}
	version := "5"
	versionFixed := false // the user chose the version: no fallback to 3.1.1
	timeout := defaultTimeout
	tlsOn, tlsFrom := false, ""
	var topt tlsOptions
	passSet := false
	portZero := false       // -p 0: mosquitto's unix socket at -h
	profilePort := false    // the port is the profile's plain port (no -p, MQTT_PORT or -L)
	anyProfilePort := false // the port is the profile's (plain or TLS), not overridden

	// Profile.
	p, err := o.profile(getenv)
	if err != nil {
		return nil, err
	}
	if p != nil {
		o.eff.profile = p
		if p.URL != "" {
			u, _ := p.parseURL() // checked when loaded
			cfg.Host, cfg.Port, cfg.Transport, cfg.WSPath = u.host, u.port, u.transport, u.wsPath
			if u.tls {
				tlsOn, tlsFrom = true, p.where()
			}
		}
		if p.Host != "" {
			cfg.Host = p.Host
		}
		if p.Port != 0 {
			cfg.Port = p.Port
			profilePort = p.TLS == nil
			anyProfilePort = p.Transport == "" || p.Transport == "tcp"
		}
		if p.Transport != "" {
			cfg.Transport, _ = p.transport()
		}
		if p.WSPath != "" {
			cfg.WSPath = p.WSPath
		}
		if t := p.TLS; t != nil {
			tlsOn, tlsFrom = true, p.where()
			topt = tlsOptions{CAFile: p.path(t.CAFile, getenv), CAPath: p.path(t.CAPath, getenv),
				CertFile: p.path(t.Cert, getenv), KeyFile: p.path(t.Key, getenv), Insecure: t.Insecure,
				Version: t.Version, ALPN: t.ALPN, UseOSCerts: t.UseOSCerts}
		}
		cfg.Username = p.Username
		if p.UsernameEnv != "" {
			cfg.Username = getenv(p.UsernameEnv)
		}
		cfg.Password, passSet = p.Password, p.Password != ""
		if p.PasswordEnv != "" {
			cfg.Password = getenv(p.PasswordEnv)
			passSet = cfg.Password != ""
		}
		if p.ProtocolVersion != "" {
			version, versionFixed = p.ProtocolVersion, true
		}
		if p.KeepAlive != 0 {
			cfg.KeepAlive = uint16(p.KeepAlive)
		}
		cfg.ClientID = p.ClientID
		if p.ConnectTimeout != "" {
			timeout, _ = parseTimeout(p.ConnectTimeout)
		}
	}

	// Environment.
	if v := getenv("MQTT_HOST"); v != "" {
		cfg.Host = v
	}
	if v := getenv("MQTT_PORT"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 65535 {
			return nil, usageErrorf("Invalid port given in MQTT_PORT: %s", v)
		}
		cfg.Port = n
		profilePort, anyProfilePort = false, false
	}
	if v := getenv("MQTT_USERNAME"); v != "" {
		cfg.Username = v
	}
	if v := getenv("MQTT_PASSWORD"); v != "" {
		cfg.Password, passSet = v, true
	}
	if v := getenv("MQTT_CLIENT_ID"); v != "" {
		cfg.ClientID = v
	}

	// -L, then the other flags.
	o.URLTopic = ""
	if o.set("url") {
		u, err := ParseURL(o.URL)
		if err != nil {
			return nil, &UsageError{Err: err}
		}
		o.URLTopic = u.Topic
		cfg.Host, cfg.Port, cfg.Transport = u.Host, u.Port, u.Transport
		profilePort, anyProfilePort = false, false
		if u.TLS {
			tlsOn, tlsFrom = true, "-L "+u.Scheme+"://"
			topt.UseOSCerts = true
		} else if p != nil && p.TLS != nil {
			tlsOn = false // the URL names a plain endpoint instead of the profile's
		}
		if u.HasUser {
			cfg.Username = u.Username
			cfg.Password, passSet = u.Password, u.HasPass
		}
	}
	if o.set("host") {
		cfg.Host = o.Host
	}
	if o.set("port") {
		if o.Port < 0 || o.Port > 65535 {
			return nil, usageErrorf("Invalid port given: %d", o.Port)
		}
		cfg.Port = o.Port
		portZero = o.Port == 0
		profilePort, anyProfilePort = false, false
	}
	wsOnMQTTPort := false // --ws on a profile whose port is for MQTT over TCP
	if o.set("ws") && o.WebSocket {
		wsOnMQTTPort = anyProfilePort && cfg.Transport == client.TCP
		cfg.Transport = client.WebSocket
	}
	if o.set("ws-path") {
		if !strings.HasPrefix(o.WSPath, "/") {
			return nil, usageErrorf("--ws-path must start with /: %q", o.WSPath)
		}
		cfg.WSPath = o.WSPath
	}
	if o.set("username") {
		cfg.Username = o.Username
	}
	if o.set("password") {
		cfg.Password, passSet = o.Password, true
	}
	if o.set("protocol-version") {
		version, versionFixed = o.Version, true
	}
	if o.set("keepalive") {
		if o.KeepAlive < 5 || o.KeepAlive > 65535 {
			return nil, usageErrorf("Invalid keepalive given, it must be between 5 and 65535 inclusive.")
		}
		cfg.KeepAlive = uint16(o.KeepAlive)
	}
	if o.set("id") {
		if o.ID == "" {
			return nil, usageErrorf("Invalid id.")
		}
		cfg.ClientID = o.ID
	}
	if o.set("id") && o.set("id-prefix") {
		return nil, usageErrorf("-i and -I argument cannot be used together.")
	}
	if o.set("id-prefix") {
		cfg.ClientID = o.IDPrefix + strconv.Itoa(os.Getpid())
	}
	if o.set("connect-timeout") {
		t, err := parseTimeout(o.ConnectTimeout)
		if err != nil {
			return nil, usageErrorf("--connect-timeout: %v", err)
		}
		timeout = t
	}
	cfg.ConnectTimeout = timeout
	cfg.BindAddress, cfg.NoDelay = o.BindAddress, o.NoDelay
	if cfg.Host == "" {
		return nil, usageErrorf("empty host")
	}

	v, err := client.ParseVersion(version)
	if err != nil {
		return nil, usageErrorf("Invalid protocol version argument given.")
	}
	cfg.Version = v
	cfg.Fallback311 = v == client.V5 && !versionFixed
	if v == client.V31 && cfg.ClientID == "" {
		// MQTT 3.1 has no broker-assigned ids; libmosquitto makes one up.
		cfg.ClientID = randomID()
	}

	// Transport: unix socket (--unix, or mosquitto's -p 0 with -h PATH).
	if o.set("unix") || portZero {
		path := o.Unix
		if !o.set("unix") {
			path = cfg.Host
		}
		cfg.Transport, cfg.Socket, cfg.Host, cfg.Port = client.Unix, path, path, 0
	}

	// TLS.
	for _, f := range []struct {
		name string
		dst  *string
		val  string
	}{{"cafile", &topt.CAFile, o.CAFile}, {"capath", &topt.CAPath, o.CAPath}, {"cert", &topt.CertFile, o.CertFile},
		{"key", &topt.KeyFile, o.KeyFile}, {"tls-version", &topt.Version, o.TLSVersion}, {"tls-alpn", &topt.ALPN, o.ALPN}} {
		if o.set(f.name) {
			*f.dst = f.val
			if f.name == "cafile" || f.name == "capath" || f.name == "cert" {
				tlsOn, tlsFrom = true, "--"+f.name
			}
		}
	}
	if o.set("insecure") {
		topt.Insecure = o.Insecure
	}
	if o.set("tls-use-os-certs") && o.TLSUseOSCerts {
		topt.UseOSCerts = true
		tlsOn, tlsFrom = true, "--tls-use-os-certs"
	}
	if !tlsOn && cfg.Port == defaultTLSPort && cfg.Transport == client.TCP {
		// mosquitto: -p 8883 without CA options means TLS with the system's CAs.
		tlsOn, tlsFrom = true, "-p 8883"
		topt.UseOSCerts = true
	}
	if o.set("no-tls") && o.NoTLS {
		if o.set("cafile") || o.set("capath") || o.set("cert") || o.set("tls-use-os-certs") {
			return nil, usageErrorf("--no-tls cannot be used with --cafile, --capath, --cert or --tls-use-os-certs")
		}
		tlsOn = false
	}
	if wsOnMQTTPort {
		// "--profile hivemq --ws": the profile's port is an MQTT port;
		// a preset's WebSocket sibling knows the right one.
		port, path := p.webSocketPort(tlsOn)
		if port == 0 {
			return nil, usageErrorf("--ws: profile %q gives the MQTT port %d, not a WebSocket port: give the broker's WebSocket port with -p", p.name, cfg.Port)
		}
		cfg.Port, profilePort = port, false
		if !o.set("ws-path") && path != "" {
			cfg.WSPath = path
		}
	}
	if tlsOn && profilePort {
		// A flag turned TLS on for a plain profile ("--profile hivemq
		// --tls-use-os-certs"): its plain port would fail; use its TLS
		// port, 8883 for MQTT without one.
		switch {
		case p.TLSPort != 0:
			cfg.Port = p.TLSPort
		case cfg.Transport == client.TCP:
			cfg.Port = defaultTLSPort
		}
	}
	if tlsOn {
		if cfg.Transport == client.Unix {
			return nil, usageErrorf("TLS over a unix socket is not supported (%s)", tlsFrom)
		}
		tc, err := topt.config()
		if err != nil {
			return nil, err
		}
		cfg.TLS = tc
		o.eff.tlsFrom, o.eff.certFile, o.eff.insecure = tlsFrom, topt.CertFile, topt.Insecure
		o.eff.caFrom = caDescription(topt)
	} else if (topt.CertFile == "") != (topt.KeyFile == "") {
		return nil, usageErrorf("Both certfile and keyfile must be provided if one of them is set.")
	}
	if cfg.Port == 0 && cfg.Transport != client.Unix {
		cfg.Port = defaultPort
		if cfg.TLS != nil {
			cfg.Port = defaultTLSPort
		}
	}
	o.eff.transport = cfg.Transport

	// Credentials.
	if o.set("password-prompt") && o.PasswordPrompt {
		if o.set("password") {
			return nil, usageErrorf("use -P or --password-prompt, not both")
		}
		pw, err := promptPassword(d, o.StdinBusy)
		if err != nil {
			return nil, err
		}
		cfg.Password, passSet = pw, true
	}
	if p != nil {
		if p.UsernameEnv != "" && cfg.Username == "" {
			return nil, usageErrorf("%s needs a username: set %s or pass -u", p.where(), p.UsernameEnv)
		}
		if p.PasswordEnv != "" && !passSet {
			return nil, usageErrorf("%s needs a password: set %s, or use --password-prompt", p.where(), p.PasswordEnv)
		}
	}
	cfg.PasswordSet = passSet && cfg.Password == ""
	if v != client.V5 && passSet && cfg.Username == "" {
		return nil, usageErrorf("Problem setting username and/or password.")
	}

	// Session.
	if err := o.session(cfg); err != nil {
		return nil, err
	}
	if err := o.will(cfg); err != nil {
		return nil, err
	}
	o.logSettings(d, cfg)
	return cfg, nil
}

// profile loads the profile named by --profile or MQTT_PROFILE, if any.
func (o *ConnOptions) profile(getenv func(string) string) (*Profile, error) {
	name := getenv("MQTT_PROFILE")
	if o.set("profile") {
		name = o.Profile
	}
	path, explicit := defaultConfigPath(getenv), false
	if o.set("config") {
		path, explicit = o.ConfigFile, true
	}
	if name == "" {
		if explicit {
			return nil, usageErrorf("--config %s given but no profile chosen: add --profile NAME or set MQTT_PROFILE", o.ConfigFile)
		}
		return nil, nil
	}
	return loadProfile(name, path, explicit, getenv)
}

// session applies -c and -x with mosquitto's rules (reference §1.4).
func (o *ConnOptions) session(cfg *client.Config) error {
	cfg.CleanStart = !o.NoCleanSession
	var expiry *uint32
	if o.set("session-expiry") {
		e, err := parseExpiry(o.SessionExpiry)
		if err != nil {
			return err
		}
		if cfg.Version != client.V5 {
			return usageErrorf("-x (session expiry) needs MQTT 5: drop -V %s or -x", strings.TrimPrefix(cfg.Version.String(), "mqttv"))
		}
		expiry = &e
	}
	if !o.NoCleanSession {
		cfg.SessionExpiry = expiry
		return nil
	}
	hasID := o.set("id") && o.ID != ""
	if cfg.Version != client.V5 {
		if !hasID {
			return usageErrorf("You must provide a client id if you are using the -c option.")
		}
		return nil
	}
	if expiry == nil {
		e := uint32(neverExpires)
		expiry = &e
	}
	if *expiry == neverExpires && !hasID {
		return usageErrorf("You must provide a client id if you are using an infinite session expiry interval.")
	}
	// Setting SessionExpiry also keeps Dial from falling back to 3.1.1.
	cfg.SessionExpiry = expiry
	return nil
}

// parseExpiry reads -x like mosquitto: strtol base 0, -1, 4294967295 or ∞ for never.
func parseExpiry(s string) (uint32, error) {
	if s == "∞" {
		return neverExpires, nil
	}
	n, err := strconv.ParseInt(s, 0, 64)
	if err != nil {
		if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
			return 0, usageErrorf("session-expiry-interval out of range.")
		}
		return 0, usageErrorf("session-expiry-interval not a number.")
	}
	if n < -1 || n > neverExpires {
		return 0, usageErrorf("session-expiry-interval out of range.")
	}
	if n == -1 {
		return neverExpires, nil
	}
	return uint32(n), nil
}

// will applies --will-* with mosquitto's checks.
func (o *ConnOptions) will(cfg *client.Config) error {
	if o.set("will-qos") && (o.WillQoS < 0 || o.WillQoS > 2) {
		return usageErrorf("Invalid will QoS %d.", o.WillQoS)
	}
	if !o.set("will-topic") {
		if o.set("will-payload") {
			return usageErrorf("Will payload given, but no will topic given.")
		}
		if o.set("will-retain") && o.WillRetain {
			return usageErrorf("Will retain given, but no will topic given.")
		}
		return nil
	}
	if err := client.ValidateTopic(o.WillTopic); err != nil || o.WillTopic == "" {
		return usageErrorf("Invalid will topic '%s', does it contain '+' or '#'?", o.WillTopic)
	}
	cfg.Will = &client.Message{Topic: o.WillTopic, Payload: []byte(o.WillPayload), QoS: byte(o.WillQoS), Retain: o.WillRetain}
	return nil
}

// caDescription says what the broker's certificate is checked against.
func caDescription(t tlsOptions) string {
	var parts []string
	if t.CAFile != "" {
		parts = append(parts, "the CA certificates in "+t.CAFile)
	}
	if t.CAPath != "" {
		parts = append(parts, "the CA certificates in "+t.CAPath)
	}
	if t.UseOSCerts || len(parts) == 0 {
		parts = append(parts, "the system's CA certificates")
	}
	return strings.Join(parts, " and ")
}

// logSettings prints the effective settings under -d, never the password.
func (o *ConnOptions) logSettings(d *Deps, cfg *client.Config) {
	if !d.Log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	attrs := []any{}
	if p := o.eff.profile; p != nil {
		attrs = append(attrs, "profile", p.name)
		if p.file != "" {
			attrs = append(attrs, "profile_file", p.file)
		}
	}
	if cfg.Transport == client.Unix {
		attrs = append(attrs, "socket", cfg.Socket)
	} else {
		attrs = append(attrs, "host", cfg.Host, "port", cfg.Port)
	}
	attrs = append(attrs, "transport", transportName(cfg))
	if cfg.Transport == client.WebSocket {
		path := cfg.WSPath
		if path == "" {
			path = client.DefaultWSPath
		}
		attrs = append(attrs, "ws_path", path)
	}
	if cfg.TLS != nil {
		attrs = append(attrs, "tls_from", o.eff.tlsFrom, "ca", o.eff.caFrom)
		if o.eff.certFile != "" {
			attrs = append(attrs, "client_cert", o.eff.certFile)
		}
		if o.eff.insecure {
			attrs = append(attrs, "insecure", true)
		}
	}
	ver := cfg.Version.String()
	if cfg.Fallback311 {
		ver += " (3.1.1 if refused)"
	}
	attrs = append(attrs, "version", ver, "client_id", cfg.ClientID, "keepalive", cfg.KeepAlive,
		"clean_start", cfg.CleanStart, "connect_timeout", cfg.ConnectTimeout.String(), "username", cfg.Username)
	// Nothing about the password, not even its length: debug output
	// gets pasted into bug reports.
	if cfg.SessionExpiry != nil {
		attrs = append(attrs, "session_expiry", *cfg.SessionExpiry)
	}
	if cfg.Will != nil {
		attrs = append(attrs, "will_topic", cfg.Will.Topic)
	}
	if o.URLTopic != "" {
		attrs = append(attrs, "url_topic", o.URLTopic)
	}
	if p := o.eff.profile; p != nil && p.Topics != "" {
		attrs = append(attrs, "topics", p.Topics)
	}
	d.Log.Debug("connection settings", attrs...)
}

func transportName(cfg *client.Config) string {
	switch {
	case cfg.Transport == client.Unix:
		return "unix"
	case cfg.Transport == client.WebSocket && cfg.TLS != nil:
		return "wss"
	case cfg.Transport == client.WebSocket:
		return "ws"
	case cfg.TLS != nil:
		return "mqtts"
	}
	return "mqtt"
}

// runtimeErr explains connection failures (which flag to change) and
// marks err as silent when --quiet is set. The exit code is kept.
func (o *ConnOptions) runtimeErr(err error) error {
	if err == nil {
		return nil
	}
	err = o.explain(err)
	if !o.Quiet {
		return err
	}
	return &ExitError{Code: exitCode(err), Err: err, Silent: true}
}

// randomID is libmosquitto's client id for MQTT 3.1 without -i: "mosq-"
// and 18 random letters and digits.
func randomID() string {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := []byte("mosq-")
	for range 18 {
		b = append(b, chars[rand.IntN(len(chars))])
	}
	return string(b)
}

// describe names a broker address for messages.
func describe(cfg *client.Config) string {
	return cfg.Addr()
}
