// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// urfave/cli v2 looks flags up by name over and over: after parsing, it
// runs every flag's Action through Context.IsSet, which for each unset name
// walks all flags of the command calling Names(), and Names() runs a regexp
// over each name and alias (cli.FlagNames). With the ~60 flags of pub and
// sub that is thousands of regexp calls, about 1 ms of every one-shot run.
// The wrappers below answer Names() from a slice computed on first use,
// without the regexp; every other method is the wrapped flag's own, so
// parsing, help, docs and completion are unchanged. (An app is used by one
// goroutine at a time.)

type boolFlag struct {
	*cli.BoolFlag
	names
}

type stringFlag struct {
	*cli.StringFlag
	names
}

type intFlag struct {
	*cli.IntFlag
	names
}

type uint64Flag struct {
	*cli.Uint64Flag
	names
}

type float64Flag struct {
	*cli.Float64Flag
	names
}

type durationFlag struct {
	*cli.DurationFlag
	names
}

type genericFlag struct {
	*cli.GenericFlag
	names
}

func (f *boolFlag) Names() []string     { return f.get(f.BoolFlag.Name, f.BoolFlag.Aliases) }
func (f *stringFlag) Names() []string   { return f.get(f.StringFlag.Name, f.StringFlag.Aliases) }
func (f *intFlag) Names() []string      { return f.get(f.IntFlag.Name, f.IntFlag.Aliases) }
func (f *uint64Flag) Names() []string   { return f.get(f.Uint64Flag.Name, f.Uint64Flag.Aliases) }
func (f *float64Flag) Names() []string  { return f.get(f.Float64Flag.Name, f.Float64Flag.Aliases) }
func (f *durationFlag) Names() []string { return f.get(f.DurationFlag.Name, f.DurationFlag.Aliases) }
func (f *genericFlag) Names() []string  { return f.get(f.GenericFlag.Name, f.GenericFlag.Aliases) }

// names caches a flag's Names().
type names []string

func (n *names) get(name string, aliases []string) []string {
	if *n == nil {
		*n = flagNames(name, aliases)
	}
	return *n
}

// flagNames is cli.FlagNames without its regexp for names that have no
// comma or space (all of ours): the name, then the aliases. Names with
// one go through cli.FlagNames, which cuts them there.
func flagNames(name string, aliases []string) []string {
	all := make([]string, 0, 1+len(aliases))
	all = append(all, name)
	all = append(all, aliases...)
	for _, s := range all {
		if strings.ContainsAny(s, ", ") {
			all = cli.FlagNames(name, aliases)
			break
		}
	}
	return all[:len(all):len(all)] // an append by a caller copies
}

// fastNames returns flags with each flag of a known type wrapped so that
// Names() is computed once, when first asked. Hidden flags stay as they are: urfave's shell
// completion recognises a hidden *cli.BoolFlag by its type.
func fastNames(flags []cli.Flag) []cli.Flag {
	out := make([]cli.Flag, len(flags))
	for i, f := range flags {
		out[i] = fastNamesFlag(f)
	}
	return out
}

func fastNamesFlag(f cli.Flag) cli.Flag {
	if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
		return f
	}
	switch f := f.(type) {
	case *cli.BoolFlag:
		return &boolFlag{BoolFlag: f}
	case *cli.StringFlag:
		return &stringFlag{StringFlag: f}
	case *cli.IntFlag:
		return &intFlag{IntFlag: f}
	case *cli.Uint64Flag:
		return &uint64Flag{Uint64Flag: f}
	case *cli.Float64Flag:
		return &float64Flag{Float64Flag: f}
	case *cli.DurationFlag:
		return &durationFlag{DurationFlag: f}
	case *cli.GenericFlag:
		return &genericFlag{GenericFlag: f}
	}
	return f
}
