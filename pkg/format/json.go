// SPDX-License-Identifier: Apache-2.0

package format

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"
)

// JSONTimeLayout is the layout of the "time" member of --json output:
// RFC 3339 with exactly nine fractional digits and a numeric offset.
const JSONTimeLayout = "2006-01-02T15:04:05.000000000Z07:00"

// AppendJSON appends m as one line of mqttkit's JSON output (--json), the
// stable schema documented in docs/json.md, without the trailing newline:
//
//	{"topic":"t","payload":"text","qos":0,"retain":false,"mid":0,"time":"..."}
//
// The payload is a JSON string when it is valid UTF-8; otherwise it is
// base64 (standard alphabet, padded) and "payload_encoding":"base64" follows
// it. MQTT 5 properties, when the message has any, appear as "properties"
// (see docs/json.md); user properties are an array of [key, value] pairs in
// received order.
func AppendJSON(dst []byte, m *Message) []byte {
	dst = append(dst, `{"topic":`...)
	dst = appendJSONString(dst, m.Topic)
	dst = append(dst, `,"payload":`...)
	dst = appendJSONBytes(dst, m.Payload, "payload_encoding")
	dst = append(dst, `,"qos":`...)
	dst = strconv.AppendUint(dst, uint64(m.QoS), 10)
	dst = append(dst, `,"retain":`...)
	dst = strconv.AppendBool(dst, m.Retain)
	dst = append(dst, `,"mid":`...)
	dst = strconv.AppendUint(dst, uint64(m.MID), 10)
	if !m.Properties.empty() {
		dst = append(dst, `,"properties":`...)
		dst = appendJSONProps(dst, m.Properties)
	}
	dst = append(dst, `,"time":"`...)
	dst = m.Time.AppendFormat(dst, JSONTimeLayout)
	return append(dst, `"}`...)
}

// appendJSONBytes appends b as a JSON string if it is valid UTF-8, else as
// base64 followed by the member encKey:"base64".
func appendJSONBytes(dst []byte, b []byte, encKey string) []byte {
	if utf8.Valid(b) {
		return appendJSONString(dst, b)
	}
	dst = append(dst, '"')
	dst = base64.StdEncoding.AppendEncode(dst, b)
	dst = append(dst, `","`...)
	dst = append(dst, encKey...)
	return append(dst, `":"base64"`...)
}

func appendJSONProps(dst []byte, p *Properties) []byte {
	dst = append(dst, '{')
	sep := false
	key := func(k string) {
		if sep {
			dst = append(dst, ',')
		}
		sep = true
		dst = append(dst, '"')
		dst = append(dst, k...)
		dst = append(dst, '"', ':')
	}
	if p.PayloadFormat != nil {
		key("payload_format_indicator")
		dst = strconv.AppendUint(dst, uint64(*p.PayloadFormat), 10)
	}
	if p.MessageExpiry != nil {
		key("message_expiry_interval")
		dst = strconv.AppendUint(dst, uint64(*p.MessageExpiry), 10)
	}
	if ct, ok := p.contentType(); ok {
		key("content_type")
		dst = appendJSONString(dst, ct)
	}
	if p.ResponseTopic != "" {
		key("response_topic")
		dst = appendJSONString(dst, p.ResponseTopic)
	}
	if p.CorrelationData != nil {
		key("correlation_data")
		dst = appendJSONBytes(dst, p.CorrelationData, "correlation_data_encoding")
	}
	if len(p.SubscriptionIDs) > 0 {
		key("subscription_identifiers")
		dst = append(dst, '[')
		for i, id := range p.SubscriptionIDs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, int64(id), 10)
		}
		dst = append(dst, ']')
	}
	if p.TopicAlias != nil {
		key("topic_alias")
		dst = strconv.AppendUint(dst, uint64(*p.TopicAlias), 10)
	}
	if len(p.UserProps) > 0 {
		key("user_properties")
		dst = append(dst, '[')
		for i, up := range p.UserProps {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, '[')
			dst = appendJSONString(dst, up.Key)
			dst = append(dst, ',')
			dst = appendJSONString(dst, up.Value)
			dst = append(dst, ']')
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// appendJSONString appends s as an RFC 8259 string. Control characters are
// escaped (\n \r \t \b \f, others as \u00XX), as are U+2028 and U+2029;
// invalid UTF-8 bytes become U+FFFD so the output is always valid JSON.
func appendJSONString[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			dst = appendEscape(dst, c)
			i++
			start = i
			continue
		}
		// At most UTFMax bytes: the conversion of a []byte uses a stack
		// buffer and does not allocate.
		r, size := utf8.DecodeRuneInString(string(s[i:min(i+utf8.UTFMax, len(s))]))
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexLower[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendEscape appends the JSON escape of an ASCII byte that needs one: a
// quote, a backslash or a control character. cJSON (%j) and our --json
// write the same escapes; they differ only in how they treat bytes >= 0x80.
func appendEscape(dst []byte, c byte) []byte {
	switch c {
	case '"', '\\':
		return append(dst, '\\', c)
	case '\b':
		return append(dst, '\\', 'b')
	case '\f':
		return append(dst, '\\', 'f')
	case '\n':
		return append(dst, '\\', 'n')
	case '\r':
		return append(dst, '\\', 'r')
	case '\t':
		return append(dst, '\\', 't')
	}
	return append(dst, '\\', 'u', '0', '0', hexLower[c>>4], hexLower[c&0xf])
}
