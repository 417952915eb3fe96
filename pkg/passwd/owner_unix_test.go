// SPDX-License-Identifier: Apache-2.0

//go:build unix

package passwd

import (
	"io/fs"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// fakeInfo is a FileInfo with a Unix owner, for OwnerWarning.
type fakeInfo struct {
	fs.FileInfo
	mode fs.FileMode
	uid  uint32
}

func (f fakeInfo) Mode() fs.FileMode { return f.mode }
func (f fakeInfo) Sys() any          { return &syscall.Stat_t{Uid: f.uid} }

func TestOwnerWarning(t *testing.T) {
	for _, tt := range []struct {
		path string
		mode fs.FileMode
		uid  uint32
		want string
	}{
		{"/etc/mqttkit/passwd", 0o600, 0, "Warning: File /etc/mqttkit/passwd owner is root and only root can read it, but the broker service reads it as user mqttkit. To fix this, use `chown mqttkit: /etc/mqttkit/passwd`."},
		{"/etc/mosquitto/conf.d/pw", 0o600, 0, "Warning: File /etc/mosquitto/conf.d/pw owner is root and only root can read it, but the broker service reads it as user mosquitto. To fix this, use `chown mosquitto: /etc/mosquitto/conf.d/pw`."},
		{"/etc/mqttkit/passwd", 0o600, 999, ""}, // already chowned
		{"/etc/mqttkit/passwd", 0o640, 0, ""},   // the group may read it (root:mqttkit 0640)
		{"/etc/mqttkitx/passwd", 0o600, 0, ""},  // not a service folder
		{"/home/alice/passwd", 0o600, 0, ""},    // a broker run by hand
		{"/etc/mosquitto/../mqttkit/passwd", 0o600, 0, "Warning: File /etc/mosquitto/../mqttkit/passwd owner is root and only root can read it, but the broker service reads it as user mqttkit. To fix this, use `chown mqttkit: /etc/mosquitto/../mqttkit/passwd`."},
	} {
		got := OwnerWarning(tt.path, fakeInfo{mode: tt.mode, uid: tt.uid})
		require.Equal(t, tt.want, got, tt.path)
	}
}
