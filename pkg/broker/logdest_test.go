// SPDX-License-Identifier: Apache-2.0

package broker

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestLoggingDestinations(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "broker.log")
	require.NoError(t, os.WriteFile(file, []byte("earlier\n"), 0o644))
	var out, errOut bytes.Buffer
	var level slog.LevelVar
	level.Set(slog.LevelInfo)

	lg, err := OpenLogging(LogSetup{Dests: []LogDest{{Kind: "file", Path: file}, {Kind: "stdout"}}, TimestampFormat: "%Y"}, &out, &errOut, &level)
	require.NoError(t, err)
	lg.Logger.Info("client connected", "client", "c1")
	lg.Logger.Debug("not at info")
	require.Empty(t, errOut.String(), "stderr is not a destination")
	require.Regexp(t, `^time=\d{4} level=INFO msg="client connected" client=c1\n$`, out.String())

	// Rotation: the file is moved away, SIGHUP reopens the path.
	require.NoError(t, os.Rename(file, file+".1"))
	require.NoError(t, lg.Reopen())
	lg.Logger.Warn("after rotation")
	lg.Close()
	old, err := os.ReadFile(file + ".1")
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(old), "earlier\n"), "appended, not truncated")
	require.Contains(t, string(old), `msg="client connected"`)
	cur, err := os.ReadFile(file)
	require.NoError(t, err)
	require.Contains(t, string(cur), `msg="after rotation"`)
	require.NotContains(t, string(cur), "client connected")

	// log_timestamp false, log_dest none.
	out.Reset()
	lg, err = OpenLogging(LogSetup{Dests: []LogDest{{Kind: "stderr"}}, NoTimestamp: true}, &out, &errOut, &level)
	require.NoError(t, err)
	lg.Logger.Info("hello")
	require.Equal(t, "level=INFO msg=hello\n", errOut.String())
	errOut.Reset()
	lg, err = OpenLogging(LogSetup{Dests: []LogDest{}}, &out, &errOut, &level)
	require.NoError(t, err)
	lg.Logger.Error("nowhere")
	require.Empty(t, out.String()+errOut.String())

	_, err = OpenLogging(LogSetup{Dests: []LogDest{{Kind: "file", Path: filepath.Join(dir, "missing", "x.log")}}}, &out, &errOut, &level)
	require.ErrorContains(t, err, "log_dest file: open ")
}
