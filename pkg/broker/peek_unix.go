// SPDX-License-Identifier: Apache-2.0

//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package broker

import "syscall"

// canPeek reports whether waitReadable can wait without a buffer here.
const canPeek = true

// peek reads into b what socket fd has, without taking it from the socket
// (MSG_PEEK, never waiting); again reports that nothing is there yet.
func peek(fd uintptr, b []byte) (n int, again bool, err error) {
	n, _, err = syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return n, err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR, err
}
