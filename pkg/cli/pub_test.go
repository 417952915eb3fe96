// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testbroker"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/iostreams"
)

// parsePub runs argv through the real app (including the -D folding) up
// to runPub and returns the options it would have run with.
func parsePub(t *testing.T, args ...string) (*PubOptions, error) {
	t.Helper()
	d, _ := testDeps(t)
	return parseCmd(t, d, newPubCmd, args...)
}

func u16(v uint16) *uint16 { return &v }
func u32(v uint32) *uint32 { return &v }
func b8(v byte) *byte      { return &v }

func TestPubOptions(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		check func(t *testing.T, o *PubOptions)
	}{
		{"message", []string{"-t", "a", "-m", "hi"}, func(t *testing.T, o *PubOptions) {
			require.Equal(t, srcMessage, o.source)
			require.Equal(t, "hi", o.Message)
			require.Equal(t, 1, o.Repeat)
			require.Equal(t, 20, o.MaxInflight)
			require.True(t, o.Props.Empty())
		}},
		{"message that looks like a flag", []string{"-t", "a", "-m", "-D"}, func(t *testing.T, o *PubOptions) {
			require.Equal(t, "-D", o.Message)
			require.True(t, o.Props.Empty())
		}},
		{"empty message", []string{"-t", "a", "-m", ""}, func(t *testing.T, o *PubOptions) {
			require.Equal(t, srcMessage, o.source)
			require.Equal(t, "", o.Message)
		}},
		{"file", []string{"-t", "a", "-f", "x.bin"}, func(t *testing.T, o *PubOptions) {
			require.Equal(t, srcFile, o.source)
			require.Equal(t, "x.bin", o.File)
		}},
		{"stdin", []string{"-t", "a", "-s"}, func(t *testing.T, o *PubOptions) { require.Equal(t, srcStdin, o.source) }},
		{"lines", []string{"-t", "a", "--stdin-line"}, func(t *testing.T, o *PubOptions) { require.Equal(t, srcLines, o.source) }},
		{"null", []string{"-t", "a", "-n"}, func(t *testing.T, o *PubOptions) { require.Equal(t, srcNull, o.source) }},
		{"qos retain repeat", []string{"-t", "a", "-n", "-q", "2", "-r", "--repeat", "3", "--repeat-delay", "0.5", "-M", "7"},
			func(t *testing.T, o *PubOptions) {
				require.Equal(t, 2, o.QoS)
				require.True(t, o.Retain)
				require.Equal(t, 3, o.Repeat)
				require.Equal(t, 0.5, o.RepeatDelay)
				require.Equal(t, 7, o.MaxInflight)
			}},
		{"publish properties", []string{"-t", "a", "-m", "x", "-D", "PUBLISH", "Content-Type", "text/plain",
			"-D", "publish", "user-property", "k", "v1", "--property", "publish", "user-property", "k", "v2",
			"-D", "publish", "message-expiry-interval", "60", "-D", "publish", "payload-format-indicator", "1",
			"-D", "publish", "response-topic", "r/t", "-D", "publish", "correlation-data", "id-1", "-D", "publish", "topic-alias", "3", "-q", "1"},
			func(t *testing.T, o *PubOptions) {
				require.Equal(t, 1, o.QoS, "flags after -D are parsed")
				require.Equal(t, &client.Properties{ContentType: "text/plain", MessageExpiry: u32(60), PayloadFormat: b8(1),
					ResponseTopic: "r/t", CorrelationData: []byte("id-1"), TopicAlias: u16(3),
					User: []client.UserProperty{{Key: "k", Value: "v1"}, {Key: "k", Value: "v2"}}}, o.Props.Publish)
			}},
		{"connect and disconnect properties", []string{"-t", "a", "-m", "x", "-D", "connect", "receive-maximum", "10",
			"-D", "connect", "session-expiry-interval", "30", "-D", "connect", "maximum-packet-size", "1000",
			"-D", "connect", "user-property", "who", "me", "-D", "connect", "request-problem-information", "0",
			"-D", "disconnect", "reason-string", "bye", "-D", "disconnect", "session-expiry-interval", "0"},
			func(t *testing.T, o *PubOptions) {
				f := false
				require.Equal(t, &client.ConnectProperties{ReceiveMaximum: u16(10), MaximumPacketSize: u32(1000), RequestProblemInfo: &f,
					User: []client.UserProperty{{Key: "who", Value: "me"}}}, o.cfg.ConnectProps)
				require.Equal(t, u32(30), o.cfg.SessionExpiry)
				require.Equal(t, &client.DisconnectProperties{ReasonString: "bye", SessionExpiry: u32(0)}, o.Props.Disconnect)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parsePub(t, tc.args...)
			require.NoError(t, err)
			tc.check(t, o)
		})
	}
}

func TestPubUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // the whole message
	}{
		{"two sources", []string{"-t", "a", "-m", "x", "-l"}, "Only one type of message can be sent at once."},
		{"two -m", []string{"-t", "a", "-m", "x", "-m", "y"}, "Only one type of message can be sent at once."},
		{"-n and -s", []string{"-t", "a", "-n", "-s"}, "Only one type of message can be sent at once."},
		{"-f and -n", []string{"-t", "a", "-f", "x", "-n"}, "Only one type of message can be sent at once."},
		{"no message", []string{"-t", "a"}, "Both topic and message must be supplied."},
		{"no topic", []string{"-m", "x"}, "Both topic and message must be supplied."},
		{"empty topic", []string{"-t", "", "-m", "x"}, "Invalid publish topic '': a topic must not be empty."},
		{"wildcard", []string{"-t", "a/#", "-m", "x"}, "Invalid publish topic 'a/#', does it contain '+' or '#'?"},
		{"bad utf8", []string{"-t", "a\xff", "-m", "x"}, "Malformed UTF-8 in -t argument."},
		{"long topic", []string{"-t", strings.Repeat("t", 65536), "-m", "x"}, "topic is 65536 bytes long, the maximum is 65535"},
		{"qos", []string{"-t", "a", "-m", "x", "-q", "3"}, "Invalid QoS given: 3"},
		{"repeat", []string{"-t", "a", "-m", "x", "--repeat", "0"}, "--repeat argument must be >0."},
		{"repeat delay", []string{"-t", "a", "-m", "x", "--repeat-delay", "-1"}, "--repeat-delay argument must be >=0.0."},
		{"inflight", []string{"-t", "a", "-m", "x", "-M", "0"}, "Maximum inflight messages must be greater than 0."},
		{"-D short", []string{"-t", "a", "-m", "x", "-D", "publish", "content-type"}, "--property argument given but not enough arguments specified."},
		{"-D short user", []string{"-t", "a", "-m", "x", "-D", "publish", "user-property", "k"}, "--property argument given but not enough arguments specified."},
		{"-D last", []string{"-t", "a", "-m", "x", "-D"}, "--property argument given but not enough arguments specified."},
		{"-D command", []string{"-t", "a", "-m", "x", "-D", "bogus", "content-type", "x"}, "Invalid command given in --property argument."},
		{"-D name", []string{"-t", "a", "-m", "x", "-D", "publish", "bogus", "x"}, "Invalid property name given in --property argument."},
		{"-D not allowed", []string{"-t", "a", "-m", "x", "-D", "connect", "content-type", "x"}, "content-type property not allowed for connect in --property argument."},
		{"-D will reason", []string{"-t", "a", "-m", "x", "-D", "will", "reason-string", "x"}, "reason-string property not allowed for will in --property argument."},
		{"-D subid", []string{"-t", "a", "-m", "x", "-D", "publish", "subscription-identifier", "1"}, "subscription-identifier property not supported for publish in --property argument."},
		{"-D puback", []string{"-t", "a", "-m", "x", "-D", "puback", "reason-string", "x"}, "reason-string property not supported for puback in --property argument."},
		{"-D connack", []string{"-t", "a", "-m", "x", "-D", "connack", "maximum-qos", "1"}, "maximum-qos property not supported for connack in --property argument."},
		{"-D subscribe in pub", []string{"-t", "a", "-m", "x", "-D", "subscribe", "user-property", "k", "v"}, "subscribe properties cannot be used with mqtt pub."},
		{"-D range", []string{"-t", "a", "-m", "x", "-D", "publish", "payload-format-indicator", "300"}, "Property value (300) out of range for property payload-format-indicator."},
		{"-D negative", []string{"-t", "a", "-m", "x", "-D", "publish", "message-expiry-interval", "-1"}, "Property value (-1) out of range for property message-expiry-interval."},
		{"-D int32 range", []string{"-t", "a", "-m", "x", "-D", "publish", "message-expiry-interval", "4294967296"}, "Property value (4294967296) out of range for property message-expiry-interval."},
		{"-D not a number", []string{"-t", "a", "-m", "x", "-D", "publish", "message-expiry-interval", "soon"}, "Property value (soon) is not a number for property message-expiry-interval."},
		{"-D duplicate", []string{"-t", "a", "-m", "x", "-D", "publish", "content-type", "a", "-D", "publish", "content-type", "b"}, "Error in PUBLISH properties: Duplicate property in property list"},
		{"-D flag 2", []string{"-t", "a", "-m", "x", "-D", "publish", "payload-format-indicator", "2"},
			"Error in PUBLISH properties: A network protocol error occurred when communicating with the broker. (payload-format-indicator must be 0 or 1)"},
		{"-D alias 0", []string{"-t", "a", "-m", "x", "-D", "publish", "topic-alias", "0"},
			"Error in PUBLISH properties: A network protocol error occurred when communicating with the broker. (topic-alias must not be 0)"},
		{"-D receive max 0", []string{"-t", "a", "-m", "x", "-D", "connect", "receive-maximum", "0"},
			"Error in CONNECT properties: A network protocol error occurred when communicating with the broker. (receive-maximum must not be 0)"},
		{"-D response topic", []string{"-t", "a", "-m", "x", "-D", "publish", "response-topic", "r/#"},
			"Error in PUBLISH properties: A network protocol error occurred when communicating with the broker. (response-topic must be a topic name without wildcards)"},
		{"-D bad utf8", []string{"-t", "a", "-m", "x", "-D", "publish", "content-type", "\xff"}, "Property value for content-type is not valid UTF-8."},
		{"-D with 3.1.1", []string{"-t", "a", "-m", "x", "-V", "311", "-D", "publish", "content-type", "x"},
			"-D/--property needs MQTT 5, but -V 311 was given: MQTT 3.1 and 3.1.1 have no properties."},
		{"-D with 3.1", []string{"-t", "a", "-m", "x", "-D", "publish", "content-type", "x", "-V", "mqttv31"},
			"-D/--property needs MQTT 5, but -V 31 was given: MQTT 3.1 and 3.1.1 have no properties."},
		{"-D will without will", []string{"-t", "a", "-m", "x", "-D", "will", "content-type", "x"}, "Will properties given, but no will topic given."},
		{"positional", []string{"-t", "a", "-m", "x", "y"}, `unexpected argument "y" (flags must come before any argument; quote values with spaces)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parsePub(t, tc.args...)
			require.Error(t, err)
			require.Equal(t, ExitFailure, exitCode(err))
			msg := message(err)
			if !strings.HasPrefix(tc.want, "Error in ") {
				tc.want = "Error: " + tc.want
			}
			require.Equal(t, tc.want, msg)
			require.ErrorAs(t, err, new(*UsageError))
		})
	}
}

// runIn runs mqtt with stdin and returns the exit code and output.
func runIn(t *testing.T, stdin io.Reader, args ...string) (int, string, string) {
	t.Helper()
	ios, _, out, errOut := iostreams.Test()
	if stdin != nil {
		ios.In = stdin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := Run(ctx, newDeps(ios), append([]string{"mqtt"}, args...))
	return code, out.String(), errOut.String()
}

func TestRunPub(t *testing.T) {
	dir := t.TempDir()
	bin := []byte{0, 1, 2, 0xff, '\n', 0}
	binFile := filepath.Join(dir, "bin")
	require.NoError(t, os.WriteFile(binFile, bin, 0o600))
	emptyFile := filepath.Join(dir, "empty")
	require.NoError(t, os.WriteFile(emptyFile, nil, 0o600))
	missing := filepath.Join(dir, "missing")

	for _, tc := range []struct {
		name    string
		stdin   string
		args    []string
		want    []testbroker.Msg
		code    int
		wantErr string
	}{
		{name: "message", args: []string{"-m", "hi", "-q", "1"}, want: []testbroker.Msg{{Topic: "p", Payload: "hi", QoS: 1}}},
		{name: "retained", args: []string{"-m", "kept", "-r", "-q", "2"}, want: []testbroker.Msg{{Topic: "p", Payload: "kept", QoS: 2, Retain: true}}},
		{name: "binary file", args: []string{"-f", binFile}, want: []testbroker.Msg{{Topic: "p", Payload: string(bin)}}},
		{name: "empty file", args: []string{"-f", emptyFile}, want: []testbroker.Msg{{Topic: "p"}}},
		{name: "null", args: []string{"-n", "-q", "1"}, want: []testbroker.Msg{{Topic: "p", QoS: 1}}},
		{name: "stdin", stdin: "all\nof it\n", args: []string{"-s"}, want: []testbroker.Msg{{Topic: "p", Payload: "all\nof it\n"}}},
		{name: "repeat", args: []string{"-m", "r", "--repeat", "3", "-q", "1"}, want: []testbroker.Msg{{Topic: "p", Payload: "r", QoS: 1}, {Topic: "p", Payload: "r", QoS: 1}, {Topic: "p", Payload: "r", QoS: 1}}},
		{name: "repeat delay", args: []string{"-m", "d", "--repeat", "2", "--repeat-delay", "0.01"}, want: []testbroker.Msg{{Topic: "p", Payload: "d"}, {Topic: "p", Payload: "d"}}},
		{name: "lines", stdin: "a\n\nb\r\nlast", args: []string{"-l", "-q", "1"},
			want: []testbroker.Msg{{Topic: "p", Payload: "a", QoS: 1}, {Topic: "p", Payload: "", QoS: 1}, {Topic: "p", Payload: "b\r", QoS: 1}, {Topic: "p", Payload: "last", QoS: 1}}},
		{name: "lines 3.1.1", stdin: "x\ny\n", args: []string{"-l", "-V", "311"}, want: []testbroker.Msg{{Topic: "p", Payload: "x"}, {Topic: "p", Payload: "y"}}},
		{name: "lines empty stdin", args: []string{"-l"}},
		{name: "empty stdin", args: []string{"-s"}, code: 1, wantErr: "Error: Zero length input.\nError loading input from stdin.\n"},
		{name: "missing file", args: []string{"-f", missing}, code: 1,
			wantErr: fmt.Sprintf("Error: Unable to open file \"%s\".\nError loading input file \"%s\".\n", missing, missing)},
		{name: "directory", args: []string{"-f", dir}, code: 1,
			wantErr: fmt.Sprintf("Error: Unable to open file \"%s\".\nError loading input file \"%s\".\n", dir, dir)},
		{name: "properties", args: []string{"-m", "x", "-D", "publish", "content-type", "text/plain", "-D", "disconnect", "reason-string", "done"},
			want: []testbroker.Msg{{Topic: "p", Payload: "x"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := testbroker.Start(t)
			require.NoError(t, b.Record("#"))
			var in io.Reader = strings.NewReader(tc.stdin)
			args := append([]string{"pub", "-h", b.Host, "-p", b.PortString(), "-t", "p"}, tc.args...)
			code, out, errOut := runIn(t, in, args...)
			require.Equal(t, tc.code, code, errOut)
			require.Empty(t, out)
			require.Equal(t, tc.wantErr, errOut)
			if tc.code != 0 {
				require.Empty(t, b.Messages())
				return
			}
			got, err := b.WaitMessages(len(tc.want), 5*time.Second)
			require.NoError(t, err)
			if len(tc.want) == 0 {
				require.Empty(t, got)
				return
			}
			require.Equal(t, tc.want, got)
		})
	}
}

// pub -l keeps many QoS 1 messages in flight and loses none of 100,000.
func TestRunPubLinesMany(t *testing.T) {
	if testing.Short() {
		t.Skip("long")
	}
	const n = 100_000
	b := testbroker.Start(t)
	require.NoError(t, b.Record("many"))
	var in bytes.Buffer
	for i := 0; i < n; i++ {
		in.WriteString(strconv.Itoa(i))
		in.WriteByte('\n')
	}
	code, _, errOut := runIn(t, &in, "pub", "-h", b.Host, "-p", b.PortString(), "-t", "many", "-q", "1", "-l")
	require.Equal(t, 0, code, errOut)
	got, err := b.WaitMessages(n, 30*time.Second)
	require.NoError(t, err)
	require.Len(t, got, n)
	seen := map[string]bool{}
	for _, m := range got {
		seen[m.Payload] = true
	}
	require.Len(t, seen, n)
}

// The broker restarts on the same port in the middle of pub -l: pub
// reconnects, resends what was not acknowledged, and every line arrives.
func TestRunPubLinesBrokerRestart(t *testing.T) {
	b1, err := testbroker.NewAt("127.0.0.1:0", "restart")
	require.NoError(t, err)
	defer b1.Close()
	addr := b1.Addr()
	pr, pw := io.Pipe()
	type result struct {
		code         int
		out, errText string
	}
	res := make(chan result, 1)
	go func() {
		code, out, errOut := runIn(t, pr, "pub", "-h", b1.Host, "-p", b1.PortString(), "-t", "restart", "-q", "1", "-l")
		res <- result{code, out, errOut}
	}()
	const n = 6000
	write := func(from, to int) {
		var buf bytes.Buffer
		for i := from; i < to; i++ {
			fmt.Fprintf(&buf, "%d\n", i)
		}
		_, err := pw.Write(buf.Bytes())
		require.NoError(t, err)
	}
	write(0, n/2)
	// A guard against a hang, not a speed limit: under load (a parallel
	// go test -race ./... on 2 cores) a quarter of the lines at QoS 1 with
	// the race detector can take seconds.
	_, err = b1.WaitMessages(n/4, time.Minute)
	require.NoError(t, err)
	require.NoError(t, b1.Close())
	b2, err := testbroker.NewAt(addr, "restart")
	require.NoError(t, err)
	defer b2.Close()
	write(n/2, n)
	require.NoError(t, pw.Close())
	r := <-res
	require.Equal(t, 0, r.code, r.errText)
	require.Contains(t, r.errText, "connection lost, reconnecting")
	seen := map[string]bool{}
	for _, m := range append(b1.Messages(), b2.Messages()...) {
		seen[m.Payload] = true
	}
	for i := 0; i < n; i++ {
		require.True(t, seen[strconv.Itoa(i)], "line %d lost", i)
	}
}

// Ctrl-C (a cancelled context) stops pub -l even while stdin is silent.
func TestRunPubInterrupted(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("i"))
	pr, pw := io.Pipe()
	defer pw.Close()
	ios, _, _, errOut := iostreams.Test()
	ios.In = pr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- Run(ctx, newDeps(ios), []string{"mqtt", "pub", "-h", b.Host, "-p", b.PortString(), "-t", "i", "-l"})
	}()
	_, err := pw.Write([]byte("1\n"))
	require.NoError(t, err)
	_, err = b.WaitMessages(1, 10*time.Second)
	require.NoError(t, err)
	cancel()
	select {
	case code := <-done:
		require.Equal(t, ExitInterrupted, code)
		require.Equal(t, "Error: interrupted\n", errOut.String())
	case <-time.After(10 * time.Second):
		t.Fatal("pub -l did not stop on cancel")
	}
}
