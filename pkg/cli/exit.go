// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// Exit codes. This table is append-only: scripts depend on these numbers,
// so never renumber or reuse one. docs/exit-codes.md lists them and a test
// keeps the two in step.
const (
	// ExitOK means success, or a long-running command stopped by a signal.
	ExitOK = 0
	// ExitFailure means a usage error, a connection or TLS failure, or any other failure.
	ExitFailure = 1
	// ExitTimeout means `sub -W` timed out (mosquitto_sub's 27).
	ExitTimeout = 27
	// ExitInterrupted means a finite command (pub, passwd) was interrupted
	// before it finished. It was 130 (128 + SIGINT) until 2026-12, which is
	// also the MQTT 5 reason code 130 (Protocol Error) a broker may refuse a
	// connection with: 128-162 now always mean a refused connection. 255 is
	// what mosquitto_sub exits with when interrupted before the broker
	// accepted the connection.
	ExitInterrupted = 255
)

// ExitError attaches a process exit status to an error.
type ExitError struct {
	Code int
	Err  error
	// Silent errors are not printed (--quiet, or already reported).
	Silent bool
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// UsageError is a bad flag, argument or combination of them.
type UsageError struct {
	Cmd string // command name, for the "--help" hint
	Err error
	// Flag is the name of an unknown flag (without dashes) and Suggest
	// the known flag closest to it (e.g. "--topic"), if any.
	Flag, Suggest string
}

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

func usageErrorf(format string, a ...any) error {
	return &UsageError{Err: fmt.Errorf(format, a...)}
}

// pubRefusedError marks a CONNACK refusal seen by mqtt pub, which, like
// mosquitto_pub, prints a second line after mosquitto's "Connection
// error: ..." (mosquitto_sub prints only the first).
type pubRefusedError struct{ err error }

func (e *pubRefusedError) Error() string { return e.err.Error() }
func (e *pubRefusedError) Unwrap() error { return e.err }

// exitCode is the one mapping from an error to a process exit status.
func exitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	var ce *client.ConnectError
	if errors.As(err, &ce) {
		return int(ce.Code)
	}
	if errors.Is(err, context.Canceled) {
		return ExitInterrupted
	}
	return ExitFailure
}

// message renders err as the one line printed on stderr, using mosquitto's
// wording where scripts grep for it. It returns "" for silent errors.
func message(err error) string {
	var ee *ExitError
	if errors.As(err, &ee) && ee.Silent {
		return ""
	}
	var ce *client.ConnectError
	if errors.As(err, &ce) {
		s := "Connection error: " + ce.Error()
		if ce.Reason != "" {
			s += "\n" + ce.Reason
		}
		if errors.As(err, new(*pubRefusedError)) {
			s += "\nError: The connection was refused."
		}
		return s
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return "Error: Connection refused (" + err.Error() + ")"
	}
	if errors.Is(err, context.Canceled) {
		return "Error: interrupted"
	}
	var ve interface{ Verbatim() string }
	if errors.As(err, &ve) {
		return ve.Verbatim()
	}
	return "Error: " + err.Error()
}
