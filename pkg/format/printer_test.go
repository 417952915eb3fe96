// SPDX-License-Identifier: Apache-2.0

package format

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPrinterModes(t *testing.T) {
	tmpl := func(s string) *Template {
		tp, err := Compile(s)
		require.NoError(t, err)
		return tp
	}
	full, empty := msgFull(), msgEmpty()
	tests := []struct {
		name        string
		opts        Options
		full, empty string
	}{
		{"default", Options{}, "hello\n", ""},
		{"default -N", Options{NoEOL: true}, "hello", ""},
		{"verbose", Options{Verbose: true}, "sensors/room1/temp hello\n", "a/b (null)\n"},
		{"verbose -N", Options{Verbose: true, NoEOL: true}, "sensors/room1/temp hello", ""},
		{"format", Options{Template: tmpl("%t:%l")}, "sensors/room1/temp:5\n", "a/b:0\n"},
		{"format -N", Options{Template: tmpl("%t:%l"), NoEOL: true}, "sensors/room1/temp:5", "a/b:0"},
		{"empty format prints the newline only", Options{Template: tmpl("")}, "\n", "\n"},
		{"format wins over -v", Options{Template: tmpl("%q"), Verbose: true}, "1\n", "0\n"},
		{"json ignores -N", Options{JSON: true, NoEOL: true},
			`{"topic":"sensors/room1/temp","payload":"hello","qos":1,"retain":true,"mid":42,"properties":{` +
				`"payload_format_indicator":1,"message_expiry_interval":3600,"content_type":"text/plain",` +
				`"response_topic":"reply/here","correlation_data":"corr\u0000id","subscription_identifiers":[7],` +
				`"topic_alias":5,"user_properties":[["k1","v1"],["k1","v2"],["k2","v3"]]},` +
				`"time":"2024-10-16T20:28:05.123456789+01:00"}` + "\n",
			`{"topic":"a/b","payload":"","qos":0,"retain":false,"mid":0,"time":"2024-10-16T20:28:05.123456789+01:00"}` + "\n"},
		{"json pretty", Options{JSON: true, Pretty: true},
			"{\n  \"topic\": \"sensors/room1/temp\",\n  \"payload\": \"hello\",\n  \"qos\": 1,\n  \"retain\": true,\n  \"mid\": 42,\n" +
				"  \"properties\": {\n    \"payload_format_indicator\": 1,\n    \"message_expiry_interval\": 3600,\n" +
				"    \"content_type\": \"text/plain\",\n    \"response_topic\": \"reply/here\",\n" +
				"    \"correlation_data\": \"corr\\u0000id\",\n    \"subscription_identifiers\": [\n      7\n    ],\n" +
				"    \"topic_alias\": 5,\n    \"user_properties\": [\n      [\n        \"k1\",\n        \"v1\"\n      ],\n" +
				"      [\n        \"k1\",\n        \"v2\"\n      ],\n      [\n        \"k2\",\n        \"v3\"\n      ]\n    ]\n  },\n" +
				"  \"time\": \"2024-10-16T20:28:05.123456789+01:00\"\n}\n",
			"{\n  \"topic\": \"a/b\",\n  \"payload\": \"\",\n  \"qos\": 0,\n  \"retain\": false,\n  \"mid\": 0,\n" +
				"  \"time\": \"2024-10-16T20:28:05.123456789+01:00\"\n}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPrinter(tt.opts)
			require.NoError(t, err)
			got, err := p.Append(nil, full)
			require.NoError(t, err)
			require.Equal(t, tt.full, string(got))
			got, err = p.Append(nil, empty)
			require.NoError(t, err)
			require.Equal(t, tt.empty, string(got))
		})
	}
}

func TestPrinterFormatAndJSON(t *testing.T) {
	tp, err := Compile("%t")
	require.NoError(t, err)
	_, err = NewPrinter(Options{Template: tp, JSON: true})
	require.ErrorIs(t, err, ErrFormatAndJSON)
}

// countingWriter records every Write call.
type countingWriter struct {
	writes [][]byte
	err    error
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.writes = append(w.writes, append([]byte(nil), b...))
	if w.err != nil {
		return 0, w.err
	}
	return len(b), nil
}

func TestPrinterPrint(t *testing.T) {
	t.Run("one write per message, none for empty output", func(t *testing.T) {
		p, err := NewPrinter(Options{Verbose: true, NoEOL: true})
		require.NoError(t, err)
		w := &countingWriter{}
		warn, err := p.Print(w, msgFull())
		require.NoError(t, warn)
		require.NoError(t, err)
		warn, err = p.Print(w, msgEmpty())
		require.NoError(t, warn)
		require.NoError(t, err)
		require.Equal(t, [][]byte{[]byte("sensors/room1/temp hello")}, w.writes)
	})
	t.Run("write error is returned", func(t *testing.T) {
		p, err := NewPrinter(Options{})
		require.NoError(t, err)
		boom := errors.New("broken pipe")
		_, err = p.Print(&countingWriter{err: boom}, msgFull())
		require.ErrorIs(t, err, boom)
	})
	t.Run("%J error is a warning and the line is still written", func(t *testing.T) {
		tp, err := Compile("[%J]%J[%t]")
		require.NoError(t, err)
		p, err := NewPrinter(Options{Template: tp})
		require.NoError(t, err)
		w := &countingWriter{}
		warn, err := p.Print(w, msgFull())
		require.NoError(t, err)
		require.Equal(t, [][]byte{[]byte("[][sensors/room1/temp]\n")}, w.writes)
		var jerr *JSONPayloadError
		require.ErrorAs(t, warn, &jerr)
		require.Len(t, warn.(interface{ Unwrap() []error }).Unwrap(), 2, "one error per %J, like mosquitto's stderr lines")
	})
}

func TestPalette(t *testing.T) {
	on := NewPalette(true)
	require.True(t, on.Enabled())
	p, err := NewPrinter(Options{Verbose: true, Palette: on})
	require.NoError(t, err)
	got, err := p.Append(nil, msgFull())
	require.NoError(t, err)
	require.Equal(t, "\x1b[36;1msensors/room1/temp\x1b[0m \x1b[32mhello\x1b[0m\n", string(got))
	got, err = p.Append(nil, msgEmpty())
	require.NoError(t, err)
	require.Equal(t, "\x1b[36;1ma/b\x1b[0m \x1b[2m(null)\x1b[0m\n", string(got))

	p, err = NewPrinter(Options{Palette: on})
	require.NoError(t, err)
	got, err = p.Append(nil, msgFull())
	require.NoError(t, err)
	require.Equal(t, "\x1b[32mhello\x1b[0m\n", string(got))

	off := NewPalette(false)
	require.False(t, off.Enabled())
	require.False(t, (*Palette)(nil).Enabled())
	p, err = NewPrinter(Options{Verbose: true, Palette: off})
	require.NoError(t, err)
	got, err = p.Append(nil, msgFull())
	require.NoError(t, err)
	require.Equal(t, "sensors/room1/temp hello\n", string(got))

	tp, err := Compile("%t %p")
	require.NoError(t, err)
	p, err = NewPrinter(Options{Template: tp, Palette: on})
	require.NoError(t, err)
	got, err = p.Append(nil, msgFull())
	require.NoError(t, err)
	require.Equal(t, "sensors/room1/temp hello\n", string(got), "-F output is never coloured")
}

func TestAppendJSON(t *testing.T) {
	t.Run("binary payload is base64", func(t *testing.T) {
		m := &Message{Topic: "bin", Payload: []byte{0xff, 0x00, 'a'}, Time: testTime}
		got := AppendJSON(nil, m)
		require.Equal(t, `{"topic":"bin","payload":"/wBh","payload_encoding":"base64","qos":0,"retain":false,"mid":0,`+
			`"time":"2024-10-16T20:28:05.123456789+01:00"}`, string(got))
	})
	t.Run("binary correlation data is base64", func(t *testing.T) {
		m := &Message{Topic: "c", Time: testTime, Properties: &Properties{CorrelationData: []byte{0xc3}}}
		require.Contains(t, string(AppendJSON(nil, m)), `"properties":{"correlation_data":"ww==","correlation_data_encoding":"base64"}`)
	})
	t.Run("escaping keeps the line valid JSON", func(t *testing.T) {
		m := &Message{Topic: "t/\xff\"\\\n", Payload: []byte("line1\nline2\t\x01\x7f é\u2028"), Time: testTime,
			Properties: &Properties{UserProps: []UserProp{{"k\"", "v\x00"}}}}
		got := AppendJSON(nil, m)
		require.True(t, json.Valid(got), "%s", got)
		require.Equal(t, `{"topic":"t/`+"\ufffd"+`\"\\\n","payload":"line1\nline2\t\u0001`+"\x7f é"+`\u2028","qos":0,"retain":false,"mid":0,`+
			`"properties":{"user_properties":[["k\"","v\u0000"]]},"time":"2024-10-16T20:28:05.123456789+01:00"}`, string(got))
		var decoded struct {
			Topic, Payload string
			Properties     struct {
				UserProperties [][2]string `json:"user_properties"`
			}
		}
		require.NoError(t, json.Unmarshal(got, &decoded))
		require.Equal(t, "line1\nline2\t\x01\x7f é\u2028", decoded.Payload)
		require.Equal(t, [][2]string{{"k\"", "v\x00"}}, decoded.Properties.UserProperties)
	})
	t.Run("time keeps nine fractional digits", func(t *testing.T) {
		m := &Message{Topic: "t", Time: testTime.Truncate(1e9)}
		require.Contains(t, string(AppendJSON(nil, m)), `"time":"2024-10-16T20:28:05.000000000+01:00"`)
	})
}
