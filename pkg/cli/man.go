// SPDX-License-Identifier: Apache-2.0

//go:build !urfave_cli_no_docs

package cli

import "github.com/mqttkit/mqttkit/pkg/iostreams"

// The man page needs urfave/cli's docs generator, which links blackfriday
// and go-md2man and runs their package initialisers at every start of the
// binary. Release builds (goreleaser.yaml, scripts/bench) therefore use
// -tags urfave_cli_no_docs, and only scripts/gendocs, built without the tag,
// renders the man page.

// ManPage renders the mqtt(1) man page from the app definition.
func ManPage() (string, error) {
	io, _, _, _ := iostreams.Test()
	app := newApp(newDeps(io))
	return app.ToManWithSection(1)
}
