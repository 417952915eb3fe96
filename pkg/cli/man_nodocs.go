// SPDX-License-Identifier: Apache-2.0

//go:build urfave_cli_no_docs

package cli

import "errors"

// ManPage reports that this build has no man page renderer: the
// urfave_cli_no_docs tag (release builds) leaves urfave/cli's docs
// generator out. Run scripts/gendocs, which is built without the tag.
func ManPage() (string, error) {
	return "", errors.New("man page: this binary was built with -tags urfave_cli_no_docs; run go run ./scripts/gendocs -man DIR")
}
