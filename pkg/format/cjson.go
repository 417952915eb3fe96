// SPDX-License-Identifier: Apache-2.0

package format

import (
	"math"
	"strconv"
)

// This file reproduces what mosquitto_sub's %j and %J print with the cJSON
// library (1.7.x, as linked by official and Debian builds): member order,
// string escaping, number formatting, cJSON_Print's tab layout for --pretty,
// and cJSON_ParseWithOpts' idea of valid JSON for %J (which is more lenient
// than RFC 8259 in places, e.g. any byte <= 0x20 is whitespace and "\uZZZZ"
// decodes to NUL). Everything renders by appending to a byte slice.

// cjNestingLimit is CJSON_NESTING_LIMIT.
const cjNestingLimit = 1000

// appendCJSONString prints s as cJSON's print_string_ptr does: the C string
// up to the first NUL; '"', '\\', \b \f \n \r \t escaped; other bytes below
// 0x20 as \u00xx; everything else (0x7f, non-ASCII, invalid UTF-8) raw.
func appendCJSONString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0 {
			dst = append(dst, s[start:i]...)
			return append(dst, '"')
		}
		if c > 31 && c != '"' && c != '\\' {
			continue
		}
		dst = append(dst, s[start:i]...)
		start = i + 1
		dst = appendEscape(dst, c)
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendCJSONNumber prints d as cJSON's print_number: "null" for NaN and
// infinities, else printf("%1.15g") when sscanf of that text gives back a
// value equal within DBL_EPSILON (relative), else printf("%1.17g").
func appendCJSONNumber(dst []byte, d float64) []byte {
	if math.IsNaN(d) || math.IsInf(d, 0) {
		return append(dst, "null"...)
	}
	start := len(dst)
	dst = strconv.AppendFloat(dst, d, 'g', 15, 64)
	test, err := strconv.ParseFloat(string(dst[start:]), 64)
	if err == nil && compareDouble(test, d) {
		return dst
	}
	return strconv.AppendFloat(dst[:start], d, 'g', 17, 64)
}

// compareDouble is cJSON's compare_double.
func compareDouble(a, b float64) bool {
	maxVal := math.Max(math.Abs(a), math.Abs(b))
	return math.Abs(a-b) <= maxVal*2.220446049250313e-16
}

// cjWriter tracks cJSON's print depth for formatted output.
type cjWriter struct {
	pretty bool
	depth  int
}

func (w *cjWriter) tabs(dst []byte, n int) []byte {
	for i := 0; i < n; i++ {
		dst = append(dst, '\t')
	}
	return dst
}

// open starts an object.
func (w *cjWriter) open(dst []byte) []byte {
	w.depth++
	if w.pretty {
		return append(dst, '{', '\n')
	}
	return append(dst, '{')
}

// key starts member n (0-based) of the current object.
func (w *cjWriter) key(dst []byte, n int, k string) []byte {
	if n > 0 {
		dst = append(dst, ',')
		if w.pretty {
			dst = append(dst, '\n')
		}
	}
	if w.pretty {
		dst = w.tabs(dst, w.depth)
	}
	dst = appendCJSONString(dst, k)
	if w.pretty {
		return append(dst, ':', '\t')
	}
	return append(dst, ':')
}

// close ends the current object that had n members.
func (w *cjWriter) close(dst []byte, n int) []byte {
	if w.pretty {
		if n > 0 {
			dst = append(dst, '\n')
		}
		dst = w.tabs(dst, w.depth-1)
	}
	w.depth--
	return append(dst, '}')
}

// appendMosquittoJSON renders the %j (escaped=true) or %J object. For %J
// with a payload cJSON cannot parse it returns dst unchanged and false.
func appendMosquittoJSON(dst []byte, m *Message, escaped, pretty bool) ([]byte, bool) {
	start := len(dst)
	w := cjWriter{pretty: pretty}
	dst = w.open(dst)
	n := 0
	dst = w.key(dst, n, "tst")
	n++
	dst = appendTST(dst, m)
	dst = w.key(dst, n, "topic")
	n++
	dst = appendCJSONString(dst, m.Topic)
	dst = w.key(dst, n, "qos")
	n++
	dst = strconv.AppendUint(dst, uint64(m.QoS), 10)
	dst = w.key(dst, n, "retain")
	n++
	if m.Retain {
		dst = append(dst, '1')
	} else {
		dst = append(dst, '0')
	}
	dst = w.key(dst, n, "payloadlen")
	n++
	dst = strconv.AppendInt(dst, int64(len(m.Payload)), 10)
	if m.QoS > 0 {
		dst = w.key(dst, n, "mid")
		n++
		dst = strconv.AppendUint(dst, uint64(m.MID), 10)
	}
	if !m.Properties.empty() {
		dst = w.key(dst, n, "properties")
		n++
		dst = appendMosquittoProps(dst, &w, m.Properties)
	}
	dst = w.key(dst, n, "payload")
	n++
	switch {
	case len(m.Payload) == 0:
		// libmosquitto hands over a NULL payload: cJSON null in both modes.
		dst = append(dst, "null"...)
	case escaped:
		dst = appendCJSONString(dst, m.Payload)
	default:
		var ok bool
		dst, ok = cjsonReformat(dst, m.Payload, pretty, w.depth)
		if !ok {
			return dst[:start], false
		}
	}
	return w.close(dst, n), true
}

// appendTST appends the "tst" string: local time with microseconds and a
// numeric offset, "2024-10-16T20:28:05.123456+0100" (mosquitto 2.0.20;
// 2.0.11 printed a stray 'Z' before the offset).
func appendTST(dst []byte, m *Message) []byte {
	t := m.Time
	dst = append(dst, '"')
	dst = appendStrftime(dst, t, 'Y')
	dst = append(dst, '-')
	dst = appendStrftime(dst, t, 'm')
	dst = append(dst, '-')
	dst = appendStrftime(dst, t, 'd')
	dst = append(dst, 'T')
	dst = appendStrftime(dst, t, 'T')
	dst = append(dst, '.')
	dst = appendInt(dst, t.Nanosecond()/1000, 6, '0')
	dst = appendStrftime(dst, t, 'z')
	return append(dst, '"')
}

// appendMosquittoProps renders the "properties" object. mosquitto prints
// the properties in the order they were received; our Message does not keep
// that order, so we use the MQTT 5 property identifier order, which is what
// mochi (mqttkit's broker) and paho send: payload-format-indicator,
// message-expiry-interval, content-type, response-topic, correlation-data,
// subscription-identifier, topic-alias, then the user properties.
func appendMosquittoProps(dst []byte, w *cjWriter, p *Properties) []byte {
	dst = w.open(dst)
	n := 0
	if p.PayloadFormat != nil {
		dst = w.key(dst, n, "payload-format-indicator")
		n++
		dst = strconv.AppendUint(dst, uint64(*p.PayloadFormat), 10)
	}
	if p.MessageExpiry != nil {
		dst = w.key(dst, n, "message-expiry-interval")
		n++
		dst = strconv.AppendUint(dst, uint64(*p.MessageExpiry), 10)
	}
	if ct, ok := p.contentType(); ok {
		dst = w.key(dst, n, "content-type")
		n++
		dst = appendCJSONString(dst, ct)
	}
	if p.ResponseTopic != "" {
		dst = w.key(dst, n, "response-topic")
		n++
		dst = appendCJSONString(dst, p.ResponseTopic)
	}
	if p.CorrelationData != nil {
		dst = w.key(dst, n, "correlation-data")
		n++
		dst = appendCJSONString(dst, p.CorrelationData)
	}
	for _, id := range p.SubscriptionIDs {
		dst = w.key(dst, n, "subscription-identifier")
		n++
		dst = strconv.AppendInt(dst, int64(id), 10)
	}
	if p.TopicAlias != nil {
		dst = w.key(dst, n, "topic-alias")
		n++
		dst = strconv.AppendUint(dst, uint64(*p.TopicAlias), 10)
	}
	if len(p.UserProps) > 0 {
		// mosquitto 2.0: one object, duplicate names give duplicate members.
		dst = w.key(dst, n, "user-properties")
		n++
		dst = w.open(dst)
		for i, up := range p.UserProps {
			dst = w.key(dst, i, string(cstr(up.Key)))
			dst = appendCJSONString(dst, up.Value)
		}
		dst = w.close(dst, len(p.UserProps))
	}
	return w.close(dst, n)
}

// cjParser validates a payload the way cJSON_ParseWithOpts(payload, &end,
// true) does and prints the parsed value as cJSON_Print(Unformatted) would,
// in one pass. The buffer cJSON sees is the payload plus its terminating
// NUL, so at(len(in)) is 0.
type cjParser struct {
	in     []byte
	pos    int
	depth  int // parse nesting, for CJSON_NESTING_LIMIT
	w      cjWriter
	out    []byte
	length int // cJSON's buffer length: len(in)+1
}

func (p *cjParser) at(i int) byte {
	if i < len(p.in) {
		return p.in[i]
	}
	return 0
}

func (p *cjParser) canAccess(i int) bool { return p.pos+i < p.length }

func (p *cjParser) skipWS() {
	if !p.canAccess(0) {
		return
	}
	for p.canAccess(0) && p.at(p.pos) <= 32 {
		p.pos++
	}
	if p.pos == p.length {
		p.pos--
	}
}

func (p *cjParser) hasPrefix(s string) bool {
	if p.pos+len(s) > p.length {
		return false
	}
	for i := 0; i < len(s); i++ {
		if p.at(p.pos+i) != s[i] {
			return false
		}
	}
	return true
}

// cjsonReformat appends cJSON's rendering of payload (printed at the given
// cJSON depth) to dst. ok is false when cJSON would reject the payload.
func cjsonReformat(dst []byte, payload []byte, pretty bool, depth int) (_ []byte, ok bool) {
	for _, c := range payload {
		if c == 0 {
			// cJSON sees only the C string; the parse end then falls short
			// of payload+payloadlen and mosquitto reports invalid JSON.
			return dst, false
		}
	}
	start := len(dst)
	p := cjParser{in: payload, length: len(payload) + 1, w: cjWriter{pretty: pretty, depth: depth}, out: dst}
	// skip_utf8_bom needs at least 5 accessible bytes (including the NUL).
	if len(payload) >= 4 && payload[0] == 0xEF && payload[1] == 0xBB && payload[2] == 0xBF {
		p.pos = 3
	}
	p.skipWS()
	if !p.value() {
		return dst[:start], false
	}
	p.skipWS()
	if p.pos >= p.length || p.at(p.pos) != 0 || p.pos != len(payload) {
		return p.out[:start], false
	}
	return p.out, true
}

func (p *cjParser) value() bool {
	switch {
	case p.hasPrefix("null"):
		p.out = append(p.out, "null"...)
		p.pos += 4
		return true
	case p.hasPrefix("false"):
		p.out = append(p.out, "false"...)
		p.pos += 5
		return true
	case p.hasPrefix("true"):
		p.out = append(p.out, "true"...)
		p.pos += 4
		return true
	}
	if !p.canAccess(0) {
		return false
	}
	switch c := p.at(p.pos); {
	case c == '"':
		return p.str()
	case c == '-' || (c >= '0' && c <= '9'):
		return p.number()
	case c == '[':
		return p.array()
	case c == '{':
		return p.object()
	}
	return false
}

// number mirrors parse_number: take the run of [0-9+-eE.] bytes and let
// strtod convert its longest valid prefix. (cJSON 1.7.14 copied at most 63
// bytes; 1.7.15, which Debian's mosquitto links, has no such limit.)
func (p *cjParser) number() bool {
	end := p.pos
	for end < p.length {
		c := p.at(end)
		if (c >= '0' && c <= '9') || c == '+' || c == '-' || c == 'e' || c == 'E' || c == '.' {
			end++
			continue
		}
		break
	}
	n := strtodPrefix(p.in[p.pos:end])
	if n == 0 {
		return false
	}
	d, err := strconv.ParseFloat(string(p.in[p.pos:p.pos+n]), 64)
	if err != nil {
		// Only range errors can happen here; strtod returns ±HUGE_VAL or
		// 0 in that case, as ParseFloat does.
		if ne, ok := err.(*strconv.NumError); !ok || ne.Err != strconv.ErrRange {
			return false
		}
	}
	p.out = appendCJSONNumber(p.out, d)
	p.pos += n
	return true
}

// strtodPrefix returns the length of the longest prefix of b that strtod
// accepts as a decimal floating-point number (0 if none). b only holds
// bytes from [0-9+-eE.].
func strtodPrefix(b []byte) int {
	i := 0
	if i < len(b) && (b[i] == '+' || b[i] == '-') {
		i++
	}
	digits := 0
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
		digits++
	}
	if i < len(b) && b[i] == '.' {
		i++
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return 0
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		j := i + 1
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		if j < len(b) && b[j] >= '0' && b[j] <= '9' {
			for j < len(b) && b[j] >= '0' && b[j] <= '9' {
				j++
			}
			i = j
		}
	}
	return i
}

// parseHex4 is cJSON's parse_hex4: 0 for any invalid digit.
func parseHex4(b []byte) uint32 {
	var h uint32
	for i := 0; i < 4; i++ {
		c := b[i]
		switch {
		case c >= '0' && c <= '9':
			h += uint32(c - '0')
		case c >= 'A' && c <= 'F':
			h += 10 + uint32(c-'A')
		case c >= 'a' && c <= 'f':
			h += 10 + uint32(c-'a')
		default:
			return 0
		}
		if i < 3 {
			h <<= 4
		}
	}
	return h
}

// str parses a string literal at p.pos (parse_string) and prints it; a
// decoded NUL ends the printed text, as cJSON stores C strings.
func (p *cjParser) str() bool {
	// Find the closing quote the way cJSON does.
	end := p.pos + 1
	for end < p.length && p.at(end) != '"' {
		if p.at(end) == '\\' {
			if end+1 >= p.length {
				return false
			}
			end++
		}
		end++
	}
	if end >= p.length || p.at(end) != '"' {
		return false
	}
	p.out = append(p.out, '"')
	truncated := false
	emit := func(b ...byte) {
		for _, c := range b {
			if truncated {
				return
			}
			if c == 0 {
				truncated = true
				return
			}
			p.out = appendEscapedByte(p.out, c)
		}
	}
	i := p.pos + 1
	for i < end {
		c := p.at(i)
		if c != '\\' {
			emit(c)
			i++
			continue
		}
		seq := 2
		switch e := p.at(i + 1); e {
		case 'b':
			emit('\b')
		case 'f':
			emit('\f')
		case 'n':
			emit('\n')
		case 'r':
			emit('\r')
		case 't':
			emit('\t')
		case '"', '\\', '/':
			emit(e)
		case 'u':
			var utf [4]byte
			var ulen int
			seq, ulen = p.utf16(i, end, &utf)
			if seq == 0 {
				return false
			}
			emit(utf[:ulen]...)
		default:
			return false
		}
		i += seq
	}
	p.out = append(p.out, '"')
	p.pos = end + 1
	return true
}

// appendEscapedByte appends one byte with print_string_ptr's escaping.
func appendEscapedByte(dst []byte, c byte) []byte {
	if c > 31 && c != '"' && c != '\\' {
		return append(dst, c)
	}
	return appendEscape(dst, c)
}

// utf16 is utf16_literal_to_utf8 for the escape starting at i; it returns
// the sequence length consumed (0 on failure) and the UTF-8 bytes.
func (p *cjParser) utf16(i, end int, out *[4]byte) (seq, n int) {
	if end-i < 6 {
		return 0, 0
	}
	var hex [4]byte
	for k := 0; k < 4; k++ {
		hex[k] = p.at(i + 2 + k)
	}
	first := parseHex4(hex[:])
	if first >= 0xDC00 && first <= 0xDFFF {
		return 0, 0
	}
	var cp uint32
	if first >= 0xD800 && first <= 0xDBFF {
		second := i + 6
		if end-second < 6 {
			return 0, 0
		}
		if p.at(second) != '\\' || p.at(second+1) != 'u' {
			return 0, 0
		}
		for k := 0; k < 4; k++ {
			hex[k] = p.at(second + 2 + k)
		}
		sc := parseHex4(hex[:])
		if sc < 0xDC00 || sc > 0xDFFF {
			return 0, 0
		}
		cp = 0x10000 + (((first & 0x3FF) << 10) | (sc & 0x3FF))
		seq = 12
	} else {
		cp = first
		seq = 6
	}
	switch {
	case cp < 0x80:
		out[0] = byte(cp)
		n = 1
	case cp < 0x800:
		out[0] = byte(0xC0 | cp>>6)
		out[1] = byte(0x80 | cp&0x3F)
		n = 2
	case cp < 0x10000:
		out[0] = byte(0xE0 | cp>>12)
		out[1] = byte(0x80 | (cp>>6)&0x3F)
		out[2] = byte(0x80 | cp&0x3F)
		n = 3
	default:
		out[0] = byte(0xF0 | cp>>18)
		out[1] = byte(0x80 | (cp>>12)&0x3F)
		out[2] = byte(0x80 | (cp>>6)&0x3F)
		out[3] = byte(0x80 | cp&0x3F)
		n = 4
	}
	return seq, n
}

func (p *cjParser) array() bool {
	if p.depth >= cjNestingLimit {
		return false
	}
	p.depth++
	p.out = append(p.out, '[')
	p.w.depth++
	p.pos++ // '['
	p.skipWS()
	if p.canAccess(0) && p.at(p.pos) == ']' {
		return p.endArray()
	}
	if !p.canAccess(0) {
		return false
	}
	first := true
	for {
		if !first {
			p.pos++ // ','
			p.skipWS()
			p.out = append(p.out, ',')
			if p.w.pretty {
				p.out = append(p.out, ' ')
			}
		}
		first = false
		if !p.value() {
			return false
		}
		p.skipWS()
		if !(p.canAccess(0) && p.at(p.pos) == ',') {
			break
		}
	}
	if !p.canAccess(0) || p.at(p.pos) != ']' {
		return false
	}
	return p.endArray()
}

func (p *cjParser) endArray() bool {
	p.depth--
	p.w.depth--
	p.out = append(p.out, ']')
	p.pos++
	return true
}

func (p *cjParser) object() bool {
	if p.depth >= cjNestingLimit {
		return false
	}
	p.depth++
	p.out = p.w.open(p.out)
	p.pos++ // '{'
	p.skipWS()
	n := 0
	if p.canAccess(0) && p.at(p.pos) == '}' {
		return p.endObject(n)
	}
	if !p.canAccess(0) {
		return false
	}
	for {
		if n > 0 {
			p.pos++ // ','
		}
		p.skipWS()
		// The key: printed like a member name, which is the same string
		// rendering as a value.
		if n > 0 {
			p.out = append(p.out, ',')
			if p.w.pretty {
				p.out = append(p.out, '\n')
			}
		}
		if p.w.pretty {
			p.out = p.w.tabs(p.out, p.w.depth)
		}
		if !p.canAccess(0) || p.at(p.pos) != '"' || !p.str() {
			return false
		}
		p.skipWS()
		if !p.canAccess(0) || p.at(p.pos) != ':' {
			return false
		}
		p.out = append(p.out, ':')
		if p.w.pretty {
			p.out = append(p.out, '\t')
		}
		p.pos++
		p.skipWS()
		if !p.value() {
			return false
		}
		p.skipWS()
		n++
		if !(p.canAccess(0) && p.at(p.pos) == ',') {
			break
		}
	}
	if !p.canAccess(0) || p.at(p.pos) != '}' {
		return false
	}
	return p.endObject(n)
}

func (p *cjParser) endObject(n int) bool {
	p.depth--
	p.out = p.w.close(p.out, n)
	p.pos++
	return true
}
