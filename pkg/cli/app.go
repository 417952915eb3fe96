// SPDX-License-Identifier: Apache-2.0

// Package cli is the mqtt command line: one file per command, the shared
// connection flags, and the one place that turns errors into exit codes.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/internal/buildinfo"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/iostreams"
)

// Deps are the outside-world dependencies of every command. Main builds
// the real ones; tests build fakes.
type Deps struct {
	IO    *iostreams.IOStreams
	Log   *slog.Logger
	Level *slog.LevelVar // -d / -v raise the level
	Dial  client.DialFunc
	Now   func() time.Time
	// OpenTTY opens the controlling terminal, for --password-prompt
	// when stdin carries messages.
	OpenTTY func() (*os.File, error)
}

// NewDeps returns the real dependencies: the process's streams, a text
// logger on stderr, the real MQTT dialer and clock.
func NewDeps() *Deps {
	io := iostreams.System()
	return newDeps(io)
}

func newDeps(io *iostreams.IOStreams) *Deps {
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	log := slog.New(slog.NewTextHandler(io.ErrOut, &slog.HandlerOptions{Level: level}))
	return &Deps{IO: io, Log: log, Level: level, Dial: client.Dial, Now: time.Now, OpenTTY: openTTY}
}

// Main runs the mqtt command with the process's arguments and returns the
// exit status. Only cmd/mqtt calls os.Exit with it.
func Main() int {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go cancelOnSignal(ctx, cancel, nil)
	d := NewDeps()
	return Run(ctx, d, os.Args)
}

// cancelOnSignal cancels the run on SIGINT or SIGTERM, then restores the
// default handling so that a second Ctrl-C kills. It runs beside the
// command rather than before it: the first signal.Notify starts and waits
// for a signal-mask thread, about a tenth of a millisecond that a one-shot
// run need not wait for (until it is registered, a signal kills the
// process, as it does during the runtime's own start-up). registered, if
// not nil, is called once the handler is in place (for tests).
func cancelOnSignal(ctx context.Context, cancel context.CancelFunc, registered func()) {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(ch)
	if registered != nil {
		registered()
	}
	select {
	case <-ch:
		cancel()
	case <-ctx.Done():
	}
}

// Run runs the app with args (args[0] is the program name), prints any
// error once on stderr and returns the exit status.
func Run(ctx context.Context, d *Deps, args []string) int {
	app := buildApp(d, fullCommands(args))
	if cmd := commandOf(app.Commands, args); cmd != nil && cmd.Action != nil && !helpPossible(cmd, args) {
		dropCategories(cmd)
	}
	err := app.RunContext(ctx, joinPropertyArgs(app.Commands, args))
	if err != nil {
		echoFlag(err, args)
		if msg := message(err); msg != "" {
			fmt.Fprintln(d.IO.ErrOut, msg)
		}
		var ue *UsageError
		if errors.As(err, &ue) {
			name := "mqtt"
			if ue.Cmd != "" {
				name += " " + ue.Cmd
			}
			fmt.Fprintf(d.IO.ErrOut, "Use '%s --help' to see usage.\n", name)
		}
	}
	return exitCode(err)
}

var setupFlags sync.Once

// commands lists every command, in the order of the help, with its
// one-line usage and its constructor. A run builds in full only the
// command it names (see fullCommands): the others are their name and
// usage, all that the top-level help and the suggestions for an unknown
// command read. Building a command means building its flags (pub and sub
// have about 60), and urfave's App.Setup renders every flag of every
// command (String(), for the --help categories) before it runs anything:
// for a one-shot `mqtt pub` that was most of the time between main and
// the first packet. TestCommandsUsage checks the usage against the
// built commands.
var commands = [...]struct {
	name, usage string
	build       func(*Deps) *cli.Command
}{
	{"broker", "run an MQTT broker (like mosquitto)", func(d *Deps) *cli.Command { return newBrokerCmd(d, nil) }},
	{"pub", "publish messages to a broker (like mosquitto_pub)", func(d *Deps) *cli.Command { return newPubCmd(d, nil) }},
	{"sub", "subscribe to topics and print messages (like mosquitto_sub)", func(d *Deps) *cli.Command { return newSubCmd(d, nil) }},
	{"passwd", "manage mosquitto password files (like mosquitto_passwd)", func(d *Deps) *cli.Command { return newPasswdCmd(d, nil) }},
	{"simulate-sensor", "publish simulated temperature readings (the course's sensor, or seeded fleets)", func(d *Deps) *cli.Command { return newSimulateSensorCmd(d, nil) }},
	{"demo", "run a broker, a simulated sensor and a subscriber, and show the messages", func(d *Deps) *cli.Command { return newDemoCmd(d, nil) }},
	{"ui", "show a live dashboard of a broker's topics in the browser", func(d *Deps) *cli.Command { return newUICmd(d, nil) }},
	{"completion", "print a shell completion script (bash, zsh, fish or powershell)", newCompletionCmd},
}

// fullCommands returns which commands a run with args needs in full:
// the one it names ("mqtt pub ...", also after global flags as in "mqtt
// --help pub"), the topic of "mqtt help pub", or all of them for
// "mqtt completion", which renders the whole app. With none named
// ("mqtt", "mqtt --version", "mqtt nosuch") it needs none.
func fullCommands(args []string) func(name string) bool {
	i := commandIndex(args)
	if i >= len(args) {
		return func(string) bool { return false }
	}
	name := args[i]
	if name == "help" && i+1 < len(args) {
		name = args[i+1]
	}
	if name == "completion" {
		return func(string) bool { return true }
	}
	return func(n string) bool { return n == name }
}

// newApp builds the command tree with every command in full.
func newApp(d *Deps) *cli.App {
	return buildApp(d, func(string) bool { return true })
}

// buildApp builds the command tree: the commands full names in full, the
// others as their name and usage only.
func buildApp(d *Deps, full func(name string) bool) *cli.App {
	setupFlags.Do(func() {
		// mosquitto uses -h for host, -v for verbose and -V for the protocol
		// version: help and version are long-only (urfave/cli#1073).
		cli.HelpFlag = &cli.BoolFlag{Name: "help", Usage: "show help"}
		cli.VersionFlag = &cli.BoolFlag{Name: "version", Usage: "print the version"}
		cli.VersionPrinter = func(c *cli.Context) { fmt.Fprintln(c.App.Writer, buildinfo.Get().String()) }
	})
	app := &cli.App{
		Name:                   "mqtt",
		Usage:                  "MQTT broker, publisher, subscriber and tools in one binary",
		Version:                buildinfo.Get().Version,
		Compiled:               time.Unix(0, 0), // shown nowhere; left zero, urfave stats the executable on every run
		Writer:                 d.IO.Out,
		ErrWriter:              d.IO.ErrOut,
		HideHelpCommand:        true,
		UseShortOptionHandling: false,
		EnableBashCompletion:   true,
		ExitErrHandler:         func(*cli.Context, error) {},
		OnUsageError:           onUsageError(""),
		Action:                 appAction,
		Commands:               make([]*cli.Command, 0, len(commands)),
	}
	for _, spec := range commands {
		c := &cli.Command{Name: spec.name, Usage: spec.usage}
		if full(spec.name) {
			c = spec.build(d)
		}
		app.Commands = append(app.Commands, c)
	}
	for _, c := range app.Commands {
		if c.OnUsageError == nil {
			c.OnUsageError = onUsageError(c.Name)
		}
		// urfave adds a hidden "help" (alias "h") subcommand to every
		// command: "mqtt pub -t a -m b help" printed help instead of
		// publishing, and "mqtt passwd -c -b help alice pw" looked for a
		// help topic "alice". Our commands take --help only.
		c.HideHelpCommand = true
		c.Flags = fastNames(c.Flags)
	}
	return app
}

// helpPossible reports whether a run of cmd with args may print cmd's
// help: args hold --help or -help (or with "=value"), -h or --h where cmd
// has no visible -h flag of its own (Go's flag package answers an unknown
// -h with ErrHelp, and broker's hidden -h shows the help), or they are
// "mqtt help CMD". It may say yes when no help follows (-m --help
// publishes "--help"): that only keeps the categories.
func helpPossible(cmd *cli.Command, args []string) bool {
	i := commandIndex(args)
	if i < len(args) && args[i] == "help" {
		return true
	}
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		switch name {
		case "help":
			return true
		case "h":
			if !hasVisibleFlag(cmd, "h") {
				return true
			}
		}
	}
	return false
}

func hasVisibleFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		if slices.Contains(f.Names(), name) {
			return true
		}
	}
	return false
}

// dropCategories clears the help categories of cmd's flags, for a run
// that prints no help. urfave's App.Setup sorts a command's flags into
// its help categories before anything runs, rendering the whole help
// line of every flag (String()) to do so when any flag has a category:
// for pub's and sub's 40 connection flags that is time a one-shot run
// spends on help nobody reads. With no category set it renders nothing.
func dropCategories(cmd *cli.Command) {
	for _, f := range cmd.Flags {
		switch f := f.(type) {
		case *boolFlag:
			f.Category = ""
		case *stringFlag:
			f.Category = ""
		case *intFlag:
			f.Category = ""
		case *uint64Flag:
			f.Category = ""
		case *float64Flag:
			f.Category = ""
		case *durationFlag:
			f.Category = ""
		case *genericFlag:
			f.Category = ""
		}
	}
}

func onUsageError(cmd string) cli.OnUsageErrorFunc {
	return func(c *cli.Context, err error, _ bool) error {
		if errors.Is(err, flag.ErrHelp) {
			// -h where it is not a flag (at the top level: "mqtt -h"):
			// Go's flag package treats it as a request for help.
			if cmd == "" {
				return cli.ShowAppHelp(c)
			}
			return cli.ShowCommandHelp(c, cmd)
		}
		ue := &UsageError{Cmd: cmd, Err: err}
		if name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -"); ok {
			ue.Flag = name
			var flags []cli.Flag
			if c.Command != nil && c.Command.Name == cmd && cmd != "" {
				flags = c.Command.Flags
			} else {
				flags = c.App.Flags
			}
			ue.Suggest = suggestFlag(flags, name)
		}
		return ue
	}
}

// appAction runs when no command was named: "mqtt" alone prints the help,
// "mqtt publish" is an unknown command (urfave's own answer was "No help
// topic for 'publish'").
func appAction(c *cli.Context) error {
	if !c.Args().Present() {
		return cli.ShowAppHelp(c)
	}
	name := c.Args().First()
	if name == "help" && c.Args().Len() <= 2 {
		// "mqtt help" and "mqtt help pub", as in git and go.
		topic := c.Args().Get(1)
		switch {
		case topic == "":
			return cli.ShowAppHelp(c)
		case c.App.Command(topic) != nil:
			return cli.ShowCommandHelp(c, topic)
		}
		name = topic
	}
	msg := fmt.Sprintf("unknown command %q", name)
	var names []string
	for _, cmd := range c.App.VisibleCommands() {
		names = append(names, cmd.Names()...)
	}
	if s := suggest(names, name); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return &UsageError{Err: errors.New(msg)}
}

// echoFlag rewrites an unknown-flag error with the flag as it was typed
// (flag's message always shows one dash: "-tpoic" for --tpoic) and the
// closest known flag.
func echoFlag(err error, args []string) {
	var ue *UsageError
	if !errors.As(err, &ue) || ue.Flag == "" {
		return
	}
	typed := "-" + ue.Flag
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		name, _, _ := strings.Cut(a, "=")
		if strings.HasPrefix(name, "-") && strings.TrimLeft(name, "-") == ue.Flag {
			typed = name
			break
		}
	}
	msg := "unknown flag " + typed
	if ue.Suggest != "" {
		msg += " (did you mean " + ue.Suggest + "?)"
	}
	ue.Err = errors.New(msg)
}

// suggestFlag returns the known flag closest to the unknown name, spelt
// as typed on a command line (-t, --topic), or "".
func suggestFlag(flags []cli.Flag, name string) string {
	var names []string
	for _, f := range flags {
		if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
			continue
		}
		names = append(names, f.Names()...)
	}
	names = append(names, "help")
	s := suggest(names, name)
	switch {
	case s == "":
		return ""
	case len(s) == 1:
		return "-" + s
	}
	return "--" + s
}

// suggest returns the candidate closest to typed: one that typed starts
// with ("publish" -> "pub") or that starts with typed ("sim" ->
// "simulate-sensor"), else one at most two edits away (a transposition
// counts as one edit: "tpoic" -> "topic"). It returns "" when nothing is
// close.
func suggest(candidates []string, typed string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if len(c) < 2 {
			continue // single letters are too easy to reach
		}
		var d int
		switch {
		case c == typed:
			continue
		case len(c) >= 3 && strings.HasPrefix(typed, c), len(typed) >= 3 && strings.HasPrefix(c, typed):
			d = 0
		default:
			d = editDistance(c, typed)
			if d > len(typed)/2 {
				continue
			}
		}
		if d < bestD || (d == bestD && len(c) < len(best)) {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and
// b: insertions, deletions, substitutions and swaps of neighbours.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// noArgs rejects positional arguments: mosquitto's tools take none, and
// urfave/cli stops parsing flags at the first one (urfave/cli#1177).
func noArgs(c *cli.Context) error {
	if c.Args().Present() {
		return &UsageError{Cmd: c.Command.Name, Err: fmt.Errorf("unexpected argument %q (flags must come before any argument; quote values with spaces)", c.Args().First())}
	}
	return nil
}

// withCmd names the command in a usage error from complete().
func withCmd(c *cli.Context, err error) error {
	var ue *UsageError
	if errors.As(err, &ue) && ue.Cmd == "" {
		ue.Cmd = c.Command.Name
	}
	return err
}
