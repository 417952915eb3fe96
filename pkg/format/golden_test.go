// SPDX-License-Identifier: Apache-2.0

package format

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// goldenMessages are rendered in every golden file.
func goldenMessages() []*Message {
	return []*Message{
		msgFull(),
		msgEmpty(),
		{Topic: "bin/ary", Payload: []byte("\x00\x01\xfe\xff\"\\\n"), QoS: 2, MID: 65535, Time: testTime},
		{Topic: "json/doc", Payload: []byte(`{"temp": 21.50, "tags": ["a", "b"], "ok": true, "n": null}`), Retain: true, Time: testTime,
			Properties: &Properties{PayloadFormat: ptr(byte(1)), ContentType: "application/json", HasContentType: true}},
	}
}

// checkGolden compares got with testdata/name, or rewrites it with -update.
func checkGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
		return
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./pkg/format -update to create it")
	require.Equal(t, string(want), string(got), "%s differs; review and run go test ./pkg/format -update", path)
}

// TestGoldenFormats renders every templateCases format (plain and
// --pretty) for the golden messages. Outputs are Go-quoted so that control
// bytes stay readable in diffs.
func TestGoldenFormats(t *testing.T) {
	var out bytes.Buffer
	for _, c := range templateCases {
		tmpl, err := Compile(c.format)
		require.NoError(t, err)
		for _, pretty := range []bool{false, true} {
			fmt.Fprintf(&out, "=== -F %s pretty=%v\n", strconv.Quote(c.format), pretty)
			p, err := NewPrinter(Options{Template: tmpl, Pretty: pretty})
			require.NoError(t, err)
			for _, m := range goldenMessages() {
				b, warn := p.Append(nil, m)
				fmt.Fprintf(&out, "%s\n", strconv.Quote(string(b)))
				if warn != nil {
					fmt.Fprintf(&out, "stderr: %s\n", warn)
				}
			}
		}
	}
	checkGolden(t, "formats.golden", out.Bytes())
}

// TestGoldenModes renders the default, -v, -N, colour and --json modes.
func TestGoldenModes(t *testing.T) {
	modes := []struct {
		name string
		opts Options
	}{
		{"default", Options{}},
		{"-N", Options{NoEOL: true}},
		{"-v", Options{Verbose: true}},
		{"-v -N", Options{Verbose: true, NoEOL: true}},
		{"-v colour", Options{Verbose: true, Palette: NewPalette(true)}},
		{"default colour", Options{Palette: NewPalette(true)}},
		{"--json", Options{JSON: true}},
		{"--json --pretty", Options{JSON: true, Pretty: true}},
	}
	var out bytes.Buffer
	for _, md := range modes {
		fmt.Fprintf(&out, "=== %s\n", md.name)
		p, err := NewPrinter(md.opts)
		require.NoError(t, err)
		for _, m := range goldenMessages() {
			b, err := p.Append(nil, m)
			require.NoError(t, err)
			if md.opts.JSON {
				out.Write(b) // JSON is text; keep it as is for jq-style reading
			} else {
				fmt.Fprintf(&out, "%s\n", strconv.Quote(string(b)))
			}
		}
	}
	checkGolden(t, "modes.golden", out.Bytes())
}
