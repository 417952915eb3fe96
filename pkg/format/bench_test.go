// SPDX-License-Identifier: Apache-2.0

package format

import (
	"io"
	"testing"
)

// BenchmarkFormat renders typical -F format strings; the hot path must not
// allocate.
func BenchmarkFormat(b *testing.B) {
	m := &Message{Topic: "sensors/building-1/floor-2/room-3/temperature", Payload: []byte("Temperature: 21.5 C"),
		QoS: 1, MID: 1234, Time: testTime}
	for _, f := range []string{"%t %p", "%I %t %x", "@Y-@m-@dT@H:@M:@S.@N %t %l %p", "%j", "%J"} {
		tmpl, err := Compile(f)
		if err != nil {
			b.Fatal(err)
		}
		if f == "%J" {
			m := *m
			m.Payload = []byte(`{"temperature": 21.5, "unit": "C", "tags": ["a", "b"]}`)
			benchTemplate(b, f, tmpl, &m)
			continue
		}
		benchTemplate(b, f, tmpl, m)
	}
}

func benchTemplate(b *testing.B, name string, tmpl *Template, m *Message) {
	b.Run(name, func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for i := 0; i < b.N; i++ {
			var err error
			buf, err = tmpl.Append(buf[:0], m, false)
			if err != nil {
				b.Fatal(err)
			}
		}
		b.SetBytes(int64(len(buf)))
	})
}

// BenchmarkJSON renders the --json schema, with and without properties
// and for a binary (base64) payload.
func BenchmarkJSON(b *testing.B) {
	plain := &Message{Topic: "sensors/building-1/floor-2/room-3/temperature", Payload: []byte("Temperature: 21.5 C"),
		QoS: 1, MID: 1234, Time: testTime}
	binary := *plain
	binary.Payload = []byte{0xff, 0xfe, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09}
	for _, c := range []struct {
		name string
		m    *Message
	}{{"plain", plain}, {"properties", msgFull()}, {"binary", &binary}} {
		b.Run(c.name, func(b *testing.B) {
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				buf = AppendJSON(buf[:0], c.m)
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}

// BenchmarkPrinter measures Print to io.Discard in the default and -v
// modes, the paths a 200,000-message `mqtt sub` run takes.
func BenchmarkPrinter(b *testing.B) {
	m := &Message{Topic: "bench/topic", Payload: []byte("payload-0123456789"), Time: testTime}
	for _, c := range []struct {
		name string
		opts Options
	}{{"default", Options{}}, {"verbose", Options{Verbose: true}}, {"verbose colour", Options{Verbose: true, Palette: NewPalette(true)}}} {
		p, err := NewPrinter(c.opts)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := p.Print(io.Discard, m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
