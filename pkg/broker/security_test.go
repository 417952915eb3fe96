// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"fmt"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/pkg/passwd"
)

// secureServer is a broker with a security configuration, on a random
// loopback port.
type secureServer struct {
	addr string
	srv  *mqtt.Server
	hook *securityHook
}

func startSecure(t *testing.T, cfg SecurityConfig) *secureServer {
	t.Helper()
	b, err := New(Config{Listeners: []Listener{{Address: "127.0.0.1:0"}}, SysInterval: -1,
		AllowAnonymous: cfg.AllowAnonymous, PasswordFile: cfg.PasswordFile, ACLFile: cfg.ACLFile})
	require.NoError(t, err)
	require.NoError(t, b.Start())
	t.Cleanup(func() { _ = b.Close() })
	return &secureServer{addr: b.Addr(), srv: b.srv, hook: b.security}
}

// writeFile writes text into a file in a temporary directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	require.NoError(t, os.WriteFile(p, []byte(text), 0o600))
	return p
}

// passwordFile writes a mosquitto password file: alice ($7$) and bob ($6$).
func passwordFile(t *testing.T, users map[string]string) string {
	t.Helper()
	var text string
	for user, pw := range users {
		typ := passwd.TypeSHA512PBKDF2
		if user == "bob" {
			typ = passwd.TypeSHA512
		}
		h, err := passwd.Hash(pw, passwd.HashOptions{Type: typ})
		require.NoError(t, err)
		text += user + ":" + h + "\n"
	}
	return writeFile(t, "passwd", "# users\n"+text)
}

func TestSecurityAuthentication(t *testing.T) {
	pw := passwordFile(t, map[string]string{"alice": "secret", "bob": "builder"})
	tests := []struct {
		name       string
		cfg        SecurityConfig
		user, pass string
		ok         bool
	}{
		{"password file, alice", SecurityConfig{PasswordFile: pw}, "alice", "secret", true},
		{"password file, bob ($6$)", SecurityConfig{PasswordFile: pw}, "bob", "builder", true},
		{"wrong password", SecurityConfig{PasswordFile: pw}, "alice", "Secret", false},
		{"unknown user", SecurityConfig{PasswordFile: pw}, "carol", "secret", false},
		{"missing password", SecurityConfig{PasswordFile: pw}, "alice", "", false},
		{"anonymous refused", SecurityConfig{PasswordFile: pw}, "", "", false},
		{"anonymous allowed", SecurityConfig{PasswordFile: pw, AllowAnonymous: true}, "", "", true},
		{"wrong password with anonymous allowed", SecurityConfig{PasswordFile: pw, AllowAnonymous: true}, "alice", "x", false},
		{"no password file, username, anonymous allowed", SecurityConfig{AllowAnonymous: true}, "anyone", "x", true},
		{"no password file, username, anonymous refused", SecurityConfig{}, "anyone", "x", false},
		{"no password file, anonymous refused", SecurityConfig{}, "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startSecure(t, tt.cfg)
			for _, v := range []byte{4, 5} {
				c := rawclient.Dial(t, s.addr, v)
				code := c.Connect("c1", tt.user, tt.pass)
				if tt.ok {
					require.Equal(t, byte(0), code, "v%d", v)
					require.Empty(t, c.Ping())
					continue
				}
				want := byte(5) // MQTT 3.1.1: not authorised, like mosquitto
				if v == 5 {
					want = 0x87
				}
				require.Equal(t, want, code, "v%d", v)
				c.ExpectClosed()
			}
		})
	}
}

// TestSecurityHashingDoesNotStall holds one client's password check and
// shows that other clients connect and exchange messages meanwhile.
func TestSecurityHashingDoesNotStall(t *testing.T) {
	pw := passwordFile(t, map[string]string{"alice": "secret"})
	s := startSecure(t, SecurityConfig{PasswordFile: pw, AllowAnonymous: true})
	entered, release := make(chan struct{}), make(chan struct{})
	s.hook.verify = func(db *passwd.DB, user, password string) bool {
		close(entered)
		<-release
		return db.Authenticate(user, password)
	}
	slow := rawclient.Dial(t, s.addr, 5)
	slow.Send(slow.ConnectPacket("slow", "alice", "secret"))
	<-entered // alice's hash check is now running

	sub := rawclient.Dial(t, s.addr, 5)
	sub.MustConnect("sub", "", "")
	require.Equal(t, []byte{0}, sub.Subscribe(1, 0, "t"))
	pub := rawclient.Dial(t, s.addr, 4)
	pub.MustConnect("pub", "", "")
	pub.Publish(0, 0, "t", "hello", false)
	got := sub.Recv()
	require.Equal(t, "hello", string(got.Payload))

	close(release)
	ack := slow.Recv()
	require.Equal(t, packets.Connack, ack.FixedHeader.Type)
	require.Equal(t, byte(0), ack.ReasonCode)
}

const exampleACL = `# anonymous
topic read public/#

user alice
topic readwrite alice/#
topic read public/#
topic deny public/secret
topic write public/alice
topic read clients/#

pattern readwrite clients/%c/#
`

func TestSecurityACL(t *testing.T) {
	pw := passwordFile(t, map[string]string{"alice": "secret", "bob": "builder"})
	acl := writeFile(t, "acl", exampleACL)
	s := startSecure(t, SecurityConfig{PasswordFile: pw, ACLFile: acl, AllowAnonymous: true})

	t.Run("subscriptions granted, deliveries checked", func(t *testing.T) {
		// Like mosquitto: the ACL never refuses a SUBSCRIBE, not even to
		// a topic that is denied (public/secret) or to nothing readable
		// (bob/#); what is delivered is checked message by message.
		for _, v := range []byte{4, 5} {
			c := rawclient.Dial(t, s.addr, v)
			id := fmt.Sprintf("sub-acl%d", v)
			c.MustConnect(id, "alice", "secret")
			require.Equal(t, []byte{1, 1, 1, 1, 1}, c.Subscribe(7, 1,
				"public/secret", "alice/#", "bob/#", "#", "clients/"+id+"/x"), "v%d", v)
			// Also an exact filter that a subscription the client has
			// already covers.
			require.Equal(t, []byte{1}, c.Subscribe(8, 1, "public/secret"), "v%d", v)
			require.NoError(t, s.srv.Publish("public/secret", []byte("no"), false, 1))
			require.NoError(t, s.srv.Publish("bob/x", []byte("no"), false, 1))
			require.NoError(t, s.srv.Publish("public/ok", []byte("yes"), false, 0))
			pk := c.Recv()
			require.Equal(t, "public/ok", pk.TopicName, "v%d", v)
			require.Empty(t, c.Ping())
		}
	})

	t.Run("publish denied", func(t *testing.T) {
		// A subscriber allowed to read everything it may.
		sub := rawclient.Dial(t, s.addr, 5)
		sub.MustConnect("watch", "alice", "secret")
		require.Equal(t, []byte{1}, sub.Subscribe(1, 1, "#"))

		// MQTT 5: QoS 1 gets PUBACK 0x87, QoS 2 PUBREC 0x87, QoS 0 dropped.
		p5 := rawclient.Dial(t, s.addr, 5)
		p5.MustConnect("p5", "bob", "builder")
		p5.Publish(11, 1, "alice/x", "denied-q1", false)
		ack := p5.Recv()
		require.Equal(t, packets.Puback, ack.FixedHeader.Type)
		require.Equal(t, uint16(11), ack.PacketID)
		require.Equal(t, byte(0x87), ack.ReasonCode)
		p5.Publish(12, 2, "alice/x", "denied-q2", false)
		ack = p5.Recv()
		require.Equal(t, packets.Pubrec, ack.FixedHeader.Type)
		require.Equal(t, uint16(12), ack.PacketID)
		require.Equal(t, byte(0x87), ack.ReasonCode)
		p5.Publish(0, 0, "alice/x", "denied-q0", false)
		require.Empty(t, p5.Ping())

		// MQTT 3.1.1: acknowledged normally, like mosquitto, and dropped.
		p4 := rawclient.Dial(t, s.addr, 4)
		p4.MustConnect("p4", "bob", "builder")
		p4.Publish(13, 1, "alice/x", "denied-v4", false)
		ack = p4.Recv()
		require.Equal(t, packets.Puback, ack.FixedHeader.Type)
		require.Equal(t, uint16(13), ack.PacketID)
		p4.Publish(14, 2, "alice/x", "denied-v4-q2", false)
		ack = p4.Recv()
		require.Equal(t, packets.Pubrec, ack.FixedHeader.Type)
		p4.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pubrel, Qos: 1}, PacketID: 14})
		require.Equal(t, packets.Pubcomp, p4.Recv().FixedHeader.Type)

		// Allowed by the pattern clients/%c/#.
		p4.Publish(15, 1, "clients/p4/state", "allowed", false)
		require.Equal(t, packets.Puback, p4.Recv().FixedHeader.Type)
		p5.Publish(16, 1, "public/alice", "nope", false)
		require.Equal(t, byte(0x87), p5.Recv().ReasonCode)

		a := rawclient.Dial(t, s.addr, 5)
		a.MustConnect("alicepub", "alice", "secret")
		a.Publish(17, 1, "public/alice", "from alice", false)
		require.Equal(t, byte(0), a.Recv().ReasonCode)
		a.Publish(18, 1, "public/secret", "secret", false)
		require.Equal(t, byte(0x87), a.Recv().ReasonCode)
		a.Publish(19, 1, "clients/alicepub/x", "own", false)
		require.Equal(t, byte(0), a.Recv().ReasonCode)

		var got []string
		for len(got) < 3 {
			pk := sub.Recv()
			got = append(got, pk.TopicName+" "+string(pk.Payload))
			sub.Ack(pk)
		}
		// Publishers are independent: mochi acknowledges before it routes.
		require.ElementsMatch(t, []string{"clients/p4/state allowed", "public/alice from alice", "clients/alicepub/x own"}, got)
		require.Empty(t, sub.Ping())
	})

	t.Run("retained messages are checked at subscribe", func(t *testing.T) {
		s.srv.Publish("public/news", []byte("news"), true, 0)
		s.srv.Publish("public/secret", []byte("secret"), true, 0)
		s.srv.Publish("other/x", []byte("other"), true, 0)
		anon := rawclient.Dial(t, s.addr, 5)
		anon.MustConnect("anon", "", "")
		require.Equal(t, []byte{0}, anon.Subscribe(1, 0, "public/#"))
		// public/secret is readable for anonymous (only alice has the deny).
		got := []string{anon.Recv().TopicName, anon.Recv().TopicName}
		require.ElementsMatch(t, []string{"public/news", "public/secret"}, got)
		require.Empty(t, anon.Ping())

		al := rawclient.Dial(t, s.addr, 5)
		al.MustConnect("al", "alice", "secret")
		require.Equal(t, []byte{0}, al.Subscribe(1, 0, "public/#"))
		require.Equal(t, "public/news", al.Recv().TopicName)
		require.Empty(t, al.Ping())
	})

	t.Run("denied will is dropped", func(t *testing.T) {
		sub := rawclient.Dial(t, s.addr, 5)
		sub.MustConnect("willwatch", "alice", "secret")
		require.Equal(t, []byte{0, 0}, sub.Subscribe(1, 0, "public/w1", "clients/#"))
		for _, w := range []struct{ id, topic string }{{"w1", "public/w1"}, {"w2", "clients/w2/will"}} {
			c := rawclient.Dial(t, s.addr, 4)
			pk := c.ConnectPacket(w.id, "bob", "builder")
			pk.Connect.WillFlag = true
			pk.Connect.WillTopic = w.topic
			pk.Connect.WillPayload = []byte("gone")
			c.Send(pk)
			require.Equal(t, byte(0), c.Recv().ReasonCode)
			c.Conn.Close() // no DISCONNECT: the will is due
			rawclient.WaitFor(t, func() bool { _, ok := s.srv.Clients.Get(w.id); return !ok })
		}
		// w1 may not write public/w1; w2 may write clients/w2/will.
		got := sub.Recv()
		require.Equal(t, "clients/w2/will", got.TopicName)
		require.Empty(t, sub.Ping())
	})
}

func TestSecurityReload(t *testing.T) {
	pw := passwordFile(t, map[string]string{"alice": "old"})
	acl := writeFile(t, "acl", "user alice\ntopic readwrite a/#\n")
	cfg := SecurityConfig{PasswordFile: pw, ACLFile: acl}
	s := startSecure(t, cfg)

	alice := rawclient.Dial(t, s.addr, 5)
	alice.MustConnect("alice1", "alice", "old")
	require.Equal(t, []byte{0}, alice.Subscribe(1, 0, "a/#"))

	// New password and ACL: alice's connection stays, new rules apply to it.
	newPW := passwordFile(t, map[string]string{"alice": "new"})
	require.NoError(t, os.Rename(newPW, pw))
	require.NoError(t, os.WriteFile(acl, []byte("user alice\ntopic readwrite b/#\n"), 0o600))
	require.NoError(t, s.hook.reload(cfg))

	alice.Publish(2, 1, "a/x", "now denied", false)
	require.Equal(t, byte(0x87), alice.Recv().ReasonCode)
	alice.Publish(3, 1, "b/x", "allowed", false)
	require.Equal(t, packets.CodeNoMatchingSubscribers.Code, alice.Recv().ReasonCode) // allowed, nobody subscribes
	require.Equal(t, []byte{0}, alice.Subscribe(4, 0, "b/#"))

	c := rawclient.Dial(t, s.addr, 5)
	require.Equal(t, byte(0x87), c.Connect("alice2", "alice", "old"))
	c = rawclient.Dial(t, s.addr, 5)
	require.Equal(t, byte(0), c.Connect("alice3", "alice", "new"))

	// A broken ACL file on reload keeps the rules in force and says why.
	require.NoError(t, os.WriteFile(acl, []byte("user alice\ntopic rw b/#\n"), 0o600))
	err := s.hook.reload(cfg)
	require.EqualError(t, err, acl+`:2: Invalid topic access type "rw"`)
	alice.Publish(5, 1, "b/y", "still allowed", false)
	require.Equal(t, byte(0), alice.Recv().ReasonCode)

	// So does a missing password file.
	require.NoError(t, os.Remove(pw))
	require.ErrorIs(t, s.hook.reload(cfg), os.ErrNotExist)
	c = rawclient.Dial(t, s.addr, 5)
	require.Equal(t, byte(0), c.Connect("alice4", "alice", "new"))
}

// TestUnreadableHint: a file the broker may not read names the user it runs
// as and the chown that fixes it; other errors get no hint.
func TestUnreadableHint(t *testing.T) {
	u, err := user.Current()
	require.NoError(t, err)
	perm := fmt.Errorf("wrapped: %w", &fs.PathError{Op: "open", Path: "/etc/mqttkit/passwd", Err: fs.ErrPermission})
	require.Equal(t, "; the broker runs as user "+u.Username+", who must be able to read it (e.g. `chown "+u.Username+": /etc/mqttkit/passwd`)",
		unreadableHint(perm, "/etc/mqttkit/passwd"))
	require.Empty(t, unreadableHint(&fs.PathError{Op: "open", Path: "x", Err: fs.ErrNotExist}, "x"))
}
