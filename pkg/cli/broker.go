// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/broker"
)

// BrokerOptions holds everything `mqtt broker` needs once flags are parsed.
type BrokerOptions struct {
	Port           int
	Bind           string
	AllowAnonymous bool
	Verbose        bool
	ReadyFile      string

	cfg broker.Config
}

func newBrokerCmd(d *Deps, runF func(context.Context, *Deps, *BrokerOptions) error) *cli.Command {
	o := &BrokerOptions{}
	return &cli.Command{
		Name:  "broker",
		Usage: "run an MQTT broker (like mosquitto)",
		UsageText: `mqtt broker                      # localhost:1883 only, anonymous clients allowed
mqtt broker --port 0 --ready-file addr.txt
mqtt broker --bind 0.0.0.0 --allow-anonymous -v`,
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "port", Aliases: []string{"p"}, Value: 1883, Destination: &o.Port, Usage: "port to listen on; 0 picks a free port"},
			&cli.StringFlag{Name: "bind", Destination: &o.Bind, Usage: "address to listen on (default: 127.0.0.1 and ::1 only)"},
			&cli.BoolFlag{Name: "allow-anonymous", Destination: &o.AllowAnonymous, Usage: "allow clients without a username on non-local listeners"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Destination: &o.Verbose, Usage: "log every client event"},
			&cli.StringFlag{Name: "ready-file", Destination: &o.ReadyFile, Usage: "write the first listener's address to this file once accepting connections"},
		},
		Action: func(c *cli.Context) error {
			if err := o.complete(c, d); err != nil {
				return withCmd(c, err)
			}
			if runF != nil {
				return runF(c.Context, d, o)
			}
			return runBroker(c.Context, d, o)
		},
	}
}

func (o *BrokerOptions) complete(c *cli.Context, d *Deps) error {
	if err := noArgs(c); err != nil {
		return err
	}
	if o.Port < 0 || o.Port > 65535 {
		return usageErrorf("Invalid port given: %d", o.Port)
	}
	o.cfg = broker.Config{Port: o.Port, AllowAnonymous: o.AllowAnonymous, Log: d.Log}
	if o.Bind != "" {
		o.cfg.Listeners = []broker.Listener{{Address: net.JoinHostPort(o.Bind, strconv.Itoa(o.Port))}}
	}
	return nil
}

// runBroker serves until ctx is cancelled, then shuts down cleanly.
func runBroker(ctx context.Context, d *Deps, o *BrokerOptions) error {
	if o.Verbose {
		d.Level.Set(slog.LevelDebug)
	}
	b, err := broker.New(o.cfg)
	if err != nil {
		return err
	}
	defer b.Close()
	if o.cfg.LocalOnly() {
		fmt.Fprintln(d.IO.ErrOut, "Starting in local only mode. Connections will only be possible from clients running on this machine.")
	}
	if err := b.Start(); err != nil {
		return err
	}
	for _, l := range b.Listeners() {
		fmt.Fprintf(d.IO.ErrOut, "listening on %s (%s)\n", l.Addr, l.Protocol)
	}
	if o.ReadyFile != "" {
		if err := writeReadyFile(o.ReadyFile, b.Addr()); err != nil {
			return err
		}
	}
	<-ctx.Done()
	d.Log.Info("shutting down")
	return nil
}

// writeReadyFile writes addr atomically so a watcher never sees it half written.
func writeReadyFile(path, addr string) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(addr+"\n"), 0o644); err != nil {
		return fmt.Errorf("ready file: %w", err)
	}
	return os.Rename(tmp, path)
}
