// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"text/template"
	"time"
)

// Reading is one value of one sensor. It is also the data of a payload
// template: {{.Value}} {{.Unit}} {{.Sensor}} {{.Seq}} {{.Time}}.
type Reading struct {
	Sensor string    // sensor name: its number in the fleet, "1", "2", ...
	Seq    uint64    // 1 for the sensor's first reading, then 2, 3, ...
	Value  Value     // the value, rounded to 2 decimals
	Unit   Unit      // unit of Value
	Time   time.Time // when the reading was taken
}

// Value is a reading's value. It prints as Python prints a rounded float
// (see FormatValue), so {{.Value}} in a template gives "27.0", not "27";
// {{printf "%.1f" .Value}} and comparisons such as {{if gt .Value 25.0}}
// work on the number.
type Value float64

// String returns v as FormatValue prints it.
func (v Value) String() string { return FormatValue(float64(v)) }

// Text returns the value with its unit as the course prints it: "23.41°C".
func (r Reading) Text() string { return r.Value.String() + r.Unit.Symbol() }

// SentLine returns the line printed after a reading was published:
// "Sent: 23.41°C".
func (r Reading) SentLine() string { return "Sent: " + r.Text() }

// TimeLayout is the layout of the "ts" field of JSON payloads: RFC 3339 in
// UTC with milliseconds.
const TimeLayout = "2006-01-02T15:04:05.000Z07:00"

type formatKind int

const (
	kindCourse formatKind = iota
	kindJSON
	kindTemplate
)

// Format turns readings into payloads. A Format is safe for concurrent use.
type Format struct {
	kind formatKind
	tmpl *template.Template
}

// CourseFormat returns the course's payload format: "Temperature: 23.41°C".
func CourseFormat() *Format { return &Format{kind: kindCourse} }

// JSONFormat returns the JSON payload format:
// {"sensor":"1","value":23.41,"unit":"C","seq":1,"ts":"2026-11-03T10:00:00.000Z"}.
func JSONFormat() *Format { return &Format{kind: kindJSON} }

// SampleReading is the reading a template is tried on before use.
var SampleReading = Reading{
	Sensor: "1",
	Seq:    1,
	Value:  23.41,
	Unit:   Celsius,
	Time:   time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC),
}

// TemplateFormat returns a format that executes the Go text/template text
// on each Reading. The template must parse and must execute without error
// on SampleReading, so that mistakes such as {{.Foo}} are reported before
// anything is sent.
func TemplateFormat(text string) (*Format, error) {
	t, err := template.New("format").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	f := &Format{kind: kindTemplate, tmpl: t}
	if _, err := f.Append(nil, SampleReading); err != nil {
		return nil, err
	}
	return f, nil
}

// jsonPayload fixes the order of the JSON fields.
type jsonPayload struct {
	Sensor string  `json:"sensor"`
	Value  float64 `json:"value"`
	Unit   Unit    `json:"unit"`
	Seq    uint64  `json:"seq"`
	TS     string  `json:"ts"`
}

// Append appends the payload of r to dst.
func (f *Format) Append(dst []byte, r Reading) ([]byte, error) {
	switch f.kind {
	case kindJSON:
		b, err := json.Marshal(jsonPayload{
			Sensor: r.Sensor,
			Value:  float64(r.Value),
			Unit:   r.Unit,
			Seq:    r.Seq,
			TS:     r.Time.UTC().Format(TimeLayout),
		})
		if err != nil { // only for NaN or Inf, which readings never are
			return dst, err
		}
		return append(dst, b...), nil
	case kindTemplate:
		// Without its monotonic clock reading: {{.Time}} of a time.Now()
		// value otherwise ends in Go's "m=+0.010" suffix.
		r.Time = r.Time.Round(0)
		w := &limitWriter{buf: dst, max: len(dst) + maxTemplateOutput}
		if err := f.tmpl.Execute(w, r); err != nil {
			return dst, err
		}
		return w.buf, nil
	}
	dst = append(dst, "Temperature: "...)
	dst = append(dst, r.Text()...)
	return dst, nil
}

// MaxPayload is the largest payload MQTT can carry (268,435,455 bytes); a
// template producing more fails.
const MaxPayload = 268435455

// maxTemplateOutput is MaxPayload; tests lower it.
var maxTemplateOutput = MaxPayload

// ErrTooLarge is returned when a template's output exceeds MaxPayload.
var ErrTooLarge = errors.New("payload larger than 268435455 bytes")

type limitWriter struct {
	buf []byte
	max int
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if len(w.buf)+len(p) > w.max {
		return 0, ErrTooLarge
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// TopicData is the data of a topic template: {{.Sensor}} and {{.Unit}}.
type TopicData struct {
	Sensor string // sensor name, as in Reading
	Unit   Unit   // the fleet's unit
}

// Topics expands the topic template text once for each of n sensors and
// returns the n topics. A template that does not parse or fails to execute
// (e.g. {{.Value}}, which a topic cannot use) is an error.
func Topics(text string, n int, u Unit) ([]string, error) {
	t, err := template.New("topic").Option("missingkey=error").Parse(text)
	if err != nil {
		return nil, err
	}
	topics := make([]string, n)
	var buf bytes.Buffer
	for i := range n {
		buf.Reset()
		if err := t.Execute(&buf, TopicData{Sensor: SensorName(i + 1), Unit: u}); err != nil {
			return nil, err
		}
		topics[i] = buf.String()
	}
	return topics, nil
}

// SensorName returns the name of sensor number n (1-based): "1", "2", ...
func SensorName(n int) string { return strconv.Itoa(n) }

var _ fmt.Stringer = Value(0)
