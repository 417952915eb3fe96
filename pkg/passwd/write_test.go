// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"io/fs"
	"os"
	"path/filepath"
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
	for _, mode := range []fs.FileMode{0o640, 0o644, 0o600, 0o400} {
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
	require.Error(t, WriteFile(p, []byte("new:y\n")))
	got, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Equal(t, "old:x\n", string(got))
}

func TestModeWarning(t *testing.T) {
	require.Empty(t, ModeWarning("pw", 0o600))
	require.Empty(t, ModeWarning("pw", 0o700))
	require.Equal(t, "Warning: File pw has world readable permissions. Future versions will refuse to load this file. To fix this, use `chmod 0600 pw`.", ModeWarning("pw", 0o644))
	require.Equal(t, "Warning: File pw has group readable permissions. Future versions will refuse to load this file. To fix this, use `chmod 0600 pw`.", ModeWarning("pw", 0o640))
}
