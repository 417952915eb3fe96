// SPDX-License-Identifier: Apache-2.0

package format

import (
	"bytes"

	"github.com/fatih/color"
)

// Palette holds the colours used for terminal output: the topic and the
// payload must be told apart at a glance. Build it with NewPalette; a nil
// *Palette means no colour.
type Palette struct {
	Topic   *color.Color // topic in -v mode: bold cyan
	Payload *color.Color // payload in default and -v modes: green
	Null    *color.Color // "(null)" for an empty payload in -v mode: faint

	enabled bool
	// SGR sequences computed once, so that rendering does not allocate.
	seqTopic, seqPayload, seqNull, seqOff []byte
}

// NewPalette returns the palette with colour switched on or off for each of
// its colours through EnableColor/DisableColor; the package-global
// color.NoColor is neither consulted nor changed. The caller decides:
// colour only when stdout is a terminal, NO_COLOR is unset and --no-color
// was not given.
func NewPalette(enabled bool) *Palette {
	p := &Palette{
		Topic:   color.New(color.FgCyan, color.Bold),
		Payload: color.New(color.FgGreen),
		Null:    color.New(color.Faint),
		enabled: enabled,
	}
	for _, c := range []*color.Color{p.Topic, p.Payload, p.Null} {
		if enabled {
			c.EnableColor()
		} else {
			c.DisableColor()
		}
	}
	p.seqTopic = sgr(p.Topic)
	p.seqPayload = sgr(p.Payload)
	p.seqNull = sgr(p.Null)
	var b bytes.Buffer
	p.Topic.UnsetWriter(&b)
	p.seqOff = b.Bytes()
	return p
}

// Enabled reports whether the palette emits colour.
func (p *Palette) Enabled() bool { return p != nil && p.enabled }

// sgr returns the escape sequence that switches c on (empty when disabled).
func sgr(c *color.Color) []byte {
	var b bytes.Buffer
	c.SetWriter(&b)
	return b.Bytes()
}

func (p *Palette) topicOn() []byte {
	if p == nil {
		return nil
	}
	return p.seqTopic
}

func (p *Palette) payloadOn() []byte {
	if p == nil {
		return nil
	}
	return p.seqPayload
}

func (p *Palette) nullOn() []byte {
	if p == nil {
		return nil
	}
	return p.seqNull
}

// wrap appends s between on and the reset sequence (plain s without colour).
func wrap[T string | []byte](p *Palette, dst []byte, on []byte, s T) []byte {
	if !p.Enabled() {
		return append(dst, s...)
	}
	dst = append(dst, on...)
	dst = append(dst, s...)
	return append(dst, p.seqOff...)
}
