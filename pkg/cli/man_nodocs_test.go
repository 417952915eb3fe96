// SPDX-License-Identifier: Apache-2.0

//go:build urfave_cli_no_docs

package cli

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestManPageWithoutDocs(t *testing.T) {
	_, err := ManPage()
	require.ErrorContains(t, err, "urfave_cli_no_docs")
}
