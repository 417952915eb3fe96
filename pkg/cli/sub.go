// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// SubOptions holds everything `mqtt sub` needs once flags are parsed.
type SubOptions struct {
	Conn    ConnOptions
	Topics  cli.StringSlice
	QoS     int
	Verbose bool
	Count   int

	cfg *client.Config
}

func newSubCmd(d *Deps, runF func(context.Context, *Deps, *SubOptions) error) *cli.Command {
	o := &SubOptions{}
	return &cli.Command{
		Name:  "sub",
		Usage: "subscribe to topics and print messages (like mosquitto_sub)",
		UsageText: `mqtt sub -t sensor/temp
mqtt sub -t 'sensor/#' -v
mqtt sub -t sensor/temp -C 1 -q 1`,
		Flags: append(connFlags(&o.Conn),
			&cli.StringSliceFlag{Name: "topic", Aliases: []string{"t"}, Destination: &o.Topics, Usage: "topic filter to subscribe to (repeatable)"},
			&cli.IntFlag{Name: "qos", Aliases: []string{"q"}, Destination: &o.QoS, Usage: "quality of service: 0, 1 or 2"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Destination: &o.Verbose, Usage: "print the topic before each payload"},
			&cli.IntFlag{Name: "count", Aliases: []string{"C"}, Destination: &o.Count, Usage: "exit after this many messages"},
		),
		Action: func(c *cli.Context) error {
			if err := o.complete(c, d); err != nil {
				return withCmd(c, err)
			}
			if runF != nil {
				return runF(c.Context, d, o)
			}
			return runSub(c.Context, d, o)
		},
	}
}

func (o *SubOptions) complete(c *cli.Context, d *Deps) error {
	if err := noArgs(c); err != nil {
		return err
	}
	cfg, err := o.Conn.clientConfig(d)
	if err != nil {
		return err
	}
	o.cfg = cfg
	if o.Conn.URLTopic != "" {
		_ = o.Topics.Set(o.Conn.URLTopic) // -L adds its topic to the -t list
	}
	if o.QoS < 0 || o.QoS > 2 {
		return usageErrorf("Invalid QoS given: %d", o.QoS)
	}
	if len(o.Topics.Value()) == 0 {
		return usageErrorf("You must specify a topic to subscribe to.")
	}
	for _, t := range o.Topics.Value() {
		if err := client.ValidateFilter(t); err != nil {
			return &UsageError{Err: err}
		}
	}
	if c.IsSet("count") && o.Count < 1 {
		return usageErrorf("Invalid message count \"%d\".", o.Count)
	}
	return nil
}

// runSub subscribes and prints messages until -C is reached or ctx ends.
// The paho handler only hands messages to this goroutine, which alone
// writes to stdout.
func runSub(ctx context.Context, d *Deps, o *SubOptions) error {
	msgs := make(chan *client.Message, 1024)
	cl, err := d.Dial(ctx, o.cfg, func(m *client.Message) {
		select {
		case msgs <- m:
		case <-ctx.Done():
		}
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return o.Conn.runtimeErr(err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = cl.Disconnect(dctx)
	}()
	subs := make([]client.Subscription, 0, len(o.Topics.Value()))
	for _, t := range o.Topics.Value() {
		subs = append(subs, client.Subscription{Filter: t, QoS: byte(o.QoS)})
	}
	codes, err := cl.Subscribe(ctx, subs)
	if err != nil {
		return o.Conn.runtimeErr(fmt.Errorf("subscribe: %w", err))
	}
	denied := 0
	for _, c := range codes {
		if c >= 0x80 {
			denied++
		}
	}
	if len(codes) > 0 && denied == len(codes) {
		return o.Conn.runtimeErr(errors.New("All subscription requests were denied."))
	}
	w := bufio.NewWriter(d.IO.Out)
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-cl.Done():
			return o.Conn.runtimeErr(cl.Err())
		case m := <-msgs:
			if o.Verbose {
				if len(m.Payload) == 0 {
					fmt.Fprintf(w, "%s (null)\n", m.Topic)
				} else {
					fmt.Fprintf(w, "%s %s\n", m.Topic, m.Payload)
				}
			} else if len(m.Payload) > 0 {
				w.Write(m.Payload)
				w.WriteByte('\n')
			}
			if err := w.Flush(); err != nil {
				return err
			}
			n++
			if o.Count > 0 && n >= o.Count {
				return nil
			}
		}
	}
}
