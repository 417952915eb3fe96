// SPDX-License-Identifier: Apache-2.0

//go:build unix

package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/testbroker"
)

// TestJSONDocRetainedOnlyRecipe runs the "retained messages only, as an
// array" recipe of docs/json.md as written (with sh and jq, mqtt on PATH
// through TestMain) against a broker that holds two retained messages and
// publishes nothing else: the pipeline must end by itself and print both.
// Without -W, mqtt sub --retained-only waits for a live message for ever,
// and this test fails at its deadline.
func TestJSONDocRetainedOnlyRecipe(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "json.md"))
	require.NoError(t, err)
	var recipe string
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "mqtt sub ") && strings.Contains(l, "--retained-only") {
			require.Empty(t, recipe, "two --retained-only recipes in docs/json.md: test each")
			recipe = l
		}
	}
	require.NotEmpty(t, recipe, "no --retained-only recipe in docs/json.md")
	for _, tool := range []string{"sh", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("MQTT_INTEROP") == "require" {
				t.Fatalf("%s is missing (MQTT_INTEROP=require)", tool)
			}
			t.Skipf("%s is missing", tool)
		}
	}

	b := testbroker.Start(t)
	require.NoError(t, b.Publish("config/a", []byte("1"), true, 0))
	require.NoError(t, b.Publish("config/b/c", []byte("two"), true, 0))

	// A deadline only so that a hang fails instead of blocking the suite.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", recipe)
	cmd.Env = append(os.Environ(), "MQTT_HOST="+b.Host, "MQTT_PORT="+b.PortString(), "HOME="+t.TempDir(), "NO_COLOR=1")
	cmd.Dir = t.TempDir()
	// At the deadline, kill the pipeline (sh, mqtt and jq), not only sh.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	require.NoError(t, ctx.Err(), "%s did not end on a broker where nothing is published", recipe)
	require.NoError(t, err, "%s", recipe)
	var msgs []struct {
		Topic   string `json:"topic"`
		Payload string `json:"payload"`
		Retain  bool   `json:"retain"`
	}
	require.NoError(t, json.Unmarshal(out, &msgs), "%s", out)
	require.Len(t, msgs, 2, "%s", out)
	got := map[string]string{}
	for _, m := range msgs {
		require.True(t, m.Retain)
		got[m.Topic] = m.Payload
	}
	require.Equal(t, map[string]string{"config/a": "1", "config/b/c": "two"}, got)
}
