// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func reading(v float64, u Unit) Reading {
	return Reading{Sensor: "1", Seq: 1, Value: Value(v), Unit: u, Time: time.Date(2026, 11, 3, 10, 0, 0, 123456789, time.UTC)}
}

func format(t *testing.T, f *Format, r Reading) string {
	t.Helper()
	b, err := f.Append(nil, r)
	require.NoError(t, err)
	return string(b)
}

func TestCoursePayloadAndSentLine(t *testing.T) {
	tests := []struct {
		v       float64
		unit    Unit
		payload string
		sent    string
	}{
		{23.41, Celsius, "Temperature: 23.41°C", "Sent: 23.41°C"},
		{27, Celsius, "Temperature: 27.0°C", "Sent: 27.0°C"},
		{25.10, Celsius, "Temperature: 25.1°C", "Sent: 25.1°C"},
		{20, Celsius, "Temperature: 20.0°C", "Sent: 20.0°C"},
		{30.00, Celsius, "Temperature: 30.0°C", "Sent: 30.0°C"},
		{-0.5, Celsius, "Temperature: -0.5°C", "Sent: -0.5°C"},
		{77.9, Fahrenheit, "Temperature: 77.9°F", "Sent: 77.9°F"},
		{296.56, Kelvin, "Temperature: 296.56K", "Sent: 296.56K"},
	}
	for _, tt := range tests {
		r := reading(tt.v, tt.unit)
		require.Equal(t, tt.payload, format(t, CourseFormat(), r))
		require.Equal(t, tt.sent, r.SentLine())
	}
}

func TestAppendKeepsPrefix(t *testing.T) {
	b, err := CourseFormat().Append([]byte("x:"), reading(21.5, Celsius))
	require.NoError(t, err)
	require.Equal(t, "x:Temperature: 21.5°C", string(b))
	f, err := TemplateFormat("{{.Value}}")
	require.NoError(t, err)
	b, err = f.Append([]byte("x:"), reading(21.5, Celsius))
	require.NoError(t, err)
	require.Equal(t, "x:21.5", string(b))
}

func TestJSONPayload(t *testing.T) {
	r := reading(23.41, Celsius)
	r.Sensor, r.Seq = "7", 42
	require.Equal(t, `{"sensor":"7","value":23.41,"unit":"C","seq":42,"ts":"2026-11-03T10:00:00.123Z"}`, format(t, JSONFormat(), r))

	// The time is printed in UTC whatever its location.
	r.Time = time.Date(2026, 11, 3, 12, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	r.Value = 27
	r.Unit = Kelvin
	got := format(t, JSONFormat(), r)
	require.Equal(t, `{"sensor":"7","value":27,"unit":"K","seq":42,"ts":"2026-11-03T10:00:00.000Z"}`, got)
	var back map[string]any
	require.NoError(t, json.Unmarshal([]byte(got), &back))
	require.Equal(t, 27.0, back["value"])
}

func TestTemplateFormat(t *testing.T) {
	tests := []struct {
		tmpl string
		want string
	}{
		{"{{.Value}}", "27.0"},
		{"{{.Value}}{{.Unit}}", "27.0C"},
		{`{{printf "%.1f" .Value}}`, "27.0"},
		{`{{printf "%.3f" .Value}}`, "27.000"},
		{`{{printf "%v" .Value}}`, "27.0"},
		{"{{.Sensor}}/{{.Seq}}", "3/9"},
		{`{{.Time.Format "15:04:05"}}`, "10:00:00"},
		{`{{if gt .Value 25.0}}hot{{else}}ok{{end}}`, "hot"},
		{`{"t":{{.Value}},"u":"{{.Unit.Symbol}}"}`, `{"t":27.0,"u":"°C"}`},
		{"plain text", "plain text"},
		{"", ""},
	}
	r := reading(27, Celsius)
	r.Sensor, r.Seq = "3", 9
	for _, tt := range tests {
		t.Run(tt.tmpl, func(t *testing.T) {
			f, err := TemplateFormat(tt.tmpl)
			require.NoError(t, err)
			require.Equal(t, tt.want, format(t, f, r))
		})
	}
}

func TestTemplateErrors(t *testing.T) {
	tests := []struct {
		name, tmpl, err string
	}{
		{"unclosed action", "{{.Value", `template: format:1: unclosed action`},
		{"unknown function", "{{nope .Value}}", `template: format:1: function "nope" not defined`},
		{"unknown field", "{{.Foo}}", `template: format:1:2: executing "format" at <.Foo>: can't evaluate field Foo in type sensor.Reading`},
		{"fails on execution", "{{index .Sensor 5}}", `template: format:1:2: executing "format" at <index .Sensor 5>: error calling index: index out of range: 5`},
		{"undefined template", `{{template "x"}}`, `template: format:1:11: executing "format" at <{{template "x"}}>: template "x" not defined`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := TemplateFormat(tt.tmpl)
			require.Nil(t, f)
			require.EqualError(t, err, tt.err)
		})
	}
}

func TestTemplateTooLarge(t *testing.T) {
	defer func(old int) { maxTemplateOutput = old }(maxTemplateOutput)
	maxTemplateOutput = 1000
	f, err := TemplateFormat(`{{if gt .Value 25.0}}{{range 2}}{{printf "%600s" ""}}{{end}}{{end}}`)
	require.NoError(t, err, "the sample reading (23.41) takes the short branch")
	_, err = f.Append(nil, reading(27, Celsius))
	require.ErrorIs(t, err, ErrTooLarge)
}

func TestTopics(t *testing.T) {
	got, err := Topics("sensor/{{.Sensor}}/temp", 3, Celsius)
	require.NoError(t, err)
	require.Equal(t, []string{"sensor/1/temp", "sensor/2/temp", "sensor/3/temp"}, got)

	got, err = Topics("sensor/temp", 2, Celsius)
	require.NoError(t, err)
	require.Equal(t, []string{"sensor/temp", "sensor/temp"}, got)

	got, err = Topics("t/{{.Unit}}", 1, Kelvin)
	require.NoError(t, err)
	require.Equal(t, []string{"t/K"}, got)

	_, err = Topics("sensor/{{.Value}}", 1, Celsius)
	require.EqualError(t, err, `template: topic:1:9: executing "topic" at <.Value>: can't evaluate field Value in type sensor.TopicData`)
	_, err = Topics("sensor/{{", 1, Celsius)
	require.ErrorContains(t, err, "template: topic:1: unclosed action")
}

// FuzzTemplate checks that any template text either fails in
// TemplateFormat or formats readings without panicking, and that a
// template without actions prints itself.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{
		"", "Temperature: {{.Value}}°{{.Unit}}", `{"v":{{.Value}},"s":"{{.Sensor}}","n":{{.Seq}}}`,
		`{{.Time.Format "2006-01-02"}}`, `{{printf "%.2f" .Value}}`, "{{if gt .Value 25.0}}hot{{end}}",
		"{{.Foo}}", "{{", "}}", "{{/* c */}}", "{{range .Sensor}}{{end}}", `{{template "x"}}`,
		`{{define "x"}}a{{end}}{{template "x"}}`, "{{index .Sensor 0}}", "{{len .Sensor}}",
		"{{.Value.String}}", "{{with .Unit}}{{.Symbol}}{{end}}", "{{- .Seq -}}", "{{range 3}}x{{end}}",
	} {
		f.Add(s, 24.5, uint64(1))
	}
	f.Fuzz(func(t *testing.T, tmpl string, v float64, seq uint64) {
		if strings.Contains(tmpl, "range") { // {{range 1e9}} is valid and merely slow
			t.Skip()
		}
		fm, err := TemplateFormat(tmpl)
		if err != nil {
			require.NotEmpty(t, err.Error())
			return
		}
		r := reading(v, Celsius)
		r.Seq = seq
		_, _ = fm.Append(nil, r) // may fail for other data, must not panic
		if !strings.Contains(tmpl, "{{") {
			out, err := fm.Append(nil, r)
			require.NoError(t, err)
			require.Equal(t, tmpl, string(out))
		}
	})
}

// TestTemplateTimeHasNoMonotonicSuffix: {{.Time}} of a reading taken with
// time.Now() printed Go's "m=+0.010263" monotonic clock suffix.
func TestTemplateTimeHasNoMonotonicSuffix(t *testing.T) {
	f, err := TemplateFormat("{{.Time}}")
	require.NoError(t, err)
	now := time.Now()
	b, err := f.Append(nil, Reading{Time: now})
	require.NoError(t, err)
	require.NotContains(t, string(b), "m=")
	require.Equal(t, now.Round(0).String(), string(b))
}
