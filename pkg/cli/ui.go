// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/mqttkit/mqttkit/pkg/client"
	"github.com/mqttkit/mqttkit/pkg/ui"
)

// UIOptions holds everything `mqtt ui` needs once flags are parsed.
type UIOptions struct {
	Conn   ConnOptions
	Topics stringList // -t, repeatable; default #
	QoS    int        // -q
	HTTP   string     // --http ADDR
	Open   bool       // --open

	cfg    *client.Config
	subs   []client.Subscription
	limits ui.Limits
	// open opens the dashboard in a browser; tests replace it.
	open func(url string) error
	// ready, if set, is called with the dashboard's URL and hub once it
	// serves (tests).
	ready func(url string, h *ui.Hub)
	// retryDelay is the wait between connection attempts (1 s);
	// refusedDelay the wait after the broker refused the connection (30 s).
	retryDelay, refusedDelay time.Duration
	// urlOut is where the "Dashboard: URL" line goes (nil: stdout);
	// mqtt demo --ui sends it to stderr, since its stdout carries messages.
	urlOut io.Writer
	// onConnect, if set, is called after each successful connection.
	onConnect func()
}

func newUICmd(d *Deps, runF func(context.Context, *Deps, *UIOptions) error) *cli.Command {
	o := &UIOptions{}
	return &cli.Command{
		Name:  "ui",
		Usage: "show a live dashboard of a broker's topics in the browser",
		UsageText: `mqtt ui --open
mqtt ui -h broker.local -t 'sensor/#' --http 127.0.0.1:8080
mqtt ui --profile hivemq -t 'course/#'`,
		Description: `Subscribes to the topic filters (default: #) and serves a page that shows,
live, the topic tree with message counts, rates and the last payload of each
topic, a chart for every topic whose payloads carry a number, a message log
that can be paused and filtered, a form to publish, and the connection state.
The page is embedded in mqtt and loads nothing from elsewhere. It listens on
127.0.0.1 on a free port unless --http says otherwise, and prints its URL on
stdout. Lost connections are retried every second; Ctrl-C stops. See docs/ui.md.`,
		Flags: append(connFlags(&o.Conn),
			&cli.GenericFlag{Name: "topic", Aliases: []string{"t"}, Value: &o.Topics, Usage: "topic filter to show (repeatable) (default: #)"},
			&cli.IntFlag{Name: "qos", Aliases: []string{"q"}, Destination: &o.QoS, Usage: "quality of service to subscribe with: 0, 1 or 2"},
			&cli.StringFlag{Name: "http", Destination: &o.HTTP, Value: "127.0.0.1:0", DefaultText: "127.0.0.1 on a free port", Usage: "address the dashboard listens on, HOST:PORT or PORT (anything but loopback lets others read and publish)"},
			&cli.BoolFlag{Name: "open", Destination: &o.Open, Usage: "open the dashboard in the default browser"},
		),
		Action: func(c *cli.Context) error {
			if err := o.complete(c, d); err != nil {
				return withCmd(c, err)
			}
			if runF != nil {
				return runF(c.Context, d, o)
			}
			return runUI(c.Context, d, o)
		},
	}
}

// complete checks the flags and fills the derived fields.
func (o *UIOptions) complete(c *cli.Context, d *Deps) error {
	if err := noArgs(c); err != nil {
		return err
	}
	cfg, err := o.Conn.clientConfig(d)
	if err != nil {
		return err
	}
	o.cfg = cfg
	if o.Conn.URLTopic != "" {
		_ = o.Topics.Set(o.Conn.URLTopic)
	}
	if len(o.Topics) == 0 {
		_ = o.Topics.Set("#")
	}
	if o.QoS < 0 || o.QoS > 2 {
		return usageErrorf("Invalid QoS given: %d", o.QoS)
	}
	for _, t := range o.Topics {
		if err := client.ValidateFilter(t); err != nil {
			return &UsageError{Err: err}
		}
	}
	addr, err := httpAddr(o.HTTP)
	if err != nil {
		return err
	}
	o.HTTP = addr
	o.subs = uiSubscriptions(o.Topics, byte(o.QoS))
	return nil
}

func uiSubscriptions(filters []string, qos byte) []client.Subscription {
	subs := make([]client.Subscription, 0, len(filters))
	for _, f := range filters {
		subs = append(subs, client.Subscription{Filter: f, QoS: qos})
	}
	return subs
}

// httpAddr checks --http: HOST:PORT, :PORT (every interface) or a bare
// PORT (loopback).
func httpAddr(s string) (string, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 65535 {
			return "", usageErrorf("--http: invalid port %d", n)
		}
		return net.JoinHostPort("127.0.0.1", s), nil
	}
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return "", usageErrorf("--http %q: want HOST:PORT, :PORT or PORT", s)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return "", usageErrorf("--http %q: invalid port %q", s, port)
	}
	return s, nil
}

// runUI serves the dashboard and feeds it from one MQTT connection until
// ctx ends. Connection failures never end it: the page shows them and the
// connection is retried.
func runUI(ctx context.Context, d *Deps, o *UIOptions) error {
	if o.retryDelay == 0 {
		o.retryDelay = time.Second
	}
	if o.refusedDelay == 0 {
		o.refusedDelay = 30 * time.Second
	}
	lhost, _, _ := net.SplitHostPort(o.HTTP)
	loopback := ui.IsLoopback(lhost)
	ln, err := net.Listen("tcp", o.HTTP)
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	conn := &uiConn{}
	hub := ui.New(ui.Options{Limits: o.limits, Publish: conn.publish, Log: d.Log, LoopbackOnly: loopback, Now: d.Now})
	hub.SetState(ui.State{Status: ui.StatusConnecting, Broker: describe(o.cfg)})

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{
		Handler:           hub.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx }, // ends the event streams
	}
	var wg sync.WaitGroup
	wg.Go(func() { hub.Run(ctx) })
	serveErr := make(chan error, 1)
	wg.Go(func() { serveErr <- srv.Serve(ln) })
	defer func() {
		cancel()
		sctx, scancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer scancel()
		_ = srv.Shutdown(sctx)
		wg.Wait()
	}()

	url := dashboardURL(ln.Addr().(*net.TCPAddr), lhost)
	urlOut := o.urlOut
	if urlOut == nil {
		urlOut = d.IO.Out
	}
	fmt.Fprintf(urlOut, "Dashboard: %s\n", url)
	if !loopback {
		fmt.Fprintf(d.IO.ErrOut, "Warning: the dashboard listens on %s, not on loopback only: anyone who can reach it can read every message it shows and publish to %s.\n", ln.Addr(), describe(o.cfg))
	}
	if o.Open {
		open := o.open
		if open == nil {
			open = openBrowser
		}
		if err := open(url); err != nil {
			fmt.Fprintf(d.IO.ErrOut, "Could not open a browser (%v): open %s yourself.\n", err, url)
		}
	}
	if o.ready != nil {
		o.ready(url, hub)
	}

	r := &uiRun{d: d, o: o, hub: hub, conn: conn}
	err = r.loop(ctx, serveErr)
	hub.SetState(ui.State{Status: ui.StatusStopped, Broker: describe(o.cfg)})
	return err
}

// dashboardURL is the address to open: a listener on every interface is
// opened through loopback.
func dashboardURL(a *net.TCPAddr, host string) string {
	h := host
	if a.IP.IsUnspecified() || h == "" {
		h = "127.0.0.1"
	} else if ip := net.ParseIP(h); ip == nil {
		h = host // a name, as given
	} else {
		h = a.IP.String()
	}
	return "http://" + net.JoinHostPort(h, strconv.Itoa(a.Port)) + "/"
}

// openBrowser opens url with the desktop's opener.
func openBrowser(url string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.Command("open", url)
	case "windows":
		cmd = exec.Command("rundll32", "url.dll,FileProtocolHandler", url)
	default:
		cmd = exec.Command("xdg-open", url)
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	go func() { _ = cmd.Wait() }() // reap it; its status does not matter
	return nil
}

// uiConn holds the current MQTT connection for the publish form.
type uiConn struct {
	mu sync.Mutex
	cl client.Client
}

func (c *uiConn) set(cl client.Client) {
	c.mu.Lock()
	c.cl = cl
	c.mu.Unlock()
}

func (c *uiConn) publish(ctx context.Context, m *client.Message) error {
	c.mu.Lock()
	cl := c.cl
	c.mu.Unlock()
	if cl == nil {
		return fmt.Errorf("not connected to the broker: %w", client.ErrNotConnected)
	}
	return cl.Publish(ctx, m)
}

// uiRun is the connection state machine of one `mqtt ui` run.
type uiRun struct {
	d    *Deps
	o    *UIOptions
	hub  *ui.Hub
	conn *uiConn
	cl   client.Client
}

func (r *uiRun) connect(ctx context.Context) connResult {
	cl, err := r.d.Dial(ctx, r.o.cfg, r.hub.Add)
	if err != nil {
		var ce *client.ConnectError
		return connResult{err: err, fatal: errors.As(err, &ce)}
	}
	codes, err := cl.Subscribe(ctx, r.o.subs)
	if err != nil {
		_ = cl.Disconnect(context.WithoutCancel(ctx))
		return connResult{err: fmt.Errorf("subscribe: %w", err)}
	}
	denied := 0
	for _, c := range codes {
		if c >= 0x80 {
			denied++
		}
	}
	if len(codes) > 0 && denied == len(codes) {
		_ = cl.Disconnect(context.WithoutCancel(ctx))
		return connResult{err: errAllDenied, fatal: true}
	}
	return connResult{cl: cl}
}

// reason is the one-line explanation of a connection failure.
func (r *uiRun) reason(err error) string {
	msg := message(r.o.Conn.explain(err))
	msg = strings.TrimPrefix(msg, "Error: ")
	msg = strings.TrimPrefix(msg, "Connection error: ")
	return strings.ReplaceAll(msg, "\n", ": ")
}

func (r *uiRun) loop(ctx context.Context, serveErr <-chan error) error {
	o, broker := r.o, describe(r.o.cfg)
	results := make(chan connResult, 1)
	pending := false
	attempt := func() {
		pending = true
		go func() { results <- r.connect(ctx) }()
	}
	defer func() {
		if pending {
			if res := <-results; res.cl != nil {
				r.cl = res.cl
			}
		}
		r.conn.set(nil)
		if r.cl != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), disconnectTimeout)
			defer cancel()
			_ = r.cl.Disconnect(dctx)
		}
	}()
	say := func(format string, a ...any) {
		if !o.Conn.Quiet {
			fmt.Fprintf(r.d.IO.ErrOut, format+"\n", a...)
		}
	}
	attempt()
	var retry <-chan time.Time
	var lost <-chan struct{}
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-serveErr:
			if errors.Is(err, http.ErrServerClosed) {
				return nil
			}
			return fmt.Errorf("dashboard: %w", err)
		case res := <-results:
			pending = false
			if res.err != nil {
				if ctx.Err() != nil {
					return nil
				}
				why := r.reason(res.err)
				delay := o.retryDelay
				status := ui.StatusReconnecting
				if res.fatal {
					status, delay = ui.StatusRefused, o.refusedDelay
				}
				r.hub.SetState(ui.State{Status: status, Detail: fmt.Sprintf("%s (retrying every %v)", why, delay), Broker: broker})
				if why != lastErr {
					say("Cannot connect to %s: %s. Retrying every %v.", broker, why, delay)
					lastErr = why
				}
				retry = time.After(delay)
				continue
			}
			r.cl = res.cl
			r.conn.set(res.cl)
			lost = res.cl.Done()
			if lastErr != "" {
				say("Connected to %s.", broker)
			}
			lastErr = ""
			r.hub.SetState(ui.State{Status: ui.StatusConnected, Detail: fmt.Sprintf("%s, subscribed to %s", protoName(r.o.cfg), strings.Join(o.Topics, " ")), Broker: broker})
			if o.onConnect != nil {
				o.onConnect()
			}
		case <-lost:
			why := "connection closed"
			if err := r.cl.Err(); err != nil {
				why = r.reason(err)
			}
			r.conn.set(nil)
			r.cl, lost = nil, nil
			r.hub.SetState(ui.State{Status: ui.StatusReconnecting, Detail: fmt.Sprintf("connection lost (%s)", why), Broker: broker})
			say("Connection to %s lost (%s). Reconnecting every %v.", broker, why, o.retryDelay)
			lastErr = "lost"
			retry = time.After(o.retryDelay)
		case <-retry:
			retry = nil
			attempt()
		}
	}
}

// protoName names the protocol version a configuration asks for.
func protoName(cfg *client.Config) string {
	switch cfg.Version {
	case client.V311:
		return "MQTT 3.1.1"
	case client.V31:
		return "MQTT 3.1"
	}
	if cfg.Fallback311 {
		return "MQTT 5 (or 3.1.1)"
	}
	return "MQTT 5"
}
