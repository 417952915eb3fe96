// SPDX-License-Identifier: Apache-2.0

package format

import (
	"errors"
	"strconv"
)

// MaxFieldWidth is the largest field width or precision a format string may
// use. mosquitto_sub has no limit (C int overflow); we refuse absurd values so
// that one message can never expand into gigabytes of padding.
const MaxFieldWidth = 1 << 20

// Template is a compiled mosquitto_sub -F format string. It is immutable and
// safe for concurrent use.
type Template struct {
	src string
	ops []op

	// hex20 reproduces mosquitto 2.0's %x width bug (only width/2 bytes
	// printed). Tests set it to compare with a real 2.0 mosquitto_sub.
	hex20 bool
}

type opKind uint8

const (
	opLiteral opKind = iota // copy lit
	opPercent               // %-specifier
	opTime                  // @X: strftime("%X")
	opNanos                 // @N: nanoseconds of the receive time, 9 digits
)

type op struct {
	kind  opKind
	spec  byte   // specifier character for opPercent / opTime
	align byte   // '-' for left alignment, 0 otherwise
	pad   byte   // ' ' or '0'
	width int    // field width, 0 when absent
	prec  int    // precision, -1 when absent
	lit   []byte // literal bytes for opLiteral
}

// FormatError is returned by Compile for an invalid format string. Its text
// is mosquitto_sub's message without the "Error: " prefix, e.g.
// "Invalid format specifier 'k'.".
type FormatError struct {
	Msg string // mosquitto's wording
}

// Error returns mosquitto's message.
func (e *FormatError) Error() string { return e.Msg }

// validSpec lists the %-specifiers of mosquitto 2.0's -F grammar.
func validSpec(c byte) bool {
	switch c {
	case '%', 'A', 'C', 'D', 'E', 'F', 'I', 'j', 'J', 'l', 'm', 'P', 'p', 'q', 'R', 'r', 'S', 't', 'U', 'x', 'X':
		return true
	}
	return false
}

var escapes = [256]byte{'\\': '\\', '0': 0, 'a': '\a', 'e': 0x1b, 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v'}

func validEscape(c byte) bool {
	switch c {
	case '\\', '0', 'a', 'e', 'n', 'r', 't', 'v':
		return true
	}
	return false
}

// Compile parses a mosquitto_sub -F format string once. It accepts exactly
// what mosquitto 2.0's check_format accepts and reports the same errors:
// "Incomplete format specifier.", "Invalid format specifier 'k'.",
// "Incomplete escape specifier.", "Invalid escape specifier 'q'.".
func Compile(format string) (*Template, error) {
	t := &Template{src: format}
	var lit []byte
	flush := func() {
		if len(lit) > 0 {
			t.ops = append(t.ops, op{kind: opLiteral, lit: lit})
			lit = nil
		}
	}
	incomplete := &FormatError{Msg: "Incomplete format specifier."}
	n := len(format)
	for i := 0; i < n; i++ {
		c := format[i]
		switch c {
		case '%':
			if i == n-1 {
				return nil, incomplete
			}
			o := op{kind: opPercent, pad: ' ', prec: -1}
			i++
			// One flag character: '-' (left align) or '0' (zero pad). "%-05p"
			// is accepted: the '0' then counts as a width digit for the
			// check but as the pad flag when printing, as in mosquitto.
			if format[i] == '-' || format[i] == '0' {
				if format[i] == '-' {
					o.align = '-'
					if i+1 < n && format[i+1] == '0' {
						o.pad = '0'
					}
				} else {
					o.pad = '0'
				}
				if i == n-1 {
					return nil, incomplete
				}
				i++
			}
			for format[i] >= '0' && format[i] <= '9' {
				o.width = o.width*10 + int(format[i]-'0')
				if o.width > MaxFieldWidth {
					return nil, tooWide()
				}
				if i == n-1 {
					return nil, incomplete
				}
				i++
			}
			if format[i] == '.' {
				if i == n-1 {
					return nil, incomplete
				}
				i++
				o.prec = 0
				for format[i] >= '0' && format[i] <= '9' {
					o.prec = o.prec*10 + int(format[i]-'0')
					if o.prec > MaxFieldWidth {
						return nil, tooWide()
					}
					if i == n-1 {
						return nil, incomplete
					}
					i++
				}
			}
			if !validSpec(format[i]) {
				return nil, &FormatError{Msg: "Invalid format specifier '" + string([]byte{format[i]}) + "'."}
			}
			o.spec = format[i]
			if o.spec == '%' {
				lit = append(lit, '%')
				continue
			}
			flush()
			t.ops = append(t.ops, o)
		case '@':
			if i == n-1 {
				return nil, incomplete
			}
			i++
			switch format[i] {
			case '@':
				lit = append(lit, '@')
			case 'N':
				flush()
				t.ops = append(t.ops, op{kind: opNanos})
			default:
				flush()
				t.ops = append(t.ops, op{kind: opTime, spec: format[i]})
			}
		case '\\':
			if i == n-1 {
				return nil, &FormatError{Msg: "Incomplete escape specifier."}
			}
			i++
			if !validEscape(format[i]) {
				return nil, &FormatError{Msg: "Invalid escape specifier '" + string([]byte{format[i]}) + "'."}
			}
			lit = append(lit, escapes[format[i]])
		default:
			lit = append(lit, c)
		}
	}
	flush()
	return t, nil
}

func tooWide() error {
	return &FormatError{Msg: "Field width or precision too large in format specifier (maximum " +
		strconv.Itoa(MaxFieldWidth) + ")."}
}

// String returns the format string the template was compiled from.
func (t *Template) String() string { return t.src }

// JSONPayloadError reports a message whose payload is not valid JSON while
// the format contains %J. mosquitto prints it on stderr, omits the %J output
// and prints the rest of the line; Template.Append does the same.
type JSONPayloadError struct {
	Topic string // topic of the offending message
}

// Error returns mosquitto's message, without the "Error: " prefix.
func (e *JSONPayloadError) Error() string {
	return "Message payload is not valid JSON on topic " + e.Topic + "."
}

// Append renders m with the template and appends the result to dst. The
// trailing end-of-line is not part of the template (see Printer). pretty
// selects cJSON's formatted output for %j and %J (--pretty).
//
// The returned error is non-nil only when %J met a payload that is not JSON:
// one *JSONPayloadError per %J occurrence, joined with errors.Join. The
// returned slice is complete in every case.
func (t *Template) Append(dst []byte, m *Message, pretty bool) ([]byte, error) {
	var errs []error
	for i := range t.ops {
		o := &t.ops[i]
		switch o.kind {
		case opLiteral:
			dst = append(dst, o.lit...)
		case opTime:
			dst = appendStrftime(dst, m.Time, o.spec)
		case opNanos:
			dst = appendInt(dst, m.Time.Nanosecond(), 9, '0')
		case opPercent:
			var ok bool
			dst, ok = o.appendPercent(dst, m, pretty, t.hex20)
			if !ok {
				errs = append(errs, &JSONPayloadError{Topic: m.Topic})
			}
		}
	}
	if errs != nil {
		return dst, errors.Join(errs...)
	}
	return dst, nil
}

// appendPercent renders one %-specifier. ok is false only for %J with a
// payload that is not valid JSON.
func (o *op) appendPercent(dst []byte, m *Message, pretty, hex20 bool) (_ []byte, ok bool) {
	p := m.Properties
	switch o.spec {
	case 'A':
		if p != nil && p.TopicAlias != nil {
			return o.appendInt(dst, int(*p.TopicAlias)), true
		}
		return o.appendBlank(dst, o.pad), true
	case 'C':
		if ct, present := p.contentType(); present {
			return appendStr(dst, o, ct), true
		}
		return o.appendBlank(dst, ' '), true
	case 'D':
		if p != nil && p.CorrelationData != nil {
			dst = append(dst, p.CorrelationData...)
		}
		return dst, true
	case 'E':
		if p != nil && p.MessageExpiry != nil {
			// mosquitto casts the uint32 to int.
			return o.appendInt(dst, int(int32(*p.MessageExpiry))), true
		}
		return o.appendBlank(dst, o.pad), true
	case 'F':
		if p != nil && p.PayloadFormat != nil {
			return o.appendInt(dst, int(*p.PayloadFormat)), true
		}
		return o.appendBlank(dst, o.pad), true
	case 'I':
		var buf [40]byte
		b := appendStrftime(buf[:0], m.Time, 'F')
		b = append(b, 'T')
		b = appendStrftime(b, m.Time, 'T')
		b = appendStrftime(b, m.Time, 'z')
		return appendStr(dst, o, b), true
	case 'j':
		return appendMosquittoJSON(dst, m, true, pretty)
	case 'J':
		return appendMosquittoJSON(dst, m, false, pretty)
	case 'l':
		return o.appendInt(dst, len(m.Payload)), true
	case 'm':
		return o.appendInt(dst, int(m.MID)), true
	case 'P':
		if p != nil {
			for i, up := range p.UserProps {
				if i > 0 {
					dst = append(dst, ' ')
				}
				dst = append(dst, cstr(up.Key)...)
				dst = append(dst, ':')
				dst = append(dst, cstr(up.Value)...)
			}
		}
		return dst, true
	case 'p':
		return o.appendPayload(dst, m.Payload, 0, false), true
	case 'q':
		return append(dst, '0'+m.QoS), true
	case 'R':
		if p != nil && p.ResponseTopic != "" {
			return appendStr(dst, o, p.ResponseTopic), true
		}
		return dst, true
	case 'r':
		if m.Retain {
			return append(dst, '1'), true
		}
		return append(dst, '0'), true
	case 'S':
		if p != nil && len(p.SubscriptionIDs) > 0 {
			return o.appendInt(dst, p.SubscriptionIDs[0]), true
		}
		return o.appendBlank(dst, o.pad), true
	case 't':
		return appendStr(dst, o, m.Topic), true
	case 'U':
		dst = strconv.AppendInt(dst, m.Time.Unix(), 10)
		dst = append(dst, '.')
		return appendInt(dst, m.Time.Nanosecond(), 9, '0'), true
	case 'x':
		return o.appendPayload(dst, m.Payload, 1, hex20), true
	case 'X':
		return o.appendPayload(dst, m.Payload, 2, hex20), true
	}
	return dst, true
}

// cstr returns s up to its first NUL byte, as C string functions see it.
func cstr[T string | []byte](s T) T {
	for i := 0; i < len(s); i++ {
		if s[i] == 0 {
			return s[:i]
		}
	}
	return s
}

// appendBlank prints width copies of pad (an absent property).
func (o *op) appendBlank(dst []byte, pad byte) []byte {
	for i := 0; i < o.width; i++ {
		dst = append(dst, pad)
	}
	return dst
}

// appendInt follows mosquitto's formatted_print_int: printf %d, %-Nd, %0Nd
// or %Nd; the precision is ignored.
func (o *op) appendInt(dst []byte, v int) []byte {
	if o.width == 0 {
		return strconv.AppendInt(dst, int64(v), 10)
	}
	if o.align == '-' {
		start := len(dst)
		dst = strconv.AppendInt(dst, int64(v), 10)
		for i := len(dst) - start; i < o.width; i++ {
			dst = append(dst, ' ')
		}
		return dst
	}
	return appendInt(dst, v, o.width, o.pad)
}

// appendStr follows formatted_print_str: printf %s with optional width,
// '-' alignment and precision (maximum bytes). The '0' flag is ignored.
func appendStr[T string | []byte](dst []byte, o *op, s T) []byte {
	s = cstr(s)
	if o.prec >= 0 && len(s) > o.prec {
		s = s[:o.prec]
	}
	padn := o.width - len(s)
	if o.align != '-' {
		for i := 0; i < padn; i++ {
			dst = append(dst, ' ')
		}
	}
	dst = append(dst, s...)
	if o.align == '-' {
		for i := 0; i < padn; i++ {
			dst = append(dst, ' ')
		}
	}
	return dst
}

const hexLower = "0123456789abcdef"
const hexUpper = "0123456789ABCDEF"

// appendPayload follows write_payload of mosquitto 2.1 (hex: 0 raw, 1 lower,
// 2 upper). A width is a maximum and a minimum: at most width payload bytes
// are printed, padded to width characters. For hex, 2.0 printed only
// width/2 bytes; 2.1 fixed that and we follow 2.1 (docs/mosquitto.md).
// Precision is ignored. With '-' the padding goes after the data and, as
// printf("%*s") with a negative width does, a negative padding still
// prints that many spaces (so "%-p" appends len(payload) spaces, exactly
// like mosquitto 2.0 and 2.1).
func (o *op) appendPayload(dst []byte, payload []byte, hex int, hex20 bool) []byte {
	n := len(payload)
	var padn int
	if o.width > 0 {
		if n > o.width {
			n = o.width
		}
		if hex > 0 && hex20 {
			n /= 2
			padn = o.width - 2*n
		} else if hex > 0 {
			padn = o.width - 2*n
		} else {
			padn = o.width - n
		}
	} else {
		padn = o.width - n
	}
	if o.align != '-' {
		for i := 0; i < padn; i++ {
			dst = append(dst, o.pad)
		}
	}
	switch hex {
	case 0:
		dst = append(dst, payload[:n]...)
	default:
		digits := hexLower
		if hex == 2 {
			digits = hexUpper
		}
		for _, b := range payload[:n] {
			dst = append(dst, digits[b>>4], digits[b&0x0f])
		}
	}
	if o.align == '-' {
		if padn < 0 {
			padn = -padn
		}
		for i := 0; i < padn; i++ {
			dst = append(dst, ' ')
		}
	}
	return dst
}

// usesTime reports whether rendering reads the receive time.
func (t *Template) usesTime() bool {
	for _, o := range t.ops {
		switch o.kind {
		case opTime, opNanos:
			return true
		case opPercent:
			switch o.spec {
			case 'I', 'U', 'j', 'J':
				return true
			}
		}
	}
	return false
}
