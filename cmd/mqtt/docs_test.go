// SPDX-License-Identifier: Apache-2.0

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/mqttkit/mqttkit/pkg/mosqconf"
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

// cliFlags returns the flags of `mqtt CMD` as listed in the generated
// reference docs/cli/CMD.md (TestDocsUpToDate in pkg/cli keeps that page
// equal to the app definition).
func cliFlags(t *testing.T, root, cmd string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "docs", "cli", cmd+".md"))
	require.NoError(t, err, "no generated reference page for mqtt %s", cmd)
	flags := map[string]bool{}
	inFlags := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "## ") {
			inFlags = line == "## Flags"
			continue
		}
		if !inFlags || !strings.HasPrefix(line, "| `") {
			continue
		}
		cell := strings.Split(line, "|")[1]
		for _, f := range backticked(cell) {
			flags[f] = true
		}
	}
	require.NotEmpty(t, flags, "no flags found in docs/cli/%s.md", cmd)
	flags["--help"] = true // every command has it; the reference does not list it
	return flags
}

var backtick = regexp.MustCompile("`([^`]+)`")

// backticked returns the first word of each `code` span of s.
func backticked(s string) []string {
	var out []string
	for _, m := range backtick.FindAllStringSubmatch(s, -1) {
		out = append(out, strings.Fields(m[1] + " ")[0])
	}
	return out
}

// flagTable is a "### mosquitto_x → mqtt y" table of docs/mosquitto.md.
var flagTable = regexp.MustCompile(`^### (\S+) → mqtt (\S+)`)

// TestMosquittoFlagTables keeps the flag-by-flag tables of docs/mosquitto.md
// truthful: every mqtt flag named in the second column exists, and a
// mosquitto flag marked "not supported" really is missing from mqtt (so
// the row is updated when the flag arrives).
func TestMosquittoFlagTables(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "docs", "mosquitto.md"))
	require.NoError(t, err)
	tables := 0
	var cmd, tool string
	var flags map[string]bool
	for n, line := range strings.Split(string(b), "\n") {
		if m := flagTable.FindStringSubmatch(line); m != nil {
			tool, cmd = m[1], m[2]
			flags = cliFlags(t, root, cmd)
			tables++
			continue
		}
		if strings.HasPrefix(line, "#") {
			cmd = ""
		}
		if cmd == "" || !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "|---") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			continue
		}
		theirs, ours := cells[1], cells[2]
		if strings.HasPrefix(strings.TrimSpace(ours), "not supported") {
			for _, f := range backticked(theirs) {
				if strings.HasPrefix(f, "-") && flags[f] {
					t.Errorf("docs/mosquitto.md:%d: says %s %s is not supported, but mqtt %s has %s: update the row",
						n+1, tool, f, cmd, f)
				}
			}
			continue
		}
		for _, f := range backticked(ours) {
			if strings.HasPrefix(f, "-") && !flags[f] {
				t.Errorf("docs/mosquitto.md:%d: names %s for mqtt %s, which has no such flag (see docs/cli/%s.md)",
					n+1, f, cmd, cmd)
			}
		}
	}
	require.NotZero(t, tables, "no '### mosquitto_x → mqtt y' flag tables in docs/mosquitto.md")
}

// TestMosquittoConfTable checks the mosquitto.conf table of
// docs/mosquitto.md against the broker's configuration parser: the example
// lines of a "yes" row parse without a warning, those of an "ignored" row
// parse with a warning, and those of a "no" row are an error.
func TestMosquittoConfTable(t *testing.T) {
	root := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(root, "docs", "mosquitto.md"))
	require.NoError(t, err)
	rows := 0
	in := false
	for n, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "#") {
			in = line == "### mosquitto.conf directives"
			continue
		}
		if !in || !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(line, "|")
		require.GreaterOrEqual(t, len(cells), 4, "docs/mosquitto.md:%d", n+1)
		var lines []string
		for _, m := range backtick.FindAllStringSubmatch(cells[1], -1) {
			l := m[1]
			if strings.HasPrefix(l, "include_dir ") {
				l = "include_dir " + t.TempDir()
			}
			lines = append(lines, l)
		}
		rows++
		conf, err := mosqconf.ParseConf("mosquitto.conf", strings.NewReader(strings.Join(lines, "\n")+"\n"))
		where := fmt.Sprintf("docs/mosquitto.md:%d: %q", n+1, lines)
		switch status := strings.TrimSpace(cells[2]); status {
		case "yes":
			if assert.NoError(t, err, where) {
				assert.Empty(t, conf.Warnings, where)
			}
		case "ignored":
			if assert.NoError(t, err, where) {
				assert.Len(t, conf.Warnings, len(lines), "%s: want a warning per line", where)
			}
		case "no":
			assert.Error(t, err, where)
		default:
			t.Errorf("%s: the second column must be yes, ignored or no, not %q", where, status)
		}
	}
	require.NotZero(t, rows, "no '### mosquitto.conf directives' table in docs/mosquitto.md")
}
