// SPDX-License-Identifier: Apache-2.0

package ui

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// maxNumberScan is the largest payload searched for a number: a bigger
// one is a document or a file, not a reading.
const maxNumberScan = 16 << 10

// maxTextNumber is the longest text payload whose first number is charted:
// a reading with a label ("Temperature: 23.4°C"), not prose.
const maxTextNumber = 256

// Number extracts the reading a payload carries, for the charts:
//
//   - a plain number: "23.4", " -1e3 ";
//   - JSON: a number, a string holding one, or the first numeric field
//     of an object in document order (nested fields are named a.b, array
//     items a.0); prefer names the field used before, so that a topic
//     keeps charting the same field while it is there;
//   - short text: the first number that stands alone, as in the course's
//     "Temperature: 23.4°C" or "Sent: 23.41°C" (digits inside a word,
//     such as sensor3 or v1.2, and dotted addresses do not count).
//
// field is the JSON field the number came from ("" otherwise). NaN and
// infinities are not readings.
func Number(payload []byte, prefer string) (v float64, field string, ok bool) {
	if len(payload) == 0 || len(payload) > maxNumberScan {
		return 0, "", false
	}
	s := bytes.TrimSpace(payload)
	if f, err := strconv.ParseFloat(string(s), 64); err == nil && plainNumber(s) {
		return finite(f, "")
	}
	if len(s) > 0 && (s[0] == '{' || s[0] == '[' || s[0] == '"') && json.Valid(s) {
		return jsonNumber(s, prefer)
	}
	if len(s) > maxTextNumber || !utf8.Valid(s) {
		return 0, "", false
	}
	return textNumber(string(s))
}

// plainNumber rejects what ParseFloat takes but nobody writes as a
// reading: hex floats, "Inf", "NaN", underscores.
func plainNumber(s []byte) bool {
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E') {
			return false
		}
	}
	return true
}

func finite(f float64, field string) (float64, string, bool) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, "", false
	}
	return f, field, true
}

// jsonNumber finds the number in a valid JSON document.
func jsonNumber(s []byte, prefer string) (float64, string, bool) {
	var doc any
	d := json.NewDecoder(bytes.NewReader(s))
	d.UseNumber()
	if s[0] == '"' {
		if err := d.Decode(&doc); err != nil {
			return 0, "", false
		}
		str, _ := doc.(string)
		if len(str) > maxTextNumber {
			return 0, "", false
		}
		return textNumber(str)
	}
	// Walk the tokens rather than decoding into maps: maps forget the
	// order of the fields, and "the first numeric field" needs it.
	w := &jsonWalker{d: d, prefer: prefer}
	if err := w.value(""); err != nil && !w.done {
		return 0, "", false
	}
	switch {
	case w.hit != nil:
		return w.hit.v, w.hit.field, true
	case w.first != nil:
		return w.first.v, w.first.field, true
	}
	return 0, "", false
}

type found struct {
	v     float64
	field string
}

// jsonWalker reads a JSON document value by value, naming each by its
// path (a.b.0), until it finds the preferred field or, with none
// preferred, the first number.
type jsonWalker struct {
	d      *json.Decoder
	prefer string
	first  *found
	hit    *found
	done   bool
}

// errFound stops the walk (a type, not a variable: the package has no
// initialisation work).
type foundError struct{}

func (foundError) Error() string { return "found" }

func (w *jsonWalker) value(name string) error {
	tok, err := w.d.Token()
	if err != nil {
		return err
	}
	switch t := tok.(type) {
	case json.Delim:
		i := 0
		for w.d.More() {
			child := strconv.Itoa(i)
			if t == '{' {
				k, err := w.d.Token()
				if err != nil {
					return err
				}
				child, _ = k.(string)
			}
			if name != "" {
				child = name + "." + child
			}
			if err := w.value(child); err != nil {
				return err
			}
			i++
		}
		_, err := w.d.Token() // the closing delimiter
		return err
	case json.Number:
		f, err := t.Float64()
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil
		}
		if name == w.prefer || w.prefer == "" {
			w.hit, w.done = &found{f, name}, true
			return foundError{}
		}
		if w.first == nil {
			w.first = &found{f, name}
		}
	}
	return nil
}

// textNumber returns the first number in s that stands on its own: not
// glued to a letter, digit, '_' or '.' before it, and not followed by
// '.' and a digit (a version or address) after it.
func textNumber(s string) (float64, string, bool) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		start := i
		if (c == '-' || c == '+') && i+1 < len(s) && isDigit(s[i+1]) {
			i++
		} else if !isDigit(c) {
			continue
		}
		if start > 0 && isWordByte(s[start-1]) {
			// Skip the rest of this word's digits.
			for i+1 < len(s) && (isDigit(s[i+1]) || s[i+1] == '.') {
				i++
			}
			continue
		}
		j := i
		for j < len(s) && isDigit(s[j]) {
			j++
		}
		if j < len(s) && (s[j] == 'x' || s[j] == 'X' || s[j] == 'b' || s[j] == 'B') && s[start:j] == "0" {
			// 0x1F, 0b101: not decimal.
			for j < len(s) && isWordByte(s[j]) {
				j++
			}
			i = j - 1 // the loop's i++ moves to j
			continue
		}
		if j+1 < len(s) && s[j] == '.' && isDigit(s[j+1]) {
			j++
			for j < len(s) && isDigit(s[j]) {
				j++
			}
		}
		if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
			k := j + 1
			if k < len(s) && (s[k] == '-' || s[k] == '+') {
				k++
			}
			if k < len(s) && isDigit(s[k]) {
				for k < len(s) && isDigit(s[k]) {
					k++
				}
				j = k
			}
		}
		if j+1 < len(s) && s[j] == '.' && isDigit(s[j+1]) {
			// 10.0.0.1, 1.2.3: not a reading.
			for j < len(s) && (isDigit(s[j]) || s[j] == '.') {
				j++
			}
			i = j - 1 // the loop's i++ moves to j
			continue
		}
		f, err := strconv.ParseFloat(s[start:j], 64)
		if err != nil {
			i = j - 1 // the loop's i++ moves to j
			continue
		}
		return finite(f, "")
	}
	return 0, "", false
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isWordByte(c byte) bool {
	return isDigit(c) || c == '_' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
