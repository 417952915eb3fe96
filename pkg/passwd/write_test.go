// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// entries lists a folder, to prove no temporary file is left behind.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, de := range des {
		names = append(names, de.Name())
	}
	return names
}

func TestWriteFileNew(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pw")
	require.NoError(t, WriteFile(p, []byte("a:x\n")))
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "a:x\n", string(got))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	require.Equal(t, []string{"pw"}, entries(t, dir))
}

func TestWriteFileKeepsMode(t *testing.T) {
	for _, mode := range []fs.FileMode{0o640, 0o644, 0o600} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "pw")
			require.NoError(t, os.WriteFile(p, []byte("old:x\n"), 0o600))
			require.NoError(t, os.Chmod(p, mode))
			require.NoError(t, WriteFile(p, []byte("new:y\n")))
			got, err := os.ReadFile(p)
			require.NoError(t, err)
			require.Equal(t, "new:y\n", string(got))
			fi, err := os.Stat(p)
			require.NoError(t, err)
			require.Equal(t, mode, fi.Mode().Perm())
			require.Equal(t, []string{"pw"}, entries(t, dir))
		})
	}
}

func TestWriteFileThroughSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real")
	link := filepath.Join(dir, "link")
	require.NoError(t, os.WriteFile(real, []byte("old:x\n"), 0o640))
	require.NoError(t, os.Symlink("real", link))
	require.NoError(t, WriteFile(link, []byte("new:y\n")))
	fi, err := os.Lstat(link)
	require.NoError(t, err)
	require.Equal(t, fs.ModeSymlink, fi.Mode().Type(), "the link must stay a link")
	got, err := os.ReadFile(real)
	require.NoError(t, err)
	require.Equal(t, "new:y\n", string(got))
	fi, err = os.Stat(real)
	require.NoError(t, err)
	require.Equal(t, fs.FileMode(0o640), fi.Mode().Perm())
}

func TestWriteFileErrors(t *testing.T) {
	dir := t.TempDir()
	err := WriteFile(filepath.Join(dir, "missing", "pw"), []byte("a:x\n"))
	require.ErrorIs(t, err, fs.ErrNotExist)

	sub := filepath.Join(dir, "sub")
	require.NoError(t, os.Mkdir(sub, 0o700))
	err = WriteFile(sub, []byte("a:x\n"))
	require.ErrorIs(t, err, ErrNotRegular)
	require.EqualError(t, err, "write "+sub+": not a regular file")
	require.Equal(t, []string{"sub"}, entries(t, dir))
}

func TestWriteFileReadOnlyDirLeavesFile(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root ignores folder permissions")
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(p, []byte("old:x\n"), 0o600))
	require.NoError(t, os.Chmod(dir, 0o500))
	t.Cleanup(func() { os.Chmod(dir, 0o700) })
	err := WriteFile(p, []byte("new:y\n"))
	require.ErrorIs(t, err, ErrTempFile)
	require.ErrorIs(t, err, fs.ErrPermission)
	require.EqualError(t, err, "cannot create a temporary file in "+dir+": permission denied")
	require.True(t, errors.Is(CheckWritable(p), ErrTempFile), "reported before writing")
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "old:x\n", string(got))
}

// A link to a file that does not exist yet is kept: the file it names is
// created, as open(2) would create it.
func TestWriteFileThroughDanglingSymlink(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Symlink("second", filepath.Join(dir, "first")))
	require.NoError(t, os.Symlink("real", filepath.Join(dir, "second")))
	require.NoError(t, WriteFile(filepath.Join(dir, "first"), []byte("a:x\n")))
	for _, l := range []string{"first", "second"} {
		fi, err := os.Lstat(filepath.Join(dir, l))
		require.NoError(t, err)
		require.Equal(t, fs.ModeSymlink, fi.Mode().Type(), "%s must stay a link", l)
	}
	got, err := os.ReadFile(filepath.Join(dir, "real"))
	require.NoError(t, err)
	require.Equal(t, "a:x\n", string(got))
	fi, err := os.Stat(filepath.Join(dir, "real"))
	require.NoError(t, err)
	require.Equal(t, NewFileMode, fi.Mode().Perm())
	require.ElementsMatch(t, []string{"first", "second", "real"}, entries(t, dir))

	// A link into a folder that does not exist fails like open(2), before
	// anything is written, and leaves the link alone.
	require.NoError(t, os.Symlink("nowhere/pw", filepath.Join(dir, "dangling")))
	require.ErrorIs(t, CheckWritable(filepath.Join(dir, "dangling")), fs.ErrNotExist)
	require.ErrorIs(t, WriteFile(filepath.Join(dir, "dangling"), []byte("a:x\n")), fs.ErrNotExist)
	fi, err = os.Lstat(filepath.Join(dir, "dangling"))
	require.NoError(t, err)
	require.Equal(t, fs.ModeSymlink, fi.Mode().Type())
}

func TestWriteFileSymlinkLoop(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.Symlink("b", filepath.Join(dir, "a")))
	require.NoError(t, os.Symlink("a", filepath.Join(dir, "b")))
	err := WriteFile(filepath.Join(dir, "a"), []byte("a:x\n"))
	require.ErrorIs(t, err, syscall.ELOOP)
	require.ElementsMatch(t, []string{"a", "b"}, entries(t, dir))
}

// A file bind-mounted into a container is a mount point: rename(2) over it
// fails with EBUSY. It is then rewritten in place, like mosquitto_passwd
// does, rather than not at all.
func TestWriteFileMountPointRewritesInPlace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(p, []byte("old:x\nmore:y\n"), 0o640))
	before, err := os.Stat(p)
	require.NoError(t, err)
	rename = func(oldpath, newpath string) error {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EBUSY}
	}
	t.Cleanup(func() { rename = os.Rename })

	require.NoError(t, WriteFile(p, []byte("new:z\n")))
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "new:z\n", string(got))
	after, err := os.Stat(p)
	require.NoError(t, err)
	require.True(t, os.SameFile(before, after), "the same file, written in place")
	require.Equal(t, fs.FileMode(0o640), after.Mode().Perm())
	require.Equal(t, []string{"pw"}, entries(t, dir), "temporary file removed")
}

// Other rename errors are reported, and the old file is kept.
func TestWriteFileRenameError(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(p, []byte("old:x\n"), 0o600))
	rename = func(oldpath, newpath string) error {
		return &os.LinkError{Op: "rename", Old: oldpath, New: newpath, Err: syscall.EIO}
	}
	t.Cleanup(func() { rename = os.Rename })
	require.ErrorIs(t, WriteFile(p, []byte("new:z\n")), syscall.EIO)
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "old:x\n", string(got))
	require.Equal(t, []string{"pw"}, entries(t, dir))
}

// A file its owner made read-only is not replaced behind their back (the
// rename would only need the folder's permission); root may write it, as
// with mosquitto_passwd.
func TestWriteFileReadOnlyFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pw")
	require.NoError(t, os.WriteFile(p, []byte("old:x\n"), 0o600))
	require.NoError(t, os.Chmod(p, 0o400))
	err := WriteFile(p, []byte("new:y\n"))
	got, rerr := os.ReadFile(p)
	require.NoError(t, rerr)
	if os.Geteuid() == 0 {
		require.NoError(t, err)
		require.Equal(t, "new:y\n", string(got))
		fi, err := os.Stat(p)
		require.NoError(t, err)
		require.Equal(t, fs.FileMode(0o400), fi.Mode().Perm())
		return
	}
	require.ErrorIs(t, err, fs.ErrPermission)
	require.ErrorIs(t, CheckWritable(p), fs.ErrPermission)
	require.Equal(t, "old:x\n", string(got))
	require.Equal(t, []string{"pw"}, entries(t, dir))
}

func TestCheckWritable(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, CheckWritable(filepath.Join(dir, "new")))
	require.ErrorIs(t, CheckWritable(filepath.Join(dir, "missing", "pw")), fs.ErrNotExist)
	file := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(file, nil, 0o600))
	require.NoError(t, CheckWritable(file))
	require.ErrorIs(t, CheckWritable(filepath.Join(file, "pw")), syscall.ENOTDIR)
	require.ErrorIs(t, CheckWritable(dir), ErrNotRegular)
	require.Equal(t, []string{"file"}, entries(t, dir), "nothing created")
}

func TestModeWarning(t *testing.T) {
	require.Empty(t, ModeWarning("pw", 0o600))
	require.Empty(t, ModeWarning("pw", 0o700))
	require.Equal(t, "Warning: File pw has world readable permissions. Future versions will refuse to load this file. To fix this, use `chmod 0600 pw`.", ModeWarning("pw", 0o644))
	require.Equal(t, "Warning: File pw has group readable permissions. Future versions will refuse to load this file. To fix this, use `chmod 0600 pw`.", ModeWarning("pw", 0o640))
}
