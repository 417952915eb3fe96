// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"embed"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"
)

//go:embed completions/*
var completionScripts embed.FS

// completionShells maps a shell to its embedded script; fish is generated
// from the app definition.
var completionShells = lazy[map[string]string]{build: func() map[string]string {
	return map[string]string{
		"bash":       "completions/mqtt.bash",
		"zsh":        "completions/mqtt.zsh",
		"powershell": "completions/mqtt.ps1",
		"fish":       "",
	}
}}

func newCompletionCmd(d *Deps) *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script (bash, zsh, fish or powershell)",
		ArgsUsage: "SHELL",
		UsageText: `source <(mqtt completion bash)                       # bash, current shell
mqtt completion zsh > "${fpath[1]}/_mqtt"               # zsh
mqtt completion fish > ~/.config/fish/completions/mqtt.fish`,
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return withCmd(c, usageErrorf("completion needs exactly one shell: bash, zsh, fish or powershell"))
			}
			return withCmd(c, writeCompletion(c.App, d.IO.Out, c.Args().First()))
		},
	}
}

// writeCompletion writes the completion script for shell to w.
func writeCompletion(app *cli.App, w io.Writer, shell string) error {
	path, ok := completionShells.get()[shell]
	if !ok {
		return usageErrorf("unknown shell %q: want bash, zsh, fish or powershell", shell)
	}
	if path == "" {
		s, err := app.ToFishCompletion()
		if err != nil {
			return fmt.Errorf("fish completion: %w", err)
		}
		_, err = io.WriteString(w, s)
		return err
	}
	b, err := completionScripts.ReadFile(path)
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
