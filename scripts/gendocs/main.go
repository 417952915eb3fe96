// SPDX-License-Identifier: Apache-2.0

// Command gendocs writes the generated CLI reference (docs/cli/*.md) and,
// with -man DIR, the mqtt(1) man page. Run it after changing any command
// or flag: go run ./scripts/gendocs
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/mqttkit/mqttkit/pkg/cli"
)

func main() {
	dir := flag.String("dir", "docs/cli", "where to write the Markdown pages")
	man := flag.String("man", "", "also write mqtt.1 into this directory")
	flag.Parse()
	if err := run(*dir, *man); err != nil {
		fmt.Fprintln(os.Stderr, "gendocs:", err)
		os.Exit(1)
	}
}

func run(dir, man string) error {
	pages, err := cli.MarkdownPages()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	for _, p := range old {
		if _, ok := pages[filepath.Base(p)]; !ok {
			if err := os.Remove(p); err != nil {
				return err
			}
		}
	}
	for name, body := range pages {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return err
		}
	}
	if man != "" {
		page, err := cli.ManPage()
		if err != nil {
			return err
		}
		if err := os.MkdirAll(man, 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(man, "mqtt.1"), []byte(page), 0o644)
	}
	return nil
}
