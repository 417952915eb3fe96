// SPDX-License-Identifier: Apache-2.0

//go:build !unix

package passwd

import (
	"io/fs"
	"os"
)

// keepOwner does nothing where files have no Unix owner.
func keepOwner(*os.File, fs.FileInfo) {}

// writable does not check in advance where there is no access(2); the
// write itself reports a problem.
func writable(string) error { return nil }

// rootOnly is false where files have no Unix owner.
func rootOnly(fs.FileInfo) bool { return false }
