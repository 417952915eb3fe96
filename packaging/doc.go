// SPDX-License-Identifier: Apache-2.0

// Package packaging holds the files that goreleaser.yaml puts into the
// .deb and .rpm packages: the systemd unit, the default configuration and
// the maintainer scripts. It has no code; its tests run the maintainer
// scripts with a fake systemctl to check what they do on an install, an
// upgrade and a removal.
package packaging
