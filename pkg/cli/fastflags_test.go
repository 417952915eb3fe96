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

func TestOnlyFlagsOf(t *testing.T) {
	d, _ := testDeps(t)
	app := newApp(d)
	pub := commandOf(app.Commands, []string{"mqtt", "--help", "pub", "-t", "a"})
	require.NotNil(t, pub)
	require.Equal(t, "pub", pub.Name)
	onlyFlagsOf(app, pub)
	for _, c := range app.Commands {
		if c == pub {
			require.NotEmpty(t, c.Flags)
		} else {
			require.Empty(t, c.Flags, c.Name)
		}
	}

	for _, args := range [][]string{{"mqtt"}, {"mqtt", "--version"}, {"mqtt", "nosuch"}} {
		app := newApp(d)
		onlyFlagsOf(app, commandOf(app.Commands, args))
		for _, c := range app.Commands {
			require.Empty(t, c.Flags, "%v: %s", args, c.Name)
		}
	}

	app = newApp(d)
	onlyFlagsOf(app, commandOf(app.Commands, []string{"mqtt", "completion", "fish"}))
	for _, c := range app.Commands {
		if c.Name != "completion" {
			require.NotEmpty(t, c.Flags, c.Name)
		}
	}
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
