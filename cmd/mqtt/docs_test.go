// SPDX-License-Identifier: Apache-2.0

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// mdLink matches the target of a Markdown link: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// relativeLinks returns the local link targets of a Markdown file, without
// #anchors, resolved against the file's folder.
func relativeLinks(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []string
	for _, m := range mdLink.FindAllStringSubmatch(string(b), -1) {
		target := m[1]
		if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
			continue
		}
		target, _, _ = strings.Cut(target, "#")
		out = append(out, filepath.Clean(filepath.Join(filepath.Dir(path), target)))
	}
	return out
}

// TestDocLinks checks that README.md links every document in docs/ (the
// generated command reference through docs/cli/README.md), and that no
// local link in README.md or docs/ points at a file that does not exist.
func TestDocLinks(t *testing.T) {
	root := filepath.Join("..", "..")
	docs, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	require.NoError(t, err)
	cli, err := filepath.Glob(filepath.Join(root, "docs", "cli", "*.md"))
	require.NoError(t, err)
	readme := filepath.Join(root, "README.md")

	linked := map[string]bool{}
	for _, l := range relativeLinks(t, readme) {
		linked[l] = true
	}
	for _, d := range append(docs, filepath.Join(root, "docs", "cli", "README.md")) {
		if !linked[filepath.Clean(d)] {
			rel, _ := filepath.Rel(root, d)
			t.Errorf("README.md does not link %s: add it to the Docs section", rel)
		}
	}

	for _, f := range append(append([]string{readme}, docs...), cli...) {
		for _, l := range relativeLinks(t, f) {
			if _, err := os.Stat(l); err != nil {
				rel, _ := filepath.Rel(root, f)
				target, _ := filepath.Rel(root, l)
				t.Errorf("%s links %s, which does not exist", rel, target)
			}
		}
	}
}
