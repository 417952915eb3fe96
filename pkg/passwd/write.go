// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// ErrNotRegular is the error (inside a *fs.PathError) of [WriteFile] when
// the path is a folder or another file that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// NewFileMode is the mode of a password file that did not exist before.
const NewFileMode fs.FileMode = 0o600

// WriteFile replaces the file at path with data atomically: it writes a
// temporary file in the same folder, syncs it and renames it over path, so a
// reader sees either the old or the new content, never a mix, and a crash
// leaves the old file in place. A new file gets mode 0600; an existing one
// keeps its mode and, where permitted, its owner and group. When path is a
// symbolic link, the file it points to is replaced.
func WriteFile(path string, data []byte) (err error) {
	target := path
	if t, err := filepath.EvalSymlinks(path); err == nil {
		target = t
	}
	mode := NewFileMode
	fi, statErr := os.Stat(target)
	switch {
	case statErr == nil:
		if !fi.Mode().IsRegular() {
			return &fs.PathError{Op: "write", Path: path, Err: ErrNotRegular}
		}
		mode = fi.Mode().Perm()
	case !errors.Is(statErr, fs.ErrNotExist):
		return statErr
	}

	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(mode); err != nil {
		return err
	}
	if fi != nil {
		keepOwner(tmp, fi)
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), target); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes the rename durable where the platform allows it.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	_ = d.Sync() // not supported everywhere; the rename itself is done
	d.Close()
}

// ModeWarning returns a warning when mode lets other users than the owner
// read the password file at path, or "" when the mode is private. mosquitto
// 2.0 warns about world-readable files in the same words; we also warn
// about group-readable ones.
func ModeWarning(path string, mode fs.FileMode) string {
	var who string
	switch {
	case mode.Perm()&0o004 != 0:
		who = "world"
	case mode.Perm()&0o040 != 0:
		who = "group"
	default:
		return ""
	}
	return fmt.Sprintf("Warning: File %s has %s readable permissions. Future versions will refuse to load this file. To fix this, use `chmod 0600 %s`.", path, who, path)
}
