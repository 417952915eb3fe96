// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
)

// startMosquitto runs the real broker with allow_anonymous false and the
// given password file, and returns its port.
func startMosquitto(t *testing.T, pwfile string) int {
	t.Helper()
	conf := []string{"allow_anonymous false", "password_file " + pwfile}
	if os.Geteuid() == 0 {
		// Else mosquitto drops to its own user, which cannot read our temp folder.
		conf = append(conf, "user root")
	}
	return interop.StartMosquitto(t, conf...).Port
}

// mosquittoPub connects with mosquitto_pub and returns its exit status.
func mosquittoPub(t *testing.T, port int, user, pw string, extra ...string) (int, string) {
	t.Helper()
	bin := interop.Require(t, "mosquitto_pub")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"-h", "127.0.0.1", "-p", fmt.Sprint(port), "-u", user, "-P", pw, "-t", "interop/passwd", "-m", "hi"}, extra...)
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		require.True(t, ok, "mosquitto_pub: %v", err)
		return ee.ExitCode(), string(out)
	}
	return 0, string(out)
}

// TestInteropMosquittoBrokerReadsOurFile: a file written by mqtt passwd
// (both hash types, -I, a user added later, a user updated) is accepted by
// the real mosquitto broker, and wrong passwords are refused.
func TestInteropMosquittoBrokerReadsOurFile(t *testing.T) {
	interop.Require(t, "mosquitto")
	interop.Require(t, "mosquitto_pub")
	p := filepath.Join(t.TempDir(), "pw")
	for _, args := range [][]string{
		{"-c", "-b", p, "alice", "secret"},
		{"-b", "-H", "sha512", p, "bob", "hunter2"},
		{"-b", "-I", "2000", p, "carol", "p@ss: wörd"},
		{"-b", p, "dave", "old"},
		{"-b", p, "dave", "new"},
	} {
		r := pipeRun(t, "", args...)
		require.NoError(t, r.err, r.msg())
	}
	port := startMosquitto(t, p)

	for _, tt := range []struct {
		user, pw string
		code     int
	}{
		{"alice", "secret", 0},
		{"bob", "hunter2", 0},
		{"carol", "p@ss: wörd", 0},
		{"dave", "new", 0},
		{"dave", "old", 5},
		{"alice", "wrong", 5},
		{"nobody", "secret", 5},
	} {
		code, out := mosquittoPub(t, port, tt.user, tt.pw)
		require.Equal(t, tt.code, code, "%s/%s: %s", tt.user, tt.pw, out)
	}
	code, out := mosquittoPub(t, port, "alice", "wrong", "-V", "5")
	require.Equal(t, 135, code, out)
}

// TestInteropMosquittoPasswdFileChecks: a file written by the real
// mosquitto_passwd verifies with mqtt passwd --check, and mqtt passwd can
// add to it.
func TestInteropMosquittoPasswdFileChecks(t *testing.T) {
	tool := interop.Require(t, "mosquitto_passwd")
	p := filepath.Join(t.TempDir(), "pw")
	for _, args := range [][]string{
		{"-c", "-b", p, "alice", "secret"},
		{"-b", "-H", "sha512", p, "bob", "hunter2"},
		{"-b", "-I", "7", p, "carol", "p@ss: wörd"},
	} {
		out, err := exec.Command(tool, args...).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	for _, tt := range []struct {
		user, pw string
		code     int
	}{
		{"alice", "secret", 0},
		{"bob", "hunter2", 0},
		{"carol", "p@ss: wörd", 0},
		{"alice", "hunter2", 1},
		{"zed", "secret", 1},
	} {
		r := pipeRun(t, "", "--check", "-b", p, tt.user, tt.pw)
		require.Equal(t, tt.code, r.code, "%s: %s", tt.user, r.msg())
		r = pipeRun(t, tt.pw+"\n", "--check", p, tt.user)
		require.Equal(t, tt.code, r.code, "%s from stdin: %s", tt.user, r.msg())
	}

	before := readFile(t, p)
	r := pipeRun(t, "", "-b", p, "dave", "x")
	require.NoError(t, r.err)
	require.Equal(t, before, readFile(t, p)[:len(before)], "mosquitto_passwd's lines are kept")
	r = pipeRun(t, "", "--check", "-b", p, "dave", "x")
	require.NoError(t, r.err)
}
