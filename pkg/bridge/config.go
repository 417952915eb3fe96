// SPDX-License-Identifier: Apache-2.0

// Package bridge runs mosquitto's bridges: a connection from the local
// broker to a remote MQTT broker that forwards messages of configured
// topics out, in or both ways.
//
// A bridge is a client of the local broker with a persistent session over
// an in-process connection, and a client of the remote broker. Messages
// for the remote wait in the local broker's session for the bridge (its
// queue, in-flight window, persistence and limits) and are acknowledged to
// the local broker only once the remote acknowledged them; while the
// remote is down the bridge has no local connection, so they stay queued
// there. Messages from the remote are published to the local broker
// through the same local connection (so the local ACL applies to
// local_username) and acknowledged to the remote once the local broker
// acknowledged them.
package bridge

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mqttkit/mqttkit/pkg/acl"
)

// Direction of a bridged topic.
type Direction int

// Directions of a topic line.
const (
	Out  Direction = iota // local to remote (mosquitto's default)
	In                    // remote to local
	Both                  // both ways
)

func (d Direction) String() string { return [...]string{"out", "in", "both"}[d] }

// Topic is one `topic` line: PATTERN [out|in|both] [qos] [local-prefix]
// [remote-prefix].
type Topic struct {
	Pattern      string // may be "" when a prefix is given (`""` in the file)
	Direction    Direction
	QoS          byte
	LocalPrefix  string
	RemotePrefix string
}

// LocalFilter is the subscription on the local broker: local prefix +
// pattern.
func (t Topic) LocalFilter() string { return t.LocalPrefix + t.Pattern }

// RemoteFilter is the subscription on the remote broker: remote prefix +
// pattern.
func (t Topic) RemoteFilter() string { return t.RemotePrefix + t.Pattern }

// ToRemote maps a local topic that matches LocalFilter to its remote name:
// the local prefix is replaced by the remote prefix. ok is false when the
// topic does not match.
func (t Topic) ToRemote(topic string) (string, bool) {
	if !acl.Match(t.LocalFilter(), topic) || !strings.HasPrefix(topic, t.LocalPrefix) {
		return "", false
	}
	return t.RemotePrefix + topic[len(t.LocalPrefix):], true
}

// ToLocal maps a remote topic that matches RemoteFilter to its local name.
func (t Topic) ToLocal(topic string) (string, bool) {
	if !acl.Match(t.RemoteFilter(), topic) || !strings.HasPrefix(topic, t.RemotePrefix) {
		return "", false
	}
	return t.LocalPrefix + topic[len(t.RemotePrefix):], true
}

// Address is one remote broker address.
type Address struct {
	Host string
	Port int
}

func (a Address) String() string { return joinHostPort(a.Host, a.Port) }

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(port)
	}
	return host + ":" + strconv.Itoa(port)
}

// Config is one `connection` section of a mosquitto.conf.
type Config struct {
	Name       string
	Addresses  []Address
	RoundRobin bool // round_robin: stay on the address that works (false: go back to the first)
	Topics     []Topic

	RemoteClientID string // remote_clientid, default HOSTNAME.NAME
	LocalClientID  string // local_clientid, default local.HOSTNAME.NAME
	RemoteUsername string
	RemotePassword string
	LocalUsername  string
	LocalPassword  string

	// CleanSession is cleansession (remote session), default false.
	CleanSession bool
	// LocalCleanSession is local_cleansession, nil: as CleanSession.
	LocalCleanSession *bool
	// ProtocolVersion is 3 (mqttv31), 4 (mqttv311, default) or 5 (mqttv50).
	ProtocolVersion byte
	TryPrivate      bool // try_private, default true

	Notifications          bool   // notifications, default true
	NotificationTopic      string // notification_topic, default $SYS/broker/connection/REMOTE_CLIENTID/state
	NotificationsLocalOnly bool   // notifications_local_only

	Keepalive       time.Duration // keepalive_interval, default 60s
	RestartTimeout  time.Duration // restart_timeout base, default 5s
	RestartCap      time.Duration // restart_timeout cap (second value), 0: constant RestartTimeout
	MaxPacketSize   int           // bridge_max_packet_size, 0: no limit
	OutgoingRetain  bool          // bridge_outgoing_retain, default true
	StartAutomatic  bool          // start_type automatic (the only one supported)
	AttemptUnsub    bool          // bridge_attempt_unsubscribe (not applied)
	CAFile          string        // bridge_cafile
	CAPath          string        // bridge_capath
	CertFile        string        // bridge_certfile
	KeyFile         string        // bridge_keyfile
	Insecure        bool          // bridge_insecure
	TLSVersion      string        // bridge_tls_version
	ALPN            string        // bridge_alpn
	ConfigFile      string        // where `connection` is, for messages
	ConfigLine      int
	hostnameDefault string
}

// TLS reports whether the bridge connects with TLS (bridge_cafile or
// bridge_capath set, as in mosquitto).
func (c *Config) TLS() bool { return c.CAFile != "" || c.CAPath != "" }

// LocalClean is the effective local_cleansession.
func (c *Config) LocalClean() bool {
	if c.LocalCleanSession != nil {
		return *c.LocalCleanSession
	}
	return c.CleanSession
}

// StateTopic is the notification topic.
func (c *Config) StateTopic() string {
	if c.NotificationTopic != "" {
		return c.NotificationTopic
	}
	return "$SYS/broker/connection/" + c.RemoteClientID + "/state"
}

func newConfig(name string) *Config {
	return &Config{
		Name:            name,
		ProtocolVersion: 4,
		TryPrivate:      true,
		Notifications:   true,
		Keepalive:       60 * time.Second,
		RestartTimeout:  5 * time.Second,
		RestartCap:      30 * time.Second,
		OutgoingRetain:  true,
		StartAutomatic:  true,
		AttemptUnsub:    true,
	}
}

// Parser collects the bridge sections of a mosquitto.conf. The
// configuration parser hands it every directive; Directive says whether
// the directive was a bridge one.
type Parser struct {
	Bridges []*Config
	cur     *Config
	// Hostname names the remote client id default (HOSTNAME.NAME); empty
	// for os.Hostname.
	Hostname string
}

// Directive applies one bridge directive. It reports handled false for a
// directive that is not a bridge one. warn, when set, is a warning about
// an option that is accepted but not applied; err is a bad value
// (without file and line: the caller adds them), or an *acl.FileError
// about the previous section, at its `connection` line.
func (p *Parser) Directive(file string, line int, key, value string) (handled bool, warn string, err error) {
	if key == "connection" {
		if value == "" {
			return true, "", fmt.Errorf("Empty connection value in configuration")
		}
		if strings.ContainsAny(value, " \t") {
			return true, "", fmt.Errorf("Invalid connection value (%s)", value)
		}
		for _, b := range p.Bridges {
			if b.Name == value {
				return true, "", fmt.Errorf("Duplicate bridge name %q", value)
			}
		}
		if err := p.check(); err != nil {
			return true, "", err
		}
		p.cur = newConfig(value)
		p.cur.ConfigFile, p.cur.ConfigLine = file, line
		p.Bridges = append(p.Bridges, p.cur)
		return true, "", nil
	}
	if _, ok := bridgeDirectives[key]; !ok {
		return false, "", nil
	}
	c := p.cur
	if c == nil {
		return true, "", fmt.Errorf("%s: Invalid bridge configuration (the option needs a connection section first)", key)
	}
	str := func(dst *string) error {
		if value == "" {
			return fmt.Errorf("Empty %s value in configuration", key)
		}
		if *dst != "" {
			return fmt.Errorf("Duplicate %s value in configuration", key)
		}
		*dst = value
		return nil
	}
	boolean := func(dst *bool) error {
		switch value {
		case "true", "1":
			*dst = true
		case "false", "0":
			*dst = false
		case "":
			return fmt.Errorf("Empty %s value in configuration", key)
		default:
			return fmt.Errorf("Invalid %s value (%s)", key, value)
		}
		return nil
	}
	number := func(lo, hi int) (int, error) {
		if value == "" {
			return 0, fmt.Errorf("Empty %s value in configuration", key)
		}
		n, err := strconv.Atoi(value)
		if err != nil || n < lo || n > hi {
			return 0, fmt.Errorf("Invalid %s value (%s), must be a number from %d to %d", key, value, lo, hi)
		}
		return n, nil
	}
	switch key {
	case "address", "addresses":
		if len(c.Addresses) > 0 {
			return true, "", fmt.Errorf("Duplicate address value in configuration")
		}
		if value == "" {
			return true, "", fmt.Errorf("Empty address value in configuration")
		}
		for _, a := range strings.Fields(value) {
			addr, err := parseAddress(a)
			if err != nil {
				return true, "", err
			}
			c.Addresses = append(c.Addresses, addr)
		}
	case "round_robin":
		err = boolean(&c.RoundRobin)
	case "topic":
		var t Topic
		if t, err = parseTopic(value); err == nil {
			c.Topics = append(c.Topics, t)
		}
	case "remote_clientid", "clientid":
		err = str(&c.RemoteClientID)
	case "local_clientid":
		err = str(&c.LocalClientID)
	case "remote_username", "username":
		err = str(&c.RemoteUsername)
	case "remote_password", "password":
		err = str(&c.RemotePassword)
	case "local_username":
		err = str(&c.LocalUsername)
	case "local_password":
		err = str(&c.LocalPassword)
	case "cleansession":
		err = boolean(&c.CleanSession)
	case "local_cleansession":
		var b bool
		if err = boolean(&b); err == nil {
			c.LocalCleanSession = &b
		}
	case "bridge_protocol_version":
		switch value {
		case "mqttv31":
			c.ProtocolVersion = 3
		case "mqttv311":
			c.ProtocolVersion = 4
		case "mqttv50":
			c.ProtocolVersion = 5
		case "":
			err = fmt.Errorf("Empty bridge_protocol_version value in configuration")
		default:
			err = fmt.Errorf("Invalid bridge_protocol_version value (%s)", value)
		}
	case "try_private":
		err = boolean(&c.TryPrivate)
	case "notifications":
		err = boolean(&c.Notifications)
	case "notifications_local_only":
		err = boolean(&c.NotificationsLocalOnly)
	case "notification_topic":
		if err = str(&c.NotificationTopic); err == nil && strings.ContainsAny(value, "+#") {
			err = fmt.Errorf("Invalid notification_topic value (%s)", value)
		}
	case "keepalive_interval":
		var n int
		if n, err = number(0, 65535); err == nil {
			if n < 5 && n != 0 {
				warn = fmt.Sprintf("keepalive_interval %d is low, mosquitto recommends at least 5 seconds", n)
			}
			c.Keepalive = time.Duration(n) * time.Second
		}
	case "restart_timeout":
		f := strings.Fields(value)
		if len(f) == 0 || len(f) > 2 {
			return true, "", fmt.Errorf("Invalid restart_timeout value (%s)", value)
		}
		var ns []int
		for _, s := range f {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return true, "", fmt.Errorf("Invalid restart_timeout value (%s)", value)
			}
			ns = append(ns, n)
		}
		c.RestartTimeout, c.RestartCap = time.Duration(ns[0])*time.Second, 0
		if len(ns) == 2 {
			c.RestartCap = time.Duration(ns[1]) * time.Second
			if c.RestartCap < c.RestartTimeout {
				return true, "", fmt.Errorf("Invalid restart_timeout value (%s), the cap is below the base", value)
			}
		}
	case "start_type":
		switch value {
		case "automatic":
			c.StartAutomatic = true
		case "lazy", "once":
			warn = fmt.Sprintf("start_type %s is not supported by mqtt broker, the bridge starts automatically", value)
		case "":
			err = fmt.Errorf("Empty start_type value in configuration")
		default:
			err = fmt.Errorf("Invalid start_type value (%s)", value)
		}
	case "idle_timeout", "threshold":
		_, err = number(0, 1<<31-1)
		if err == nil {
			warn = fmt.Sprintf("%s is not supported by mqtt broker (start_type lazy is not), ignored", key)
		}
	case "bridge_cafile":
		err = str(&c.CAFile)
	case "bridge_capath":
		err = str(&c.CAPath)
	case "bridge_certfile":
		err = str(&c.CertFile)
	case "bridge_keyfile":
		err = str(&c.KeyFile)
	case "bridge_insecure":
		err = boolean(&c.Insecure)
	case "bridge_tls_version":
		switch value {
		case "tlsv1.3", "tlsv1.2", "tlsv1.1":
			c.TLSVersion = value
		case "":
			err = fmt.Errorf("Empty bridge_tls_version value in configuration")
		default:
			err = fmt.Errorf("Invalid bridge_tls_version value (%s), must be tlsv1.3, tlsv1.2 or tlsv1.1", value)
		}
	case "bridge_alpn":
		err = str(&c.ALPN)
	case "bridge_max_packet_size":
		c.MaxPacketSize, err = number(0, 268435460)
	case "bridge_outgoing_retain":
		err = boolean(&c.OutgoingRetain)
	case "bridge_attempt_unsubscribe":
		if err = boolean(&c.AttemptUnsub); err == nil && c.AttemptUnsub {
			warn = "bridge_attempt_unsubscribe true is not applied by mqtt broker: topics removed from the configuration stay subscribed on the remote until its session ends"
		}
	default: // bridge_bind_address, bridge_identity, bridge_psk, bridge_require_ocsp
		warn = fmt.Sprintf("%s is not supported by mqtt broker, ignored", key)
	}
	return true, warn, err
}

// Finish checks the last section and fills in the defaults that depend on
// the whole section (client ids). It returns an *acl.FileError naming the
// section's `connection` line when a bridge has no address or two bridges
// share a local client id.
func (p *Parser) Finish() error {
	if err := p.check(); err != nil {
		return err
	}
	host := p.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	seen := map[string]bool{}
	for _, c := range p.Bridges {
		if c.RemoteClientID == "" {
			c.RemoteClientID = host + "." + c.Name
		}
		if c.LocalClientID == "" {
			c.LocalClientID = "local." + c.RemoteClientID
		}
		if seen[c.LocalClientID] {
			return &acl.FileError{File: c.ConfigFile, Line: c.ConfigLine,
				Msg: fmt.Sprintf("Bridge local_clientid '%s' is not unique. Try changing or setting the local_clientid value for one of the bridges", c.LocalClientID)}
		}
		seen[c.LocalClientID] = true
	}
	return nil
}

// check validates the current section once it is complete.
func (p *Parser) check() error {
	c := p.cur
	if c == nil {
		return nil
	}
	fail := func(msg string) error { return &acl.FileError{File: c.ConfigFile, Line: c.ConfigLine, Msg: msg} }
	if len(c.Addresses) == 0 {
		return fail(fmt.Sprintf("bridge %s has no address", c.Name))
	}
	if (c.CertFile == "") != (c.KeyFile == "") {
		return fail(fmt.Sprintf("bridge %s: both bridge_certfile and bridge_keyfile must be provided", c.Name))
	}
	if !c.TLS() && (c.CertFile != "" || c.Insecure || c.TLSVersion != "") {
		return fail(fmt.Sprintf("bridge %s: bridge_certfile, bridge_insecure and bridge_tls_version need bridge_cafile or bridge_capath (TLS)", c.Name))
	}
	return nil
}

// parseAddress reads host[:port]; the port defaults to 1883 (8883 is not
// implied by TLS, as in mosquitto).
func parseAddress(s string) (Address, error) {
	host, port := s, 1883
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return Address{}, fmt.Errorf("Invalid address value (%s)", s)
		}
		host = s[1:end]
		rest := s[end+1:]
		if rest != "" {
			if !strings.HasPrefix(rest, ":") {
				return Address{}, fmt.Errorf("Invalid address value (%s)", s)
			}
			n, err := strconv.Atoi(rest[1:])
			if err != nil || n < 1 || n > 65535 {
				return Address{}, fmt.Errorf("Invalid port value (%s)", rest[1:])
			}
			port = n
		}
	} else if i := strings.LastIndex(s, ":"); i >= 0 && strings.Count(s, ":") == 1 {
		host = s[:i]
		n, err := strconv.Atoi(s[i+1:])
		if err != nil || n < 1 || n > 65535 {
			return Address{}, fmt.Errorf("Invalid port value (%s)", s[i+1:])
		}
		port = n
	}
	if host == "" {
		return Address{}, fmt.Errorf("Invalid address value (%s)", s)
	}
	return Address{Host: host, Port: port}, nil
}

// parseTopic reads a topic line's value.
func parseTopic(value string) (Topic, error) {
	f := strings.Fields(value)
	if len(f) == 0 {
		return Topic{}, fmt.Errorf("Empty topic value in configuration")
	}
	if len(f) > 5 {
		return Topic{}, fmt.Errorf("Invalid bridge topic value (%s)", value)
	}
	unquote := func(s string) string {
		if s == `""` {
			return ""
		}
		return s
	}
	t := Topic{Pattern: unquote(f[0])}
	if len(f) > 1 {
		switch f[1] {
		case "out":
			t.Direction = Out
		case "in":
			t.Direction = In
		case "both":
			t.Direction = Both
		default:
			return Topic{}, fmt.Errorf("Invalid bridge topic direction '%s'", f[1])
		}
	}
	if len(f) > 2 {
		q, err := strconv.Atoi(f[2])
		if err != nil || q < 0 || q > 2 {
			return Topic{}, fmt.Errorf("Invalid bridge topic QoS level '%s'", f[2])
		}
		t.QoS = byte(q)
	}
	if len(f) > 3 {
		t.LocalPrefix = unquote(f[3])
		if strings.ContainsAny(t.LocalPrefix, "+#") {
			return Topic{}, fmt.Errorf("Invalid bridge topic local prefix '%s'", t.LocalPrefix)
		}
	}
	if len(f) > 4 {
		t.RemotePrefix = unquote(f[4])
		if strings.ContainsAny(t.RemotePrefix, "+#") {
			return Topic{}, fmt.Errorf("Invalid bridge topic remote prefix '%s'", t.RemotePrefix)
		}
	}
	if t.Pattern == "" && t.LocalPrefix == "" && t.RemotePrefix == "" {
		return Topic{}, fmt.Errorf("Invalid bridge topic value (%s): an empty pattern needs a prefix", value)
	}
	if lf, rf := t.LocalFilter(), t.RemoteFilter(); lf == "" || rf == "" || !acl.ValidFilter(lf) || !acl.ValidFilter(rf) {
		return Topic{}, fmt.Errorf("Invalid bridge topic pattern '%s'", f[0])
	}
	return t, nil
}

// bridgeDirectives are the directives that belong to a connection section
// (connection itself is handled apart).
var bridgeDirectives = map[string]struct{}{
	"address": {}, "addresses": {}, "round_robin": {}, "topic": {},
	"remote_clientid": {}, "clientid": {}, "local_clientid": {},
	"remote_username": {}, "username": {}, "remote_password": {}, "password": {},
	"local_username": {}, "local_password": {}, "cleansession": {}, "local_cleansession": {},
	"bridge_protocol_version": {}, "try_private": {}, "notifications": {}, "notification_topic": {},
	"notifications_local_only": {}, "keepalive_interval": {}, "restart_timeout": {}, "start_type": {},
	"idle_timeout": {}, "threshold": {}, "bridge_cafile": {}, "bridge_capath": {}, "bridge_certfile": {},
	"bridge_keyfile": {}, "bridge_insecure": {}, "bridge_tls_version": {}, "bridge_alpn": {},
	"bridge_max_packet_size": {}, "bridge_outgoing_retain": {}, "bridge_attempt_unsubscribe": {},
	"bridge_bind_address": {}, "bridge_identity": {}, "bridge_psk": {}, "bridge_require_ocsp": {},
}
