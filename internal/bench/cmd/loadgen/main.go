// SPDX-License-Identifier: Apache-2.0

// Command loadgen generates and verifies MQTT benchmark traffic for
// scripts/bench. Each subcommand prints one JSON result line on stdout
// (subscribers print "ready" first, once subscribed) and stops by itself
// within -timeout. Run `loadgen` without arguments for the list.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mqttkit/mqttkit/internal/bench"
	"github.com/mqttkit/mqttkit/internal/bench/loadgen"
)

const usage = `usage: loadgen COMMAND [flags]

commands:
  lines    -n N [-size B]                        write N payload lines for pub -l to stdout
  sub      -addr A -t FILTER -n N [-q Q] [-subs K] [-wait-stdin] [-stride S]
                                                 count and verify messages; prints "ready" once subscribed
  pub      -addr A -t TOPIC -n N [-q Q] [-c CONNS] publish N messages per connection, pipelined
  fan      -addr A -t TOPIC -n N -pubs P -subs S [-q Q]
                                                 P publishers x N messages to S subscribers; throughput
  latency  -addr A -t TOPIC -rate R -n N [-q Q]   end-to-end latency at a fixed rate
  idle     -addr A -n N [-raw]                   open N idle connections (-raw: TCP only, no CONNECT);
                                                 prints "ready {json}", holds until stdin closes

Every command stops by itself within -timeout (default 60s).`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, usage)
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run(cmd string, args []string) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:1883", "broker address host:port")
	topic := fs.String("t", "bench/load", "topic (a filter for sub)")
	qos := fs.Int("q", 0, "QoS 0, 1 or 2")
	n := fs.Int("n", 1000, "messages (per publisher), lines, or connections")
	size := fs.Int("size", bench.PayloadSize, "payload bytes")
	conns := fs.Int("c", 1, "publisher connections (pub) or concurrent connects (idle)")
	pubs := fs.Int("pubs", 1, "publishers (fan)")
	subs := fs.Int("subs", 1, "subscribers (sub, fan)")
	window := fs.Int("window", 20, "QoS 1/2 messages in flight per publisher")
	rate := fs.Float64("rate", 1000, "messages per second (latency)")
	idle := fs.Duration("idle", time.Second, "subscribers stop waiting this long after the last message once publishing is done")
	stride := fs.Int("stride", 0, "sub: payloads are \"SENSOR READING\" pairs, at most STRIDE readings per sensor (simulate-sensor --format '{{.Sensor}} {{.Seq}}')")
	waitStdin := fs.Bool("wait-stdin", false, "sub: publishing is done when stdin reaches EOF")
	raw := fs.Bool("raw", false, "idle: open TCP connections that never send CONNECT")
	timeout := fs.Duration("timeout", 60*time.Second, "hard limit for the whole command")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if *qos < 0 || *qos > 2 {
		return fmt.Errorf("invalid QoS %d", *qos)
	}
	if *n < 0 {
		return fmt.Errorf("invalid -n %d", *n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	q := byte(*qos)

	switch cmd {
	case "lines":
		return bench.WriteLines(os.Stdout, *n, *size)
	case "sub":
		var pubDone chan struct{}
		if *waitStdin {
			pubDone = make(chan struct{})
			go func() {
				_, _ = io.Copy(io.Discard, os.Stdin)
				close(pubDone)
			}()
		}
		r, err := loadgen.Sub(ctx, loadgen.SubConfig{
			Addr: *addr, Filter: *topic, QoS: q, Subs: *subs, Expect: *n, Stride: *stride, Idle: *idle,
			PublisherDone: pubDone, Ready: func() { fmt.Println("ready") },
		})
		if err != nil {
			return err
		}
		return emit(r)
	case "pub":
		r, err := loadgen.Pub(ctx, loadgen.PubConfig{Addr: *addr, Topic: *topic, QoS: q, Conns: *conns, N: *n, Size: *size, Window: *window})
		if err != nil {
			return err
		}
		return emit(r)
	case "fan":
		r, err := loadgen.Fan(ctx, loadgen.FanConfig{Addr: *addr, Topic: *topic, QoS: q, Pubs: *pubs, Subs: *subs, N: *n, Size: *size, Window: *window, Idle: *idle})
		if err != nil {
			return err
		}
		return emit(r)
	case "latency":
		r, err := loadgen.Latency(ctx, loadgen.LatencyConfig{Addr: *addr, Topic: *topic, QoS: q, Rate: *rate, N: *n, Idle: *idle})
		if err != nil {
			return err
		}
		return emit(r)
	case "idle":
		ic, err := loadgen.Idle(ctx, loadgen.IdleConfig{Addr: *addr, N: *n, Concurrency: *conns, Raw: *raw})
		if err != nil {
			return err
		}
		defer ic.Close()
		res := struct {
			Connected int     `json:"connected"`
			Failed    int     `json:"failed"`
			FirstErr  string  `json:"first_error,omitempty"`
			Seconds   float64 `json:"seconds"`
		}{ic.Len(), ic.Failed, errString(ic.FirstErr), ic.Seconds}
		b, _ := json.Marshal(res)
		fmt.Printf("ready %s\n", b)
		held := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, bufio.NewReader(os.Stdin))
			close(held)
		}()
		select {
		case <-held:
		case <-ctx.Done():
		}
		return nil
	case "-h", "--help", "help":
		fmt.Println(usage)
		return nil
	}
	return errors.New("unknown command " + cmd + "\n" + usage)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func emit(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Printf("%s\n", b)
	return err
}
