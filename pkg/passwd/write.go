// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// ErrNotRegular is the error (inside a *fs.PathError) of [WriteFile] when
// the path is a folder or another file that is not a regular file.
var ErrNotRegular = errors.New("not a regular file")

// ErrTempFile marks an error of [WriteFile] about the temporary file it
// needs next to the target: the folder, not the file, is the problem (for
// example the folder is not writable).
var ErrTempFile = errors.New("cannot create a temporary file")

// NewFileMode is the mode of a password file that did not exist before.
const NewFileMode fs.FileMode = 0o600

// maxLinks bounds the symbolic links Target follows, as the kernel does.
const maxLinks = 40

// rename is os.Rename; tests replace it to act as a bind-mounted file.
var rename = os.Rename

// Target returns the file that WriteFile(path) writes: path with every
// symbolic link followed, including a link to a file that does not exist
// yet (which WriteFile then creates, keeping the link).
func Target(path string) (string, error) {
	p := path
	for range maxLinks {
		if t, err := filepath.EvalSymlinks(p); err == nil {
			return t, nil
		}
		fi, err := os.Lstat(p)
		if err != nil || fi.Mode()&fs.ModeSymlink == 0 {
			return p, nil // p itself is the file to create; writing it reports any problem
		}
		link, err := os.Readlink(p)
		if err != nil {
			return "", err
		}
		if !filepath.IsAbs(link) {
			dir := filepath.Dir(p)
			if d, err := filepath.EvalSymlinks(dir); err == nil {
				dir = d // a relative link is relative to the real folder of the link
			}
			link = filepath.Join(dir, link)
		}
		p = link
	}
	return "", &fs.PathError{Op: "resolve", Path: path, Err: syscall.ELOOP}
}

// CheckWritable reports, without changing anything, whether
// WriteFile(path, ...) can be expected to succeed, so that a command can
// fail before it asks for a password. It returns the error WriteFile would.
func CheckWritable(path string) error {
	_, _, err := prepare(path)
	return err
}

// prepare resolves path and checks the target and its folder. fi is nil
// when the target does not exist yet.
func prepare(path string) (target string, fi fs.FileInfo, err error) {
	if target, err = Target(path); err != nil {
		return "", nil, err
	}
	fi, err = os.Stat(target)
	switch {
	case err == nil:
		if !fi.Mode().IsRegular() {
			return "", nil, &fs.PathError{Op: "write", Path: path, Err: ErrNotRegular}
		}
		// The rename below needs only the folder's permission; like
		// mosquitto_passwd, respect the file's own.
		if err := writable(target); err != nil {
			return "", nil, &fs.PathError{Op: "write", Path: path, Err: err}
		}
	case errors.Is(err, fs.ErrNotExist):
		fi = nil
	default:
		return "", nil, err
	}
	dir := filepath.Dir(target)
	dfi, err := os.Stat(dir)
	if err == nil && !dfi.IsDir() {
		err = &fs.PathError{Op: "stat", Path: dir, Err: syscall.ENOTDIR}
	}
	if err != nil {
		return "", nil, err
	}
	if err := writable(dir); err != nil {
		return "", nil, tempFileError(dir, err)
	}
	return target, fi, nil
}

// tempFileError wraps err, about creating a temporary file in dir.
func tempFileError(dir string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("%w in %s: %w", ErrTempFile, dir, err)
}

// WriteFile replaces the file at path with data atomically: it writes a
// temporary file in the same folder, syncs it and renames it over path, so a
// reader sees either the old or the new content, never a mix, and a crash
// leaves the old file in place. A new file gets mode 0600; an existing one
// keeps its mode and, where permitted, its owner and group. An existing
// file that this process may not write is refused, as mosquitto_passwd
// refuses it. When path is a symbolic link, the file it points to is
// written.
//
// A file that cannot be replaced because it is a mount point (a file
// bind-mounted into a container) is overwritten in place instead, as
// mosquitto_passwd always does; the temporary file is removed only once
// that succeeded, and the error names it otherwise.
func WriteFile(path string, data []byte) (err error) {
	target, fi, err := prepare(path)
	if err != nil {
		return err
	}
	mode := NewFileMode
	if fi != nil {
		mode = fi.Mode().Perm()
	}
	dir, base := filepath.Split(target)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp*")
	if err != nil {
		return tempFileError(dir, err)
	}
	keep := false // keep the temporary file: it holds the only good copy
	defer func() {
		if err != nil {
			tmp.Close()
			if !keep {
				os.Remove(tmp.Name())
			}
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
	if err = rename(tmp.Name(), target); err != nil {
		if !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.EXDEV) {
			return err
		}
		if err = overwrite(target, data); err != nil {
			keep = true
			return fmt.Errorf("%w (it is a mount point and could only be rewritten in place; the new content is in %s)", err, tmp.Name())
		}
		return os.Remove(tmp.Name())
	}
	syncDir(dir)
	return nil
}

// overwrite writes data over the file at path in place.
func overwrite(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
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

// serviceDirs are the configuration folders of the brokers that run as
// a user of their own: the mqttkit package's service (user mqttkit, see
// packaging/mqttkit.service) and Debian's mosquitto (user mosquitto).
var serviceDirs = []struct{ dir, user string }{
	{"/etc/mqttkit", "mqttkit"},
	{"/etc/mosquitto", "mosquitto"},
}

// OwnerWarning returns a warning when path, the password file as written
// (fi), is in the configuration folder of a broker service that runs as
// its own user and can be read by root only, or "" otherwise. `mqtt passwd
// -c` run as root makes such a file (mode 0600, owner root), and the
// service cannot open it. mosquitto 2.0.20's broker warns about a file it
// does not own with "Warning: File X owner is not USER. Future versions
// will refuse to load this file. To fix this, use `chown USER X`."; we say
// it when the file is written, in the same form.
func OwnerWarning(path string, fi fs.FileInfo) string {
	if !rootOnly(fi) {
		return ""
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return ""
	}
	for _, s := range serviceDirs {
		if strings.HasPrefix(abs, s.dir+string(filepath.Separator)) {
			return fmt.Sprintf("Warning: File %s owner is root and only root can read it, but the broker service reads it as user %s. To fix this, use `chown %s: %s`.", path, s.user, s.user, path)
		}
	}
	return ""
}
