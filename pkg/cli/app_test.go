// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/internal/testbroker"
	"github.com/mqttkit/mqttkit/pkg/iostreams"
)

// testDeps returns Deps on buffers and the buffers.
func testDeps(t *testing.T) (*Deps, *iostreams.IOStreams) {
	t.Helper()
	io, _, _, _ := iostreams.Test()
	return newDeps(io), io
}

// parseCmd runs the flag handling of the command that newCmd makes, alone
// in the app as `mqtt NAME ARGS...` (-D arguments joined as Run joins
// them), and returns the options its run function got instead of running.
func parseCmd[O any](t testing.TB, d *Deps, newCmd func(*Deps, func(context.Context, *Deps, *O) error) *cli.Command, args ...string) (*O, error) {
	t.Helper()
	var got *O
	cmd := newCmd(d, func(_ context.Context, _ *Deps, o *O) error { got = o; return nil })
	app := newApp(d)
	app.Commands = []*cli.Command{cmd}
	cmd.OnUsageError = onUsageError(cmd.Name)
	err := app.Run(joinPropertyArgs(app.Commands, append([]string{"mqtt", cmd.Name}, args...)))
	return got, err
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	io, _, out, errOut := iostreams.Test()
	d := newDeps(io)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	code = Run(ctx, d, append([]string{"mqtt"}, args...))
	return code, out.String(), errOut.String()
}

func TestNewPubCmd(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		want    PubOptions
		wantErr string
	}{
		{name: "defaults", args: []string{"-t", "a", "-m", "hi"}, want: PubOptions{Topic: "a", Message: "hi"}},
		{name: "qos retain", args: []string{"-t", "a", "-m", "", "-q", "2", "-r"}, want: PubOptions{Topic: "a", QoS: 2, Retain: true}},
		{name: "long flags", args: []string{"--topic", "a/b", "--message", "x", "--qos", "1"}, want: PubOptions{Topic: "a/b", Message: "x", QoS: 1}},
		{name: "missing topic", args: []string{"-m", "x"}, wantErr: "Both topic and message must be supplied."},
		{name: "missing message", args: []string{"-t", "x"}, wantErr: "Both topic and message must be supplied."},
		{name: "bad qos", args: []string{"-t", "a", "-m", "x", "-q", "3"}, wantErr: "Invalid QoS given: 3"},
		{name: "wildcard", args: []string{"-t", "a/+", "-m", "x"}, wantErr: "Invalid publish topic 'a/+'"},
		{name: "positional", args: []string{"-t", "a", "-m", "x", "y"}, wantErr: `unexpected argument "y"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _ := testDeps(t)
			var got *PubOptions
			cmd := newPubCmd(d, func(_ context.Context, _ *Deps, o *PubOptions) error { got = o; return nil })
			app := newApp(d)
			app.Commands = append(app.Commands[:0:0], cmd)
			err := app.Run(append([]string{"mqtt", "pub"}, tc.args...))
			if tc.wantErr != "" {
				require.ErrorContains(t, err, tc.wantErr)
				require.Equal(t, ExitFailure, exitCode(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want.Topic, got.Topic)
			require.Equal(t, tc.want.Message, got.Message)
			require.Equal(t, tc.want.QoS, got.QoS)
			require.Equal(t, tc.want.Retain, got.Retain)
			require.Equal(t, "localhost", got.cfg.Host)
			require.Equal(t, 1883, got.cfg.Port)
			require.EqualValues(t, 60, got.cfg.KeepAlive)
		})
	}
}

func TestRunPubSub(t *testing.T) {
	b := testbroker.Start(t)
	require.NoError(t, b.Record("t/#"))
	port := b.PortString()

	code, out, errOut := run(t, "pub", "-h", b.Host, "-p", port, "-t", "t/1", "-m", "one", "-q", "1")
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	msgs, err := b.WaitMessages(1, 5*time.Second)
	require.NoError(t, err)
	require.Equal(t, testbroker.Msg{Topic: "t/1", Payload: "one", QoS: 1}, msgs[0])

	require.NoError(t, b.Publish("t/r", []byte("kept"), true, 1))
	code, out, errOut = run(t, "sub", "-h", b.Host, "-p", port, "-t", "t/r", "-C", "1", "-v")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, "t/r kept\n", out)
}

func TestRunConnectionRefused(t *testing.T) {
	b := testbroker.Start(t)
	port := b.PortString()
	require.NoError(t, b.Close())
	code, _, errOut := run(t, "pub", "-h", "127.0.0.1", "-p", port, "-t", "a", "-m", "x")
	require.Equal(t, ExitFailure, code)
	require.Contains(t, errOut, "Error: Connection refused")

	code, _, errOut = run(t, "pub", "--quiet", "-h", "127.0.0.1", "-p", port, "-t", "a", "-m", "x")
	require.Equal(t, ExitFailure, code)
	require.Empty(t, errOut)
}

func TestCommandLineErrors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		args     []string
		code     int
		out, err string // substrings; "" means empty
	}{
		{name: "-h at the top level is help", args: []string{"-h"}, out: "mqtt - MQTT broker"},
		{name: "no command is help", args: nil, out: "COMMANDS:"},
		{name: "mqtt help", args: []string{"help"}, out: "COMMANDS:"},
		{name: "mqtt help pub", args: []string{"help", "pub"}, out: "mqtt pub - publish messages"},
		{name: "mqtt help publish", args: []string{"help", "publish"}, code: ExitFailure, err: `unknown command "publish" (did you mean "pub"?)`},
		{name: "publish", args: []string{"publish", "-t", "a", "-m", "b"}, code: ExitFailure,
			err: "Error: unknown command \"publish\" (did you mean \"pub\"?)\nUse 'mqtt --help' to see usage.\n"},
		{name: "subscribe", args: []string{"subscribe"}, code: ExitFailure, err: `unknown command "subscribe" (did you mean "sub"?)`},
		{name: "typo in a command", args: []string{"bruker"}, code: ExitFailure, err: `unknown command "bruker" (did you mean "broker"?)`},
		{name: "nothing close", args: []string{"zzzzzz"}, code: ExitFailure, err: "Error: unknown command \"zzzzzz\"\n"},
		{name: "flag typo echoed as typed", args: []string{"pub", "--tpoic", "a", "-m", "b"}, code: ExitFailure,
			err: "Error: unknown flag --tpoic (did you mean --topic?)\nUse 'mqtt pub --help' to see usage.\n"},
		{name: "flag typo with =", args: []string{"sub", "-t", "a", "--qso=1"}, code: ExitFailure, err: "unknown flag --qso (did you mean --qos?)"},
		{name: "unknown short flag", args: []string{"sub", "-t", "a", "-z"}, code: ExitFailure, err: "Error: unknown flag -z\n"},
		{name: "help is an argument in pub", args: []string{"pub", "-t", "a", "-m", "b", "help"}, code: ExitFailure, err: `unexpected argument "help"`},
		{name: "h is an argument in sub", args: []string{"sub", "-t", "a", "h"}, code: ExitFailure, err: `unexpected argument "h"`},
		{name: "-C abc", args: []string{"sub", "-t", "a", "-C", "abc"}, code: ExitFailure, err: "Error: Invalid message count \"abc\".\nUse 'mqtt sub --help' to see usage.\n"},
		{name: "-C 0", args: []string{"sub", "-t", "a", "-C", "0"}, code: ExitFailure, err: `Error: Invalid message count "0".`},
		{name: "-W x", args: []string{"sub", "-t", "a", "-W", "x"}, code: ExitFailure, err: `Error: Invalid timeout "x".`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := run(t, tc.args...)
			require.Equal(t, tc.code, code, errOut)
			if tc.out == "" {
				require.Empty(t, out)
			} else {
				require.Contains(t, out, tc.out)
			}
			if tc.err == "" {
				require.Empty(t, errOut)
			} else {
				require.Contains(t, errOut, tc.err)
			}
		})
	}
}

func TestPasswdHelpIsAUsername(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "help")
	code, out, errOut := run(t, "passwd", "-c", "-b", file, "alice", "pw")
	require.Equal(t, 0, code, errOut)
	require.Empty(t, out)
	// "help" as the file name used to be urfave's help command.
	t.Chdir(dir)
	code, _, errOut = run(t, "passwd", "-c", "-b", "help", "alice", "pw")
	require.Equal(t, 0, code, errOut)
	b, err := os.ReadFile(file)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(b), "alice:$7$"), string(b))
}

func TestSuggest(t *testing.T) {
	cands := []string{"topic", "t", "qos", "q", "retain", "r", "message", "m", "help"}
	for typed, want := range map[string]string{
		"tpoic": "topic", "topc": "topic", "qso": "qos", "retian": "retain", "mesage": "message",
		"topics": "topic", "hlep": "help", "x": "", "zzz": "", "": "",
	} {
		require.Equal(t, want, suggest(cands, typed), typed)
	}
	require.Equal(t, "pub", suggest([]string{"broker", "pub", "sub", "passwd"}, "publish"))
	require.Equal(t, "sub", suggest([]string{"broker", "pub", "sub", "passwd"}, "subscribe"))
	require.Equal(t, "simulate-sensor", suggest([]string{"simulate-sensor", "sub"}, "sim"))
	require.Equal(t, 1, editDistance("tpoic", "topic"))
	require.Equal(t, 3, editDistance("kitten", "sitting"))
}
