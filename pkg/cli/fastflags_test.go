// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"github.com/urfave/cli/v2"
)

// TestFastNamesSameFlags checks that the wrapped flags of newApp behave
// like the plain ones: same names, same help line, same docs interfaces,
// and that the names are computed once.
func TestFastNamesSameFlags(t *testing.T) {
	d, _ := testDeps(t)
	plain := map[string][]cli.Flag{}
	for _, c := range []*cli.Command{
		newBrokerCmd(d, nil), newPubCmd(d, nil), newSubCmd(d, nil), newPasswdCmd(d, nil),
		newSimulateSensorCmd(d, nil), newDemoCmd(d, nil), newUICmd(d, nil), newCompletionCmd(d),
	} {
		plain[c.Name] = c.Flags
	}
	wrapped := 0
	for _, c := range newApp(d).Commands {
		want := plain[c.Name]
		require.Len(t, c.Flags, len(want), c.Name)
		for i, f := range c.Flags {
			p := want[i]
			require.Equal(t, p.Names(), f.Names(), "%s %v", c.Name, p.Names())
			require.Equal(t, p.String(), f.String(), "%s %v", c.Name, p.Names())
			for _, iface := range []func(cli.Flag) bool{
				func(f cli.Flag) bool { _, ok := f.(cli.DocGenerationFlag); return ok },
				func(f cli.Flag) bool { _, ok := f.(cli.ActionableFlag); return ok },
				func(f cli.Flag) bool { _, ok := f.(cli.CategorizableFlag); return ok },
				func(f cli.Flag) bool { _, ok := f.(cli.VisibleFlag); return ok },
				func(f cli.Flag) bool { _, ok := f.(cli.RequiredFlag); return ok },
			} {
				require.Equal(t, iface(p), iface(f), "%s %v", c.Name, p.Names())
			}
			if fmt.Sprintf("%T", f) != fmt.Sprintf("%T", p) {
				wrapped++
				n1, n2 := f.Names(), f.Names()
				require.Same(t, &n1[0], &n2[0], "%s %v: names are cached", c.Name, p.Names())
				require.Equal(t, len(n1), cap(n1), "an append must not write into the cache")
			}
		}
	}
	require.Greater(t, wrapped, 100)
}

// TestFastNamesKeepsHiddenBool: urfave's completion skips hidden flags only
// when they are *cli.BoolFlag, so those stay unwrapped.
func TestFastNamesKeepsHiddenBool(t *testing.T) {
	hidden := &cli.BoolFlag{Name: "h", Hidden: true}
	require.Same(t, hidden, fastNamesFlag(hidden))
	shown := &cli.BoolFlag{Name: "x"}
	require.IsType(t, &boolFlag{}, fastNamesFlag(shown))
}

// TestFlagNames: the same names as cli.FlagNames, which cuts a name at a
// comma or space (urfave/cli v1 syntax).
func TestFlagNames(t *testing.T) {
	for _, tc := range []struct {
		name    string
		aliases []string
	}{
		{"host", []string{"h"}},
		{"retain", nil},
		{"will-payload", []string{"will-message", "w"}},
		{"host, h", nil},
		{"topic", []string{"t x"}},
	} {
		got := flagNames(tc.name, tc.aliases)
		require.Equal(t, cli.FlagNames(tc.name, tc.aliases), got, "%q %q", tc.name, tc.aliases)
		require.Equal(t, len(got), cap(got))
	}
}

// TestFullCommands checks which commands a run builds in full: the one
// it names, the topic of "mqtt help", all for completion, none without a
// command; the others are their name and usage, with no flags or action.
func TestFullCommands(t *testing.T) {
	d, _ := testDeps(t)
	for _, tc := range []struct {
		args []string
		full []string
	}{
		{[]string{"mqtt", "pub", "-t", "a", "-m", "b"}, []string{"pub"}},
		{[]string{"mqtt", "--help", "pub", "-t", "a"}, []string{"pub"}},
		{[]string{"mqtt", "help", "sub"}, []string{"sub"}},
		{[]string{"mqtt", "broker", "-c", "x.conf"}, []string{"broker"}},
		{[]string{"mqtt"}, nil},
		{[]string{"mqtt", "--version"}, nil},
		{[]string{"mqtt", "help"}, nil},
		{[]string{"mqtt", "nosuch"}, nil},
		{[]string{"mqtt", "completion", "fish"}, []string{"broker", "pub", "sub", "passwd", "simulate-sensor", "demo", "ui", "completion"}},
	} {
		app := buildApp(d, fullCommands(tc.args))
		require.Len(t, app.Commands, len(commands), "%v", tc.args)
		var full []string
		for i, c := range app.Commands {
			require.Equal(t, commands[i].name, c.Name, "%v", tc.args)
			require.Equal(t, commands[i].usage, c.Usage, "%v", tc.args)
			if c.Action != nil {
				full = append(full, c.Name)
			} else {
				require.Empty(t, c.Flags, "%v: %s", tc.args, c.Name)
			}
		}
		require.Equal(t, tc.full, full, "%v", tc.args)
	}
}

// TestCommandsUsage checks the table of commands against the commands
// built in full: same name and usage, and nothing else that the top-level
// help or the suggestions read (aliases, category, hidden).
func TestCommandsUsage(t *testing.T) {
	d, _ := testDeps(t)
	for _, spec := range commands {
		c := spec.build(d)
		require.Equal(t, spec.name, c.Name)
		require.Equal(t, spec.usage, c.Usage, c.Name)
		require.Empty(t, c.Aliases, c.Name)
		require.Empty(t, c.Category, c.Name)
		require.False(t, c.Hidden, c.Name)
		require.NotNil(t, c.Action, c.Name)
	}
}

// TestRunHelpTopicFlags checks that "mqtt help pub" lists pub's flags as
// "mqtt pub --help" does (it once pruned them: only --help was left).
func TestRunHelpTopicFlags(t *testing.T) {
	code, want, errOut := run(t, "pub", "--help")
	require.Equal(t, 0, code, errOut)
	code, out, errOut := run(t, "help", "pub")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "--message value, -m value")
	require.Equal(t, want, out)
}

// TestRunHelpAndCompletionAfterPruning runs what reads flags of other
// commands or of the one named: its help, and the fish completion of all.
func TestRunHelpAndCompletionAfterPruning(t *testing.T) {
	code, out, errOut := run(t, "pub", "--help")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "--message value, -m value")
	require.Contains(t, out, "Connection")
	require.NotContains(t, out, "--count") // sub's -C

	code, out, errOut = run(t, "--help")
	require.Equal(t, 0, code, errOut)
	for _, c := range []string{"broker", "pub", "sub", "passwd", "simulate-sensor"} {
		require.Contains(t, out, "\n   "+c+" ")
	}

	code, out, errOut = run(t, "completion", "fish")
	require.Equal(t, 0, code, errOut)
	for _, want := range []string{"-l message", "-l count", "-l password-file"} {
		require.True(t, strings.Contains(out, want), "fish completion lacks %q", want)
	}
}

// TestHelpPossible checks when a run keeps the help categories of the
// named command's flags: whenever its help may be printed.
func TestHelpPossible(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"mqtt", "pub", "-h", "127.0.0.1", "-t", "a", "-m", "b"}, false},
		{[]string{"mqtt", "pub", "-t", "a", "-m", "b", "--", "--help"}, false},
		{[]string{"mqtt", "pub", "--help"}, true},
		{[]string{"mqtt", "pub", "-help"}, true},
		{[]string{"mqtt", "pub", "--help=true"}, true},
		{[]string{"mqtt", "--help", "pub"}, true},
		{[]string{"mqtt", "help", "pub"}, true},
		{[]string{"mqtt", "pub", "-t", "a", "-m", "--help"}, true}, // the message, but keeping is harmless
		{[]string{"mqtt", "passwd", "-h"}, true},                   // passwd has no -h: Go's flag answers ErrHelp
		{[]string{"mqtt", "broker", "-h"}, true},                   // broker's hidden -h prints the help
		{[]string{"mqtt", "sub", "-h", "localhost", "-t", "#"}, false},
	} {
		d, _ := testDeps(t)
		app := buildApp(d, fullCommands(tc.args))
		// as Run decides ("mqtt help pub" names no command to run)
		cmd := commandOf(app.Commands, tc.args)
		drops := cmd != nil && cmd.Action != nil && !helpPossible(cmd, tc.args)
		require.Equal(t, tc.want, !drops, "%v", tc.args)
	}
}

// TestDropCategories checks that a run that prints no help leaves no
// flag of its command in a help category (so urfave renders none), and
// that the help still shows them with -h as the host.
func TestDropCategories(t *testing.T) {
	d, _ := testDeps(t)
	cmd := newPubCmd(d, nil)
	cmd.Flags = fastNames(cmd.Flags)
	categorised := 0
	for _, f := range cmd.Flags {
		if c, ok := f.(cli.CategorizableFlag); ok && c.GetCategory() != "" {
			categorised++
		}
	}
	require.Positive(t, categorised)
	dropCategories(cmd)
	for _, f := range cmd.Flags {
		if c, ok := f.(cli.CategorizableFlag); ok {
			require.Empty(t, c.GetCategory(), f.Names())
		}
	}

	code, out, errOut := run(t, "sub", "-h", "127.0.0.1", "--help")
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "Connection")
	require.Contains(t, out, "--host value, -h value")
}
