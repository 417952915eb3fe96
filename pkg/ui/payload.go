// SPDX-License-Identifier: Apache-2.0

package ui

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"unicode/utf8"
)

// Payload kinds, as the page shows them.
const (
	KindEmpty  = "empty"
	KindText   = "text"
	KindJSON   = "json"
	KindBinary = "binary"
)

// maxPretty is the largest JSON payload that is parsed to be indented;
// a larger one is shown as text (its beginning).
const maxPretty = 64 << 10

// Rendered is a payload as the page shows it.
type Rendered struct {
	Kind      string // KindEmpty, KindText, KindJSON or KindBinary
	Text      string // text, indented JSON or a hex dump, at most the limit
	Truncated bool   // Text is the beginning of a longer rendering
}

// Render turns a payload into what the page shows, in at most limit
// bytes of text: valid UTF-8 without control characters (but tab and
// newlines) is text, JSON objects and arrays are indented, anything else
// is a hex dump of the first bytes. Only the beginning of a big payload
// is looked at.
func Render(p []byte, limit int) Rendered {
	if len(p) == 0 {
		return Rendered{Kind: KindEmpty}
	}
	head := p
	if len(head) > limit {
		head = head[:limit]
	}
	if isText(head, len(head) < len(p)) {
		trimmed := bytes.TrimSpace(p)
		if len(p) <= maxPretty && len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') && json.Valid(trimmed) {
			var b bytes.Buffer
			if json.Indent(&b, trimmed, "", "  ") == nil {
				text, cut := clip(b.String(), limit)
				return Rendered{Kind: KindJSON, Text: text, Truncated: cut}
			}
		}
		for len(head) < len(p) && len(head) > 0 && !utf8.Valid(head[max(0, len(head)-utf8.UTFMax):]) {
			head = head[:len(head)-1] // a rune cut in two at the limit
		}
		text, cut := clip(string(head), limit)
		return Rendered{Kind: KindText, Text: text, Truncated: cut || len(head) < len(p)}
	}
	return hexDump(p, limit)
}

// isText reports whether b is printable UTF-8; when b is the beginning
// of a longer payload, a rune cut in two at its end is allowed.
func isText(b []byte, cut bool) bool {
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return cut && !utf8.FullRune(b[i:])
		}
		i += size
	}
	return true
}

// clip cuts s to at most limit bytes on a rune boundary.
func clip(s string, limit int) (string, bool) {
	if len(s) <= limit {
		return strings.ToValidUTF8(s, "\uFFFD"), false
	}
	s = s[:limit]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s, true
}

// hexDump renders the first bytes of p like `hexdump -C`, 16 bytes a
// line, in at most limit bytes.
func hexDump(p []byte, limit int) Rendered {
	const lineLen = 79 // "00000000  " + 16×3 + 1 + " |" + 16 + "|\n"
	n := (limit / lineLen) * 16
	if n < 16 {
		n = 16
	}
	cut := false
	if len(p) > n {
		p, cut = p[:n], true
	}
	var b strings.Builder
	for off := 0; off < len(p); off += 16 {
		line := p[off:min(off+16, len(p))]
		b.WriteString(hex.EncodeToString([]byte{byte(off >> 24), byte(off >> 16), byte(off >> 8), byte(off)}))
		b.WriteString("  ")
		for i := 0; i < 16; i++ {
			if i < len(line) {
				b.WriteString(hex.EncodeToString(line[i : i+1]))
				b.WriteByte(' ')
			} else {
				b.WriteString("   ")
			}
			if i == 7 {
				b.WriteByte(' ')
			}
		}
		b.WriteString(" |")
		for _, c := range line {
			if c < 0x20 || c >= 0x7f {
				c = '.'
			}
			b.WriteByte(c)
		}
		b.WriteString("|\n")
	}
	return Rendered{Kind: KindBinary, Text: b.String(), Truncated: cut}
}

// Preview is the one-line form of a payload in the message log: text
// with line breaks as spaces, or hex for binary, at most limit bytes.
func Preview(p []byte, limit int) string {
	head := p
	if len(head) > limit {
		head = head[:limit]
	}
	if !isText(head, len(head) < len(p)) {
		n := min(len(p), limit/3)
		s := "0x" + hex.EncodeToString(p[:n])
		if n < len(p) {
			s += "…"
		}
		return s
	}
	s, cut := clip(string(head), limit)
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		return r
	}, s)
	if cut || len(head) < len(p) {
		s += "…"
	}
	return s
}

// displayTopic makes a topic safe to show: invalid UTF-8 becomes U+FFFD
// and a very long name is cut (MQTT allows 65535 bytes).
func displayTopic(t string, limit int) string {
	s, cut := clip(t, limit)
	if cut {
		s += "…"
	}
	return s
}

// maxLevels is the deepest the topic tree goes: deeper levels stay
// joined in the last one.
const maxLevels = 32

// Levels splits a display topic into the levels of the tree: "a/b/c" is
// a, b, c; empty levels are kept (as ""), and levels past maxLevels
// stay joined with '/' in the last one.
func Levels(topic string) []string {
	parts := strings.SplitN(topic, "/", maxLevels)
	return parts
}
