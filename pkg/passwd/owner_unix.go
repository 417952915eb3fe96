// SPDX-License-Identifier: Apache-2.0

//go:build unix

package passwd

import (
	"io/fs"
	"os"
	"syscall"
)

// keepOwner gives f the owner and group of fi. It matters when root edits
// a file that the broker reads as another user; it fails silently for
// other users, who cannot give files away anyway.
func keepOwner(f *os.File, fi fs.FileInfo) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = f.Chown(int(st.Uid), int(st.Gid))
	}
}

// writable reports whether this process may write path (a file, or a
// folder to create files in), as access(2) decides: root may write
// everything.
func writable(path string) error {
	const wOK = 2 // W_OK in <unistd.h> on every Unix
	return syscall.Access(path, wOK)
}

// rootOnly reports whether fi is a file that only root can read: owned by
// root, with no read permission for its group or others.
func rootOnly(fi fs.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0 && fi.Mode().Perm()&0o044 == 0
}
