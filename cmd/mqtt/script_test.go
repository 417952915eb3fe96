// SPDX-License-Identifier: Apache-2.0

package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mqttkit/mqttkit/internal/testbroker"
	"github.com/mqttkit/mqttkit/internal/testcert"
	"github.com/mqttkit/mqttkit/pkg/cli"
)

var update = flag.Bool("update", false, "rewrite the golden files embedded in the scripts")

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"mqtt": func() { os.Exit(cli.Main()) },
	})
}

const brokerKey = "broker"

// TestScript runs every cmd/mqtt/testdata/script/*.txtar against the real
// binary. Each script gets its own broker on a random loopback port,
// exported as MQTT_HOST/MQTT_PORT (so plain `mqtt pub` reaches it).
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       *update,
		Condition:           condition,
		Setup: func(env *testscript.Env) error {
			b, err := testbroker.New()
			if err != nil {
				return err
			}
			env.Defer(func() { _ = b.Close() })
			env.Values[brokerKey] = b
			env.Setenv("MQTT_HOST", b.Host)
			env.Setenv("MQTT_PORT", b.PortString())
			env.Setenv("HOME", env.WorkDir)
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, ".config"))
			env.Setenv("NO_COLOR", "1")
			// mosquitto lives in /usr/sbin on Debian.
			env.Setenv("PATH", env.Getenv("PATH")+string(os.PathListSeparator)+"/usr/sbin")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"waitsub":    cmdWaitSub,
			"brokerpub":  cmdBrokerPub,
			"brokerrec":  cmdBrokerRec,
			"brokerwant": cmdBrokerWant,
			"waitfile":   cmdWaitFile,
			"freeport":   cmdFreePort,
			"status":     cmdStatus,
			"mosquitto":  cmdMosquitto,
			"expandenv":  cmdExpandEnv,
			"testcert":   cmdTestCert,
			"blackhole":  cmdBlackhole,
			"rawsend":    cmdRawSend,
			"closedpipe": cmdClosedPipe,
		},
	})
}

func scriptBroker(ts *testscript.TestScript) *testbroker.Broker {
	return ts.Value(brokerKey).(*testbroker.Broker)
}

// waitsub TOPIC: wait until some client subscribes to a filter matching TOPIC.
func cmdWaitSub(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitsub TOPIC")
	}
	err := scriptBroker(ts).WaitSubscriber(args[0], 10*time.Second)
	if neg {
		if err == nil {
			ts.Fatalf("unexpected subscriber for %s", args[0])
		}
		return
	}
	ts.Check(err)
}

// brokerpub [-r] [-q N] TOPIC PAYLOAD: publish from inside the broker.
func cmdBrokerPub(ts *testscript.TestScript, neg bool, args []string) {
	retain, qos := false, byte(0)
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-r":
			retain = true
			args = args[1:]
		case "-q":
			if len(args) < 2 {
				ts.Fatalf("usage: brokerpub [-r] [-q N] TOPIC PAYLOAD")
			}
			n, err := strconv.Atoi(args[1])
			ts.Check(err)
			qos = byte(n)
			args = args[2:]
		default:
			ts.Fatalf("brokerpub: unknown flag %s", args[0])
		}
	}
	if len(args) != 2 {
		ts.Fatalf("usage: brokerpub [-r] [-q N] TOPIC PAYLOAD")
	}
	ts.Check(scriptBroker(ts).Publish(args[0], []byte(args[1]), retain, qos))
}

// brokerrec FILTER: start recording messages matching FILTER inside the broker.
func cmdBrokerRec(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: brokerrec FILTER")
	}
	ts.Check(scriptBroker(ts).Record(args[0]))
}

// brokerwant TOPIC PAYLOAD: wait until a recorded message has this topic
// and payload (brokerrec must have been called first).
func cmdBrokerWant(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: brokerwant TOPIC PAYLOAD")
	}
	b := scriptBroker(ts)
	deadline := time.Now().Add(10 * time.Second)
	if neg {
		deadline = time.Now().Add(300 * time.Millisecond)
	}
	for {
		for _, m := range b.Messages() {
			if m.Topic == args[0] && m.Payload == args[1] {
				if neg {
					ts.Fatalf("unexpected message %s %q", args[0], args[1])
				}
				return
			}
		}
		if time.Now().After(deadline) {
			if neg {
				return
			}
			ts.Fatalf("no message %s %q; got %v", args[0], args[1], b.Messages())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitfile FILE: wait until FILE exists and is not empty.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: waitfile FILE")
	}
	p := ts.MkAbs(args[0])
	deadline := time.Now().Add(10 * time.Second)
	for {
		if st, err := os.Stat(p); err == nil && st.Size() > 0 {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear", args[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// freeport VAR: set VAR to a free TCP port on 127.0.0.1.
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	ts.Setenv(args[0], fmt.Sprint(port))
}

// status N PROG ARGS...: run PROG like exec and require exit status N
// (stdout and stderr are kept for the following commands).
func cmdStatus(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: status N PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if (got == want) == neg {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// expandenv FILE...: replace $VAR and ${VAR} in each file with the
// script's environment (e.g. a mosquitto.conf with "listener $PORT").
func cmdExpandEnv(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: expandenv FILE...")
	}
	for _, f := range args {
		p := ts.MkAbs(f)
		b, err := os.ReadFile(p)
		ts.Check(err)
		ts.Check(os.WriteFile(p, []byte(os.Expand(string(b), ts.Getenv)), 0o600))
	}
}

// interopTools are what [interop] scripts need.
var interopTools = []string{"mosquitto", "mosquitto_pub", "mosquitto_sub", "mosquitto_passwd"}

// condition adds [interop]: true when the real mosquitto tools are
// installed. When MQTT_INTEROP=require a missing tool is an error, so CI
// cannot silently skip interoperability scripts.
func condition(cond string) (bool, error) {
	if cond != "interop" {
		return false, fmt.Errorf("unknown condition %q", cond)
	}
	for _, tool := range interopTools {
		if lookTool(tool) == "" {
			if os.Getenv("MQTT_INTEROP") == "require" {
				return false, fmt.Errorf("%s is not installed and MQTT_INTEROP=require", tool)
			}
			return false, nil
		}
	}
	return true, nil
}

func lookTool(tool string) string {
	if p, err := exec.LookPath(tool); err == nil {
		return p
	}
	if p := filepath.Join("/usr/sbin", tool); fileExists(p) {
		return p
	}
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// mosquitto VAR [CONFIG LINE...]: start the real mosquitto broker on a
// free 127.0.0.1 port with the given extra configuration lines (default:
// allow_anonymous true), set VAR to its port, stop it when the script ends.
// Its log is in $WORK/mosquitto-VAR.log.
func cmdMosquitto(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: mosquitto VAR [CONFIG LINE...]")
	}
	bin := lookTool("mosquitto")
	if bin == "" {
		ts.Fatalf("mosquitto is not installed")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	lines := []string{"listener " + strconv.Itoa(port) + " 127.0.0.1", "persistence false"}
	anon := false
	for _, a := range args[1:] {
		lines = append(lines, a)
		anon = anon || strings.HasPrefix(a, "allow_anonymous")
	}
	if !anon {
		lines = append(lines, "allow_anonymous true")
	}
	conf := ts.MkAbs("mosquitto-" + args[0] + ".conf")
	ts.Check(os.WriteFile(conf, []byte(strings.Join(lines, "\n")+"\n"), 0o600))
	logf, err := os.Create(ts.MkAbs("mosquitto-" + args[0] + ".log"))
	ts.Check(err)
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = logf, logf
	ts.Check(cmd.Start())
	ts.Defer(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			ts.Fatalf("mosquitto did not start on port %d", port)
		}
		time.Sleep(10 * time.Millisecond)
	}
	ts.Setenv(args[0], strconv.Itoa(port))
}

// testcert DIR [NAME...]: write a test CA (ca.pem), a server certificate
// for the names (default localhost, 127.0.0.1, ::1: server.pem,
// server.key), a client certificate (client.pem, client.key) and an
// unrelated CA (other-ca.pem) into DIR.
func cmdTestCert(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: testcert DIR [NAME...]")
	}
	_, err := testcert.Write(ts.MkAbs(args[0]), args[1:]...)
	ts.Check(err)
}

// blackhole VAR: listen on a free 127.0.0.1 port that accepts
// connections and never answers; set VAR to the port.
func cmdBlackhole(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: blackhole VAR")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	done := make(chan struct{})
	var conns []net.Conn
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	ts.Defer(func() {
		l.Close()
		<-done
		for _, c := range conns {
			c.Close()
		}
	})
	ts.Setenv(args[0], strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
}

// closedpipe PROG [ARGS...]: run PROG with its stdout a pipe that nobody
// reads (closed at once), as in "mqtt sub ... | head -1" after head
// exited, and wait for it. It must exit 0 with nothing on stderr (with
// !, it must not); a process killed by SIGPIPE fails.
func cmdClosedPipe(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: closedpipe PROG [ARGS...]")
	}
	path := args[0]
	for _, dir := range filepath.SplitList(ts.Getenv("PATH")) {
		if p := filepath.Join(dir, args[0]); fileExists(p) {
			path = p
			break
		}
	}
	r, w, err := os.Pipe()
	ts.Check(err)
	r.Close()
	defer w.Close()
	cmd := exec.Command(path, args[1:]...)
	cmd.Dir = ts.Getenv("WORK")
	cmd.Env = os.Environ()
	for _, k := range []string{"PATH", "HOME", "XDG_CONFIG_HOME", "MQTT_HOST", "MQTT_PORT", "NO_COLOR"} {
		cmd.Env = append(cmd.Env, k+"="+ts.Getenv(k))
	}
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = w, &stderr
	err = cmd.Run()
	ok := err == nil && stderr.Len() == 0
	if ok == neg {
		ts.Fatalf("%s with a closed stdout: %v; stderr: %q", args[0], err, stderr.String())
	}
}
