// SPDX-License-Identifier: Apache-2.0

//go:build !urfave_cli_no_docs

package cli

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestManPage(t *testing.T) {
	page, err := ManPage()
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(page, ".nh\n.TH mqtt 1"), page[:40])
	require.Contains(t, page, "pub")
}
