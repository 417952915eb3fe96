// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

// openTTY opens the controlling terminal.
func openTTY() (*os.File, error) { return os.OpenFile("/dev/tty", os.O_RDWR, 0) }

// promptPassword reads the password for --password-prompt:
//   - stdin is a terminal: prompt on stderr, read without echo;
//   - stdin carries messages (pub -s, -l): prompt and read on /dev/tty
//     without echo, or refuse when there is no terminal;
//   - otherwise stdin is a pipe or file: read its first line, so that
//     `secret-tool lookup ... | mqtt sub --password-prompt ...` works.
func promptPassword(d *Deps, stdinBusy bool) (string, error) {
	if d.IO.InTTY && d.IO.InFd >= 0 {
		fmt.Fprint(d.IO.ErrOut, "Password: ")
		b, err := term.ReadPassword(d.IO.InFd)
		fmt.Fprintln(d.IO.ErrOut)
		if err != nil {
			return "", fmt.Errorf("read password: %w", err)
		}
		return string(b), nil
	}
	if stdinBusy {
		var tty *os.File
		err := errors.New("no terminal")
		if d.OpenTTY != nil {
			tty, err = d.OpenTTY()
		}
		if err != nil {
			return "", usageErrorf("--password-prompt needs a terminal when the messages come from stdin (-s, -l); set MQTT_PASSWORD instead")
		}
		defer tty.Close()
		fmt.Fprint(tty, "Password: ")
		b, err := term.ReadPassword(int(tty.Fd()))
		fmt.Fprintln(tty)
		if err != nil {
			return "", fmt.Errorf("read password from the terminal: %w", err)
		}
		return string(b), nil
	}
	// Read byte by byte: nothing after the first line is consumed.
	var sb strings.Builder
	var b [1]byte
	for {
		n, err := d.IO.In.Read(b[:])
		if n == 1 {
			if b[0] == '\n' {
				break
			}
			sb.WriteByte(b[0])
		}
		if errors.Is(err, io.EOF) {
			if sb.Len() == 0 {
				return "", usageErrorf("--password-prompt: stdin is not a terminal and holds no password line")
			}
			break
		}
		if err != nil {
			return "", fmt.Errorf("read password from stdin: %w", err)
		}
	}
	return strings.TrimSuffix(sb.String(), "\r"), nil
}
