// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDocsUpToDate fails when docs/cli/ differs from what the app
// definition generates, like cmd/go's README check.
func TestDocsUpToDate(t *testing.T) {
	pages, err := MarkdownPages()
	require.NoError(t, err)
	dir := "../../docs/cli"
	files, err := filepath.Glob(filepath.Join(dir, "*.md"))
	require.NoError(t, err)
	require.Len(t, files, len(pages), "docs/cli has stale or missing pages: run go run ./scripts/gendocs")
	for name, want := range pages {
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err, "docs/cli/%s missing: run go run ./scripts/gendocs", name)
		require.Equal(t, want, string(got), "docs/cli/%s is out of date: run go run ./scripts/gendocs", name)
	}
}
