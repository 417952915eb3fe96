// SPDX-License-Identifier: Apache-2.0

// Package iostreams carries the standard streams and terminal facts that
// commands need, so that tests can replace them with buffers.
package iostreams

import (
	"bytes"
	"io"
	"os"

	"golang.org/x/term"
)

// IOStreams holds the streams of one command run.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	InTTY  bool // stdin is a terminal (prompts are possible)
	OutTTY bool // stdout is a terminal (colour is possible)
	ErrTTY bool // stderr is a terminal

	// InFd is the file descriptor of stdin when it is a terminal, for no-echo reads.
	InFd int
	// Getenv reads an environment variable; tests replace it.
	Getenv func(string) string
}

// System returns the process's streams.
func System() *IOStreams {
	return &IOStreams{
		In:     os.Stdin,
		Out:    os.Stdout,
		ErrOut: os.Stderr,
		InTTY:  term.IsTerminal(int(os.Stdin.Fd())),
		OutTTY: term.IsTerminal(int(os.Stdout.Fd())),
		ErrTTY: term.IsTerminal(int(os.Stderr.Fd())),
		InFd:   int(os.Stdin.Fd()),
		Getenv: os.Getenv,
	}
}

// Test returns streams backed by buffers: in to feed stdin, out and errOut
// to read what was written. No stream is a terminal and the environment is empty.
func Test() (s *IOStreams, in *bytes.Buffer, out *bytes.Buffer, errOut *bytes.Buffer) {
	in, out, errOut = &bytes.Buffer{}, &bytes.Buffer{}, &bytes.Buffer{}
	return &IOStreams{In: in, Out: out, ErrOut: errOut, InFd: -1, Getenv: func(string) string { return "" }}, in, out, errOut
}

// ColorEnabled reports whether colour may be used on stdout: only on a
// terminal, only when NO_COLOR is unset and not when TERM is "dumb" (a
// terminal that shows escape sequences as text, such as Emacs' shell).
func (s *IOStreams) ColorEnabled() bool {
	return s.OutTTY && s.Getenv("NO_COLOR") == "" && s.Getenv("TERM") != "dumb"
}
