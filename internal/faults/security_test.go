// SPDX-License-Identifier: Apache-2.0

package faults

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// Password and ACL files changed and reloaded with SIGHUP take effect
// without a restart, stay in effect after kill -9 and a restart, and a
// reload of a broken file keeps the rules in force and the broker running.
func TestSecurityReloadSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	acl := filepath.Join(dir, "acl")
	conf := filepath.Join(dir, "mosquitto.conf")
	mqttRun(t, "passwd", "-c", "-b", pw, "alice", "alice-pw")
	writeFile(t, acl, "user alice\ntopic readwrite alice/#\n")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	writeFile(t, conf, fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous false\npassword_file %s\nacl_file %s\n", port, pw, acl))
	b := startConfBroker(t, conf)

	// allowed says whether user, subscribed to filter, receives a message
	// that the owner of its first level publishes below it: the ACL grants
	// every SUBSCRIBE, as mosquitto's does, and checks each delivery.
	allowed := func(user, pass, filter string) error {
		sub, err := rawmqtt.Dial(b.Addr(), 5)
		if err != nil {
			return err
		}
		defer sub.Close()
		if _, err := sub.Connect(rawmqtt.ConnectOptions{Version: 5, ClientID: user + "-sub", Clean: true, Username: user, Password: pass}); err != nil {
			return err
		}
		if _, _, err := sub.Subscribe(1, filter, 1); err != nil {
			return err
		}
		owner, _, _ := strings.Cut(filter, "/")
		topic := owner + "/x"
		pub, err := rawmqtt.Dial(b.Addr(), 5)
		if err != nil {
			return err
		}
		defer pub.Close()
		if _, err := pub.Connect(rawmqtt.ConnectOptions{Version: 5, ClientID: owner + "-pub", Clean: true, Username: owner, Password: owner + "-pw"}); err != nil {
			return fmt.Errorf("publisher %s: %w", owner, err)
		}
		if err := pub.Send(rawmqtt.Publish(rawmqtt.PublishOptions{Version: 5, Topic: []byte(topic), Payload: []byte("m"), QoS: 1, PacketID: 1})); err != nil {
			return err
		}
		if ack, err := pub.Read(10 * time.Second); err != nil || ack.Type != rawmqtt.PUBACK || ack.Reason >= 0x80 {
			return fmt.Errorf("publisher %s on %s: %v %v", owner, topic, ack, err)
		}
		wait := 10 * time.Second
		if user != owner {
			wait = 2 * time.Second // the negative cases: nothing may come
		}
		for {
			p, err := sub.Read(wait)
			if err != nil {
				return fmt.Errorf("%s did not receive %s: %w", user, topic, err)
			}
			if p.Type == rawmqtt.PUBLISH && p.Topic == topic {
				return nil
			}
		}
	}
	must := func(user, pass, filter string) {
		t.Helper()
		if err := allowed(user, pass, filter); err != nil {
			t.Fatalf("%s on %s: %v", user, filter, err)
		}
	}
	mustNot := func(user, pass, filter string) {
		t.Helper()
		if err := allowed(user, pass, filter); err == nil {
			t.Fatalf("%s on %s was allowed", user, filter)
		}
	}
	must("alice", "alice-pw", "alice/x")
	mustNot("bob", "bob-pw", "bob/x")

	// Add bob to both files and reload.
	mqttRun(t, "passwd", "-b", pw, "bob", "bob-pw")
	writeFile(t, acl, "user alice\ntopic readwrite alice/#\nuser bob\ntopic readwrite bob/#\n")
	b.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "bob to be let in after SIGHUP", func() bool { return allowed("bob", "bob-pw", "bob/x") == nil })
	mustNot("bob", "bob-pw", "alice/#")

	b.restart()
	must("alice", "alice-pw", "alice/x")
	must("bob", "bob-pw", "bob/x")
	mustNot("bob", "bob-pw", "alice/#")
	mustNot("bob", "wrong", "bob/x")

	// A reload that cannot read the password file keeps the rules in force.
	if err := os.Remove(pw); err != nil {
		t.Fatal(err)
	}
	b.signal(syscall.SIGHUP)
	waitFor(t, 10*time.Second, "the broker to log the failed reload", func() bool {
		return strings.Contains(b.log.String(), "reload failed")
	})
	if !b.running() {
		t.Fatal("the broker stopped after a failed reload")
	}
	must("bob", "bob-pw", "bob/x")
	must("alice", "alice-pw", "alice/x")
	mustNot("bob", "bob-pw", "alice/#")
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// mqttRun runs the mqtt binary and fails the test if it fails.
func mqttRun(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command(mqttBin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mqtt %v: %v\n%s", args, err, out)
	}
}
