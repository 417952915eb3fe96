// SPDX-License-Identifier: Apache-2.0

package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
)

// Options selects the output mode of a Printer. Precedence follows
// mosquitto_sub: a format string (even an empty one) wins over Verbose.
type Options struct {
	Template *Template // compiled -F format string; nil for the default or -v output
	Verbose  bool      // -v: "topic payload", "topic (null)" for an empty payload
	JSON     bool      // --json: mqttkit's JSON Lines schema (docs/json.md)
	Pretty   bool      // --pretty: formatted JSON for %j/%J and --json
	NoEOL    bool      // -N: no end-of-line after each message (ignored for --json)
	Palette  *Palette  // colours for the default and -v output; nil for none
}

// ErrFormatAndJSON is returned by NewPrinter when both a format string and
// JSON output are requested.
var ErrFormatAndJSON = errors.New("a format string and JSON output cannot be combined")

// Printer renders messages in one output mode. It keeps a scratch buffer,
// so a Printer must not be used from several goroutines at once.
type Printer struct {
	opts Options
	tmpl *Template
	buf  []byte
	ind  bytes.Buffer
}

// NewPrinter returns a Printer for o. It fails only when o asks for both
// a format string and JSON output.
func NewPrinter(o Options) (*Printer, error) {
	if o.Template != nil && o.JSON {
		return nil, ErrFormatAndJSON
	}
	return &Printer{opts: o, tmpl: o.Template, buf: make([]byte, 0, 4096)}, nil
}

// Append appends the rendering of m to dst, including the end-of-line.
// A zero-length payload renders as nothing in the default mode and as
// "topic (null)" with -v (nothing with -v -N), exactly like mosquitto_sub.
// The error is non-nil only for %J with a non-JSON payload (see
// Template.Append); the output is complete regardless.
func (p *Printer) Append(dst []byte, m *Message) ([]byte, error) {
	o := &p.opts
	switch {
	case o.JSON:
		if !o.Pretty {
			dst = AppendJSON(dst, m)
			return append(dst, '\n'), nil
		}
		start := len(dst)
		dst = AppendJSON(dst, m)
		p.ind.Reset()
		if err := json.Indent(&p.ind, dst[start:], "", "  "); err != nil {
			// AppendJSON always produces valid JSON; keep the compact form.
			return append(dst, '\n'), nil
		}
		dst = append(dst[:start], p.ind.Bytes()...)
		return append(dst, '\n'), nil
	case p.tmpl != nil:
		var err error
		dst, err = p.tmpl.Append(dst, m, o.Pretty)
		if !o.NoEOL {
			dst = append(dst, '\n')
		}
		return dst, err
	case o.Verbose:
		pal := o.Palette
		if len(m.Payload) == 0 {
			if !o.NoEOL {
				dst = wrap(pal, dst, pal.topicOn(), m.Topic)
				dst = append(dst, ' ')
				dst = wrap(pal, dst, pal.nullOn(), "(null)")
				dst = append(dst, '\n')
			}
			return dst, nil
		}
		dst = wrap(pal, dst, pal.topicOn(), m.Topic)
		dst = append(dst, ' ')
		dst = wrap(pal, dst, pal.payloadOn(), m.Payload)
	default:
		if len(m.Payload) == 0 {
			return dst, nil
		}
		dst = wrap(o.Palette, dst, o.Palette.payloadOn(), m.Payload)
	}
	if !o.NoEOL {
		dst = append(dst, '\n')
	}
	return dst, nil
}

// Print renders m and writes it to w with a single Write call (nothing is
// written when the rendering is empty), so that an unbuffered stdout is
// flushed per message. warn is the non-fatal %J error of Append; err is
// the write error, which should end the subscription.
func (p *Printer) Print(w io.Writer, m *Message) (warn error, err error) {
	p.buf, warn = p.Append(p.buf[:0], m)
	if len(p.buf) > 0 {
		_, err = w.Write(p.buf)
	}
	if cap(p.buf) > 1<<20 {
		p.buf = make([]byte, 0, 4096) // do not pin one huge message forever
	}
	return warn, err
}
