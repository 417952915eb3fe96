// SPDX-License-Identifier: Apache-2.0

//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package broker

import (
	"io"
	"syscall"
)

// canPeek reports whether waitReadable can wait without a buffer here.
const canPeek = true

// readable is the callback of waitReadable for syscall.RawConn.Read: it
// reports whether the socket has a byte to read, end of file or an error,
// without taking anything from it (MSG_PEEK). When it reports false the
// runtime parks the goroutine in its poller until the socket is readable
// and calls it again; parked is then called first, once.
type readable struct {
	parked func() // nil: nothing to do before parking
	did    bool
	b      [1]byte
	fn     func(uintptr) bool // check, made once
	gone   error              // io.EOF or the socket's error when that is what was readable
}

func newReadable(parked func()) *readable {
	r := &readable{parked: parked}
	r.fn = r.check
	return r
}

func (r *readable) check(fd uintptr) bool {
	n, _, err := syscall.Recvfrom(int(fd), r.b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	if err == syscall.EAGAIN || err == syscall.EWOULDBLOCK || err == syscall.EINTR {
		if !r.did && r.parked != nil {
			r.parked()
		}
		r.did = true
		return false
	}
	r.gone = err
	if n == 0 && err == nil {
		r.gone = io.EOF
	}
	return true
}
