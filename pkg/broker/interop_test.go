// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
	"github.com/mqttkit/mqttkit/internal/rawclient"
	"github.com/mqttkit/mqttkit/pkg/tlsfiles"
)

// interopBroker is a broker with a password file, an ACL and a TLS
// listener, as a course or a small site would run it.
type interopBroker struct {
	b                *Broker
	port, tlsPort    string
	ca               string
	mosqPub, mosqSub string
}

const interopACL = `user alice
topic readwrite sensors/#
topic readwrite course/#

user bob
topic write sensors/#
topic read course/#

pattern readwrite clients/%c/#
`

func startInterop(t *testing.T) *interopBroker {
	t.Helper()
	ib := &interopBroker{mosqPub: interop.Require(t, "mosquitto_pub"), mosqSub: interop.Require(t, "mosquitto_sub")}
	s, err := tlsfiles.WriteSelfSigned(t.TempDir())
	require.NoError(t, err)
	ib.ca = s.CAFile
	ib.b = start(t, Config{
		PasswordFile: passwordFile(t, map[string]string{"alice": "secret", "bob": "builder"}),
		ACLFile:      writeFile(t, "acl", interopACL),
		Listeners: []Listener{
			{Address: "127.0.0.1:0"},
			{Address: "127.0.0.1:0", TLS: &tlsfiles.Files{CertFile: s.CertFile, KeyFile: s.KeyFile}},
		},
	})
	_, ib.port, _ = strings.Cut(ib.b.Listeners()[0].Addr, "127.0.0.1:")
	_, ib.tlsPort, _ = strings.Cut(ib.b.Listeners()[1].Addr, "127.0.0.1:")
	return ib
}

// run runs a tool to completion and returns its exit code and output.
func run(t *testing.T, name string, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else {
		require.NoError(t, err, "%s %v", name, args)
	}
	return code, out.String(), errOut.String()
}

// background starts a tool; wait returns its exit code and output.
func background(t *testing.T, name string, args ...string) (wait func() (int, string, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	require.NoError(t, cmd.Start())
	done := false
	t.Cleanup(func() {
		if !done {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		cancel()
	})
	return func() (int, string, string) {
		err := cmd.Wait()
		done = true
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return code, out.String(), errOut.String()
	}
}

// waitSubscriber waits until some client subscribes to a filter matching topic.
func (ib *interopBroker) waitSubscriber(t *testing.T, topic string) {
	t.Helper()
	rawclient.WaitFor(t, func() bool { return ib.b.HasSubscriber(topic) })
}

func TestInteropMosquittoClients(t *testing.T) {
	ib := startInterop(t)
	for _, v := range []string{"311", "5"} {
		t.Run("v"+v, func(t *testing.T) {
			topic := "sensors/v" + v
			wait := background(t, ib.mosqSub, "-V", v, "-p", ib.port, "-u", "alice", "-P", "secret", "-t", topic, "-C", "2", "-v")
			ib.waitSubscriber(t, topic)
			code, _, stderr := run(t, ib.mosqPub, "-V", v, "-p", ib.port, "-u", "bob", "-P", "builder", "-t", topic, "-m", "one")
			require.Equal(t, 0, code, stderr)
			code, _, stderr = run(t, ib.mosqPub, "-V", v, "-p", ib.port, "-u", "bob", "-P", "builder", "-t", topic, "-m", "two", "-q", "1")
			require.Equal(t, 0, code, stderr)
			code, out, stderr := wait()
			require.Equal(t, 0, code, stderr)
			require.Equal(t, topic+" one\n"+topic+" two\n", out)
		})
	}

	t.Run("refused", func(t *testing.T) {
		// Exactly mosquitto's codes and messages, for scripts that test them.
		code, _, stderr := run(t, ib.mosqPub, "-p", ib.port, "-t", "sensors/x", "-m", "anonymous")
		require.Equal(t, 5, code)
		require.Equal(t, "Connection error: Connection Refused: not authorised.\nError: The connection was refused.\n", stderr)
		code, _, stderr = run(t, ib.mosqPub, "-V", "5", "-p", ib.port, "-u", "alice", "-P", "wrong", "-t", "sensors/x", "-m", "x")
		require.Equal(t, 135, code)
		require.Contains(t, stderr, "Connection error: Not authorized\n")
	})

	t.Run("acl", func(t *testing.T) {
		// mosquitto_pub reports a refused MQTT 5 publish as a warning.
		code, _, stderr := run(t, ib.mosqPub, "-V", "5", "-q", "1", "-p", ib.port, "-u", "bob", "-P", "builder", "-t", "course/x", "-m", "x")
		require.Equal(t, 0, code)
		require.Contains(t, stderr, "Warning: Publish 1 failed: Not authorized.")
		// bob reads course/# and receives alice's messages but not sensors/#.
		wait := background(t, ib.mosqSub, "-V", "5", "-p", ib.port, "-u", "bob", "-P", "builder", "-t", "course/#", "-t", "sensors/#", "-C", "1", "-v")
		ib.waitSubscriber(t, "course/a")
		code, _, stderr = run(t, ib.mosqPub, "-p", ib.port, "-u", "alice", "-P", "secret", "-t", "sensors/a", "-m", "not for bob")
		require.Equal(t, 0, code, stderr)
		code, _, stderr = run(t, ib.mosqPub, "-p", ib.port, "-u", "alice", "-P", "secret", "-t", "course/a", "-m", "for bob")
		require.Equal(t, 0, code, stderr)
		code, out, stderr := wait()
		require.Equal(t, 0, code, stderr)
		require.Equal(t, "course/a for bob\n", out)
	})

	t.Run("tls", func(t *testing.T) {
		wait := background(t, ib.mosqSub, "-h", "localhost", "-p", ib.tlsPort, "--cafile", ib.ca, "-u", "alice", "-P", "secret", "-t", "sensors/tls", "-C", "1", "-v")
		ib.waitSubscriber(t, "sensors/tls")
		code, _, stderr := run(t, ib.mosqPub, "-V", "5", "-h", "localhost", "-p", ib.tlsPort, "--cafile", ib.ca, "-u", "bob", "-P", "builder", "-t", "sensors/tls", "-m", "secure", "-q", "2")
		require.Equal(t, 0, code, stderr)
		code, out, stderr := wait()
		require.Equal(t, 0, code, stderr)
		require.Equal(t, "sensors/tls secure\n", out)
	})
}

// pythonWithPaho finds a python3 that imports paho.mqtt (Debian's
// python3-paho-mqtt lives in /usr/bin/python3's path).
func pythonWithPaho(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		path, err := exec.LookPath(p)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import paho.mqtt.client").Run() == nil {
			return path
		}
	}
	if os.Getenv("MQTT_INTEROP") == "require" {
		t.Fatal("no python3 with paho-mqtt and MQTT_INTEROP=require: install python3-paho-mqtt")
	}
	t.Skip("no python3 with paho-mqtt: skipping (apt-get install python3-paho-mqtt)")
	return ""
}

func TestInteropPythonPaho(t *testing.T) {
	py := pythonWithPaho(t)
	ib := startInterop(t)
	script := func(name string) string {
		p, err := filepath.Abs(filepath.Join("testdata", "paho", name))
		require.NoError(t, err)
		return p
	}
	for _, tc := range []struct {
		name string
		conn []string
	}{
		{"tcp v3.1.1", []string{"--port", ib.port}},
		{"tcp v5", []string{"--port", ib.port, "--v5"}},
		{"tls", []string{"--host", "localhost", "--port", ib.tlsPort, "--cafile", ib.ca}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic := "course/" + strings.NewReplacer(" ", "-", ".", "").Replace(tc.name)
			args := func(user, pass, topic string, count int) []string {
				return append(append([]string{}, tc.conn...), "--username", user, "--password", pass, "--topic", topic, "--count", strconv.Itoa(count))
			}
			// The course's subscriber and publisher, with username_pw_set.
			wait := background(t, py, append([]string{script("subscriber.py")}, args("bob", "builder", topic+"/#", 3)...)...)
			ib.waitSubscriber(t, topic+"/x")
			code, out, stderr := run(t, py, append([]string{script("publisher.py")}, args("alice", "secret", topic+"/x", 3)...)...)
			require.Equal(t, 0, code, stderr)
			require.Equal(t, "published 3\n", out)
			code, out, stderr = wait()
			require.Equal(t, 0, code, stderr)
			require.Equal(t, fmt.Sprintf("subscribed [1]\n%[1]s/x message 0\n%[1]s/x message 1\n%[1]s/x message 2\n", topic), out)

			// The course's sensor, read by alice.
			sensorTopic := "sensors/" + strings.ReplaceAll(topic, "/", "-")
			wait = background(t, py, append([]string{script("subscriber.py")}, args("alice", "secret", sensorTopic, 2)...)...)
			ib.waitSubscriber(t, sensorTopic)
			code, out, stderr = run(t, py, append([]string{script("sensor.py")}, args("bob", "builder", sensorTopic, 2)...)...)
			require.Equal(t, 0, code, stderr)
			require.Equal(t, "sent 2 readings\n", out)
			code, out, stderr = wait()
			require.Equal(t, 0, code, stderr)
			require.Contains(t, out, sensorTopic+` {"sensor": "t1", "seq": 1, "temperature": 20.1}`)

			// A wrong password is refused with mosquitto's code.
			code, out, _ = run(t, py, append([]string{script("subscriber.py")}, args("alice", "wrong", topic, 1)...)...)
			require.Equal(t, 2, code)
			want := "refused 5\n" // MQTT 3.1.1: not authorised
			if strings.Contains(tc.name, "v5") {
				want = "refused 135\n"
			}
			require.Equal(t, want, out)
		})
	}
}
