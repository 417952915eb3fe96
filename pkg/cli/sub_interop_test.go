// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
	"github.com/mqttkit/mqttkit/internal/testutil"
)

// These tests run `mqtt sub` (in-process) and the real mosquitto_sub side
// by side against the real mosquitto broker and compare what they print
// and how they exit. They skip without the mosquitto tools unless
// MQTT_INTEROP=require. pkg/format's interop test compares the -F renderer
// on every specifier; these check the whole command: flags, client,
// conversion of received messages, exit codes.

// interopPub is one mosquitto_pub invocation.
type interopPub struct {
	args []string
	file []byte // payload for -f
}

// subInteropMessages are published in this order. The retained one comes
// first (delivered right after the SUBACK); QoS 2 comes last because
// libmosquitto hands a QoS 2 message to mosquitto_sub only at PUBREL, so a
// later message could overtake it. Properties are given in MQTT identifier
// order, the order mqtt sub's %j prints (mosquitto's broker keeps the
// publisher's order but moves message-expiry-interval last, so that one
// travels alone).
var subInteropMessages = []interopPub{
	{args: []string{"-t", "fmt/r", "-q", "1", "-r", "-m", "retained msg"}},
	{args: []string{"-t", "fmt/live/plain", "-m", "hello world"}},
	{args: []string{"-t", "fmt/live/empty", "-n"}},
	{args: []string{"-t", "fmt/live/bin", "-q", "1"}, file: []byte("a\x00b\x01\x7f\xc3\xa9\xff\x1f\t\"\\z")},
	{args: []string{"-t", "fmt/live/json", "-q", "1", "-m", ` {"a" : [1, 2.50, true, null, -0.0, 1e5], "b":"x\u00e9\n", "c":{}} `}},
	{args: []string{"-t", "fmt/live/props", "-q", "1", "-V", "5", "-m", "with props",
		"-D", "publish", "payload-format-indicator", "1", "-D", "publish", "content-type", "text/plain",
		"-D", "publish", "response-topic", "fmt/reply", "-D", "publish", "correlation-data", "corr-42",
		"-D", "publish", "user-property", "k1", "v1", "-D", "publish", "user-property", "k1", "v2"}},
	{args: []string{"-t", "fmt/live/expiry", "-V", "5", "-m", "expires", "-D", "publish", "message-expiry-interval", "3600"}},
	{args: []string{"-t", "fmt/live/température", "-q", "2", "-m", "café ☕"}},
}

// mosqPublish runs mosquitto_pub and waits until the broker logged the
// PUBLISH (QoS 0 gives no other signal), so every subscriber sees the
// messages in publishing order.
func mosqPublish(t *testing.T, m *interop.Mosquitto, id string, p interopPub) {
	t.Helper()
	bin := interop.Require(t, "mosquitto_pub")
	args := append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(m.Port), "-i", id}, p.args...)
	if p.file != nil {
		f := filepath.Join(t.TempDir(), "payload")
		require.NoError(t, os.WriteFile(f, p.file, 0o600))
		args = append(args, "-f", f)
	}
	out, err := exec.Command(bin, args...).CombinedOutput()
	require.NoError(t, err, "mosquitto_pub %v: %s", args, out)
	waitBrokerLog(t, m, "Received PUBLISH from "+id+" ")
}

// waitBrokerLog polls the broker log (log_type all) for substr.
func waitBrokerLog(t *testing.T, m *interop.Mosquitto, substr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(m.Log(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("broker log never showed %q:\n%s", substr, m.Log())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// mosquittoSub starts mosquitto_sub in the background.
type mosqSub struct {
	cmd         *exec.Cmd
	out, errOut testutil.Buffer
	done        chan struct{}
	err         error
}

func startMosquittoSub(t *testing.T, args ...string) *mosqSub {
	t.Helper()
	bin := interop.Require(t, "mosquitto_sub")
	s := &mosqSub{done: make(chan struct{})}
	s.cmd = exec.Command(bin, args...)
	dir := t.TempDir()
	s.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir) // no options file
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.errOut
	require.NoError(t, s.cmd.Start())
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		<-s.done
	})
	return s
}

func (s *mosqSub) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(15 * time.Second):
		t.Fatalf("mosquitto_sub did not exit; stdout %q", s.out.String())
	}
	var ee *exec.ExitError
	if errors.As(s.err, &ee) {
		return ee.ExitCode()
	}
	require.NoError(t, s.err)
	return 0
}

var (
	interopTST    = regexp.MustCompile(`(\.[0-9]{6})Z([+-][0-9]{4})`)
	interopDigits = regexp.MustCompile(`[0-9]`)
	interopExpiry = regexp.MustCompile(`359[0-9]|3600`)
)

// normalise makes the two outputs comparable where they legitimately
// differ: time fields are read separately (digits are compared by shape),
// 2.0.11 prints a stray Z in %j's "tst" (2.0.20 and mqtt sub do not), and
// the broker counts message-expiry-interval down per delivery.
func normalise(b []byte, times bool) string {
	b = interopTST.ReplaceAll(b, []byte("$1$2"))
	if times {
		return string(interopDigits.ReplaceAll(b, []byte("0")))
	}
	b = interopExpiry.ReplaceAll(b, []byte("EXP"))
	return string(b)
}

// TestSubInteropOutput: for each output option set and MQTT version, the
// bytes mqtt sub prints equal mosquitto_sub's for the same messages.
func TestSubInteropOutput(t *testing.T) {
	m := interop.StartMosquitto(t, "log_type all", "log_dest stderr")
	port := strconv.Itoa(m.Port)
	cases := []struct {
		name  string
		args  []string
		times bool
	}{
		{name: "default"},
		{name: "-v", args: []string{"-v"}},
		{name: "-N", args: []string{"-N"}},
		{name: "-v -N", args: []string{"-v", "-N"}},
		{name: "fields", args: []string{"-F", `%t|%p|%q|%r|%m|%l|%x|%X|%10t|%-12p|%5.2t|%08l|%-p|\t%%`}},
		{name: "properties", args: []string{"-F", "%A|%C|%5C|[%D]|%E|%05E|%F|%3F|%P|%R|%S|%4S"}},
		{name: "-F overrides -v", args: []string{"-v", "-F", "%l %t"}},
		{name: "empty format", args: []string{"-F", ""}},
		{name: "time", args: []string{"-F", "%I|%30I|%U|@Y-@m-@dT@H:@M:@S.@N @z @Z @a @b @j @@ %t"}, times: true},
		{name: "%j", args: []string{"-F", "%j"}, times: true},
		{name: "%J", args: []string{"-F", "%J"}, times: true},
		{name: "%j --pretty", args: []string{"-F", "%j", "--pretty"}, times: true},
		{name: "%J --pretty", args: []string{"--pretty", "-F", "[%J]"}, times: true},
	}
	type pair struct {
		name   string
		times  bool
		ours   *subProc
		theirs *mosqSub
	}
	var runs []pair
	n := strconv.Itoa(len(subInteropMessages))
	i := 0
	for _, v := range []string{"5", "311"} {
		for _, c := range cases {
			common := []string{"-q", "2", "-V", v, "-C", n, "-t", "fmt/r", "-t", "fmt/live/#"}
			ours := startSubAt(t, "127.0.0.1", port, false, nil, append(append([]string{"-i", fmt.Sprintf("ours-%d", i)}, common...), c.args...)...)
			theirs := startMosquittoSub(t, append(append([]string{"-h", "127.0.0.1", "-p", port, "-i", fmt.Sprintf("theirs-%d", i)}, common...), c.args...)...)
			runs = append(runs, pair{name: "v" + v + " " + c.name, times: c.times, ours: ours, theirs: theirs})
			i++
		}
	}
	for k := 0; k < i; k++ {
		waitBrokerLog(t, m, fmt.Sprintf("Sending SUBACK to ours-%d\n", k))
		waitBrokerLog(t, m, fmt.Sprintf("Sending SUBACK to theirs-%d\n", k))
	}
	// All subscribers are in place: the first (retained) message arrives
	// live here; TestSubInteropRetained covers retained delivery.
	for k, p := range subInteropMessages {
		mosqPublish(t, m, fmt.Sprintf("pub-%d", k), p)
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			require.Equal(t, 0, r.theirs.wait(t), "mosquitto_sub: %s", r.theirs.errOut.String())
			require.Equal(t, 0, r.ours.wait(t), "mqtt sub: %s", r.ours.errOut.String())
			require.Equal(t, normalise([]byte(r.theirs.out.String()), r.times), normalise([]byte(r.ours.out.String()), r.times))
			require.Equal(t, r.theirs.errOut.String(), r.ours.errOut.String(), "stderr (%%J errors)")
		})
	}
}

// TestSubInteropRetained compares retained-message handling: the default,
// -R, --retained-only and --remove-retained with -T.
func TestSubInteropRetained(t *testing.T) {
	m := interop.StartMosquitto(t, "log_type all", "log_dest stderr")
	port := strconv.Itoa(m.Port)
	host := []string{"-h", "127.0.0.1", "-p", port}
	for k, topic := range []string{"ret/a", "ret/b", "ret/keep"} {
		mosqPublish(t, m, fmt.Sprintf("rpub-%d", k), interopPub{args: []string{"-t", topic, "-r", "-q", "1", "-m", "old " + topic}})
	}
	sorted := func(s string) string {
		lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
		sort.Strings(lines)
		return strings.Join(lines, "\n")
	}
	for _, c := range []struct {
		name string
		args []string
		code int
	}{
		{"retained shown with the flag", []string{"-t", "ret/#", "-C", "3", "-F", "%t %p %r %q"}, 0},
		{"--retained-only", []string{"-t", "ret/#", "--retained-only", "-v", "-W", "1"}, ExitTimeout},
		{"-R", []string{"-t", "ret/#", "-R", "-v", "-W", "1"}, ExitTimeout},
		{"v311 -R", []string{"-t", "ret/#", "-R", "-v", "-W", "1", "-V", "311"}, ExitTimeout},
	} {
		t.Run(c.name, func(t *testing.T) {
			theirs := startMosquittoSub(t, append(append([]string{}, host...), c.args...)...)
			ours := startSubAt(t, "127.0.0.1", port, false, nil, c.args...)
			require.Equal(t, c.code, theirs.wait(t))
			require.Equal(t, c.code, ours.wait(t))
			require.Equal(t, sorted(theirs.out.String()), sorted(ours.out.String()))
		})
	}
	t.Run("--retained-only ends at the first live message", func(t *testing.T) {
		args := []string{"-t", "ret/#", "-t", "live/#", "--retained-only", "-v", "-i", "ro-ours"}
		ours := startSubAt(t, "127.0.0.1", port, false, nil, args...)
		theirs := startMosquittoSub(t, append(append([]string{}, host...), "-t", "ret/#", "-t", "live/#", "--retained-only", "-v", "-i", "ro-theirs")...)
		waitBrokerLog(t, m, "Sending SUBACK to ro-ours\n")
		waitBrokerLog(t, m, "Sending SUBACK to ro-theirs\n")
		mosqPublish(t, m, "live-1", interopPub{args: []string{"-t", "live/x", "-m", "now"}})
		require.Equal(t, 0, theirs.wait(t))
		require.Equal(t, 0, ours.wait(t))
		require.Equal(t, sorted(theirs.out.String()), sorted(ours.out.String()))
		require.NotContains(t, ours.out.String(), "now")
	})
	t.Run("--remove-retained spares -T", func(t *testing.T) {
		ours := startSubAt(t, "127.0.0.1", port, false, nil, "-t", "ret/#", "--remove-retained", "-T", "ret/keep", "-C", "2", "-v")
		require.Equal(t, 0, ours.wait(t), ours.errOut.String())
		check := startMosquittoSub(t, append(append([]string{}, host...), "-t", "ret/#", "--retained-only", "-v", "-W", "1")...)
		require.Equal(t, ExitTimeout, check.wait(t))
		require.Equal(t, "ret/keep old ret/keep\n", check.out.String())
	})
}

// TestSubInteropExitCodes compares exit codes and the error line.
func TestSubInteropExitCodes(t *testing.T) {
	m := interop.StartMosquitto(t)
	port := strconv.Itoa(m.Port)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	require.NoError(t, l.Close())
	firstLine := func(s string) string {
		for _, line := range strings.Split(s, "\n") {
			if line != "" {
				return line
			}
		}
		return ""
	}
	for _, c := range []struct {
		name   string
		port   string
		args   []string
		code   int
		stderr string // expected first stderr line of both ("" = compare only the code)
	}{
		{"bad filter", port, []string{"-t", "a/#/b"}, 1, "Error: Invalid subscription topic 'a/#/b', are all '+' and '#' wildcards correct?"},
		{"count 0", port, []string{"-t", "a", "-C", "0"}, 1, `Error: Invalid message count "0".`},
		{"timeout 0", port, []string{"-t", "a", "-W", "0"}, 1, `Error: Invalid timeout "0".`},
		{"negative timeout", port, []string{"-t", "a", "-W", "-2"}, 1, `Error: Invalid timeout "-2".`},
		{"bad format", port, []string{"-t", "a", "-F", "%k"}, 1, "Error: Invalid format specifier 'k'."},
		{"bad escape", port, []string{"-t", "a", "-F", `\q`}, 1, "Error: Invalid escape specifier 'q'."},
		{"-R --retained-only", port, []string{"-t", "a", "-R", "--retained-only"}, 1, "Error: Combining '-R' and '--retained-only' makes no sense."},
		{"random filter", port, []string{"-t", "a", "--random-filter", "1001"}, 1, "Error: --random-filter chance must be between 0.1-100.0"},
		{"-c without id", port, []string{"-t", "a", "-c", "-V", "311"}, 1, "Error: You must provide a client id if you are using the -c option."},
		{"timed out", port, []string{"-t", "quiet/topic", "-W", "1"}, ExitTimeout, "Timed out"},
		{"exit after subscribe", port, []string{"-t", "a", "-E"}, 0, ""},
		{"connection refused", closed, []string{"-t", "a"}, 1, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			theirs := startMosquittoSub(t, append([]string{"-h", "127.0.0.1", "-p", c.port}, c.args...)...)
			ours := startSubAt(t, "127.0.0.1", c.port, false, nil, c.args...)
			require.Equal(t, c.code, theirs.wait(t), "mosquitto_sub: %s", theirs.errOut.String())
			require.Equal(t, c.code, ours.wait(t), "mqtt sub: %s", ours.errOut.String())
			if c.stderr != "" {
				require.Equal(t, c.stderr, firstLine(theirs.errOut.String()))
				require.Equal(t, c.stderr, firstLine(ours.errOut.String()))
			}
			require.Empty(t, ours.out.String())
		})
	}
}

// restartableMosquitto runs the real broker on a fixed port so that it can
// be stopped and started again (reconnect tests).
type restartableMosquitto struct {
	t    *testing.T
	port int
	conf string
	log  *testutil.Buffer
	cmd  *exec.Cmd
	mu   sync.Mutex
}

func (r *restartableMosquitto) start() {
	r.t.Helper()
	bin := interop.Require(r.t, "mosquitto")
	cmd := exec.Command(bin, "-c", r.conf)
	cmd.Stdout, cmd.Stderr = r.log, r.log
	require.NoError(r.t, cmd.Start())
	r.mu.Lock()
	r.cmd = cmd
	r.mu.Unlock()
	require.Eventually(r.t, func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(r.port), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, 10*time.Second, 10*time.Millisecond)
}

func (r *restartableMosquitto) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// TestSubInteropReconnect restarts the real broker under mqtt sub and
// mosquitto_sub: both reconnect (every second), resubscribe and print the
// message published after the restart; mqtt sub says so once on stderr.
func TestSubInteropReconnect(t *testing.T) {
	interop.Require(t, "mosquitto")
	dir := t.TempDir()
	r := &restartableMosquitto{t: t, port: interop.FreePort(t), conf: filepath.Join(dir, "m.conf"), log: &testutil.Buffer{}}
	require.NoError(t, os.WriteFile(r.conf, []byte(fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nlog_type all\nlog_dest stderr\n", r.port)), 0o600))
	r.start()
	t.Cleanup(r.stop)
	port := strconv.Itoa(r.port)
	pub := func(topic, payload string) {
		out, err := exec.Command(interop.Require(t, "mosquitto_pub"), "-h", "127.0.0.1", "-p", port, "-t", topic, "-m", payload, "-q", "1").CombinedOutput()
		require.NoError(t, err, string(out))
	}
	subacks := func(id string) int { return strings.Count(r.log.String(), "Sending SUBACK to "+id+"\n") }

	ours := startSubAt(t, "127.0.0.1", port, false, nil, "-t", "rc/#", "-v", "-C", "2", "-q", "1", "-i", "rc-ours")
	theirs := startMosquittoSub(t, "-h", "127.0.0.1", "-p", port, "-t", "rc/#", "-v", "-C", "2", "-q", "1", "-i", "rc-theirs")
	require.Eventually(t, func() bool { return subacks("rc-ours") == 1 && subacks("rc-theirs") == 1 }, 10*time.Second, 5*time.Millisecond)
	pub("rc/1", "before")
	require.Eventually(t, func() bool {
		return ours.out.String() == "rc/1 before\n" && theirs.out.String() != ""
	}, 10*time.Second, 5*time.Millisecond)

	r.stop()
	r.log = &testutil.Buffer{}
	r.start()
	require.Eventually(t, func() bool { return subacks("rc-ours") == 1 && subacks("rc-theirs") == 1 }, 15*time.Second, 10*time.Millisecond,
		"both resubscribe after the restart; log:\n%s", r.log.String())
	pub("rc/2", "after")
	require.Equal(t, 0, theirs.wait(t))
	require.Equal(t, 0, ours.wait(t), ours.errOut.String())
	require.Equal(t, theirs.out.String(), ours.out.String())
	require.Equal(t, "rc/1 before\nrc/2 after\n", ours.out.String())
	require.Regexp(t, `^Connection to 127\.0\.0\.1:[0-9]+ lost \(.*\)\. Reconnecting every 1s\.\n$`, ours.errOut.String())
}

// TestSubInteropJSONBinary: --json turns a binary payload sent by
// mosquitto_pub -f into base64 and keeps text as text.
func TestSubInteropJSONBinary(t *testing.T) {
	m := interop.StartMosquitto(t, "log_type all", "log_dest stderr")
	port := strconv.Itoa(m.Port)
	ours := startSubAt(t, "127.0.0.1", port, false, nil, "-t", "bin/#", "-C", "2", "--json", "-i", "json-ours")
	waitBrokerLog(t, m, "Sending SUBACK to json-ours\n")
	mosqPublish(t, m, "jp-1", interopPub{args: []string{"-t", "bin/raw"}, file: []byte{0x00, 0xff, 0xfe, 'x'}})
	mosqPublish(t, m, "jp-2", interopPub{args: []string{"-t", "bin/text", "-m", "héllo\n"}})
	require.Equal(t, 0, ours.wait(t), ours.errOut.String())
	lines := strings.Split(strings.TrimSuffix(ours.out.String(), "\n"), "\n")
	require.Len(t, lines, 2)
	require.Regexp(t, `^\{"topic":"bin/raw","payload":"AP/\+eA==","payload_encoding":"base64","qos":0,"retain":false,"mid":0,"time":"[^"]+"\}$`, lines[0])
	require.Regexp(t, `^\{"topic":"bin/text","payload":"héllo\\n","qos":0,"retain":false,"mid":0,"time":"[^"]+"\}$`, lines[1])
}
