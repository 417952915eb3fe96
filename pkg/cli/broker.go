// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/bridge"
	"github.com/mqttkit/mqttkit/pkg/broker"
	"github.com/mqttkit/mqttkit/pkg/logdest"
	"github.com/mqttkit/mqttkit/pkg/mosqconf"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// BrokerOptions holds everything `mqtt broker` needs once flags are parsed.
type BrokerOptions struct {
	ConfigFile     string
	Port           int
	Bind           string
	TLSPort        int
	WSPort         int
	WSSPort        int
	Cert           string
	Key            string
	CAFile         string
	RequireCert    bool
	IdentityAsUser bool
	SelfSignedDir  string
	PasswordFile   string
	ACLFile        string
	AllowAnonymous bool
	Persistence    string
	Metrics        string
	Verbose        bool
	ReadyFile      string

	cfg       broker.Config
	localOnly bool // mosquitto's local-only mode: no listener asked for
	level     slog.Level
	warnings  []string          // from the configuration file
	logSetup  logdest.Setup     // log_dest, log_timestamp, log_timestamp_format
	pidFile   string            // pid_file
	bridges   []*bridge.Config  // the connection sections of -c FILE
	set       func(string) bool // whether a flag was given
	// hup delivers reload requests (SIGHUP); tests inject their own.
	hup <-chan os.Signal
}

func newBrokerCmd(d *Deps, runF func(context.Context, *Deps, *BrokerOptions) error) *cli.Command {
	o := &BrokerOptions{}
	return &cli.Command{
		Name:  "broker",
		Usage: "run an MQTT broker (like mosquitto)",
		Description: `Without options the broker listens on localhost only (127.0.0.1 and ::1,
port 1883) and lets anonymous clients in, like mosquitto 2.0. As soon as it
listens on another address (--bind, or a listener in -c FILE), clients
need a username from --password-file unless --allow-anonymous is given.

-c FILE reads a mosquitto.conf (listener, password_file, acl_file, TLS,
websockets, persistence, limits; see docs/broker.md). Flags given as
well override the file. SIGHUP re-reads the password and ACL files (and
-c FILE for them) and the TLS certificate and key without dropping
connections.`,
		UsageText: `mqtt broker                                  # localhost:1883 only, anonymous clients allowed
mqtt broker -c /etc/mosquitto/mosquitto.conf
mqtt broker --bind 0.0.0.0 --password-file passwd --acl-file acl
mqtt broker --tls-self-signed ./tls          # TLS on localhost:8883 with a throwaway CA`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config-file", Aliases: []string{"c"}, Destination: &o.ConfigFile, Usage: "read a mosquitto.conf"},
			&cli.IntFlag{Name: "port", Aliases: []string{"p"}, Value: 1883, Destination: &o.Port, Usage: "MQTT port; 0 picks a free port"},
			&cli.StringFlag{Name: "bind", Destination: &o.Bind, Usage: "address to listen on (default: 127.0.0.1 and ::1 only)"},
			&cli.IntFlag{Name: "tls-port", Destination: &o.TLSPort, DefaultText: "off", Usage: "also listen for MQTT over TLS on this port (needs --cert and --key)"},
			&cli.IntFlag{Name: "ws-port", Destination: &o.WSPort, DefaultText: "off", Usage: "also listen for MQTT over WebSockets on this port"},
			&cli.IntFlag{Name: "wss-port", Destination: &o.WSSPort, DefaultText: "off", Usage: "also listen for MQTT over secure WebSockets on this port (needs --cert and --key)"},
			&cli.StringFlag{Name: "cert", Destination: &o.Cert, Usage: "server certificate (PEM) for the TLS listeners"},
			&cli.StringFlag{Name: "key", Destination: &o.Key, Usage: "server private key (PEM) for the TLS listeners"},
			&cli.StringFlag{Name: "cafile", Destination: &o.CAFile, Usage: "CA certificates (PEM) that sign client certificates"},
			&cli.BoolFlag{Name: "require-certificate", Destination: &o.RequireCert, Usage: "TLS clients must present a certificate signed by --cafile"},
			&cli.BoolFlag{Name: "use-identity-as-username", Destination: &o.IdentityAsUser, Usage: "on TLS listeners, the client certificate's CN is the username"},
			&cli.StringFlag{Name: "tls-self-signed", Destination: &o.SelfSignedDir, Usage: "write a throwaway CA and a localhost certificate into `DIR` and use them"},
			&cli.StringFlag{Name: "password-file", Destination: &o.PasswordFile, Usage: "mosquitto password file (see mqtt passwd)"},
			&cli.StringFlag{Name: "acl-file", Destination: &o.ACLFile, Usage: "mosquitto ACL file"},
			&cli.BoolFlag{Name: "allow-anonymous", Destination: &o.AllowAnonymous, Usage: "let clients without a username connect on every listener"},
			&cli.StringFlag{Name: "persistence", Destination: &o.Persistence, Usage: "keep retained messages and sessions in `DIR` across restarts"},
			&cli.StringFlag{Name: "metrics", Destination: &o.Metrics, Usage: "serve Prometheus /metrics and /healthz on `ADDR` (e.g. localhost:9100)"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Destination: &o.Verbose, Usage: "log every client event (debug level)"},
			&cli.StringFlag{Name: "ready-file", Destination: &o.ReadyFile, Usage: "write the first listener's address to this file once accepting connections"},
			// mosquitto -h prints the broker's help; the broker has no host flag.
			&cli.BoolFlag{Name: "h", Hidden: true},
		},
		Action: func(c *cli.Context) error {
			if c.Bool("h") {
				return cli.ShowSubcommandHelp(c)
			}
			if err := o.complete(c, d); err != nil {
				return withCmd(c, err)
			}
			if runF != nil {
				return runF(c.Context, d, o)
			}
			return runBroker(c.Context, d, o)
		},
	}
}

func (o *BrokerOptions) complete(c *cli.Context, d *Deps) error {
	if err := noArgs(c); err != nil {
		return err
	}
	o.set = c.IsSet
	return o.build(d)
}

// build turns the options (and -c FILE) into the broker configuration.
func (o *BrokerOptions) build(d *Deps) error {
	set := o.set
	if set == nil {
		set = func(string) bool { return false }
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"port", o.Port}, {"tls-port", o.TLSPort}, {"ws-port", o.WSPort}, {"wss-port", o.WSSPort}} {
		if p.v < 0 || p.v > 65535 {
			return usageErrorf("Invalid port given: %d", p.v)
		}
	}
	o.level = slog.LevelInfo
	cfg := mosqconf.NewConf().Config() // mosquitto's defaults (limits, $SYS)
	cfg.Port = o.Port
	fileListeners := false
	if o.ConfigFile != "" {
		conf, err := mosqconf.LoadConf(o.ConfigFile)
		if err != nil {
			return &ExitError{Code: ExitFailure, Err: err}
		}
		cfg = conf.Config()
		cfg.Port = o.Port
		fileListeners = !conf.LocalOnly()
		o.warnings = conf.Warnings
		o.level = conf.LogLevel()
		o.logSetup, o.pidFile = conf.Log, conf.PIDFile
		o.bridges = conf.Bridges
	}
	if o.Verbose {
		o.level = slog.LevelDebug
	}
	cfg.Log = d.Log

	// TLS material for the TLS listeners given by flags.
	tlsPort, wssPort := o.TLSPort, o.WSSPort
	hasTLSPort, hasWSSPort := set("tls-port"), set("wss-port")
	if o.SelfSignedDir != "" {
		if o.Cert != "" || o.Key != "" {
			return usageErrorf("--tls-self-signed writes its own certificate: do not give --cert or --key")
		}
		if !hasTLSPort && !hasWSSPort {
			tlsPort, hasTLSPort = 8883, true
		}
	}
	if (hasTLSPort || hasWSSPort) && o.SelfSignedDir == "" && (o.Cert == "" || o.Key == "") {
		return usageErrorf("--tls-port and --wss-port need --cert and --key (or --tls-self-signed DIR)")
	}
	if !hasTLSPort && !hasWSSPort && (o.Cert != "" || o.Key != "" || o.CAFile != "" || o.RequireCert || o.IdentityAsUser) {
		return usageErrorf("--cert, --key, --cafile, --require-certificate and --use-identity-as-username apply to --tls-port or --wss-port listeners: give one")
	}
	if (o.RequireCert || o.IdentityAsUser) && o.CAFile == "" && o.SelfSignedDir == "" {
		return usageErrorf("--require-certificate and --use-identity-as-username need --cafile to verify client certificates")
	}

	// Listeners given by flags: on --bind, or on loopback (local-only).
	var add []broker.Listener
	addOn := func(port int, proto string, tls bool) {
		hosts := []string{o.Bind}
		if o.Bind == "" {
			hosts = broker.LoopbackHosts()
			if port == 0 {
				hosts = hosts[:1] // one free port, not one per address
			}
		}
		for _, h := range hosts {
			l := broker.Listener{Address: net.JoinHostPort(h, strconv.Itoa(port)), Protocol: proto}
			if tls {
				l.TLS = &tlsfiles.Files{CertFile: o.Cert, KeyFile: o.Key, CAFile: o.CAFile, RequireCertificate: o.RequireCert}
				l.UseIdentityAsUsername = o.IdentityAsUser
			}
			add = append(add, l)
		}
	}
	extra := hasTLSPort || set("ws-port") || hasWSSPort
	if !fileListeners && (o.Bind != "" || extra) || fileListeners && (set("port") || set("bind")) {
		addOn(o.Port, "mqtt", false)
	}
	if hasTLSPort {
		addOn(tlsPort, "mqtt", true)
	}
	if set("ws-port") {
		addOn(o.WSPort, "websockets", false)
	}
	if hasWSSPort {
		addOn(wssPort, "websockets", true)
	}
	cfg.Listeners = append(cfg.Listeners, add...)
	o.localOnly = !fileListeners && o.Bind == ""

	// Security: flags override the file.
	if o.ConfigFile == "" {
		// mosquitto 2.0's default: anonymous clients only when the broker
		// is reachable from this machine alone and no password file is set.
		cfg.AllowAnonymous = o.Bind == "" && (!set("password-file") || o.PasswordFile == "")
	}
	sec := o.securityFlags(cfg.Security())
	cfg.PasswordFile, cfg.ACLFile, cfg.AllowAnonymous = sec.PasswordFile, sec.ACLFile, sec.AllowAnonymous
	for i, pl := range sec.PerListener {
		if pl != nil {
			cfg.Listeners[i].Security = pl
		}
	}
	if set("persistence") {
		cfg.PersistenceDir = o.Persistence
	}
	o.cfg = cfg
	return nil
}

// security is what a reload re-reads: -c FILE again when given, with the
// flags on top.
func (o *BrokerOptions) security() (broker.SecurityConfig, error) {
	if o.ConfigFile == "" {
		return o.cfg.Security(), nil
	}
	conf, err := mosqconf.LoadConf(o.ConfigFile)
	if err != nil {
		return broker.SecurityConfig{}, err
	}
	return o.securityFlags(conf.Config().Security()), nil
}

// securityFlags puts --password-file, --acl-file and --allow-anonymous on
// top of sec, for every listener (per_listener_settings included).
func (o *BrokerOptions) securityFlags(sec broker.SecurityConfig) broker.SecurityConfig {
	set := o.set
	if set == nil {
		set = func(string) bool { return false }
	}
	apply := func(s *broker.SecurityConfig) {
		if set("password-file") {
			s.PasswordFile = o.PasswordFile
		}
		if set("acl-file") {
			s.ACLFile = o.ACLFile
		}
		if o.AllowAnonymous {
			s.AllowAnonymous = true
		}
	}
	apply(&sec)
	for i, pl := range sec.PerListener {
		if pl != nil {
			own := *pl
			apply(&own)
			sec.PerListener[i] = &own
		}
	}
	return sec
}

// explainListen adds a hint to a port already in use: which flag moves
// the listener and what usually holds the MQTT ports.
func (o *BrokerOptions) explainListen(err error) error {
	var oe *net.OpError
	if !errors.Is(err, syscall.EADDRINUSE) || !errors.As(err, &oe) || oe.Addr == nil {
		return err
	}
	_, ps, _ := net.SplitHostPort(oe.Addr.String())
	port, _ := strconv.Atoi(ps)
	flag := ""
	for _, f := range []struct {
		name string
		v    int
	}{{"-p", o.Port}, {"--tls-port", o.TLSPort}, {"--ws-port", o.WSPort}, {"--wss-port", o.WSSPort}} {
		if f.v == port {
			flag = f.name
			break
		}
	}
	hint := fmt.Sprintf("another program is listening on port %d", port)
	if port == 1883 || port == 8883 {
		hint += " (often a system mosquitto: sudo systemctl stop mosquitto)"
	}
	switch {
	case flag != "":
		hint += fmt.Sprintf("; choose another port with %s PORT (%s 0 picks a free one)", flag, flag)
	case o.ConfigFile != "":
		hint += "; change the listener in " + o.ConfigFile
	}
	return fmt.Errorf("%w: %s.", err, hint)
}

// runBroker serves until ctx is cancelled, then shuts down cleanly.
func runBroker(ctx context.Context, d *Deps, o *BrokerOptions) error {
	d.Level.Set(o.level)
	log := d.Log
	var logging *logdest.Logging
	if ls := o.logSetup; ls.Dests != nil || ls.NoTimestamp || ls.TimestampFormat != "" {
		lg, err := logdest.Open(ls, d.IO.Out, d.IO.ErrOut, d.Level)
		if err != nil {
			return err
		}
		defer lg.Close()
		logging, log = lg, lg.Logger
		o.cfg.Log = log
	}
	for _, w := range o.warnings {
		log.Warn("config: " + w)
	}
	errOut := d.IO.ErrOut
	var selfSigned *tlsfiles.SelfSigned
	if o.SelfSignedDir != "" {
		s, err := tlsfiles.WriteSelfSigned(o.SelfSignedDir)
		if err != nil {
			return err
		}
		selfSigned = &s
		for i := range o.cfg.Listeners {
			if t := o.cfg.Listeners[i].TLS; t != nil {
				t.CertFile, t.KeyFile = s.CertFile, s.KeyFile
				if t.CAFile == "" && (t.RequireCertificate || o.cfg.Listeners[i].UseIdentityAsUsername) {
					t.CAFile = s.CAFile
				}
			}
		}
	}
	b, err := broker.New(o.cfg)
	if err != nil {
		return o.explainListen(err)
	}
	defer b.Close()
	if err := b.Start(); err != nil {
		return err
	}
	if logging != nil {
		logging.PublishTo(b)
	}
	if o.pidFile != "" {
		// Like mosquitto: the process id without a newline, removed at exit.
		if err := os.WriteFile(o.pidFile, []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			return fmt.Errorf("pid_file: %w", err)
		}
		defer os.Remove(o.pidFile)
	}
	// Bridges start after the broker and stop before it (defer order);
	// SIGHUP does not reload them, as in mosquitto.
	if len(o.bridges) > 0 {
		bridges, err := bridge.Start(o.bridges, b, log)
		if err != nil {
			return err
		}
		defer bridges.Stop()
		if iv := o.cfg.SysInterval; iv >= 0 {
			bridges.PublishSys(cmp.Or(iv, 10*time.Second)) // 0: the broker's default
		}
		b.AddMetrics(bridges.WriteMetrics)
	}
	var metrics string
	if o.Metrics != "" {
		if metrics, err = b.ServeMetrics(o.Metrics); err != nil {
			return err
		}
	}
	printStartup(errOut, o, b, metrics)
	if selfSigned != nil {
		printSelfSigned(errOut, b, *selfSigned)
	}
	if o.ReadyFile != "" {
		if err := writeReadyFile(o.ReadyFile, b.Addr()); err != nil {
			return err
		}
	}
	hup := o.hup
	if hup == nil {
		var stop func()
		hup, stop = reloadSignals()
		defer stop()
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			return nil
		case <-hup:
			reloadBroker(log, o, b)
			if logging != nil {
				if err := logging.Reopen(); err != nil {
					log.Error("reopening the log file failed, logging to the old one", "error", err)
				}
			}
		}
	}
}

// reloadBroker is SIGHUP: it re-reads the password and ACL files and the
// TLS certificates, as mosquitto does. Each part that fails keeps what it
// had and logs why; the others still reload.
func reloadBroker(log *slog.Logger, o *BrokerOptions, b *broker.Broker) {
	sec, err := o.security()
	if err == nil {
		err = b.Reload(sec)
	}
	if err != nil {
		log.Error("reload failed, the previous password and ACL files stay in force", "error", err)
	} else {
		log.Info("reloaded password and ACL files", "password_file", sec.PasswordFile, "acl_file", sec.ACLFile, "allow_anonymous", sec.AllowAnonymous)
	}
	certs, err := b.ReloadTLS()
	if len(certs) > 0 {
		log.Info("reloaded TLS certificates", "cert_files", strings.Join(certs, ","))
	}
	if err != nil {
		log.Error("TLS certificate reload failed, the previous certificate stays in force", "error", err)
	}
}

// printStartup says where the broker listens and who may connect.
func printStartup(w io.Writer, o *BrokerOptions, b *broker.Broker, metrics string) {
	if o.localOnly {
		fmt.Fprintln(w, "Starting in local only mode. Connections will only be possible from clients running on this machine.")
	}
	for _, l := range b.Listeners() {
		var notes []string
		switch l.ClientCerts {
		case "required":
			notes = append(notes, "client certificate required")
		case "optional":
			notes = append(notes, "client certificates verified")
		}
		if l.Identity {
			notes = append(notes, "username from certificate CN")
		}
		extra := ""
		if len(notes) > 0 {
			extra = ", " + strings.Join(notes, ", ")
		}
		fmt.Fprintf(w, "listening on %s (%s%s)\n", l.Addr, l.Protocol, extra)
	}
	cfg := o.cfg
	printSecurity(w, "", cfg.Security())
	for i, l := range cfg.Listeners {
		if l.Security != nil && i < len(b.Listeners()) {
			printSecurity(w, b.Listeners()[i].Addr+": ", *l.Security)
		}
	}
	if cfg.PersistenceDir != "" {
		fmt.Fprintf(w, "persistence: %s\n", cfg.PersistenceDir)
	}
	if metrics != "" {
		fmt.Fprintf(w, "metrics: http://%s/metrics\n", metrics)
	}
}

// printSecurity says who may connect and what they may do, for all
// listeners (prefix "") or for one (per_listener_settings).
func printSecurity(w io.Writer, prefix string, sec broker.SecurityConfig) {
	if prefix == "" && len(sec.PerListener) > 0 {
		fmt.Fprintln(w, "authentication and access control: per listener (per_listener_settings true)")
		return
	}
	auth := "none"
	if sec.PasswordFile != "" {
		auth = "password file " + sec.PasswordFile
	}
	anon := "anonymous clients refused"
	if sec.AllowAnonymous {
		anon = "anonymous clients allowed"
	}
	fmt.Fprintf(w, "%sauthentication: %s; %s\n", prefix, auth, anon)
	if sec.ACLFile != "" {
		fmt.Fprintf(w, "%saccess control: acl file %s\n", prefix, sec.ACLFile)
	} else {
		fmt.Fprintf(w, "%saccess control: none (clients may publish and subscribe to every topic)\n", prefix)
	}
}

// printSelfSigned tells how to connect to a --tls-self-signed broker.
func printSelfSigned(w io.Writer, b *broker.Broker, s tlsfiles.SelfSigned) {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	for _, l := range b.Listeners() {
		if l.Protocol != "mqtts" {
			continue
		}
		_, port, _ := net.SplitHostPort(l.Addr)
		cert := ""
		if l.ClientCerts != "" {
			cert = fmt.Sprintf(" --cert %s --key %s", shellQuote(abs(s.ClientCertFile)), shellQuote(abs(s.ClientKeyFile)))
		}
		verb := "written to"
		if s.Reused {
			verb = "reused from"
		}
		fmt.Fprintf(w, "TLS: throwaway CA %s %s (server certificate for localhost, 127.0.0.1 and ::1)\n", verb, abs(s.CAFile))
		fmt.Fprintf(w, "Connect with:\n  mqtt sub -h localhost -p %s --cafile %s%s -t '#' -v\n", port, shellQuote(abs(s.CAFile)), cert)
		return
	}
}

// shellQuote quotes a path for a copy-pasteable command line.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '-' || r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeReadyFile writes addr atomically so a watcher never sees it half written.
func writeReadyFile(path, addr string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o644); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	return os.Rename(tmp, path)
}
