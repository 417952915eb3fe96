// SPDX-License-Identifier: Apache-2.0

package logdest

import (
	"bytes"
	"fmt"
	"io"
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

	lg, err := Open(Setup{Dests: []Dest{{Kind: "file", Path: file}, {Kind: "stdout"}}, TimestampFormat: "%Y"}, &out, &errOut, &level)
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
	lg, err = Open(Setup{Dests: []Dest{{Kind: "stderr"}}, NoTimestamp: true}, &out, &errOut, &level)
	require.NoError(t, err)
	lg.Logger.Info("hello")
	require.Equal(t, "level=INFO msg=hello\n", errOut.String())
	errOut.Reset()
	lg, err = Open(Setup{Dests: []Dest{}}, &out, &errOut, &level)
	require.NoError(t, err)
	lg.Logger.Error("nowhere")
	require.Empty(t, out.String()+errOut.String())

	_, err = Open(Setup{Dests: []Dest{{Kind: "file", Path: filepath.Join(dir, "missing", "x.log")}}}, &out, &errOut, &level)
	require.ErrorContains(t, err, "log_dest file: open ")
}

// publishes records what the topic destination sends; it logs through
// log while publishing, as a broker does, to show that this cannot loop.
type publishes struct {
	got []string
	log *slog.Logger
}

func (p *publishes) Publish(topic string, payload []byte, retain bool, qos byte) error {
	p.got = append(p.got, fmt.Sprintf("%s %q retain=%v qos=%d", topic, payload, retain, qos))
	if p.log != nil {
		p.log.Info("published", "topic", topic)
	}
	return nil
}

// TestLoggingTopic: log_dest topic publishes each line at or above the
// level to $SYS/broker/log/<E|W|N|D> once PublishTo is called, with the
// timestamp as mosquitto writes it, and stops at Close.
func TestLoggingTopic(t *testing.T) {
	var level slog.LevelVar
	level.Set(slog.LevelDebug)
	lg, err := Open(Setup{Dests: []Dest{{Kind: "topic"}}, NoTimestamp: true}, io.Discard, io.Discard, &level)
	require.NoError(t, err)
	lg.Logger.Info("before the broker runs")
	p := &publishes{log: lg.Logger}
	lg.PublishTo(p)
	lg.Logger.Error("e")
	lg.Logger.Warn("w")
	lg.Logger.With("client", "c1").Info("n", "n", 1)
	lg.Logger.WithGroup("g").Debug("d", "k", "v")
	level.Set(slog.LevelInfo)
	lg.Logger.Debug("below the level")
	lg.Close()
	lg.Logger.Error("after Close")
	require.Equal(t, []string{
		`$SYS/broker/log/E "e" retain=false qos=0`,
		`$SYS/broker/log/W "w" retain=false qos=0`,
		`$SYS/broker/log/N "n client=\"c1\" n=\"1\"" retain=false qos=0`,
		`$SYS/broker/log/D "d g.k=\"v\"" retain=false qos=0`,
	}, p.got)

	lg, err = Open(Setup{Dests: []Dest{{Kind: "topic"}}}, io.Discard, io.Discard, &level)
	require.NoError(t, err)
	p = &publishes{}
	lg.PublishTo(p)
	lg.Logger.Info("stamped")
	require.Len(t, p.got, 1)
	require.Regexp(t, `^\$SYS/broker/log/N "\d+: stamped"`, p.got[0], "unix time, as mosquitto")
}
