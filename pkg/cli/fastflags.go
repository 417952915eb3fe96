// SPDX-License-Identifier: Apache-2.0

package cli

import "github.com/urfave/cli/v2"

// urfave/cli v2 looks flags up by name over and over: after parsing, it
// runs every flag's Action through Context.IsSet, which for each unset name
// walks all flags of the command calling Names(), and Names() runs a regexp
// over each name and alias (cli.FlagNames). With the ~60 flags of pub and
// sub that is thousands of regexp calls, about 1 ms of every one-shot run.
// The wrappers below answer Names() from a slice computed on first use;
// every other method is the wrapped flag's own, so parsing, help, docs and
// completion are unchanged. (An app is used by one goroutine at a time.)

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

func (f *boolFlag) Names() []string     { return f.get(f.BoolFlag) }
func (f *stringFlag) Names() []string   { return f.get(f.StringFlag) }
func (f *intFlag) Names() []string      { return f.get(f.IntFlag) }
func (f *uint64Flag) Names() []string   { return f.get(f.Uint64Flag) }
func (f *float64Flag) Names() []string  { return f.get(f.Float64Flag) }
func (f *durationFlag) Names() []string { return f.get(f.DurationFlag) }
func (f *genericFlag) Names() []string  { return f.get(f.GenericFlag) }

// names caches a flag's Names().
type names []string

func (n *names) get(f cli.Flag) []string {
	if *n == nil {
		all := f.Names()
		*n = all[:len(all):len(all)] // an append by a caller copies
	}
	return *n
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
