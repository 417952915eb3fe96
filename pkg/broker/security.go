// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"runtime"
	"strconv"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/mqttkit/mqttkit/pkg/acl"
	"github.com/mqttkit/mqttkit/pkg/passwd"
)

// SecurityConfig says who may connect and what they may do: mosquitto's
// password_file, acl_file and allow_anonymous. It is what a reload re-reads.
type SecurityConfig struct {
	PasswordFile   string // mosquitto password file, "" for none
	ACLFile        string // mosquitto ACL file, "" for none (everything allowed)
	AllowAnonymous bool   // accept clients without username
	// RefuseZeroLengthClientID refuses a CONNECT without client id
	// (allow_zero_length_clientid false) instead of assigning one.
	RefuseZeroLengthClientID bool
	// AutoIDPrefix starts the client ids the broker assigns; "" means
	// mosquitto's "auto-".
	AutoIDPrefix string
	// PerListener is per_listener_settings true: element i, when not nil,
	// applies instead of this configuration to connections on
	// Config.Listeners[i]. Its own PerListener is ignored.
	PerListener []*SecurityConfig
}

// securitySet is the loaded security of all listeners.
type securitySet struct {
	global    *security
	listeners map[string]*security // listener ID → its own (per_listener_settings)
}

// of returns the security that applies on listener id.
func (s *securitySet) of(id string) *security {
	if own, ok := s.listeners[id]; ok {
		return own
	}
	return s.global
}

// listenerID is the mochi listener ID of Config.Listeners[i].
func listenerID(i int) string { return "l" + strconv.Itoa(i) }

// loadSecuritySet loads cfg and each of its PerListener configurations.
func loadSecuritySet(cfg SecurityConfig, log *slog.Logger) (*securitySet, error) {
	g, err := loadSecurity(cfg, log)
	if err != nil {
		return nil, err
	}
	set := &securitySet{global: g, listeners: map[string]*security{}}
	for i, pl := range cfg.PerListener {
		if pl == nil {
			continue
		}
		own := *pl
		own.PerListener = nil
		s, err := loadSecurity(own, log)
		if err != nil {
			return nil, err
		}
		set.listeners[listenerID(i)] = s
	}
	return set, nil
}

// security is one loaded SecurityConfig; reloads swap it atomically so that
// connected clients keep working and checks never see a half-loaded state.
type security struct {
	cfg       SecurityConfig
	passwords *passwd.DB // nil without password file
	acl       *acl.ACL   // nil without ACL file
}

// loadSecurity reads the files of cfg. Problems that mosquitto logs and
// survives (a bad password line, an ACL pattern without %c or %u) are logged
// as warnings; a file that cannot be read or an ACL syntax error is an error.
func loadSecurity(cfg SecurityConfig, log *slog.Logger) (*security, error) {
	s := &security{cfg: cfg}
	if cfg.PasswordFile != "" {
		db, warns, err := passwd.LoadDB(cfg.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("password_file: %w%s", err, unreadableHint(err, cfg.PasswordFile))
		}
		for _, w := range warns {
			log.Warn("password file: "+w.Msg, "file", cfg.PasswordFile, "line", w.Line)
		}
		s.passwords = db
	}
	if cfg.ACLFile != "" {
		f, err := os.Open(cfg.ACLFile)
		if err != nil {
			return nil, fmt.Errorf("acl_file: %w%s", err, unreadableHint(err, cfg.ACLFile))
		}
		a, err := acl.ParseACL(cfg.ACLFile, f)
		f.Close()
		if err != nil {
			return nil, err
		}
		for _, w := range a.Warnings() {
			log.Warn("acl file: " + w)
		}
		s.acl = a
	}
	return s, nil
}

// securityHook authenticates clients against a mosquitto password file and
// enforces a mosquitto ACL file. It replaces mochi's auth hooks: mochi's
// Ledger stores plaintext passwords and allows by default.
//
// Authentication runs in OnConnect, on the connecting client's own goroutine
// (mochi serves each connection on its own goroutine), so a slow hash never
// stalls other clients; a semaphore bounds concurrent hash computations to
// the number of CPUs so that a connection storm cannot starve message
// routing. Refusals are answered with mosquitto's codes: CONNACK 5 (MQTT
// 3.1.1) or 0x87 Not authorized (MQTT 5); mochi itself would send 0x86.
// Usernames and passwords are never logged.
type securityHook struct {
	mqtt.HookBase
	server   *mqtt.Server
	log      *slog.Logger
	cur      atomic.Pointer[securitySet]
	identity map[string]bool // listener IDs with use_identity_as_username
	subject  map[string]bool // listener IDs with use_subject_as_username
	idUser   map[string]bool // listener IDs with use_username_as_clientid
	// maxKeepalive is max_keepalive in seconds, 0 for none.
	maxKeepalive uint16
	hashing      chan struct{} // semaphore for password verification

	authFailures atomic.Int64 // refused CONNECTs
	aclDenied    atomic.Int64 // PUBLISHes refused by the ACL

	// verify checks a password; tests replace it to observe concurrency.
	verify func(db *passwd.DB, user, password string) bool
}

func newSecurityHook(server *mqtt.Server, log *slog.Logger, s *security, identityListeners map[string]bool) *securityHook {
	h := &securityHook{
		server:   server,
		log:      log,
		identity: identityListeners,
		hashing:  make(chan struct{}, runtime.GOMAXPROCS(0)),
		verify:   (*passwd.DB).Authenticate,
	}
	h.cur.Store(&securitySet{global: s})
	return h
}

// ID implements mqtt.Hook.
func (h *securityHook) ID() string { return "mqttkit-security" }

// Provides implements mqtt.Hook.
func (h *securityHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnWill:
		return true
	}
	return false
}

// reload re-reads the password and ACL files of cfg and installs them for
// new connections and all further checks; connected clients stay. When a
// file cannot be loaded the old state stays in force and the error says why.
func (h *securityHook) reload(cfg SecurityConfig) error {
	s, err := loadSecuritySet(cfg, h.log)
	if err != nil {
		return err
	}
	h.cur.Store(s)
	return nil
}

// errRefused is returned from OnConnect after the CONNACK refusal was sent.
var errRefused = errors.New("connection refused")

// OnConnect checks the client id, authenticates the client and sends the
// refusing CONNACK itself, so that the code is mosquitto's. The security
// of the client's listener applies (per_listener_settings).
func (h *securityHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	s := h.cur.Load().of(cl.Net.Listener)
	if max := h.maxKeepalive; max > 0 && (pk.Connect.Keepalive > max || pk.Connect.Keepalive == 0) {
		// max_keepalive: MQTT 5 clients are told to use it (Server Keep
		// Alive); older ones are refused with CONNACK 2, as by mosquitto.
		if cl.Properties.ProtocolVersion < 5 {
			return h.refuse(cl, packets.Err3ClientIdentifierNotValid, packets.ErrUnspecifiedError, "keepalive above max_keepalive")
		}
		cl.State.Keepalive, cl.State.ServerKeepalive = max, true
	}
	if pk.Connect.ClientIdentifier == "" {
		// mochi assigned an id of its own; mosquitto's is auto-<UUID>.
		// MQTT 3.1 requires an id of 1 to 23 characters.
		if s.cfg.RefuseZeroLengthClientID || cl.Properties.ProtocolVersion == 3 {
			// mosquitto: CONNACK 2 (MQTT 5: 0x80 Unspecified error).
			return h.refuse(cl, packets.Err3ClientIdentifierNotValid, packets.ErrUnspecifiedError, "zero length client id not allowed")
		}
		h.assignID(cl, autoID(s.cfg.AutoIDPrefix))
	}
	if err := h.authenticate(cl, pk, s); err != nil {
		return err
	}
	if h.idUser[cl.Net.Listener] {
		// use_username_as_clientid: the username is the client id; a
		// client without one is not authorised.
		if len(cl.Properties.Username) == 0 {
			return h.refuse(cl, packets.Err3NotAuthorized, packets.ErrNotAuthorized, "use_username_as_clientid needs a username")
		}
		h.assignID(cl, string(cl.Properties.Username))
	}
	return nil
}

// assignID gives the connecting client id; an MQTT 5 client that sent none
// learns it from the CONNACK (Assigned Client Identifier).
func (h *securityHook) assignID(cl *mqtt.Client, id string) {
	cl.ID = id
	if cl.Properties.Props.AssignedClientID != "" {
		cl.Properties.Props.AssignedClientID = id
	}
}

// autoID is a client id as mosquitto assigns them: prefix ("auto-" when
// empty) and a random UUID in upper case.
func autoID(prefix string) string {
	if prefix == "" {
		prefix = "auto-"
	}
	var b [16]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s%X-%X-%X-%X-%X", prefix, b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// authenticate decides whether the client may connect, from its
// certificate or its username and password.
func (h *securityHook) authenticate(cl *mqtt.Client, pk packets.Packet, s *security) error {
	anonymous := !pk.Connect.UsernameFlag || len(pk.Connect.Username) == 0
	if cl.Net.Listener == InProcessListener {
		// A bridge's local side (inproc.go): trusted, not authenticated.
		if anonymous {
			cl.Properties.Username = nil
		}
		return nil
	}
	if h.identity[cl.Net.Listener] || h.subject[cl.Net.Listener] {
		st, ok := tlsState(cl.Net.Conn)
		if !ok || len(st.PeerCertificates) == 0 {
			return h.refuse(cl, packets.ErrMalformedUsernameOrPassword, packets.ErrBadUsernameOrPassword, "no client certificate")
		}
		// The certificate's CN (use_identity_as_username) or subject
		// (use_subject_as_username) replaces the CONNECT username; the
		// password file is not consulted.
		subject := st.PeerCertificates[0].Subject
		name := subject.CommonName
		if h.subject[cl.Net.Listener] {
			name = subject.String()
		}
		if name == "" {
			return h.refuse(cl, packets.ErrMalformedUsernameOrPassword, packets.ErrBadUsernameOrPassword, "no name in client certificate")
		}
		cl.Properties.Username = []byte(name)
		return nil
	}
	var ok bool
	switch {
	case anonymous:
		ok = s.cfg.AllowAnonymous
	case s.passwords == nil:
		ok = s.cfg.AllowAnonymous // mosquitto: without password_file, a username changes nothing
	case !pk.Connect.PasswordFlag:
		ok = false
	default:
		h.hashing <- struct{}{}
		ok = h.verify(s.passwords, string(pk.Connect.Username), string(pk.Connect.Password))
		<-h.hashing
	}
	if !ok {
		reason := "bad username or password"
		if anonymous {
			reason = "anonymous clients not allowed"
		}
		return h.refuse(cl, packets.Err3NotAuthorized, packets.ErrNotAuthorized, reason)
	}
	if anonymous {
		cl.Properties.Username = nil // no username is anonymous (allowed)
	}
	return nil
}

// refuse logs the refusal of cl and sends a CONNACK with v3 (MQTT
// 3.1/3.1.1) or v5 as reason code.
func (h *securityHook) refuse(cl *mqtt.Client, v3, v5 packets.Code, why string) error {
	msg := "connection refused: not authorised"
	if v3 == packets.Err3ClientIdentifierNotValid {
		msg = "connection refused: client identifier not valid"
	} else {
		h.authFailures.Add(1)
	}
	h.log.Info(msg, "client", cl.ID, "remote", cl.Net.Remote, "listener", cl.Net.Listener, "reason", why)
	return refuseConnect(h.server, cl, v3, v5)
}

// OnConnectAuthenticate implements mqtt.Hook: OnConnect already decided.
func (h *securityHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

// OnACLCheck implements mqtt.Hook; mochi asks it about the filters of a
// SUBSCRIBE, and about a PUBLISH before resolving its topic alias: both
// are granted here. Like mosquitto, the ACL file never refuses a
// SUBSCRIBE: the engine checks each delivery when it sends it, retained
// messages and wills included (allowed), and OnPublish each PUBLISH.
func (h *securityHook) OnACLCheck(*mqtt.Client, string, bool) bool { return true }

// allowed asks the ACL of cl's listener whether cl may write or read
// topic. The broker's own client and a bridge's local side without
// local_username (like mosquitto's bridges) are not subject to it; an
// empty username counts as none (mosquitto would look up user "").
func (h *securityHook) allowed(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if cl.Net.Inline || (cl.Net.Listener == InProcessListener && user == "") {
		return true
	}
	return h.cur.Load().of(cl.Net.Listener).acl.Allowed(cl.ID, user, user == "", topic, write)
}

// OnPublish checks the client's write access to the (alias-resolved) topic.
// Denied, like mosquitto: MQTT 5 QoS 1/2 get PUBACK/PUBREC 0x87 Not
// authorized; MQTT 3.1.1 publishes are acknowledged normally and dropped
// (mochi would disconnect the client); QoS 0 is dropped.
func (h *securityHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if h.allowed(cl, pk.TopicName, true) {
		return pk, nil
	}
	h.log.Debug("publish denied by acl", "client", cl.ID, "topic", pk.TopicName, "qos", pk.FixedHeader.Qos)
	h.aclDenied.Add(1)
	return pk, refusePublish(cl, pk, packets.ErrNotAuthorized)
}

// OnWill checks write access to the will topic when the will is about to
// be published; a denied will is dropped (an empty topic has no
// subscribers and nothing is retained).
func (h *securityHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	if h.allowed(cl, will.TopicName, true) {
		return will, nil
	}
	h.log.Debug("will denied by acl", "client", cl.ID, "topic", will.TopicName)
	return mqtt.Will{}, nil
}

// unreadableHint says, after a permission error on a file the broker
// reads, which user must be able to read it: typically a password file
// that `mqtt passwd -c` made as root (mode 0600) for a broker that runs as
// user mqttkit (the package's service) or mosquitto.
func unreadableHint(err error, path string) string {
	if !errors.Is(err, fs.ErrPermission) {
		return ""
	}
	u, uerr := user.Current()
	if uerr != nil || u.Username == "" {
		return "; the broker's user must be able to read it"
	}
	return fmt.Sprintf("; the broker runs as user %s, who must be able to read it (e.g. `chown %s: %s`)", u.Username, u.Username, path)
}
