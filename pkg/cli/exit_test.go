// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/client"
)

func TestExitCode(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, ExitOK},
		{"plain", errors.New("x"), ExitFailure},
		{"usage", usageErrorf("bad"), ExitFailure},
		{"exit error", &ExitError{Code: ExitTimeout, Err: errors.New("Timed out")}, ExitTimeout},
		{"wrapped exit error", fmt.Errorf("x: %w", &ExitError{Code: 7}), 7},
		{"connack v3", &client.ConnectError{Version: client.V311, Code: 5}, 5},
		{"connack v5", fmt.Errorf("connect: %w", &client.ConnectError{Version: client.V5, Code: 135}), 135},
		{"interrupted", context.Canceled, ExitInterrupted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, exitCode(tc.err))
		})
	}
}

func TestMessage(t *testing.T) {
	require.Equal(t, "Connection error: Connection Refused: not authorised.",
		message(&client.ConnectError{Version: client.V311, Code: 5}))
	require.Equal(t, "Connection error: Not authorized", message(&client.ConnectError{Version: client.V5, Code: 135}))
	require.Equal(t, "", message(&ExitError{Code: 1, Err: errors.New("x"), Silent: true}))
	require.Equal(t, "Error: boom", message(errors.New("boom")))
	// mqtt pub adds mosquitto_pub's second line; the exit code stays the CONNACK code.
	pr := &pubRefusedError{err: &client.ConnectError{Version: client.V311, Code: 5}}
	require.Equal(t, "Connection error: Connection Refused: not authorised.\nError: The connection was refused.", message(pr))
	require.Equal(t, 5, exitCode(pr))
	require.Equal(t, "Connection error: Not authorized\nError: The connection was refused.",
		message(&pubRefusedError{err: &client.ConnectError{Version: client.V5, Code: 135}}))
}

// TestExitCodesDoc keeps docs/exit-codes.md and the constants in step.
func TestExitCodesDoc(t *testing.T) {
	doc, err := os.ReadFile("../../docs/exit-codes.md")
	require.NoError(t, err)
	rows := regexp.MustCompile(`(?m)^\| (\d+) \| (Exit\w+) \|`).FindAllStringSubmatch(string(doc), -1)
	consts := map[string]int{"ExitOK": ExitOK, "ExitFailure": ExitFailure, "ExitTimeout": ExitTimeout, "ExitInterrupted": ExitInterrupted}
	seen := map[string]bool{}
	for _, r := range rows {
		want, ok := consts[r[2]]
		require.True(t, ok, "docs/exit-codes.md names unknown constant %s", r[2])
		require.Equal(t, fmt.Sprint(want), r[1], "docs/exit-codes.md: %s", r[2])
		seen[r[2]] = true
	}
	for name := range consts {
		require.True(t, seen[name], "docs/exit-codes.md does not list %s", name)
	}
}

// TestExitCodesDoNotCollide: a refused connection exits with its CONNACK
// code (1-5 for MQTT 3.x, 128-162 for MQTT 5), so no exit code of our own
// may fall into those ranges: 130 for "interrupted" was also MQTT 5's
// Protocol Error.
func TestExitCodesDoNotCollide(t *testing.T) {
	for name, code := range map[string]int{"ExitTimeout": ExitTimeout, "ExitInterrupted": ExitInterrupted} {
		require.False(t, code >= 1 && code <= 5, "%s = %d is an MQTT 3.x CONNACK code", name, code)
		require.False(t, code >= 128 && code <= 162, "%s = %d is an MQTT 5 reason code", name, code)
		require.LessOrEqual(t, code, 255, name)
	}
	require.Equal(t, ExitInterrupted, exitCode(context.Canceled))
	require.NotEqual(t, exitCode(context.Canceled), exitCode(&client.ConnectError{Version: client.V5, Code: 130}))
}
