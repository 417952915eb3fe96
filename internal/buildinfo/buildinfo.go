// SPDX-License-Identifier: Apache-2.0

// Package buildinfo reports the version of the running binary.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version, Commit and Date are set at release time with -ldflags -X.
var (
	Version = ""
	Commit  = ""
	Date    = ""
)

// Info describes the running build.
type Info struct {
	Version string
	Commit  string
	Date    string
	Go      string
}

// Get returns the build information, falling back to what the Go toolchain
// recorded (go install pkg@version) when ldflags did not set it.
func Get() Info {
	i := Info{Version: Version, Commit: Commit, Date: Date, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if i.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			i.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if i.Commit == "" {
					i.Commit = s.Value
				}
			case "vcs.time":
				if i.Date == "" {
					i.Date = s.Value
				}
			}
		}
	}
	if i.Version == "" {
		i.Version = "dev"
	}
	if i.Commit == "" {
		i.Commit = "unknown"
	}
	if len(i.Commit) > 12 {
		i.Commit = i.Commit[:12]
	}
	return i
}

// String formats the information as printed by `mqtt --version`.
func (i Info) String() string {
	s := fmt.Sprintf("mqtt version %s (commit %s", i.Version, i.Commit)
	if i.Date != "" {
		s += ", built " + i.Date
	}
	return s + ", " + i.Go + ")"
}
