// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// PubOptions holds everything `mqtt pub` needs once flags are parsed.
type PubOptions struct {
	Conn    ConnOptions
	Topic   string
	Message string
	QoS     int
	Retain  bool

	cfg  *client.Config
	body []byte
}

func newPubCmd(d *Deps, runF func(context.Context, *Deps, *PubOptions) error) *cli.Command {
	o := &PubOptions{}
	return &cli.Command{
		Name:  "pub",
		Usage: "publish a message to a broker (like mosquitto_pub)",
		UsageText: `mqtt pub -t sensor/temp -m 'Temperature: 23.4°C'
mqtt pub -h broker.local -t alerts -m fire -q 2 -r
MQTT_PASSWORD=secret mqtt pub -u alice -t a/b -m hi`,
		Flags: append(connFlags(&o.Conn),
			&cli.StringFlag{Name: "topic", Aliases: []string{"t"}, Destination: &o.Topic, Usage: "topic to publish to"},
			&cli.StringFlag{Name: "message", Aliases: []string{"m"}, Destination: &o.Message, Usage: "message payload"},
			&cli.IntFlag{Name: "qos", Aliases: []string{"q"}, Destination: &o.QoS, Usage: "quality of service: 0, 1 or 2"},
			&cli.BoolFlag{Name: "retain", Aliases: []string{"r"}, Destination: &o.Retain, Usage: "ask the broker to retain the message"},
		),
		Action: func(c *cli.Context) error {
			if err := o.complete(c, d); err != nil {
				return withCmd(c, err)
			}
			if runF != nil {
				return runF(c.Context, d, o)
			}
			return runPub(c.Context, d, o)
		},
	}
}

// complete checks flag combinations and fills the derived fields.
func (o *PubOptions) complete(c *cli.Context, d *Deps) error {
	if err := noArgs(c); err != nil {
		return err
	}
	cfg, err := o.Conn.clientConfig(d)
	if err != nil {
		return err
	}
	o.cfg = cfg
	if o.QoS < 0 || o.QoS > 2 {
		return usageErrorf("Invalid QoS given: %d", o.QoS)
	}
	if o.Topic == "" || !c.IsSet("message") {
		return usageErrorf("Both topic and message must be supplied.")
	}
	if err := client.ValidateTopic(o.Topic); err != nil {
		return &UsageError{Err: err}
	}
	o.body = []byte(o.Message)
	return nil
}

// runPub connects, publishes once and disconnects. At QoS 1 and 2 it
// returns only after the broker acknowledged the message.
func runPub(ctx context.Context, d *Deps, o *PubOptions) error {
	cl, err := d.Dial(ctx, o.cfg, nil)
	if err != nil {
		return o.Conn.runtimeErr(err)
	}
	err = cl.Publish(ctx, &client.Message{Topic: o.Topic, Payload: o.body, QoS: byte(o.QoS), Retain: o.Retain})
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = cl.Disconnect(dctx)
	return o.Conn.runtimeErr(err)
}
