// SPDX-License-Identifier: Apache-2.0

// Package broker runs an MQTT broker built on mochi-mqtt with mosquitto's
// behaviour: local-only listeners unless configured otherwise, mosquitto
// password and ACL files, TLS and WebSocket listeners, a persistent store,
// and its own delivery engine (engine.go, docs/design/broker.md).
package broker

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// Listener describes one network listener.
type Listener struct {
	// Address is host:port (port 0 picks a free port), or the socket path
	// for Protocol "unix".
	Address string
	// Protocol is "mqtt" (default), "websockets" or "unix".
	Protocol string
	// TLS, when set, serves TLS (mqtts, or wss for WebSockets).
	TLS *tlsfiles.Files
	// UseIdentityAsUsername takes the username from the client
	// certificate's CN; the CONNECT username and password are ignored.
	UseIdentityAsUsername bool
	// UseSubjectAsUsername takes the username from the client
	// certificate's whole subject (RFC 2253 form, as mosquitto's
	// use_subject_as_username); the CONNECT username and password are
	// ignored.
	UseSubjectAsUsername bool
	// UseUsernameAsClientID replaces the client id with the username
	// (use_username_as_clientid); clients without a username are refused.
	UseUsernameAsClientID bool
	// MaxConnections refuses connections beyond this many; 0 = unlimited.
	MaxConnections int
	// MaximumQoS, when set, is the highest QoS clients of this listener
	// may use (maximum_qos; nil: 2). See connectHook.maxQoS.
	MaximumQoS *byte
	// MountPoint prefixes the topics of this listener's clients
	// (mount_point, see mount.go).
	MountPoint string
	// Security, when set, replaces the Config's AllowAnonymous,
	// PasswordFile, ACLFile and client id options for connections on this
	// listener (mosquitto's per_listener_settings true).
	Security *SecurityConfig
}

// Config configures a broker. The zero value (plus a Listener or Port) is
// a broker without limits that accepts nobody: set AllowAnonymous or a
// PasswordFile.
type Config struct {
	// Listeners to open. Empty means mosquitto's local-only mode:
	// 127.0.0.1 and ::1 on port Port.
	Listeners []Listener
	// Port is used in local-only mode; 0 picks a free port.
	Port int

	// AllowAnonymous lets clients without a username connect.
	AllowAnonymous bool
	// PasswordFile is a mosquitto password file; "" for none.
	PasswordFile string
	// ACLFile is a mosquitto ACL file; "" lets every client do everything.
	ACLFile string
	// RefuseZeroLengthClientID refuses clients without a client id
	// (allow_zero_length_clientid false); otherwise they get one that
	// starts with AutoIDPrefix ("" means mosquitto's "auto-").
	RefuseZeroLengthClientID bool
	AutoIDPrefix             string

	// PersistenceDir keeps retained messages, persistent sessions, their
	// subscriptions and undelivered QoS 1/2 messages in DIR/mqtt.db.
	PersistenceDir string

	// MaxInflight is mosquitto's max_inflight_messages: the in-flight
	// window of QoS 1/2 messages sent and not acknowledged, per client.
	// MaxQueued (max_queued_messages) bounds what waits behind it: the
	// publishers of a connected client wait, an offline session holds
	// MaxInflight+MaxQueued messages and drops the next ones with a log
	// line. 0 means unlimited.
	MaxInflight, MaxQueued int
	// MessageSizeLimit drops PUBLISH payloads larger than this many bytes
	// (MQTT 5 QoS 1/2 get reason 0x95 Packet too large); a packet too long
	// to be a PUBLISH within the limit disconnects its client from its
	// fixed header (see maxPacketSize); 0 = no limit.
	MessageSizeLimit int
	// MaxPacketSize is mosquitto's max_packet_size: a client that sends a
	// longer packet (fixed header included) is disconnected as soon as its
	// fixed header is read, and MQTT 5 clients are told the limit in the
	// CONNACK; 0 = no limit (but see MessageSizeLimit).
	MaxPacketSize int
	// MaxKeepalive is max_keepalive in seconds (0: none): an MQTT 5 client
	// asking for a longer keep-alive, or none, is told to use this one
	// (Server Keep Alive); an MQTT 3.1/3.1.1 client is refused (CONNACK 2).
	MaxKeepalive int
	// PersistentClientExpiration is persistent_client_expiration: a
	// persistent session whose client stays away longer is removed (MQTT 5
	// clients asking for a longer Session Expiry Interval are told this
	// one); 0 means never.
	PersistentClientExpiration time.Duration
	// QueueQoS0Messages is queue_qos0_messages: QoS 0 messages are queued
	// for offline persistent sessions too. MaxQueuedBytes is
	// max_queued_bytes: the payload bytes queued per client, bounded like
	// MaxQueued (0: no bound).
	QueueQoS0Messages bool
	MaxQueuedBytes    int
	// UpgradeOutgoingQoS is upgrade_outgoing_qos: messages go out at the
	// subscription's QoS rather than the lower of the two.
	UpgradeOutgoingQoS bool
	// DisableRetain turns retained messages off (retain_available false).
	DisableRetain bool
	// SysInterval is how often $SYS topics are updated: 0 means 10
	// seconds, a negative value turns $SYS off.
	SysInterval time.Duration

	// ConnectTimeout is how long a new connection may take to send its
	// CONNECT (TLS handshake and WebSocket upgrade included); 0 means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxConnecting bounds the connections, across all listeners, that
	// have not sent their CONNECT yet: beyond it the one that has waited
	// longest is closed (connmem.go). 0 means DefaultMaxConnecting, a
	// negative value no bound.
	MaxConnecting int
	// SlowConsumerTimeout is how long a client whose queue is full may
	// take no data before it is disconnected; meanwhile the publishers of
	// QoS 0 messages to it wait (docs/reliability.md). 0 means
	// DefaultSlowConsumerTimeout.
	SlowConsumerTimeout time.Duration

	// Log receives broker logs; nil discards them.
	Log *slog.Logger
}

// LocalOnly reports whether cfg is in mosquitto's local-only mode.
func (c *Config) LocalOnly() bool { return len(c.Listeners) == 0 }

// Security returns the part of the configuration that Reload re-reads.
func (c Config) Security() SecurityConfig {
	sec := SecurityConfig{PasswordFile: c.PasswordFile, ACLFile: c.ACLFile, AllowAnonymous: c.AllowAnonymous,
		RefuseZeroLengthClientID: c.RefuseZeroLengthClientID, AutoIDPrefix: c.AutoIDPrefix}
	for i, l := range c.Listeners {
		if l.Security != nil {
			if sec.PerListener == nil {
				sec.PerListener = make([]*SecurityConfig, len(c.Listeners))
			}
			sec.PerListener[i] = l.Security
		}
	}
	return sec
}

// Broker is a running broker.
type Broker struct {
	srv       *mqtt.Server
	log       *slog.Logger
	listeners []BoundListener
	connect   *connectHook
	security  *securityHook
	fixes     *fixesHook
	limits    *limitsHook
	engine    *engine
	store     *boltStore // nil without persistence
	sys       *sysPublisher
	bound     []*bound
	started   time.Time

	conns *connSet // every listener's connections (connmem.go)

	injected atomic.Int64 // PUBLISHes injected by the broker itself ($SYS, Publish)
	slowCut  atomic.Int64 // clients cut because their queue stayed full (asyncConn)
	waits    atomic.Int64 // times a publisher waited for a subscriber's connection (asyncConn)
	wire     wireStats    // malformed packets and recovered panics (wire.go)

	metricsStop func()
	// extraMetrics writes samples of others (bridges) after the broker's.
	extraMetrics atomic.Pointer[func(io.Writer)]
	closeOnce    sync.Once
	closeErr     error
}

// BoundListener is a listener that is accepting connections.
type BoundListener struct {
	Addr     string // the real address, with the port chosen by the OS
	Protocol string // mqtt, mqtts, ws, wss or unix
	// Identity is true when usernames come from client certificates.
	Identity bool
	// ClientCerts is "", "optional" or "required".
	ClientCerts string
}

// New creates a broker, loads its password and ACL files and binds its
// listeners; Start begins serving.
func New(cfg Config) (b *Broker, err error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = newBoundedLogger(log) // limits.go
	// mochi's defaults that the engine replaces: docs/design/broker.md
	// ("mochi behaviours replaced").
	caps := mqtt.NewDefaultServerCapabilities()
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	// mochi caps every message at one day (retained ones vanished, every
	// MQTT 5 delivery carried an expiry); 0 would expire its pending
	// acknowledgements at once. The engine ignores it (noExpiryCap).
	caps.MaximumMessageExpiryInterval = noExpiryCap
	caps.MaximumInflight = 65535        // the engine bounds sessions and decides drops
	caps.MaximumClientWritesPending = 1 // allocated per connection, unused: the engine writes
	if cfg.DisableRetain {
		caps.RetainAvailable = 0
	}
	if cfg.PersistentClientExpiration > 0 {
		caps.MaximumSessionExpiryInterval = uint32(min(cfg.PersistentClientExpiration/time.Second, 1<<32-1))
	}
	caps.TopicAliasMaximum = topicAliasMaximum // inbound; connectHook advertises it
	caps.MaximumPacketSize = effectiveMaxPacket(cfg.MaxPacketSize, cfg.MessageSizeLimit)
	srv := mqtt.New(&mqtt.Options{
		Logger:       newMochiLogger(log),
		InlineClient: true, // $SYS topics are published through it
		Capabilities: caps,
		// mochi's own $SYS topics differ from mosquitto's (sysPublisher).
		SysTopicResendInterval: int64((365 * 24 * time.Hour).Seconds()),
		// Every packet straight to the connection, whose asyncConn
		// buffers; mochi's buffer held small packets back.
		ClientNetWriteBufferSize: 1,
		// Kept for the life of a connection; wireConn buffers the socket
		// in a pooled buffer (connmem.go), so a small one costs copies.
		ClientNetReadBufferSize: 64,
	})
	b = &Broker{srv: srv, log: log}
	br := b // b is nil when an error is returned
	defer func() {
		if err != nil {
			for _, bd := range br.bound {
				_ = bd.conn.ln.Close()
			}
			_ = srv.Close()
		}
	}()

	sec, err := loadSecuritySet(cfg.Security(), log)
	if err != nil {
		return nil, err
	}
	ls := cfg.Listeners
	if cfg.LocalOnly() {
		for _, h := range LoopbackHosts() {
			ls = append(ls, Listener{Address: net.JoinHostPort(h, strconv.Itoa(cfg.Port))})
		}
	}
	identity, subject, idUser := map[string]bool{}, map[string]bool{}, map[string]bool{}
	maxQoS, mounts := map[string]byte{}, map[string]string{}
	for i, l := range ls {
		id := listenerID(i)
		bd, err := bindListener(id, l, cfg.ConnectTimeout, log)
		if err != nil {
			return nil, err
		}
		bd.conn.stall = cfg.SlowConsumerTimeout
		bd.conn.slow = func() { br.slowCut.Add(1) }
		bd.conn.waited = func() { br.waits.Add(1) }
		b.bound = append(b.bound, bd)
		identity[id] = l.UseIdentityAsUsername
		subject[id] = l.UseSubjectAsUsername
		idUser[id] = l.UseUsernameAsClientID
		if l.MaximumQoS != nil && *l.MaximumQoS < 2 {
			maxQoS[id] = *l.MaximumQoS
		}
		if l.MountPoint != "" {
			mounts[id] = l.MountPoint
		}
		b.listeners = append(b.listeners, bd.info)
		// In local-only mode with an OS-chosen port, use the same port for ::1.
		if cfg.LocalOnly() && i == 0 && len(ls) > 1 {
			_, p, _ := net.SplitHostPort(bd.info.Addr)
			ls[1].Address = net.JoinHostPort("::1", p)
		}
	}

	b.connect = newConnectHook(srv, log, clampU16(cfg.MaxInflight), cfg.MessageSizeLimit)
	b.connect.maxQoS, b.connect.mounts = maxQoS, mounts
	b.security = newSecurityHook(srv, log, sec.global, identity)
	b.security.cur.Store(sec)
	b.security.subject, b.security.idUser = subject, idUser
	b.security.maxKeepalive = clampU16(cfg.MaxKeepalive)
	b.limits = &limitsHook{log: log, sizeLimit: cfg.MessageSizeLimit, maxPacket: caps.MaximumPacketSize,
		advertise: uint32(max(cfg.MaxPacketSize, 0)), noRetain: cfg.DisableRetain}
	if cfg.SysInterval >= 0 {
		b.sys = newSysPublisher(b, cfg.SysInterval)
	}
	b.engine = newEngine(srv, log, cfg)
	b.fixes = newFixesHook(srv, log, b.engine)
	b.fixes.bridgeState = b.Publish
	b.engine.unrouted = b.connect.unrouted
	b.engine.willKept = b.connect.willKept
	b.engine.mounts = mounts
	b.engine.mayRead = b.security.allowed
	// The hooks in the order mochi calls them. fixes first: it renames
	// inbound packet IDs before anyone sees them. connect before security:
	// mosquitto checks the CONNECT before it authenticates. The engine
	// last: its OnPublish routes the message that passed every check
	// (security's ACL, limits' sizes), and the store after it.
	for _, h := range []mqtt.Hook{b.fixes, b.connect, b.security, b.limits, b.engine} {
		if err := srv.AddHook(h, nil); err != nil {
			return nil, err
		}
	}
	if cfg.PersistenceDir != "" {
		store, err := addPersistence(srv, cfg.PersistenceDir, b.engine)
		if err != nil {
			return nil, err
		}
		b.store = store
		b.engine.store = store
		store.fixes, b.fixes.store = b.fixes, store
	}
	wire := &wireGuard{log: log, stats: &b.wire, maxPacket: int(caps.MaximumPacketSize)}
	b.conns = newConnSet(max(cmp.Or(cfg.MaxConnecting, DefaultMaxConnecting), 0), log)
	for _, bd := range b.bound {
		bd.conn.disconnect = b.disconnectListener
		bd.conn.set = b.conns
		bd.conn.wire, bd.conn.srv, bd.conn.stats = wire, srv, &b.wire
		if err := srv.AddListener(bd.conn); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// clampU16 is n within 0..65535.
func clampU16(n int) uint16 { return uint16(min(max(n, 0), 65535)) }

// Start begins accepting connections. It does not block. With persistence
// the stored sessions and retained messages are loaded first.
func (b *Broker) Start() error {
	b.started = time.Now()
	if err := b.srv.Serve(); err != nil {
		return err
	}
	// Serve has published mochi's own $SYS topics once (and an old store
	// may hold some): remove them, from the store too.
	for _, pk := range b.srv.Topics.Messages("$SYS/#") {
		_ = b.Publish(pk.TopicName, nil, true, 0)
	}
	if b.sys != nil {
		b.sys.start()
	}
	return nil
}

// Reload re-reads the password and ACL files and allow_anonymous; connected
// clients stay connected and are checked against the new rules from now
// on. When a file cannot be loaded the old rules stay in force and the
// error says why.
func (b *Broker) Reload(sec SecurityConfig) error {
	return b.security.reload(sec)
}

// ReloadTLS re-reads the certificate and key files of every TLS listener
// (mqtts and wss), as mosquitto does on SIGHUP: new connections get the new
// certificate, established ones stay as they are. A listener whose files
// cannot be loaded (missing, unreadable, a key that does not match the
// certificate) keeps the certificate it had; the error names each such
// listener and says why. It returns the certificate files reloaded, each
// once.
func (b *Broker) ReloadTLS() (reloaded []string, err error) {
	var errs []string
	for _, bd := range b.bound {
		if bd.certs == nil {
			continue
		}
		if lerr := bd.certs.Reload(); lerr != nil {
			errs = append(errs, fmt.Sprintf("listener %s (%s): %v", bd.info.Addr, bd.info.Protocol, lerr))
			continue
		}
		if !slices.Contains(reloaded, bd.certs.CertFile()) {
			reloaded = append(reloaded, bd.certs.CertFile())
		}
	}
	if len(errs) > 0 {
		err = errors.New(strings.Join(errs, "; "))
	}
	return reloaded, err
}

// Listeners returns the bound listeners.
func (b *Broker) Listeners() []BoundListener { return b.listeners }

// Addr returns the address of the first listener.
func (b *Broker) Addr() string {
	if len(b.listeners) == 0 {
		return ""
	}
	return b.listeners[0].Addr
}

// Port returns the port of the first listener.
func (b *Broker) Port() int {
	_, p, _ := net.SplitHostPort(b.Addr())
	n, _ := strconv.Atoi(p)
	return n
}

// Close stops the listeners, disconnects clients and closes the store. It
// is safe to call more than once.
func (b *Broker) Close() error {
	b.closeOnce.Do(func() {
		if b.metricsStop != nil {
			b.metricsStop()
		}
		if b.sys != nil {
			b.sys.stop()
		}
		b.engine.stop()
		b.closeErr = b.srv.Close()
	})
	return b.closeErr
}

// Publish publishes a message from inside the broker. It never waits for
// a subscriber: a QoS 0 message is not delivered to one whose connection
// is full (counted in mqtt_messages_dropped_total
// {reason="qos0_queue_full"}, see engine).
func (b *Broker) Publish(topic string, payload []byte, retain bool, qos byte) error {
	b.injected.Add(1) // mochi counts them as received
	return b.srv.Publish(topic, payload, retain, qos)
}

// received returns mochi's received-packet and received-PUBLISH counters
// without the broker's own publishes.
func (b *Broker) received() (packets, messages int64) {
	n := b.injected.Load()
	return atomic.LoadInt64(&b.srv.Info.PacketsReceived) - n, atomic.LoadInt64(&b.srv.Info.MessagesReceived) - n
}

// retainedCount is the number of retained messages, $SYS excluded.
func (b *Broker) retainedCount() int64 {
	var n int64
	for topic := range b.srv.Topics.Retained.GetAll() {
		if !strings.HasPrefix(topic, "$SYS/") {
			n++
		}
	}
	return n
}

// InlineHandler receives messages on an inline subscription.
type InlineHandler func(topic string, payload []byte, retain bool, qos byte)

// Subscribe subscribes inside the broker.
func (b *Broker) Subscribe(filter string, id int, h InlineHandler) error {
	return b.srv.Subscribe(filter, id, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		h(pk.TopicName, pk.Payload, pk.FixedHeader.Retain, pk.FixedHeader.Qos)
	})
}

// HasSubscriber reports whether some client other than the inline one
// subscribes to a filter that matches topic.
func (b *Broker) HasSubscriber(topic string) bool {
	return b.engine.subscribed(topic, false)
}

// dropped counts messages not delivered for limits: mochi's drops for
// full queues, message_size_limit and ACL refusals are not included.
func (b *Broker) dropped() int64 {
	return atomic.LoadInt64(&b.srv.Info.MessagesDropped) + atomic.LoadInt64(&b.srv.Info.InflightDropped)
}

// disconnectListener ends the connections of a listener that is closing:
// MQTT 5 clients get DISCONNECT 0x8B Server shutting down; MQTT 3.1.1 has
// no DISCONNECT from the server (mochi sent one anyway).
func (b *Broker) disconnectListener(id string) { disconnectClients(b.srv, id) }

// disconnectClients is disconnectListener for any mochi server.
func disconnectClients(srv *mqtt.Server, id string) {
	for _, cl := range srv.Clients.GetAll() {
		if cl.Net.Listener != id || cl.Closed() {
			continue
		}
		if cl.Properties.ProtocolVersion >= 5 {
			_ = srv.DisconnectClient(cl, packets.ErrServerShuttingDown)
		} else {
			cl.Stop(packets.ErrServerShuttingDown)
		}
	}
}

// LoopbackHosts are the addresses of mosquitto's local-only mode that
// this machine has: 127.0.0.1, and ::1 when IPv6 is available.
func LoopbackHosts() []string {
	l, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		return []string{"127.0.0.1"}
	}
	l.Close()
	return []string{"127.0.0.1", "::1"}
}
