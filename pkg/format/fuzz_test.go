// SPDX-License-Identifier: Apache-2.0

package format

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// mosquittoCheckFormat is a line-by-line port of check_format() in
// mosquitto 2.0's client/client_shared.c (C strings: reading one past the
// end yields NUL). It is the oracle for FuzzCompile.
func mosquittoCheckFormat(str string) string {
	at := func(i int) byte {
		if i < len(str) {
			return str[i]
		}
		return 0
	}
	length := len(str)
	for i := 0; i < length; i++ {
		if str[i] == '%' {
			if i == length-1 {
				return "Incomplete format specifier."
			}
			if at(i+1) == '0' || at(i+1) == '-' {
				i++
				if i == length-1 {
					return "Incomplete format specifier."
				}
			}
			for at(i+1) >= '0' && at(i+1) <= '9' {
				i++
				if i == length-1 {
					return "Incomplete format specifier."
				}
			}
			if at(i+1) == '.' {
				i++
				if i == length-1 {
					return "Incomplete format specifier."
				}
				for at(i+1) >= '0' && at(i+1) <= '9' {
					i++
					if i == length-1 {
						return "Incomplete format specifier."
					}
				}
			}
			if !strings.ContainsRune("%ACDEFIlmPpqRSrtjJUxX", rune(at(i+1))) || at(i+1) == 0 {
				return "Invalid format specifier '" + string([]byte{at(i + 1)}) + "'."
			}
			i++
		} else if str[i] == '@' {
			if i == length-1 {
				return "Incomplete format specifier."
			}
			i++
		} else if str[i] == '\\' {
			if i == length-1 {
				return "Incomplete escape specifier."
			}
			switch at(i + 1) {
			case '\\', '0', 'a', 'e', 'n', 'r', 't', 'v':
			default:
				return "Invalid escape specifier '" + string([]byte{at(i + 1)}) + "'."
			}
			i++
		}
	}
	return ""
}

// FuzzCompile checks that Compile accepts and rejects exactly what
// mosquitto's check_format does (with the same message), apart from our
// field-width limit, and that rendering any accepted template never panics
// and is deterministic. Seeds live in testdata/fuzz/FuzzCompile.
func FuzzCompile(f *testing.F) {
	for _, c := range templateCases {
		f.Add(c.format)
	}
	msgs := goldenMessages()
	f.Fuzz(func(t *testing.T, s string) {
		tmpl, err := Compile(s)
		want := mosquittoCheckFormat(s)
		if err != nil {
			if strings.HasPrefix(err.Error(), "Field width or precision too large") {
				return
			}
			require.Equal(t, want, err.Error(), "format %q", s)
			return
		}
		require.Empty(t, want, "format %q accepted by Compile, rejected by mosquitto", s)
		require.Equal(t, s, tmpl.String())
		for _, m := range msgs {
			for _, pretty := range []bool{false, true} {
				a, errA := tmpl.Append(nil, m, pretty)
				b, errB := tmpl.Append(nil, m, pretty)
				require.True(t, bytes.Equal(a, b))
				require.Equal(t, errA == nil, errB == nil)
			}
		}
	})
}
