// SPDX-License-Identifier: Apache-2.0

package passwd

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/internal/interop"
)

// TestInteropMosquittoPasswd hashes fresh passwords with the real
// mosquitto_passwd and checks that both readers verify them.
func TestInteropMosquittoPasswd(t *testing.T) {
	tool := interop.Require(t, "mosquitto_passwd")
	tests := []struct {
		name string
		args []string
	}{
		{"default", nil},
		{"sha512", []string{"-H", "sha512"}},
		{"pbkdf2 7 iterations", []string{"-H", "sha512-pbkdf2", "-I", "7"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "pw")
			args := append(append([]string{}, tt.args...), "-c", "-b", p, "zoë", "s3cr3t: ünïcode")
			out, err := exec.Command(tool, args...).CombinedOutput()
			require.NoError(t, err, "%s", out)

			raw, err := os.ReadFile(p)
			require.NoError(t, err)
			f, err := Parse(bytes.NewReader(raw))
			require.NoError(t, err)
			e, ok := f.Lookup("zoë")
			require.True(t, ok, "%s", raw)
			ok, err = Verify("s3cr3t: ünïcode", e.Hash)
			require.NoError(t, err)
			require.True(t, ok)

			db, warns, err := LoadDB(p)
			require.NoError(t, err)
			require.Empty(t, warns)
			require.True(t, db.Authenticate("zoë", "s3cr3t: ünïcode"))
			require.False(t, db.Authenticate("zoë", "s3cr3t"))
		})
	}
}

// TestInteropMosquittoPasswdEditsOurFile lets the real mosquitto_passwd add
// a user to a file written by this package; its strict parser must accept
// our lines and keep them.
func TestInteropMosquittoPasswdEditsOurFile(t *testing.T) {
	tool := interop.Require(t, "mosquitto_passwd")
	h6, err := Hash("six", HashOptions{Type: TypeSHA512})
	require.NoError(t, err)
	h7, err := Hash("seven", HashOptions{Iterations: 3})
	require.NoError(t, err)
	f := &File{}
	f.Set("six", h6)
	f.Set("seven", h7)
	p := filepath.Join(t.TempDir(), "pw")
	require.NoError(t, WriteFile(p, f.Bytes()))

	out, err := exec.Command(tool, "-b", p, "new", "pw").CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command(tool, "-D", p, "six").CombinedOutput()
	require.NoError(t, err, "%s", out)

	db, warns, err := LoadDB(p)
	require.NoError(t, err)
	require.Empty(t, warns)
	require.Equal(t, []string{"new", "seven"}, db.Users())
	require.True(t, db.Authenticate("seven", "seven"))
	require.True(t, db.Authenticate("new", "pw"))
	raw, err := os.ReadFile(p)
	require.NoError(t, err)
	require.Contains(t, string(raw), "seven:"+h7+"\n", "our line must be kept as written")
}
