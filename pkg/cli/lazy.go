// SPDX-License-Identifier: Apache-2.0

package cli

import "sync"

// lazy is a package-level table built on first use. A package-level map
// literal (or a sync.OnceValue, or a regexp) is built by the package
// initialiser on every start of the binary, whatever the command: a
// one-shot `mqtt pub` paid for the property tables, the profile presets
// and the completion shells it never reads. The zero sync.Once needs no
// initialisation, and a func literal without captured variables is
// static data, so `var t = lazy[T]{build: func() T { ... }}` costs
// nothing at start-up (cmd/mqtt/testdata/script/cli_noinit.txtar).
type lazy[T any] struct {
	once  sync.Once
	build func() T
	v     T
}

// get returns the table, building it on the first call.
func (l *lazy[T]) get() T {
	l.once.Do(func() { l.v = l.build() })
	return l.v
}
