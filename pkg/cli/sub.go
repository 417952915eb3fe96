// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/acl"
	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/format"
)

// SubOptions holds everything `mqtt sub` needs once flags are parsed.
type SubOptions struct {
	Conn              ConnOptions
	Topics            stringList // -t, repeatable
	FilterOut         stringList // -T, repeatable
	Unsubscribe       stringList // -U, repeatable
	QoS               int        // -q
	Count             int        // -C, 0 = unlimited
	Timeout           int        // -W seconds, 0 = none
	ExitAfterSub      bool       // -E
	NoRetain          bool       // -R
	NoEOL             bool       // -N
	Verbose           bool       // -v
	Format            string     // -F (formatSet tells an empty format from none)
	JSON              bool       // --json
	Pretty            bool       // --pretty
	RetainedOnly      bool       // --retained-only
	RemoveRetained    bool       // --remove-retained
	RetainAsPublished bool       // --retain-as-published
	RandomFilter      string     // --random-filter percent
	Match             string     // --match REGEX
	NoColor           bool       // --no-color
	Props             propertyArgs

	cfg        *client.Config
	formatSet  bool
	printer    *format.Printer
	match      *regexp.Regexp
	chance     int // --random-filter in 1/10000 (percent × 100); 10000 prints everything
	subs       []client.Subscription
	subProps   *client.SubscribeProperties
	unsubUser  []client.UserProperty
	props      *Properties
	rand       func() int    // 0..9999, for --random-filter; tests replace it
	retryDelay time.Duration // reconnect interval (libmosquitto: 1 s)
}

// stringList is a repeatable string flag that keeps every value verbatim:
// urfave's StringSlice splits on commas and trims spaces, but a topic may
// contain both.
type stringList []string

// Set appends v; the copy urfave/cli makes for the flag's other names
// (see aliasCopy) is ignored.
func (l *stringList) Set(v string) error {
	if v != aliasCopy {
		*l = append(*l, v)
	}
	return nil
}

// String lists the values (for --help).
func (l *stringList) String() string { return strings.Join(*l, ", ") }

// Serialize is what urfave/cli copies to the flag's other names.
func (l *stringList) Serialize() string { return aliasCopy }

// countArg is -C or -W: a whole number checked in complete with
// mosquitto_sub's message (Invalid message count "abc".) instead of the
// flag parser's. Anything that is not a number counts as 0, which
// complete refuses; the text as typed is kept for the message.
type countArg struct {
	n   *int
	raw string
}

// Set stores v; it never fails, complete checks the value.
func (a *countArg) Set(v string) error {
	a.raw = v
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		n = 0
	}
	*a.n = n
	return nil
}

// String returns the value as typed.
func (a *countArg) String() string { return a.raw }

func newSubCmd(d *Deps, runF func(context.Context, *Deps, *SubOptions) error) *cli.Command {
	o := &SubOptions{}
	return &cli.Command{
		Name:  "sub",
		Usage: "subscribe to topics and print messages (like mosquitto_sub)",
		UsageText: `mqtt sub -t 'sensor/#' -v
mqtt sub -t sensor/temp --match '^Temperature: ' -C 1 -W 10
mqtt sub -t 'sensor/#' --json | jq .payload
mqtt sub -t 'sensor/#' -F '@H:@M:@S %t %p'`,
		Flags: append(connFlags(&o.Conn),
			&cli.GenericFlag{Name: "topic", Aliases: []string{"t"}, Value: &o.Topics, Usage: "topic filter to subscribe to (repeatable)"},
			&cli.GenericFlag{Name: "filter-out", Aliases: []string{"T"}, Value: &o.FilterOut, Usage: "do not print messages whose topic matches this filter (repeatable)"},
			&cli.GenericFlag{Name: "unsubscribe", Aliases: []string{"U"}, Value: &o.Unsubscribe, Usage: "unsubscribe from this filter after subscribing (repeatable; for persistent sessions)"},
			&cli.IntFlag{Name: "qos", Aliases: []string{"q"}, Destination: &o.QoS, Usage: "quality of service to subscribe with: 0, 1 or 2"},
			&cli.GenericFlag{Name: "count", Aliases: []string{"C"}, Value: &countArg{n: &o.Count}, Usage: "exit after this many messages"},
			&cli.GenericFlag{Name: "timeout", Aliases: []string{"W"}, Value: &countArg{n: &o.Timeout}, Usage: "exit with status 27 after this many seconds"},
			&cli.BoolFlag{Name: "exit-after-subscribe", Aliases: []string{"E"}, Destination: &o.ExitAfterSub, Usage: "exit once the subscription is acknowledged"},
			&cli.BoolFlag{Name: "no-retained", Aliases: []string{"R"}, Destination: &o.NoRetain, Usage: "do not print retained (stale) messages"},
			&cli.BoolFlag{Name: "no-eol", Aliases: []string{"N"}, Destination: &o.NoEOL, Usage: "do not print a newline after each message"},
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Destination: &o.Verbose, Usage: "print the topic before each payload"},
			&cli.StringFlag{Name: "format", Aliases: []string{"F"}, Destination: &o.Format, Usage: "mosquitto_sub output format (%t topic, %p payload, %j JSON, @H:@M time, ...; see docs/sub.md)"},
			&cli.BoolFlag{Name: "json", Destination: &o.JSON, Usage: "print one JSON object per message (schema: docs/json.md)"},
			&cli.BoolFlag{Name: "pretty", Destination: &o.Pretty, Usage: "indent JSON output (%j, %J, --json)"},
			&cli.BoolFlag{Name: "retained-only", Destination: &o.RetainedOnly, Usage: "print retained messages only; exit at the first live message"},
			&cli.BoolFlag{Name: "remove-retained", Destination: &o.RemoveRetained, Usage: "clear every retained message received (use -T to spare some)"},
			&cli.BoolFlag{Name: "retain-as-published", Destination: &o.RetainAsPublished, Usage: "MQTT 5: keep the retain flag as the publisher set it"},
			&cli.StringFlag{Name: "random-filter", Destination: &o.RandomFilter, Usage: "print each message with this probability in percent (0.1-100)"},
			&cli.StringFlag{Name: "match", Destination: &o.Match, Usage: "only payloads matching this regular expression are printed and counted by -C (-v prints all)"},
			&cli.BoolFlag{Name: "no-color", Destination: &o.NoColor, Usage: "never colour the output (also NO_COLOR)"},
			propertyFlag(&o.Props, "MQTT 5 property: -D COMMAND PROPERTY VALUE (COMMAND: connect, subscribe, unsubscribe, disconnect, will; user-property takes NAME VALUE)"),
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

// complete checks the flags with mosquitto_sub's rules and messages and
// fills the derived fields.
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
	if len(o.Topics) == 0 {
		return usageErrorf("You must specify a topic to subscribe to.")
	}
	for _, t := range o.Topics {
		if err := client.ValidateFilter(t); err != nil {
			return &UsageError{Err: err}
		}
	}
	for _, t := range o.FilterOut {
		if err := client.ValidateFilter(t); err != nil {
			return usageErrorf("Invalid filter topic '%s', are all '+' and '#' wildcards correct?", t)
		}
	}
	for _, t := range o.Unsubscribe {
		if err := client.ValidateFilter(t); err != nil {
			return usageErrorf("Invalid unsubscribe topic '%s', are all '+' and '#' wildcards correct?", t)
		}
	}
	if c.IsSet("count") && o.Count < 1 {
		return usageErrorf("Invalid message count \"%s\".", c.Generic("count"))
	}
	if c.IsSet("timeout") && o.Timeout < 1 {
		return usageErrorf("Invalid timeout \"%s\".", c.Generic("timeout"))
	}
	if o.NoRetain && o.RetainedOnly {
		return usageErrorf("Combining '-R' and '--retained-only' makes no sense.")
	}
	if o.RemoveRetained && cfg.Version == client.V31 {
		return usageErrorf("--remove-retained needs MQTT 3.1.1 or 5: MQTT 3.1 cannot clear a retained message (use -V 311 or -V 5).")
	}
	o.chance = 10000
	if c.IsSet("random-filter") {
		// A percentage with 0.1 steps. (mosquitto_sub multiplies by 10
		// instead of 100, so "--random-filter 50" prints 5% of the
		// messages there and values up to 1000 are accepted; see
		// docs/mosquitto.md.)
		p, err := strconv.ParseFloat(strings.TrimSpace(o.RandomFilter), 64)
		tenths := int(10 * p)
		if err != nil || tenths < 1 || tenths > 1000 {
			return usageErrorf("--random-filter chance must be between 0.1-100.0")
		}
		o.chance = tenths * 10
	}
	if o.Match != "" || c.IsSet("match") {
		re, err := regexp.Compile(o.Match)
		if err != nil {
			return usageErrorf("Invalid --match regular expression: %v", err)
		}
		o.match = re
	}
	if err := o.applyProperties(); err != nil {
		return err
	}

	o.formatSet = c.IsSet("format")
	if o.formatSet && o.JSON {
		return usageErrorf("--json and -F cannot be used together.")
	}
	popts := format.Options{Verbose: o.Verbose, JSON: o.JSON, Pretty: o.Pretty, NoEOL: o.NoEOL}
	if o.formatSet {
		t, err := format.Compile(o.Format)
		if err != nil {
			return usageErrorf("%s", err)
		}
		popts.Template = t
	} else if !o.JSON && d.IO.ColorEnabled() && !o.NoColor {
		popts.Palette = format.NewPalette(true)
	}
	if o.printer, err = format.NewPrinter(popts); err != nil {
		return &UsageError{Err: err}
	}

	o.subs = make([]client.Subscription, 0, len(o.Topics))
	for _, t := range o.Topics {
		s := client.Subscription{Filter: t, QoS: byte(o.QoS)}
		if cfg.Version == client.V5 {
			s.RetainAsPublished = o.RetainAsPublished
			if o.NoRetain {
				s.RetainHandling = 2 // do not send retained messages at subscribe time
			}
		}
		o.subs = append(o.subs, s)
	}
	if cfg.Version == client.V5 && o.Count > 0 && o.Count < 20 && (cfg.ConnectProps == nil || cfg.ConnectProps.ReceiveMaximum == nil) {
		// As mosquitto_sub: do not let the broker send (and us acknowledge)
		// more QoS 1/2 messages than -C will print.
		rm := uint16(o.Count)
		if cfg.ConnectProps == nil {
			cfg.ConnectProps = &client.ConnectProperties{}
		}
		cfg.ConnectProps.ReceiveMaximum = &rm
	}
	// A persistent session keeps what is not acknowledged for the next
	// run: acknowledge a QoS 1/2 message only once it went through the
	// pipeline and its output was written, so that a run ended by -C,
	// --retained-only, -W or a signal loses none of the messages the
	// broker had already sent it (mosquitto_sub does not lose them either).
	cfg.ManualAck = o.QoS > 0 && (!cfg.CleanStart || (cfg.SessionExpiry != nil && *cfg.SessionExpiry > 0))
	if o.rand == nil {
		o.rand = func() int { return rand.IntN(10000) }
	}
	if o.retryDelay == 0 {
		o.retryDelay = time.Second
	}
	return nil
}

// applyProperties parses the -D options with the shared parser: CONNECT
// and will properties go into the connection config, SUBSCRIBE and
// UNSUBSCRIBE ones are sent on every (re)subscription, DISCONNECT ones
// with the DISCONNECT that ends the run.
func (o *SubOptions) applyProperties() error {
	props, err := parseProperties(o.Props.raw, "mqtt sub", pkConnect, pkSubscribe, pkUnsubscribe, pkDisconnect, pkWill)
	if err != nil {
		return err
	}
	if err := props.applyConnect(o.cfg); err != nil {
		return err
	}
	o.props = props
	if sp := props.Subscribe; sp != nil {
		o.subProps = &client.SubscribeProperties{SubscriptionID: sp.SubscriptionID, User: sp.User}
	}
	o.unsubUser = props.Unsubscribe
	return nil
}

// subEnd is why the receive loop ended.
type subEnd int

const (
	endNone    subEnd = iota
	endDone           // -C reached, -E, --retained-only: exit 0
	endTimeout        // -W: exit 27
	endSignal         // Ctrl-C / SIGTERM: exit 0
)

// connResult is the outcome of one connect-and-subscribe attempt.
type connResult struct {
	cl    client.Client
	err   error
	fatal bool // stop instead of retrying (refused CONNACK, all subscriptions denied)
}

// subRun is the state of one `mqtt sub` run. Only the goroutine running
// loop touches it; paho's goroutines hand messages over through msgs.
type subRun struct {
	d    *Deps
	o    *SubOptions
	msgs chan delivery
	stop chan struct{} // closed when the run ends: releases blocked handlers

	cl       client.Client
	results  chan connResult // outcome of the connection attempt in flight
	pending  bool            // an attempt is in flight
	removals sync.WaitGroup  // --remove-retained publishes in flight
	// toRemove holds --remove-retained topics seen while no connection is
	// known to the loop (a retained message can arrive before the loop has
	// the connection result); they are cleared once it is.
	toRemove []string
	count    int
	// unacked are the messages of the batch being written, acknowledged
	// once the write succeeded (Config.ManualAck).
	unacked []*client.Message
	fm      format.Message
	fp      format.Properties
	out     []byte // rendered messages not yet written
}

// runSub connects, subscribes and prints messages until -C, -E,
// --retained-only, -W or a signal ends it. Lost connections are retried
// every second (like libmosquitto), resubscribing each time, with one line
// on stderr per outage; only the first connection attempt is not retried.
func runSub(ctx context.Context, d *Deps, o *SubOptions) error {
	// A write to a closed pipe then fails with EPIPE instead of killing
	// the process with SIGPIPE (exit 141, no DISCONNECT, so the broker
	// published the will): see flush.
	signal.Ignore(syscall.SIGPIPE)
	r := &subRun{d: d, o: o, msgs: make(chan delivery, handoff(o)), stop: make(chan struct{}), results: make(chan connResult, 1)}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var timeout <-chan time.Time
	if o.Timeout > 0 {
		t := time.NewTimer(time.Duration(o.Timeout) * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	end, err := r.loop(ctx, timeout)
	close(r.stop) // release handlers: nothing more is printed
	if len(r.toRemove) == 0 {
		cancel() // abort a connection attempt in flight
	}
	r.shutdown(ctx)
	switch {
	case err != nil:
		return err
	case end == endTimeout:
		if !o.Conn.Quiet {
			fmt.Fprintln(d.IO.ErrOut, "Timed out")
		}
		return &ExitError{Code: ExitTimeout, Err: errors.New("timed out"), Silent: true}
	}
	return nil
}

// handoff is the capacity of the channel between the client's goroutine
// and the loop. For QoS 0 a small queue lets the loop print a burst in one
// write and saves a goroutine switch per message. For QoS 1 and 2 it is 0:
// the client acknowledges a message when the handler returns, and a
// message acknowledged but still queued would be lost to a persistent
// session when -C, --retained-only or Ctrl-C ends the run.
func handoff(o *SubOptions) int {
	if o.QoS > 0 {
		return 0
	}
	return 256
}

// delivery is one received message and the connection it came on.
type delivery struct {
	m    *client.Message
	from *connHolder
}

// connHolder is the client of one connection attempt, known to its
// handler as soon as Dial returns (--remove-retained answers on the
// connection the retained message came on).
type connHolder struct {
	mu sync.Mutex
	cl client.Client
}

func (h *connHolder) set(cl client.Client) {
	h.mu.Lock()
	h.cl = cl
	h.mu.Unlock()
}

func (h *connHolder) get() client.Client {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cl
}

// handler returns the client.Handler of one connection: it hands each
// message to the loop and blocks until the loop took it, so messages are
// printed in order and a slow stdout slows the broker down instead of
// piling up.
func (r *subRun) handler(from *connHolder) client.Handler {
	return func(m *client.Message) {
		select {
		case r.msgs <- delivery{m: m, from: from}:
		case <-r.stop:
		}
	}
}

// connect dials, subscribes and sends the -U unsubscriptions.
func (r *subRun) connect(ctx context.Context) connResult {
	o := r.o
	from := &connHolder{}
	cl, err := r.d.Dial(ctx, o.cfg, r.handler(from))
	if err != nil {
		var ce *client.ConnectError
		return connResult{err: err, fatal: errors.As(err, &ce)}
	}
	from.set(cl)
	codes, err := cl.SubscribeProps(ctx, o.subs, o.subProps)
	if err != nil {
		if ctx.Err() != nil {
			// The run is ending (-C reached by messages that arrived
			// before the SUBACK was seen, or a signal): keep the client
			// for shutdown, which clears --remove-retained topics on it
			// and disconnects it.
			return connResult{cl: cl, err: ctx.Err()}
		}
		r.drop(cl)
		return connResult{err: fmt.Errorf("subscribe: %w", err)}
	}
	denied := 0
	for _, c := range codes {
		if c >= 0x80 {
			denied++
		}
	}
	if len(codes) > 0 && denied == len(codes) {
		r.drop(cl)
		return connResult{err: errAllDenied, fatal: true}
	}
	for _, f := range o.Unsubscribe {
		if err := cl.UnsubscribeProps(ctx, []string{f}, r.o.unsubUser); err != nil {
			if ctx.Err() != nil {
				return connResult{cl: cl, err: ctx.Err()}
			}
			r.drop(cl)
			return connResult{err: fmt.Errorf("unsubscribe %s: %w", f, err)}
		}
	}
	return connResult{cl: cl}
}

// errAllDenied is mosquitto_sub's message when every filter was refused;
// mqtt sub prints it as an error and exits 1 (nothing could ever arrive).
var errAllDenied = errors.New("All subscription requests were denied.")

// drop disconnects a client that is not kept.
func (r *subRun) drop(cl client.Client) {
	dctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = cl.Disconnect(dctx)
}

// loop runs the connection state machine and the message pipeline.
func (r *subRun) loop(ctx context.Context, timeout <-chan time.Time) (subEnd, error) {
	o := r.o
	attempt := func() {
		r.pending = true
		go func() { r.results <- r.connect(ctx) }()
	}
	attempt()
	first := true
	var retry <-chan time.Time
	var lost <-chan struct{}
	for {
		select {
		case <-ctx.Done():
			return endSignal, nil
		case <-timeout:
			return endTimeout, nil
		case res := <-r.results:
			r.pending = false
			if res.err != nil {
				if errors.Is(res.err, context.Canceled) && ctx.Err() != nil {
					r.cl = res.cl // shutdown disconnects it
					return endSignal, nil
				}
				if first || res.fatal {
					return endNone, o.Conn.runtimeErr(res.err)
				}
				r.d.Log.Debug("reconnect failed", "broker", o.cfg.Addr(), "err", res.err)
				retry = time.After(o.retryDelay)
				continue
			}
			first = false
			r.cl = res.cl
			lost = res.cl.Done()
			r.flushRemovals(ctx)
			if o.ExitAfterSub {
				return endDone, nil
			}
		case <-lost:
			reason := "connection closed"
			if err := r.cl.Err(); err != nil {
				reason = err.Error()
			}
			if !o.Conn.Quiet {
				fmt.Fprintf(r.d.IO.ErrOut, "Connection to %s lost (%s). Reconnecting every %v.\n", describe(o.cfg), reason, o.retryDelay)
			}
			r.cl, lost = nil, nil
			retry = time.After(o.retryDelay)
		case <-retry:
			retry = nil
			attempt()
		case m := <-r.msgs:
			end, err := r.handle(ctx, m)
			// Messages already waiting are rendered into the same write;
			// the output is flushed as soon as none is waiting, so a
			// reader of the pipe never waits for a message that arrived.
		batch:
			for end == endNone && err == nil && len(r.out) < maxBatch {
				select {
				case m = <-r.msgs:
					end, err = r.handle(ctx, m)
				default:
					break batch
				}
			}
			ferr := r.flush()
			if ferr == nil {
				for _, m := range r.unacked {
					m.Ack()
				}
			}
			clear(r.unacked)
			r.unacked = r.unacked[:0]
			if errors.Is(ferr, errReaderGone) && err == nil {
				// "mqtt sub ... | head -1": the reader is gone. As
				// mosquitto_sub: DISCONNECT (so no will) and exit 0.
				return endDone, nil
			}
			if err == nil {
				err = ferr
			}
			if end != endNone || err != nil {
				return end, err
			}
		}
	}
}

// handle runs one message through mosquitto_sub's pipeline: retained-only
// stop, -R, -T, --remove-retained, --match, --random-filter and printing,
// then -C counting.
func (r *subRun) handle(ctx context.Context, dv delivery) (subEnd, error) {
	o, m := r.o, dv.m
	if o.RetainedOnly && !m.Retain {
		return endDone, nil // not taken: it stays with the broker
	}
	r.unacked = append(r.unacked, m)
	if m.Retain && o.NoRetain {
		return endNone, nil
	}
	for _, f := range o.FilterOut {
		if acl.Match(f, m.Topic) {
			return endNone, nil
		}
	}
	if o.RemoveRetained && m.Retain {
		if cl := dv.from.get(); cl != nil {
			r.remove(ctx, cl, m.Topic)
		} else {
			// Dial has not returned yet (a session's queued message):
			// clear it once the loop has the connection.
			r.toRemove = append(r.toRemove, m.Topic)
			r.flushRemovals(ctx)
		}
	}
	matched := o.match == nil || o.match.Match(m.Payload)
	if (matched || o.Verbose) && (o.chance >= 10000 || o.rand() < o.chance) {
		if err := r.print(m); err != nil {
			return endNone, err
		}
	}
	if matched && o.Count > 0 {
		r.count++
		if r.count >= o.Count {
			return endDone, nil
		}
	}
	return endNone, nil
}

// flushRemovals clears the queued --remove-retained topics when connected.
func (r *subRun) flushRemovals(ctx context.Context) {
	if r.cl == nil {
		return
	}
	for _, t := range r.toRemove {
		r.remove(ctx, r.cl, t)
	}
	r.toRemove = r.toRemove[:0]
}

// remove publishes a zero-length retained message to topic. It does not
// wait for the acknowledgement (the client's reader may be waiting for this
// goroutine to take the next message); shutdown waits for it.
func (r *subRun) remove(ctx context.Context, cl client.Client, topic string) {
	r.removals.Add(1)
	go func() {
		defer r.removals.Done()
		// Not cancelled when the loop ends: -C may be reached right after.
		pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err := cl.Publish(pctx, &client.Message{Topic: topic, QoS: 1, Retain: true})
		if err != nil {
			r.d.Log.Warn("could not remove retained message", "topic", topic, "err", err)
		}
	}()
}

// maxBatch bounds the output gathered from messages that were already
// waiting before it is written.
const maxBatch = 64 << 10

// print renders m into the output buffer; flush writes it.
func (r *subRun) print(m *client.Message) error {
	fm := r.toFormat(m)
	var warn error
	r.out, warn = r.o.printer.Append(r.out, fm)
	if warn != nil && !r.o.Conn.Quiet {
		for _, e := range unwrapAll(warn) {
			fmt.Fprintln(r.d.IO.ErrOut, "Error: "+e.Error())
		}
	}
	return nil
}

// flush writes the buffered output with one write call.
func (r *subRun) flush() error {
	if len(r.out) == 0 {
		return nil
	}
	_, err := r.d.IO.Out.Write(r.out)
	if cap(r.out) > 4*maxBatch {
		r.out = nil // do not keep a huge message's buffer
	} else {
		r.out = r.out[:0]
	}
	if err != nil {
		if errors.Is(err, syscall.EPIPE) {
			return errReaderGone
		}
		return fmt.Errorf("write output: %w", err)
	}
	return nil
}

// errReaderGone is a write to stdout that failed because nothing reads
// it any more (a closed pipe).
var errReaderGone = errors.New("stdout closed")

// unwrapAll lists the errors joined in err.
func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// toFormat converts m into the reused format.Message (no allocation).
func (r *subRun) toFormat(m *client.Message) *format.Message {
	fm := &r.fm
	*fm = format.Message{Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, MID: m.MID, Time: m.Time}
	if fm.Time.IsZero() {
		fm.Time = r.d.Now()
	}
	if p := m.Props; p != nil {
		r.fp = format.Properties{
			PayloadFormat: p.PayloadFormat, MessageExpiry: p.MessageExpiry,
			ContentType: p.ContentType, HasContentType: p.ContentType != "",
			ResponseTopic: p.ResponseTopic, CorrelationData: p.CorrelationData,
			SubscriptionIDs: p.SubscriptionIDs, TopicAlias: p.TopicAlias,
			UserProps: r.fp.UserProps[:0],
		}
		for _, u := range p.User {
			r.fp.UserProps = append(r.fp.UserProps, format.UserProp{Key: u.Key, Value: u.Value})
		}
		fm.Properties = &r.fp
	}
	return fm
}

// removalWait bounds how long the end of a run waits for --remove-retained
// publishes to be acknowledged (mosquitto_sub waits without a limit).
const removalWait = 10 * time.Second

// shutdown waits for --remove-retained publishes (at most removalWait)
// and sends DISCONNECT (at most 2 s); a connection that completed while
// the loop was ending is closed too.
func (r *subRun) shutdown(ctx context.Context) {
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if r.pending {
		select {
		case res := <-r.results:
			if res.cl != nil {
				r.cl = res.cl
			}
		case <-dctx.Done():
		}
	}
	r.flushRemovals(ctx)
	done := make(chan struct{})
	go func() {
		r.removals.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(removalWait):
		r.d.Log.Warn("gave up waiting for the broker to acknowledge the removal of retained messages", "after", removalWait)
	}
	if r.cl != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		var dp *client.DisconnectProperties
		if r.o.props != nil {
			dp = r.o.props.Disconnect
		}
		_ = r.cl.DisconnectProps(dctx, dp)
	}
}
