// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/mqttkit/mqttkit/internal/rawmqtt"
)

// rawsend VERSION PORT HEX: connect to 127.0.0.1:PORT with MQTT VERSION
// (4 or 5), send the bytes HEX (where "{2f*65535}" stands for the byte 2f
// 65,535 times) after the CONNACK and print what the broker
// answers until it closes the connection: one line per packet
// ("DISCONNECT reason=0x81", "SUBACK codes=80"), then "closed" (or "open"
// if the connection is still open after 10 seconds).
func cmdRawSend(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: rawsend VERSION PORT HEX")
	}
	v, err := strconv.Atoi(args[0])
	ts.Check(err)
	raw, err := expandHex(args[2])
	ts.Check(err)
	c, err := rawmqtt.Dial(net.JoinHostPort("127.0.0.1", args[1]), byte(v))
	ts.Check(err)
	defer c.Close()
	_, err = c.Connect(rawmqtt.ConnectOptions{ClientID: "rawsend", Clean: true})
	ts.Check(err)
	ts.Check(c.Send(raw))
	got, err := c.WaitClosed(10 * time.Second)
	for _, p := range got {
		switch p.Type {
		case rawmqtt.DISCONNECT:
			fmt.Fprintf(ts.Stdout(), "DISCONNECT reason=0x%02x\n", p.Reason)
		case rawmqtt.SUBACK:
			fmt.Fprintf(ts.Stdout(), "SUBACK codes=%x\n", p.Granted)
		default:
			fmt.Fprintf(ts.Stdout(), "%s\n", p)
		}
	}
	if err != nil {
		fmt.Fprintln(ts.Stdout(), "open")
		return
	}
	fmt.Fprintln(ts.Stdout(), "closed")
}

// expandHex decodes hex with {XX*N} repetitions.
func expandHex(s string) ([]byte, error) {
	var out []byte
	for s != "" {
		open := strings.IndexByte(s, '{')
		if open < 0 {
			open = len(s)
		}
		b, err := hex.DecodeString(s[:open])
		if err != nil {
			return nil, err
		}
		out = append(out, b...)
		if open == len(s) {
			break
		}
		end := strings.IndexByte(s[open:], '}')
		if end < 0 {
			return nil, fmt.Errorf("unclosed { in %q", s)
		}
		byteHex, count, ok := strings.Cut(s[open+1:open+end], "*")
		rb, err := hex.DecodeString(byteHex)
		n, cerr := strconv.Atoi(count)
		if !ok || err != nil || cerr != nil || len(rb) != 1 {
			return nil, fmt.Errorf("bad repetition %q", s[open:open+end+1])
		}
		out = append(out, bytes.Repeat(rb, n)...)
		s = s[open+end+1:]
	}
	return out, nil
}
