// SPDX-License-Identifier: Apache-2.0

package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// runScript runs the maintainer script name with args, with fake
// systemctl, mkdir, chown and chmod first on PATH that only log their
// arguments, and with /run/systemd/system (the scripts' "systemd is
// running" test) pointing at a directory that exists. It returns the
// logged calls, one "program args" per line.
func runScript(t *testing.T, name string, args ...string) []string {
	t.Helper()
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	src, err := os.ReadFile(name)
	require.NoError(t, err)
	dir := t.TempDir()
	systemdDir := filepath.Join(dir, "run-systemd-system")
	require.NoError(t, os.Mkdir(systemdDir, 0o755))
	require.Contains(t, string(src), "/run/systemd/system", "%s no longer tests for systemd: update this test", name)
	script := filepath.Join(dir, filepath.Base(name))
	require.NoError(t, os.WriteFile(script, []byte(strings.ReplaceAll(string(src), "/run/systemd/system", systemdDir)), 0o755))

	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	log := filepath.Join(dir, "calls")
	for _, prog := range []string{"systemctl", "mkdir", "chown", "chmod"} {
		fake := "#!" + sh + "\necho \"" + prog + " $*\" >> '" + log + "'\n"
		require.NoError(t, os.WriteFile(filepath.Join(bin, prog), []byte(fake), 0o755))
	}
	cmd := exec.Command(sh, append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s %v: %s", name, args, out)
	calls, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	return strings.Split(strings.TrimSpace(string(calls)), "\n")
}

func systemctlCalls(calls []string) []string {
	var out []string
	for _, c := range calls {
		if strings.HasPrefix(c, "systemctl ") {
			out = append(out, c)
		}
	}
	return out
}

// TestPreremove: dpkg's prerm and rpm's %preun stop and disable the
// service on a removal only; an upgrade keeps it running and enabled
// (nothing would enable it again).
func TestPreremove(t *testing.T) {
	stop := []string{"systemctl stop mqttkit.service", "systemctl disable mqttkit.service"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"deb remove", []string{"remove"}, stop},
		{"deb purge", []string{"purge"}, stop},
		{"deb upgrade", []string{"upgrade", "1.2.0"}, nil},
		{"deb failed-upgrade", []string{"failed-upgrade", "1.2.0"}, nil},
		{"deb deconfigure", []string{"deconfigure", "in-favour", "other", "1.0"}, nil},
		{"rpm erase", []string{"0"}, stop},
		{"rpm upgrade", []string{"1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, systemctlCalls(runScript(t, "preremove.sh", tc.args...)))
		})
	}
}

// TestPostinstall: every install reloads systemd's units; an upgrade
// restarts a running broker (try-restart leaves a stopped one stopped), a
// first install neither enables nor starts it.
func TestPostinstall(t *testing.T) {
	reload := []string{"systemctl daemon-reload"}
	restart := []string{"systemctl daemon-reload", "systemctl try-restart mqttkit.service"}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"deb install", []string{"configure"}, reload},
		{"deb install empty version", []string{"configure", ""}, reload},
		{"deb upgrade", []string{"configure", "1.2.0"}, restart},
		{"rpm install", []string{"1"}, reload},
		{"rpm upgrade", []string{"2"}, restart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := runScript(t, "postinstall.sh", tc.args...)
			require.Equal(t, tc.want, systemctlCalls(calls))
			require.Contains(t, calls, "chown mqttkit:mqttkit /var/lib/mqttkit")
		})
	}
}
