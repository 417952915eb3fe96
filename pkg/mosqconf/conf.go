// SPDX-License-Identifier: Apache-2.0

// Package mosqconf reads mosquitto.conf (LoadConf, ParseConf) into a Conf
// and turns it into the broker's Config (Conf.Config). The broker knows
// nothing of the file's syntax; bridge sections are parsed by pkg/bridge.
package mosqconf

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mqttkit/mqttkit/pkg/acl"
	"github.com/mqttkit/mqttkit/pkg/bridge"
	"github.com/mqttkit/mqttkit/pkg/broker"
	"github.com/mqttkit/mqttkit/pkg/logdest"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// Conf is what a mosquitto.conf says, restricted to the subset mqtt broker
// understands (reference/mosquitto.md §9). Values not given in the file hold
// mosquitto's defaults. Relative paths are kept as written: like mosquitto,
// the broker resolves them against its working directory, not against the
// directory of the configuration file.
type Conf struct {
	// Listeners in mosquitto's order: every `listener` line, then the
	// default listener when `port`, `bind_address` or a listener option
	// appeared before the first `listener` line. Empty means local-only
	// mode (loopback, port 1883 or the command line's port).
	Listeners []ConfListener

	// ConfSecurity holds allow_anonymous, password_file, acl_file and
	// the client id options for all listeners; with per_listener_settings
	// true each listener has its own (ConfListener.Security) and these
	// stay unset.
	ConfSecurity
	// PerListenerSettings is per_listener_settings.
	PerListenerSettings bool

	Persistence         bool          // persistence
	PersistenceLocation string        // persistence_location, "" for the working directory
	AutosaveInterval    time.Duration // autosave_interval, default 30m; 0 = only at shutdown

	MaxInflightMessages int  // max_inflight_messages, default 20; 0 = unlimited
	MaxQueuedMessages   int  // max_queued_messages, default 1000; 0 = unlimited
	MessageSizeLimit    int  // message_size_limit in bytes, default 0 = MQTT maximum
	MaxPacketSize       int  // max_packet_size in bytes, default 0 = no limit
	RetainAvailable     bool // retain_available, default true
	MaxKeepalive        int  // max_keepalive in seconds, default 65535 (= no limit)
	// PersistentClientExpiration is persistent_client_expiration, 0 = never.
	PersistentClientExpiration time.Duration
	QueueQoS0Messages          bool // queue_qos0_messages
	MaxQueuedBytes             int  // max_queued_bytes, 0 = no limit
	UpgradeOutgoingQoS         bool // upgrade_outgoing_qos

	SysInterval time.Duration // sys_interval, default 10s; 0 disables $SYS
	LogTypes    []string      // log_type values in file order, nil when not set
	// Log is log_dest, log_timestamp and log_timestamp_format.
	Log     logdest.Setup
	PIDFile string // pid_file, "" for none

	// Bridges are the `connection` sections, in file order.
	Bridges []*bridge.Config

	// Warnings about directives mosquitto knows but mqtt broker ignores,
	// each "file:line: message".
	Warnings []string
}

// ConfSecurity is what `per_listener_settings true` makes per listener
// (mosquitto's security options).
type ConfSecurity struct {
	// AllowAnonymous is nil when the file does not say; see anonymousAllowed.
	AllowAnonymous *bool
	PasswordFile   string // password_file, "" for none
	ACLFile        string // acl_file, "" for none
	// AllowZeroLengthClientID is allow_zero_length_clientid, nil for the
	// default (true).
	AllowZeroLengthClientID *bool
	AutoIDPrefix            string // auto_id_prefix, "" for the default "auto-"
}

// ConfListener is one listener of a Conf.
type ConfListener struct {
	Port                  int    // 1-65535; 0 with Socket for a unix socket
	Bind                  string // host or address, "" for all interfaces
	Socket                string // unix socket path (`listener 0 PATH`)
	WebSockets            bool   // protocol websockets
	CAFile                string // cafile: CAs that sign client certificates
	CertFile              string // certfile: TLS on when set with KeyFile
	KeyFile               string // keyfile
	RequireCertificate    bool   // require_certificate
	TLSVersion            string // tls_version, "" for TLS 1.2 and later
	Ciphers               string // ciphers, "" for the defaults
	CRLFile               string // crlfile
	UseIdentityAsUsername bool   // use_identity_as_username
	UseSubjectAsUsername  bool   // use_subject_as_username
	UseUsernameAsClientID bool   // use_username_as_clientid
	MaxConnections        int    // max_connections, -1 = unlimited
	MaximumQoS            *int   // maximum_qos, 0-2; nil: not set (2)
	MountPoint            string // mount_point: topic prefix of its clients
	// Security is the listener's own allow_anonymous, password_file, ...
	// with per_listener_settings true; unused otherwise.
	Security ConfSecurity
	File     string // where the listener was defined, for messages
	Line     int    // line of `listener`, or the first default-listener option
}

// TLS reports whether the listener serves TLS (certfile and keyfile set).
func (l ConfListener) TLS() bool { return l.CertFile != "" && l.KeyFile != "" }

// Address is the listener's host:port, or the socket path.
func (l ConfListener) Address() string {
	if l.Socket != "" {
		return l.Socket
	}
	return net.JoinHostPort(l.Bind, strconv.Itoa(l.Port))
}

// LocalOnly reports mosquitto 2.0's local-only mode: the file defines no
// listener, so the broker listens on loopback only.
func (c *Conf) LocalOnly() bool { return len(c.Listeners) == 0 }

// anonymousAllowed is the effective allow_anonymous: the file's value when
// it sets one, otherwise true in local-only mode without password_file and
// false once a listener is defined (mosquitto 2.0's secure default) or a
// password_file is given. Unlike mosquitto 2.0, which lets anonymous
// clients in whenever it runs in local-only mode, an explicit
// `allow_anonymous false` and a password_file are honoured there too.
func (s ConfSecurity) anonymousAllowed(localOnly bool) bool {
	if s.AllowAnonymous != nil {
		return *s.AllowAnonymous
	}
	return localOnly && s.PasswordFile == ""
}

// security converts s to the broker's form.
func (s ConfSecurity) security(localOnly bool) broker.SecurityConfig {
	return broker.SecurityConfig{
		AllowAnonymous:           s.anonymousAllowed(localOnly),
		PasswordFile:             s.PasswordFile,
		ACLFile:                  s.ACLFile,
		RefuseZeroLengthClientID: s.AllowZeroLengthClientID != nil && !*s.AllowZeroLengthClientID,
		AutoIDPrefix:             s.AutoIDPrefix,
	}
}

// Config converts the file into a broker Config; Port (for local-only
// mode) and Log are left to the caller.
func (c *Conf) Config() broker.Config {
	sec := c.ConfSecurity.security(c.LocalOnly())
	cfg := broker.Config{
		AllowAnonymous:             sec.AllowAnonymous,
		PasswordFile:               sec.PasswordFile,
		ACLFile:                    sec.ACLFile,
		RefuseZeroLengthClientID:   sec.RefuseZeroLengthClientID,
		AutoIDPrefix:               sec.AutoIDPrefix,
		MaxInflight:                c.MaxInflightMessages,
		MaxQueued:                  c.MaxQueuedMessages,
		MessageSizeLimit:           c.MessageSizeLimit,
		MaxPacketSize:              c.MaxPacketSize,
		PersistentClientExpiration: c.PersistentClientExpiration,
		QueueQoS0Messages:          c.QueueQoS0Messages,
		MaxQueuedBytes:             c.MaxQueuedBytes,
		UpgradeOutgoingQoS:         c.UpgradeOutgoingQoS,
		DisableRetain:              !c.RetainAvailable,
		SysInterval:                c.SysInterval,
	}
	if c.MaxKeepalive < 65535 {
		cfg.MaxKeepalive = c.MaxKeepalive
	}
	if c.SysInterval == 0 {
		cfg.SysInterval = -1 // sys_interval 0 turns $SYS off
	}
	if c.Persistence {
		cfg.PersistenceDir = c.PersistenceLocation
		if cfg.PersistenceDir == "" {
			cfg.PersistenceDir = "." // mosquitto: the working directory
		}
	}
	for _, l := range c.Listeners {
		bl := broker.Listener{Address: l.Address(), UseIdentityAsUsername: l.UseIdentityAsUsername,
			UseSubjectAsUsername: l.UseSubjectAsUsername, UseUsernameAsClientID: l.UseUsernameAsClientID}
		if l.MaxConnections > 0 {
			bl.MaxConnections = l.MaxConnections
		}
		bl.MountPoint = l.MountPoint
		if l.MaximumQoS != nil && *l.MaximumQoS < 2 {
			q := byte(*l.MaximumQoS)
			bl.MaximumQoS = &q
		}
		switch {
		case l.Socket != "":
			bl.Protocol = "unix"
		case l.WebSockets:
			bl.Protocol = "websockets"
		}
		if c.PerListenerSettings {
			ls := l.Security.security(false)
			bl.Security = &ls
		}
		if l.TLS() {
			bl.TLS = &tlsfiles.Files{CertFile: l.CertFile, KeyFile: l.KeyFile, CAFile: l.CAFile, RequireCertificate: l.RequireCertificate,
				MinVersion: l.TLSVersion, Ciphers: l.Ciphers, CRLFile: l.CRLFile}
		}
		cfg.Listeners = append(cfg.Listeners, bl)
	}
	return cfg
}

// LogLevel is the most verbose level the log_type lines ask for: Info
// when there are none (mosquitto's default: error, warning, notice,
// information).
func (c *Conf) LogLevel() slog.Level {
	if len(c.LogTypes) == 0 {
		return slog.LevelInfo
	}
	level := slog.Level(12) // log_type none: nothing
	for _, t := range c.LogTypes {
		l := map[string]slog.Level{
			"error": slog.LevelError, "warning": slog.LevelWarn, "notice": slog.LevelInfo, "information": slog.LevelInfo,
			"debug": slog.LevelDebug, "all": slog.LevelDebug, "subscribe": slog.LevelDebug, "unsubscribe": slog.LevelDebug,
			"websockets": slog.LevelDebug, "none": 12,
		}[t]
		level = min(level, l)
	}
	return level
}

// NewConf returns a Conf holding mosquitto's defaults, as for an empty file.
func NewConf() *Conf {
	return &Conf{
		AutosaveInterval:    1800 * time.Second,
		MaxInflightMessages: 20,
		MaxQueuedMessages:   1000,
		MaxKeepalive:        65535,
		RetainAvailable:     true,
		SysInterval:         10 * time.Second,
	}
}

// LoadConf reads a mosquitto.conf from path. See ParseConf.
func LoadConf(path string) (*Conf, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open config file: %w", err)
	}
	defer f.Close()
	return ParseConf(path, f)
}

// ParseConf reads a mosquitto.conf. name is used in messages. A directive
// mosquitto knows but mqtt broker does not support gives a warning in
// Conf.Warnings; an unknown directive or a bad value is a *FileError naming
// file and line, with mosquitto's wording where mosquitto has one.
// `include_dir DIR` reads DIR/*.conf in mosquitto's order (only from the
// main file). Unlike mosquitto, comments may be indented, tabs separate
// tokens, and numbers must be numbers (mosquitto reads "abc" as 0).
func ParseConf(name string, r io.Reader) (*Conf, error) {
	p := &confParser{c: NewConf(), seen: map[string]bool{}}
	p.def = &ConfListener{MaxConnections: -1}
	if err := p.parse(name, r, 0); err != nil {
		return nil, err
	}
	if p.def.Line > 0 {
		if p.def.Port == 0 {
			p.def.Port = 1883
		}
		p.listeners = append(p.listeners, p.def)
	}
	if err := p.bridges.Finish(); err != nil {
		return nil, err // a *acl.FileError naming the section's `connection` line
	}
	p.c.Bridges = p.bridges.Bridges
	for _, l := range p.listeners {
		if (l.CertFile == "") != (l.KeyFile == "") {
			return nil, &acl.FileError{File: l.File, Line: l.Line,
				Msg: fmt.Sprintf("Both certfile and keyfile must be provided to enable TLS on the listener on %s", l.Address())}
		}
		p.c.Listeners = append(p.c.Listeners, *l)
	}
	return p.c, nil
}

// confParser is the state of ParseConf across lines and included files.
type confParser struct {
	c         *Conf
	listeners []*ConfListener
	def       *ConfListener // the default listener (port, bind_address); Line > 0 once used
	cur       *ConfListener // the last `listener`, which listener options apply to
	seen      map[string]bool
	secUsed   bool          // a security option was given (per_listener_settings must come first)
	bridges   bridge.Parser // the connection sections
	file      string
	line      int
}

func (p *confParser) errorf(format string, args ...any) error {
	return &acl.FileError{File: p.file, Line: p.line, Msg: fmt.Sprintf(format, args...)}
}

func (p *confParser) warnf(format string, args ...any) {
	p.c.Warnings = append(p.c.Warnings, fmt.Sprintf("%s:%d: ", p.file, p.line)+fmt.Sprintf(format, args...))
}

func (p *confParser) parse(name string, r io.Reader, level int) error {
	br := bufio.NewReader(r)
	line := 0
	for {
		raw, readErr := br.ReadString('\n')
		if readErr != nil && readErr != io.EOF {
			return fmt.Errorf("read config file %s: %w", name, readErr)
		}
		if raw == "" && readErr == io.EOF {
			return nil
		}
		line++
		p.file, p.line = name, line
		if err := p.directive(strings.TrimFunc(raw, isCSpace), level); err != nil {
			return err
		}
		if readErr == io.EOF {
			return nil
		}
	}
}

// listenerOpt returns the listener a listener-scoped option applies to: the
// current `listener`, or the default listener before the first one.
func (p *confParser) listenerOpt() *ConfListener {
	if p.cur != nil {
		return p.cur
	}
	return p.useDefault()
}

// useDefault marks the default listener as wanted and returns it.
func (p *confParser) useDefault() *ConfListener {
	if p.def.Line == 0 {
		p.def.File, p.def.Line = p.file, p.line
	}
	return p.def
}

func (p *confParser) directive(text string, level int) error {
	if text == "" || text[0] == '#' {
		return nil
	}
	key, value := text, ""
	if i := strings.IndexAny(text, " \t"); i >= 0 {
		key, value = text[:i], text[i+1:]
	}
	value = strings.TrimFunc(value, isCSpace)
	c := p.c
	if ok, warn, err := p.bridges.Directive(p.file, p.line, key, value); ok {
		if err != nil {
			var fe *acl.FileError
			if errors.As(err, &fe) {
				return err // about the section's `connection` line
			}
			return p.errorf("%v", err)
		}
		if warn != "" {
			p.warnf("%s", warn)
		}
		return nil
	}
	var err error
	switch key {
	case "listener":
		err = p.listener(value)
	case "port":
		var port int
		if port, err = p.intValue(key, value, 1, 65535, "Invalid port value (%s)"); err == nil {
			p.useDefault().Port = port
		}
	case "bind_address":
		err = p.stringOnce(key, "default listener bind_address", value, &p.useDefault().Bind)
	case "allow_anonymous":
		var b bool
		if b, err = p.boolValue(key, value); err == nil {
			p.security().AllowAnonymous = &b
		}
	case "allow_zero_length_clientid":
		var b bool
		if b, err = p.boolValue(key, value); err == nil {
			p.security().AllowZeroLengthClientID = &b
		}
	case "auto_id_prefix":
		err = p.stringScoped(key, value, &p.security().AutoIDPrefix)
	case "password_file":
		err = p.stringScoped(key, value, &p.security().PasswordFile)
	case "acl_file":
		err = p.stringScoped(key, value, &p.security().ACLFile)
	case "cafile":
		l := p.listenerOpt()
		err = p.stringScoped(key, value, &l.CAFile)
	case "certfile":
		l := p.listenerOpt()
		err = p.stringScoped(key, value, &l.CertFile)
	case "keyfile":
		l := p.listenerOpt()
		err = p.stringScoped(key, value, &l.KeyFile)
	case "tls_version":
		l := p.listenerOpt()
		if _, ok := tlsfiles.TLSVersion(value); !ok && value != "" {
			return p.errorf("Invalid tls_version value (%s), must be tlsv1.3, tlsv1.2 or tlsv1.1", value)
		}
		err = p.stringScoped(key, value, &l.TLSVersion)
	case "ciphers":
		l := p.listenerOpt()
		if err = p.stringScoped(key, value, &l.Ciphers); err == nil {
			if _, cerr := tlsfiles.CipherSuites(value); cerr != nil {
				return p.errorf("%v", cerr)
			}
		}
	case "crlfile":
		l := p.listenerOpt()
		err = p.stringScoped(key, value, &l.CRLFile)
	case "require_certificate":
		l := p.listenerOpt()
		l.RequireCertificate, err = p.boolValue(key, value)
	case "use_identity_as_username":
		l := p.listenerOpt()
		l.UseIdentityAsUsername, err = p.boolValue(key, value)
	case "use_subject_as_username":
		l := p.listenerOpt()
		l.UseSubjectAsUsername, err = p.boolValue(key, value)
	case "use_username_as_clientid":
		l := p.listenerOpt()
		l.UseUsernameAsClientID, err = p.boolValue(key, value)
	case "protocol":
		l := p.listenerOpt()
		switch value {
		case "mqtt":
			l.WebSockets = false
		case "websockets":
			l.WebSockets = true
		case "":
			err = p.errorf("Empty protocol value in configuration")
		default:
			err = p.errorf("Invalid protocol value (%s)", value)
		}
	case "max_connections":
		l := p.listenerOpt()
		l.MaxConnections, err = p.intValue(key, value, -1, 1<<31-1, "")
	case "mount_point":
		l := p.listenerOpt()
		// mosquitto_pub_topic_check: no wildcards, at most 200 levels.
		if strings.ContainsAny(value, "+#") || strings.Count(value, "/") > 200 {
			return p.errorf("Invalid mount_point (%s). Does it contain a wildcard character?", value)
		}
		err = p.stringScoped(key, value, &l.MountPoint)
	case "maximum_qos":
		l := p.listenerOpt()
		var n int
		if n, err = p.intValue(key, value, 0, 2, ""); err == nil {
			l.MaximumQoS = &n
		}
	case "persistence":
		c.Persistence, err = p.boolValue(key, value)
	case "persistence_location":
		err = p.stringOnce(key, key, value, &c.PersistenceLocation)
	case "autosave_interval":
		var n int
		n, err = p.intValue(key, value, 0, 1<<31-1, "")
		c.AutosaveInterval = time.Duration(n) * time.Second
	case "max_inflight_messages":
		c.MaxInflightMessages, err = p.intValue(key, value, 0, 65535, "")
	case "max_queued_messages":
		c.MaxQueuedMessages, err = p.intValue(key, value, 0, 1<<31-1, "")
	case "message_size_limit":
		c.MessageSizeLimit, err = p.intValue(key, value, 0, 268435455, "Invalid message_size_limit value (%s), must be between 0 and 268435455")
	case "max_keepalive":
		c.MaxKeepalive, err = p.intValue(key, value, 0, 65535, "Invalid max_keepalive value (%s)")
	case "persistent_client_expiration":
		c.PersistentClientExpiration, err = p.duration(key, value)
	case "queue_qos0_messages":
		c.QueueQoS0Messages, err = p.boolValue(key, value)
	case "max_queued_bytes":
		c.MaxQueuedBytes, err = p.intValue(key, value, 0, 1<<31-1, "")
	case "upgrade_outgoing_qos":
		c.UpgradeOutgoingQoS, err = p.boolValue(key, value)
	case "max_packet_size":
		c.MaxPacketSize, err = p.intValue(key, value, 20, 268435460, "Invalid max_packet_size value (%s), must be between 20 and 268435460")
	case "retain_available":
		c.RetainAvailable, err = p.boolValue(key, value)
	case "sys_interval":
		var n int
		n, err = p.intValue(key, value, 0, 65535, "")
		c.SysInterval = time.Duration(n) * time.Second
	case "log_type":
		switch value {
		case "debug", "error", "warning", "notice", "information", "subscribe", "unsubscribe", "websockets", "none", "all":
			c.LogTypes = append(c.LogTypes, value)
		case "":
			err = p.errorf("Empty log_type value in configuration")
		default:
			err = p.errorf("Invalid log_type value (%s)", value)
		}
	case "per_listener_settings":
		var b bool
		if b, err = p.boolValue(key, value); err == nil && b != c.PerListenerSettings {
			if p.secUsed {
				return p.errorf("per_listener_settings must be set before any other security settings")
			}
			c.PerListenerSettings = b
		}
	case "log_dest":
		err = p.logDest(value)
	case "log_timestamp":
		var b bool
		b, err = p.boolValue(key, value)
		c.Log.NoTimestamp = !b
	case "log_timestamp_format":
		err = p.stringOnce(key, key, value, &c.Log.TimestampFormat)
	case "pid_file":
		err = p.stringOnce(key, key, value, &c.PIDFile)
	case "include_dir":
		err = p.includeDir(value, level)
	default:
		if mosquittoDirective(key) {
			p.warnf("%s is not supported by mqtt broker, ignored", key)
			return nil
		}
		err = p.errorf("Unknown configuration variable %q", key)
	}
	return err
}

func (p *confParser) listener(value string) error {
	fields := strings.Fields(value)
	if len(fields) == 0 {
		return p.errorf("Empty listener value in configuration")
	}
	if len(fields) > 2 {
		return p.errorf("Invalid listener value (%s)", value)
	}
	port, err := strconv.Atoi(fields[0])
	if err != nil || port < 0 || port > 65535 {
		return p.errorf("Invalid port value (%s)", fields[0])
	}
	l := ConfListener{Port: port, MaxConnections: -1, File: p.file, Line: p.line}
	if len(fields) == 2 {
		l.Bind = fields[1]
	}
	if port == 0 {
		if l.Bind == "" {
			return p.errorf("A listener with port 0 must provide a Unix socket path")
		}
		l.Socket, l.Bind = l.Bind, ""
	}
	p.listeners = append(p.listeners, &l)
	p.cur = &l
	return nil
}

func (p *confParser) boolValue(key, value string) (bool, error) {
	switch value {
	case "true", "1":
		return true, nil
	case "false", "0":
		return false, nil
	case "":
		return false, p.errorf("Empty %s value in configuration", key)
	}
	return false, p.errorf("Invalid %s value (%s)", key, value)
}

// intValue parses a decimal integer in [lo, hi]; msg, when set, is the
// format for an out-of-range or malformed value.
func (p *confParser) intValue(key, value string, lo, hi int, msg string) (int, error) {
	if value == "" {
		return 0, p.errorf("Empty %s value in configuration", key)
	}
	n, err := strconv.Atoi(value)
	if err != nil || n < lo || n > hi {
		if msg != "" {
			return 0, p.errorf(msg, value)
		}
		return 0, p.errorf("Invalid %s value (%s), must be a number from %d to %d", key, value, lo, hi)
	}
	return n, nil
}

// duration parses mosquitto's expiration periods: a number and h, d, w, m
// (30 days) or y (365 days), e.g. 14d.
func (p *confParser) duration(key, value string) (time.Duration, error) {
	if value == "" {
		return 0, p.errorf("Empty %s value in configuration", key)
	}
	units := map[byte]time.Duration{'h': time.Hour, 'd': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'm': 30 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}
	unit, ok := units[value[len(value)-1]]
	n, err := strconv.Atoi(value[:len(value)-1])
	if !ok || err != nil || n <= 0 {
		return 0, p.errorf("Invalid %s duration (%s), must be a number followed by h, d, w, m or y", key, value)
	}
	return time.Duration(n) * unit, nil
}

// logDest adds a log_dest: the first one replaces the default (stderr),
// `none` removes all.
func (p *confParser) logDest(value string) error {
	kind, path, _ := strings.Cut(value, " ")
	path = strings.TrimFunc(path, isCSpace)
	log := &p.c.Log
	if log.Dests == nil {
		log.Dests = []logdest.Dest{}
	}
	switch kind {
	case "stderr", "stdout", "topic":
		log.Dests = append(log.Dests, logdest.Dest{Kind: kind})
	case "file":
		if path == "" {
			return p.errorf("Empty \"log_dest file\" value in configuration")
		}
		log.Dests = append(log.Dests, logdest.Dest{Kind: kind, Path: path})
	case "none":
		log.Dests = []logdest.Dest{}
	case "syslog", "dlt":
		p.warnf("log_dest %s is not supported by mqtt broker, ignored", kind)
	case "":
		return p.errorf("Empty log_dest value in configuration")
	default:
		return p.errorf("Invalid log_dest value (%s)", value)
	}
	return nil
}

// security returns the security options a directive sets: the global ones,
// or with per_listener_settings true those of the current listener (the
// default listener before the first `listener` line, as in mosquitto).
func (p *confParser) security() *ConfSecurity {
	p.secUsed = true
	switch {
	case !p.c.PerListenerSettings:
		return &p.c.ConfSecurity
	case p.cur != nil:
		return &p.cur.Security
	}
	// Not useDefault: these options alone do not open the default listener.
	return &p.def.Security
}

// stringScoped sets a string option once per scope: a listener, or the
// security scope (global or per listener).
func (p *confParser) stringScoped(key, value string, dst *string) error {
	if value == "" {
		return p.errorf("Empty %s value in configuration", key)
	}
	if *dst != "" {
		return p.errorf("Duplicate %s value in configuration", key)
	}
	*dst = value
	return nil
}

// stringOnce sets a global string option; mosquitto refuses duplicates.
func (p *confParser) stringOnce(key, desc, value string, dst *string) error {
	if value == "" {
		return p.errorf("Empty %s value in configuration", desc)
	}
	if p.seen[key] {
		return p.errorf("Duplicate %s value in configuration", desc)
	}
	p.seen[key] = true
	*dst = value
	return nil
}

// includeDir parses dir/*.conf in mosquitto's order: alphabetical ignoring
// case, an upper-case letter before the same lower-case one.
func (p *confParser) includeDir(dir string, level int) error {
	if dir == "" {
		return p.errorf("Empty include_dir value in configuration")
	}
	if level > 0 {
		return p.errorf("include_dir is only valid in the main configuration file")
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return p.errorf("Unable to open include_dir %q: %v", dir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".conf") {
			names = append(names, e.Name())
		}
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := strings.Compare(strings.ToLower(a), strings.ToLower(b)); c != 0 {
			return c
		}
		return strings.Compare(a, b)
	})
	file, line := p.file, p.line
	for _, n := range names {
		path := filepath.Join(dir, n)
		f, err := os.Open(path)
		if err != nil {
			p.file, p.line = file, line
			return p.errorf("Unable to open included file %q: %v", path, err)
		}
		err = p.parse(path, f, level+1)
		f.Close()
		if err != nil {
			return err
		}
	}
	p.file, p.line = file, line
	return nil
}

// mosquittoDirective reports whether name is a mosquitto 2.0 configuration
// variable (from mosquitto.conf(5)), so that one we do not support is a
// warning and a typo is an error.
func mosquittoDirective(name string) bool {
	if strings.HasPrefix(name, "auth_opt_") || strings.HasPrefix(name, "plugin_opt_") {
		return true
	}
	_, ok := mosquittoDirectives[name]
	return ok
}

var mosquittoDirectives = map[string]struct{}{
	"address": {}, "addresses": {}, "allow_duplicate_messages": {},
	"auth_plugin": {}, "auth_plugin_deny_special_chars": {}, "autosave_on_changes": {},
	"bind_interface": {}, "bridge_alpn": {}, "bridge_attempt_unsubscribe": {}, "bridge_bind_address": {},
	"bridge_cafile": {}, "bridge_capath": {}, "bridge_certfile": {}, "bridge_identity": {}, "bridge_insecure": {},
	"bridge_keyfile": {}, "bridge_max_packet_size": {}, "bridge_outgoing_retain": {}, "bridge_protocol_version": {},
	"bridge_psk": {}, "bridge_require_ocsp": {}, "bridge_tls_version": {}, "capath": {}, "check_retain_source": {},
	"ciphers_tls1.3": {}, "cleansession": {}, "clientid": {}, "clientid_prefixes": {}, "connection": {},
	"connection_messages": {}, "dhparamfile": {}, "global_max_clients": {}, "global_max_connections": {},
	"http_dir": {}, "idle_timeout": {}, "keepalive_interval": {}, "local_cleansession": {}, "local_clientid": {},
	"local_password": {}, "local_username": {}, "log_facility": {},
	"max_inflight_bytes": {}, "max_qos": {}, "max_topic_alias": {}, "memory_limit": {}, "notification_topic": {}, "notifications": {},
	"notifications_local_only": {}, "password": {}, "persistence_file": {}, "plugin": {}, "psk_file": {}, "psk_hint": {}, "remote_clientid": {},
	"remote_password": {}, "remote_username": {}, "restart_timeout": {}, "retry_interval": {}, "round_robin": {},
	"set_tcp_nodelay": {}, "socket_domain": {}, "start_type": {}, "store_clean_interval": {}, "threshold": {},
	"tls_engine": {}, "tls_engine_kpass_sha1": {}, "tls_keyform": {}, "topic": {}, "try_private": {},
	"user":     {},
	"username": {}, "websockets_headers_size": {}, "websockets_log_level": {},
}

// isCSpace is C's isspace in the "C" locale.
func isCSpace(r rune) bool {
	switch r {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}
