// SPDX-License-Identifier: Apache-2.0

//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package broker

// canPeek reports whether waitReadable can wait without a buffer here:
// not on this system, where connections keep their read buffers
// (rawConnOf finds no socket, so peek is never called).
const canPeek = false

func peek(uintptr, []byte) (int, bool, error) { return 0, false, nil }
