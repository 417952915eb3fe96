// SPDX-License-Identifier: Apache-2.0

//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package broker

// canPeek reports whether waitReadable can wait without a buffer here:
// not on this system, where connections keep their read buffers.
const canPeek = false

type readable struct {
	parked func()
	did    bool
	fn     func(uintptr) bool
	gone   error
}

func newReadable(parked func()) *readable {
	r := &readable{parked: parked}
	r.fn = r.check
	return r
}

func (r *readable) check(uintptr) bool { return true }
