// SPDX-License-Identifier: Apache-2.0

package format

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testTime is Wednesday 2024-10-16 20:28:05.123456789 at +01:00 ("CET").
var testTime = time.Date(2024, 10, 16, 20, 28, 5, 123456789, time.FixedZone("CET", 3600))

func ptr[T any](v T) *T { return &v }

// msgFull carries every MQTT 5 property; msgEmpty is a bare QoS 0 message
// with a zero-length payload.
func msgFull() *Message {
	return &Message{
		Topic: "sensors/room1/temp", Payload: []byte("hello"), QoS: 1, Retain: true, MID: 42, Time: testTime,
		Properties: &Properties{
			PayloadFormat: ptr(byte(1)), MessageExpiry: ptr(uint32(3600)),
			ContentType: "text/plain", HasContentType: true, ResponseTopic: "reply/here",
			CorrelationData: []byte("corr\x00id"), SubscriptionIDs: []int{7}, TopicAlias: ptr(uint16(5)),
			UserProps: []UserProp{{"k1", "v1"}, {"k1", "v2"}, {"k2", "v3"}},
		},
	}
}

func msgEmpty() *Message {
	return &Message{Topic: "a/b", Time: testTime}
}

// TestTemplate covers every %-specifier, flag, width and precision rule,
// every @ time specifier class and every escape, for a message with all
// properties (full) and one with none and an empty payload (empty). The
// expected strings follow mosquitto_sub 2.0 (hex width: 2.1); the interop
// test checks the same rules against the real mosquitto_sub.
// templateCases is shared with the interop test, which renders the same
// format strings with the real mosquitto_sub.
var templateCases = []struct {
	name, format string
	full, empty  string
}{
	{"topic", "%t", "sensors/room1/temp", "a/b"},
	{"payload", "%p", "hello", ""},
	{"percent qos retain mid len", "%%|%q|%r|%m|%l", "%|1|1|42|5", "%|0|0|0|0"},
	{"string width precision", "%10t|%-10t|%.2t|%5.1t|%.t|%0.5t",
		"sensors/room1/temp|sensors/room1/temp|se|    s||senso", "       a/b|a/b       |a/|    a||a/b"},
	{"integer flags", "%08l|%-8l|%8l|%-08m|%05q|%5.2l",
		"00000005|5       |       5|42      |1|    5", "00000000|0       |       0|0       |0|    0"},
	{"hex", "%x|%X", "68656c6c6f|68656C6C6F", "|"},
	{"hex width (2.1 rules)", "%10x|%-12x|%4x|%-x|%3X|%012x",
		"68656c6c6f|68656c6c6f  |68656c6c|68656c6c6f     |68656C|0068656c6c6f",
		"          |            |    ||   |000000000000"},
	{"payload width", "%-12p|%012p|%3p|%-p|%5p|%.2p",
		"hello       |0000000hello|hel|hello     |hello|hello", "            |000000000000|   ||     |"},
	{"topic alias", "%A|%5A|%-5A|%05A", "5|    5|5    |00005", "|     |     |00000"},
	{"content type", "%C|%12C|%-12C|%.4C|%05C",
		"text/plain|  text/plain|text/plain  |text|text/plain", "|            |            ||     "},
	{"correlation data", "[%D]", "[corr\x00id]", "[]"},
	{"message expiry", "%E|%8E|%-8E|%08E", "3600|    3600|3600    |00003600", "|        |        |00000000"},
	{"payload format", "%F|%3F|%03F", "1|  1|001", "|   |000"},
	{"user properties", "[%P]", "[k1:v1 k1:v2 k2:v3]", "[]"},
	{"response topic", "%R|%12R|%-12R|%.5R|%5R",
		"reply/here|  reply/here|reply/here  |reply|reply/here", "||||"},
	{"subscription identifier", "%S|%4S|%04S", "7|   7|0007", "|    |0000"},
	{"iso time", "%I", "2024-10-16T20:28:05+0100", "2024-10-16T20:28:05+0100"},
	{"iso time width", "%30I|%-26I|%.10I",
		"      2024-10-16T20:28:05+0100|2024-10-16T20:28:05+0100  |2024-10-16",
		"      2024-10-16T20:28:05+0100|2024-10-16T20:28:05+0100  |2024-10-16"},
	{"unix time", "%U|%-30U", "1729106885.123456789|1729106885.123456789", "1729106885.123456789|1729106885.123456789"},
	{"strftime date", "@Y-@m-@d @H:@M:@S.@N @z @Z",
		"2024-10-16 20:28:05.123456789 +0100 CET", "2024-10-16 20:28:05.123456789 +0100 CET"},
	{"strftime names", "@@|@%|@a @A @b @B @h @j @u @w @V @G @g @U @W",
		"@|%|Wed Wednesday Oct October Oct 290 3 3 42 2024 24 41 42",
		"@|%|Wed Wednesday Oct October Oct 290 3 3 42 2024 24 41 42"},
	{"strftime composites", "@c|@D|@x|@F|@T|@X|@r|@R|@p|@P|@I|@l|@k|@e|@C|@y|@s|@n|@t",
		"Wed Oct 16 20:28:05 2024|10/16/24|10/16/24|2024-10-16|20:28:05|20:28:05|08:28:05 PM|20:28|PM|pm|08| 8|20|16|20|24|1729106885|\n|\t",
		"Wed Oct 16 20:28:05 2024|10/16/24|10/16/24|2024-10-16|20:28:05|20:28:05|08:28:05 PM|20:28|PM|pm|08| 8|20|16|20|24|1729106885|\n|\t"},
	{"strftime unknown", "@Q|@5|@E|@-", "%Q|   %5|%E|%-", "%Q|   %5|%E|%-"},
	{"escapes", `\t|\n|\\|\a\e\v\r|\0`, "\t|\n|\\|\a\x1b\v\r|\x00", "\t|\n|\\|\a\x1b\v\r|\x00"},
	{"json escaped", "%j",
		`{"tst":"2024-10-16T20:28:05.123456+0100","topic":"sensors/room1/temp","qos":1,"retain":1,"payloadlen":5,"mid":42,` +
			`"properties":{"payload-format-indicator":1,"message-expiry-interval":3600,"content-type":"text/plain",` +
			`"response-topic":"reply/here","correlation-data":"corr","subscription-identifier":7,"topic-alias":5,` +
			`"user-properties":{"k1":"v1","k1":"v2","k2":"v3"}},"payload":"hello"}`,
		`{"tst":"2024-10-16T20:28:05.123456+0100","topic":"a/b","qos":0,"retain":0,"payloadlen":0,"payload":null}`},
	{"json embedded", "<%J>", "<>",
		`<{"tst":"2024-10-16T20:28:05.123456+0100","topic":"a/b","qos":0,"retain":0,"payloadlen":0,"payload":null}>`},
	{"flags -0 and 00", "%-05l|%-0t|%00p", "5    |sensors/room1/temp|hello", "0    |a/b|"},
	{"percent with width", "%5%|%-5%|%.3%", "%|%|%", "%|%|%"},
	{"literal", "plain text, no specifiers", "plain text, no specifiers", "plain text, no specifiers"},
	{"empty", "", "", ""},
	{"mixed", `%t\t%p @H:@M %q%r`, "sensors/room1/temp\thello 20:28 11", "a/b\t 20:28 00"},
}

func TestTemplate(t *testing.T) {
	require.GreaterOrEqual(t, len(templateCases), 30)
	for _, tt := range templateCases {
		t.Run(tt.name, func(t *testing.T) {
			tmpl, err := Compile(tt.format)
			require.NoError(t, err)
			require.Equal(t, tt.format, tmpl.String())
			got, err := tmpl.Append(nil, msgFull(), false)
			if strings.Contains(tt.format, "%J") {
				var jerr *JSONPayloadError
				require.ErrorAs(t, err, &jerr)
				require.Equal(t, "Message payload is not valid JSON on topic sensors/room1/temp.", jerr.Error())
			} else {
				require.NoError(t, err)
			}
			require.Equal(t, tt.full, string(got), "full message")
			got, err = tmpl.Append([]byte("prefix:"), msgEmpty(), false)
			require.NoError(t, err)
			require.Equal(t, "prefix:"+tt.empty, string(got), "empty message")
		})
	}
}

// TestTemplateEdgeCases covers rules that need special messages.
func TestTemplateEdgeCases(t *testing.T) {
	render := func(format string, m *Message) string {
		t.Helper()
		tmpl, err := Compile(format)
		require.NoError(t, err)
		out, err := tmpl.Append(nil, m, false)
		require.NoError(t, err)
		return string(out)
	}
	t.Run("precision counts bytes, not runes", func(t *testing.T) {
		m := &Message{Topic: "température", Time: testTime}
		require.Equal(t, "temp\xc3", render("%.5t", m))
		require.Equal(t, "  température", render("%14t", m), "width counts bytes: 12 bytes + 2 spaces")
	})
	t.Run("expiry above INT_MAX prints negative like mosquitto", func(t *testing.T) {
		m := &Message{Topic: "x", Time: testTime, Properties: &Properties{MessageExpiry: ptr(uint32(4294967295))}}
		require.Equal(t, "-1|-0001", render("%E|%05E", m))
	})
	t.Run("empty content type is present", func(t *testing.T) {
		m := &Message{Topic: "x", Time: testTime, Properties: &Properties{HasContentType: true}}
		require.Equal(t, "[]|[   ]", render("[%C]|[%3C]", m))
		require.Contains(t, render("%j", m), `"properties":{"content-type":""}`)
	})
	t.Run("empty properties struct prints no properties member", func(t *testing.T) {
		m := &Message{Topic: "x", Time: testTime, Properties: &Properties{}}
		require.NotContains(t, render("%j", m), "properties")
	})
	t.Run("several subscription identifiers", func(t *testing.T) {
		m := &Message{Topic: "x", Time: testTime, Properties: &Properties{SubscriptionIDs: []int{3, 9}}}
		require.Equal(t, "3", render("%S", m), "%S shows the first, as mosquitto_property_read_varint does")
		require.Contains(t, render("%j", m), `"properties":{"subscription-identifier":3,"subscription-identifier":9}`)
	})
	t.Run("binary payload raw and in %j", func(t *testing.T) {
		m := &Message{Topic: "b", Payload: []byte("a\"\\\x01\x1f\x7f\xc3\xa9\xff\x00tail"), Time: testTime}
		require.Equal(t, "a\"\\\x01\x1f\x7f\xc3\xa9\xff\x00tail", render("%p", m))
		require.Contains(t, render("%j", m), `"payloadlen":14,"payload":"a\"\\\u0001\u001f`+"\x7f\xc3\xa9\xff"+`"}`,
			"%j stops at the first NUL and copies bytes >= 0x7f raw")
	})
	t.Run("payload starting with NUL", func(t *testing.T) {
		m := &Message{Topic: "b", Payload: []byte{0, 'x'}, Time: testTime}
		require.Contains(t, render("%j", m), `"payload":""}`)
	})
	t.Run("%J re-serialises JSON", func(t *testing.T) {
		m := &Message{Topic: "j", Payload: []byte(` {"a" : [1, 2.50, true, null], "b":"x\u00e9"} `), QoS: 2, MID: 3, Time: testTime}
		require.Equal(t, `{"tst":"2024-10-16T20:28:05.123456+0100","topic":"j","qos":2,"retain":0,"payloadlen":46,"mid":3,`+
			`"payload":{"a":[1,2.5,true,null],"b":"xé"}}`, render("%J", m))
	})
	t.Run("negative UTC offset with minutes", func(t *testing.T) {
		m := &Message{Topic: "z", Time: time.Date(2024, 1, 2, 3, 4, 5, 6000, time.FixedZone("NST", -(3*3600+30*60)))}
		require.Equal(t, "2024-01-02T03:04:05-0330", render("%I", m))
		require.Contains(t, render("%j", m), `"tst":"2024-01-02T03:04:05.000006-0330"`)
	})
}

// TestJSONPretty pins cJSON_Print's layout (tabs, ":\t", arrays inline with
// ", ", empty objects on two lines) for %j and %J with --pretty.
func TestJSONPretty(t *testing.T) {
	tmpl, err := Compile("%j")
	require.NoError(t, err)
	got, err := tmpl.Append(nil, msgFull(), true)
	require.NoError(t, err)
	require.Equal(t, "{\n"+
		"\t\"tst\":\t\"2024-10-16T20:28:05.123456+0100\",\n"+
		"\t\"topic\":\t\"sensors/room1/temp\",\n"+
		"\t\"qos\":\t1,\n"+
		"\t\"retain\":\t1,\n"+
		"\t\"payloadlen\":\t5,\n"+
		"\t\"mid\":\t42,\n"+
		"\t\"properties\":\t{\n"+
		"\t\t\"payload-format-indicator\":\t1,\n"+
		"\t\t\"message-expiry-interval\":\t3600,\n"+
		"\t\t\"content-type\":\t\"text/plain\",\n"+
		"\t\t\"response-topic\":\t\"reply/here\",\n"+
		"\t\t\"correlation-data\":\t\"corr\",\n"+
		"\t\t\"subscription-identifier\":\t7,\n"+
		"\t\t\"topic-alias\":\t5,\n"+
		"\t\t\"user-properties\":\t{\n"+
		"\t\t\t\"k1\":\t\"v1\",\n"+
		"\t\t\t\"k1\":\t\"v2\",\n"+
		"\t\t\t\"k2\":\t\"v3\"\n"+
		"\t\t}\n"+
		"\t},\n"+
		"\t\"payload\":\t\"hello\"\n"+
		"}", string(got))

	tmpl, err = Compile("%J")
	require.NoError(t, err)
	m := &Message{Topic: "j/6", Payload: []byte(`{"b":{},"a":[],"c":[{}],"d":[1,{"e":2}]}`), Retain: true, Time: testTime}
	got, err = tmpl.Append(nil, m, true)
	require.NoError(t, err)
	require.Equal(t, "{\n"+
		"\t\"tst\":\t\"2024-10-16T20:28:05.123456+0100\",\n"+
		"\t\"topic\":\t\"j/6\",\n"+
		"\t\"qos\":\t0,\n"+
		"\t\"retain\":\t1,\n"+
		"\t\"payloadlen\":\t40,\n"+
		"\t\"payload\":\t{\n"+
		"\t\t\"b\":\t{\n"+
		"\t\t},\n"+
		"\t\t\"a\":\t[],\n"+
		"\t\t\"c\":\t[{\n"+
		"\t\t\t}],\n"+
		"\t\t\"d\":\t[1, {\n"+
		"\t\t\t\t\"e\":\t2\n"+
		"\t\t\t}]\n"+
		"\t}\n"+
		"}", string(got))
}

// TestCompileErrors checks mosquitto's parse-time messages.
func TestCompileErrors(t *testing.T) {
	tests := []struct{ format, msg string }{
		{"%", "Incomplete format specifier."},
		{"abc%", "Incomplete format specifier."},
		{"%-", "Incomplete format specifier."},
		{"%0", "Incomplete format specifier."},
		{"%5", "Incomplete format specifier."},
		{"%-05", "Incomplete format specifier."},
		{"%.", "Incomplete format specifier."},
		{"%5.", "Incomplete format specifier."},
		{"%.5", "Incomplete format specifier."},
		{"%%%", "Incomplete format specifier."},
		{"@", "Incomplete format specifier."},
		{"time @H:@", "Incomplete format specifier."},
		{"%k", "Invalid format specifier 'k'."},
		{"%0-5t", "Invalid format specifier '-'."},
		{"%--t", "Invalid format specifier '-'."},
		{"%5.2.t", "Invalid format specifier '.'."},
		{"%d", "Invalid format specifier 'd'."},
		{"%f", "Invalid format specifier 'f'."},
		{"%.2:x", "Invalid format specifier ':'."},
		{"%\xc3\xa9", "Invalid format specifier '\xc3'."},
		{`\`, "Incomplete escape specifier."},
		{`abc\`, "Incomplete escape specifier."},
		{`\q`, "Invalid escape specifier 'q'."},
		{`\x41`, "Invalid escape specifier 'x'."},
		{"%2000000p", "Field width or precision too large in format specifier (maximum 1048576)."},
		{"%.2000000p", "Field width or precision too large in format specifier (maximum 1048576)."},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			tmpl, err := Compile(tt.format)
			require.Nil(t, tmpl)
			var ferr *FormatError
			require.True(t, errors.As(err, &ferr))
			require.Equal(t, tt.msg, err.Error())
		})
	}
}

// TestHex20 pins the mosquitto 2.0 %x width bug that Template.hex20
// reproduces for the interop test (and that we deliberately do not follow).
func TestHex20(t *testing.T) {
	tmpl, err := Compile("%10x|%-12x|%4X|%x|%-3x")
	require.NoError(t, err)
	tmpl.hex20 = true
	got, err := tmpl.Append(nil, msgFull(), false)
	require.NoError(t, err)
	require.Equal(t, "      6865|6865        |6865|68656c6c6f|68 ", string(got))
}

// TestNoAllocs guards the per-message hot path.
func TestNoAllocs(t *testing.T) {
	m := msgFull()
	buf := make([]byte, 0, 4096)
	for _, f := range []string{"%t %p", "%I %U %x %j", "@Y-@m-@d @H:@M:@S.@N @z %t %P %C %E", "%J"} {
		tmpl, err := Compile(f)
		require.NoError(t, err)
		allocs := testing.AllocsPerRun(100, func() {
			buf, _ = tmpl.Append(buf[:0], m, false)
		})
		if f == "%J" {
			// The payload "hello" is not JSON: the error value allocates.
			continue
		}
		require.Zero(t, allocs, "format %q", f)
	}
	jm := &Message{Topic: "j", Payload: []byte(`{"a":[1,2.5,"x\u00e9"],"b":null}`), Time: testTime}
	tmpl, err := Compile("%J")
	require.NoError(t, err)
	require.Zero(t, testing.AllocsPerRun(100, func() { buf, _ = tmpl.Append(buf[:0], jm, true) }))
	require.Zero(t, testing.AllocsPerRun(100, func() { buf = AppendJSON(buf[:0], m) }))
	for _, o := range []Options{{}, {Verbose: true}, {Verbose: true, Palette: NewPalette(true)}} {
		p, err := NewPrinter(o)
		require.NoError(t, err)
		require.Zero(t, testing.AllocsPerRun(100, func() { _, _ = p.Print(io.Discard, m) }))
	}
}
