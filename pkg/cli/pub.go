// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/client"
)

// maxPayload is the largest payload MQTT can carry; mosquitto_pub checks it.
const maxPayload = 268435455

// Message sources of `mqtt pub`; exactly one is used.
const (
	srcNone    = iota
	srcMessage // -m
	srcFile    // -f
	srcStdin   // -s
	srcLines   // -l
	srcNull    // -n
)

// PubOptions holds everything `mqtt pub` needs once flags are parsed.
type PubOptions struct {
	Conn        ConnOptions
	Topic       string
	Message     string
	File        string
	QoS         int
	Retain      bool
	Repeat      int
	RepeatDelay float64 // seconds
	MaxInflight int
	Props       *Properties

	source int
	cfg    *client.Config

	message, file      countedString
	stdin, lines, null int
	props              propertyArgs
}

// countedString is a string flag that remembers how often it was given:
// mosquitto refuses a second message source, even a second -m.
type countedString struct {
	val string
	n   int
}

func (c *countedString) Set(s string) error {
	if s != aliasCopy {
		c.val, c.n = s, c.n+1
	}
	return nil
}

// Serialize is what urfave/cli copies to the flag's other names.
func (c *countedString) Serialize() string { return aliasCopy }
func (c *countedString) String() string {
	if c == nil {
		return ""
	}
	return c.val
}

func newPubCmd(d *Deps, runF func(context.Context, *Deps, *PubOptions) error) *cli.Command {
	o := &PubOptions{}
	return &cli.Command{
		Name:  "pub",
		Usage: "publish messages to a broker (like mosquitto_pub)",
		UsageText: `mqtt pub -t sensor/temp -m 'Temperature: 23.4°C'
mqtt pub -h broker.local -t alerts -m fire -q 2 -r
tail -f app.log | mqtt pub -t logs/app -l -q 1
mqtt pub -t a/b -m '{"t":21}' -D publish content-type application/json`,
		Flags: append(connFlags(&o.Conn),
			&cli.StringFlag{Name: "topic", Aliases: []string{"t"}, Destination: &o.Topic, Usage: "topic to publish to"},
			&cli.GenericFlag{Name: "message", Aliases: []string{"m"}, Value: &o.message, Usage: "message payload"},
			&cli.GenericFlag{Name: "file", Aliases: []string{"f"}, Value: &o.file, Usage: "send the contents of a file as the message (binary safe)"},
			&cli.BoolFlag{Name: "stdin-file", Aliases: []string{"s"}, Count: &o.stdin, Usage: "read the message from stdin, sending the entire input as one message"},
			&cli.BoolFlag{Name: "stdin-line", Aliases: []string{"l"}, Count: &o.lines, Usage: "read messages from stdin, sending each line as a message (reconnects and resends: nothing is lost)"},
			&cli.BoolFlag{Name: "null-message", Aliases: []string{"n"}, Count: &o.null, Usage: "send a zero-length message"},
			&cli.IntFlag{Name: "qos", Aliases: []string{"q"}, Destination: &o.QoS, Usage: "quality of service: 0, 1 or 2"},
			&cli.BoolFlag{Name: "retain", Aliases: []string{"r"}, Destination: &o.Retain, Usage: "ask the broker to retain the message"},
			&cli.IntFlag{Name: "repeat", Value: 1, Destination: &o.Repeat, Usage: "publish the message this many times (not with -l)"},
			&cli.Float64Flag{Name: "repeat-delay", Destination: &o.RepeatDelay, Usage: "seconds to wait after one repeat completed before the next"},
			&cli.IntFlag{Name: "max-inflight", Aliases: []string{"M"}, Value: 20, Destination: &o.MaxInflight, Usage: "most QoS 1 and 2 messages awaiting acknowledgement at once"},
			propertyFlag(&o.props, "MQTT 5 property: -D COMMAND PROPERTY VALUE (COMMAND: connect, publish, disconnect, will; user-property takes NAME VALUE)"),
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
	o.Message, o.File = o.message.val, o.file.val
	sources := 0
	for _, s := range []struct{ n, src int }{{o.message.n, srcMessage}, {o.file.n, srcFile}, {o.stdin, srcStdin}, {o.lines, srcLines}, {o.null, srcNull}} {
		if s.n > 0 {
			sources += s.n
			o.source = s.src
		}
	}
	if sources > 1 {
		return usageErrorf("Only one type of message can be sent at once.")
	}
	// --password-prompt must not read the messages as the password.
	o.Conn.StdinBusy = o.source == srcStdin || o.source == srcLines
	cfg, err := o.Conn.clientConfig(d)
	if err != nil {
		return err
	}
	o.cfg = cfg
	if o.Topic == "" {
		o.Topic = o.Conn.URLTopic // -L: -t wins when both are given
	}
	if o.QoS < 0 || o.QoS > 2 {
		return usageErrorf("Invalid QoS given: %d", o.QoS)
	}
	if c.IsSet("repeat") && o.Repeat < 1 {
		return usageErrorf("--repeat argument must be >0.")
	}
	if o.RepeatDelay < 0 {
		return usageErrorf("--repeat-delay argument must be >=0.0.")
	}
	if o.MaxInflight < 1 {
		return usageErrorf("Maximum inflight messages must be greater than 0.")
	}
	if (o.Topic == "" && !c.IsSet("topic")) || o.source == srcNone {
		return usageErrorf("Both topic and message must be supplied.")
	}
	if o.Topic == "" {
		return usageErrorf("Invalid publish topic '': a topic must not be empty.")
	}
	if err := client.ValidateTopic(o.Topic); err != nil {
		return &UsageError{Err: err}
	}
	if len(o.Message) > maxPayload {
		return usageErrorf("Message length must be less than %d bytes.", maxPayload)
	}
	props, err := parseProperties(o.props.raw, "mqtt pub", pkConnect, pkPublish, pkDisconnect, pkWill)
	if err != nil {
		return err
	}
	if err := props.applyConnect(cfg); err != nil {
		return err
	}
	o.Props = props
	return nil
}

// loadPayload reads the payload of -m, -f, -s or -n, before connecting
// (as mosquitto_pub does). Errors use mosquitto's two lines.
func (o *PubOptions) loadPayload(d *Deps) ([]byte, error) {
	switch o.source {
	case srcMessage:
		return []byte(o.Message), nil
	case srcFile:
		fail := func() ([]byte, error) {
			return nil, fmt.Errorf("Unable to open file \"%s\".\nError loading input file \"%s\".", o.File, o.File)
		}
		f, err := os.Open(o.File)
		if err != nil {
			return fail()
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || st.IsDir() {
			return fail()
		}
		if st.Size() > maxPayload {
			return nil, fmt.Errorf("File must be less than %d bytes.\nError loading input file \"%s\".", maxPayload, o.File)
		}
		b, err := io.ReadAll(f)
		if err != nil {
			return fail()
		}
		return b, nil
	case srcStdin:
		b, err := io.ReadAll(io.LimitReader(d.IO.In, maxPayload+1))
		if err != nil {
			return nil, fmt.Errorf("reading stdin: %v\nError loading input from stdin.", err)
		}
		if len(b) > maxPayload {
			return nil, fmt.Errorf("Message length must be less than %d bytes.\nError loading input from stdin.", maxPayload)
		}
		if len(b) == 0 {
			return nil, errors.New("Zero length input.\nError loading input from stdin.")
		}
		return b, nil
	}
	return nil, nil // -n, -l
}

// runPub connects, publishes and disconnects. It returns only when every
// QoS 1 and 2 message is acknowledged. A message the broker refuses (MQTT 5
// reason code >= 128) is reported like mosquitto_pub does, but, unlike
// mosquitto_pub, makes the exit status 1.
func runPub(ctx context.Context, d *Deps, o *PubOptions) error {
	body, err := o.loadPayload(d)
	if err != nil {
		return err
	}
	sopts := client.StreamOptions{MaxInflight: o.MaxInflight, Reconnect: o.source == srcLines}
	if o.Props != nil {
		sopts.Disconnect = o.Props.Disconnect
	}
	st, err := client.OpenStream(ctx, o.cfg, sopts)
	if err != nil {
		if errors.As(err, new(*client.ConnectError)) {
			err = &pubRefusedError{err: err}
		}
		return o.Conn.runtimeErr(err)
	}
	failed := 0
	report := func() {
		for _, f := range st.TakeFailures() {
			failed++
			if o.Conn.Quiet {
				continue
			}
			fmt.Fprintf(d.IO.ErrOut, "Warning: Publish %d failed: %s.\n", f.MID, client.ReasonText(f.Err.Code))
			if f.Err.Reason != "" {
				fmt.Fprintln(d.IO.ErrOut, f.Err.Reason)
			}
		}
	}
	m := &client.Message{Topic: o.Topic, QoS: byte(o.QoS), Retain: o.Retain}
	if o.Props != nil {
		m.Props = o.Props.Publish
	}
	if o.source == srcLines {
		err = publishLines(ctx, st, m, d.IO.In, report)
	} else {
		m.Payload = body
		err = publishRepeat(ctx, st, m, o.Repeat, time.Duration(o.RepeatDelay*float64(time.Second)), report)
	}
	var tooLarge *client.PacketTooLargeError
	switch {
	case err == nil:
		err = st.Close(ctx)
	case errors.As(err, &tooLarge) || errors.Is(err, client.ErrQoSNotSupported):
		// The stream is fine: deliver what was published before the bad
		// message, then report it.
		if cerr := st.Close(ctx); cerr != nil {
			err = cerr
		}
	default:
		st.Abort()
	}
	report()
	if err != nil {
		return o.Conn.runtimeErr(err)
	}
	if failed > 0 {
		noun := "message was"
		if failed > 1 {
			noun = "messages were"
		}
		return o.Conn.runtimeErr(&ExitError{Code: ExitFailure, Err: fmt.Errorf("%d %s refused by the broker.", failed, noun)})
	}
	return nil
}

// publishRepeat publishes m n times. With a delay, each repeat waits for
// the previous one to complete (acknowledged, or written at QoS 0) and then
// for the delay, as mosquitto_pub does; without one, repeats are pipelined.
func publishRepeat(ctx context.Context, st *client.Stream, m *client.Message, n int, delay time.Duration, report func()) error {
	for i := 0; i < n; i++ {
		if err := st.Publish(ctx, m); err != nil {
			return err
		}
		if delay > 0 && i < n-1 {
			if err := st.Flush(ctx); err != nil {
				return err
			}
			report()
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			}
		}
	}
	return nil
}

// publishLines publishes each line of in as one message: the "\n" is
// removed ("\r" is kept), an empty line is a zero-length message and a last
// line without "\n" is sent, as with mosquitto_pub -l.
//
// stdin is read by a helper goroutine in large chunks, so that Ctrl-C is
// seen even while no input arrives; a read of stdin cannot be interrupted,
// so that goroutine may outlive the command (the process exits right after).
func publishLines(ctx context.Context, st *client.Stream, m *client.Message, in io.Reader, report func()) error {
	type chunk struct {
		b   []byte
		err error
	}
	const nbuf = 4
	free := make(chan []byte, nbuf)
	for i := 0; i < nbuf; i++ {
		free <- make([]byte, 64<<10)
	}
	data := make(chan chunk, nbuf)
	done := make(chan struct{})
	defer close(done)
	go func() {
		for {
			var buf []byte
			select {
			case buf = <-free:
			case <-done:
				return
			}
			n, err := in.Read(buf)
			select {
			case data <- chunk{buf[:n], err}:
			case <-done:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	var acc []byte // a line that spans chunks
	line := 0
	publish := func(payload []byte) error {
		line++
		m.Payload = payload
		if err := st.Publish(ctx, m); err != nil {
			var tl *client.PacketTooLargeError
			if errors.As(err, &tl) {
				return fmt.Errorf("line %d: %w", line, err)
			}
			return err
		}
		return nil
	}
	for {
		var c chunk
		select {
		case c = <-data:
		case <-ctx.Done():
			return ctx.Err()
		}
		b := c.b
		for len(b) > 0 {
			i := bytes.IndexByte(b, '\n')
			if i < 0 {
				acc = append(acc, b...)
				break
			}
			payload := b[:i]
			if len(acc) > 0 {
				acc = append(acc, payload...)
				payload = acc
			}
			if err := publish(payload); err != nil {
				return err
			}
			acc = acc[:0]
			b = b[i+1:]
		}
		if cap(c.b) > 0 {
			free <- c.b[:cap(c.b)]
		}
		report()
		if c.err == io.EOF {
			if len(acc) > 0 {
				return publish(acc)
			}
			return nil
		}
		if c.err != nil {
			return fmt.Errorf("reading stdin: %w", c.err)
		}
	}
}
