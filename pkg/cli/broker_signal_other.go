// SPDX-License-Identifier: Apache-2.0

//go:build !unix

package cli

import "os"

// reloadSignals: there is no SIGHUP here; reloads need a restart.
func reloadSignals() (<-chan os.Signal, func()) {
	return nil, func() {}
}
