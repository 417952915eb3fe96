// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"math"
	"strconv"
	"strings"
)

// Round2 rounds x to 2 decimals as Python's round(x, 2) does: the exact
// binary value of x is rounded to the nearest multiple of 0.01, ties to
// even, and the result is the float64 nearest to that decimal. (The naive
// math.Round(x*100)/100 differs, e.g. for 2.675, which is really
// 2.67499999999999982236431605997495353221893310546875.)
func Round2(x float64) float64 {
	if math.IsInf(x, 0) || math.IsNaN(x) {
		return x
	}
	r, err := strconv.ParseFloat(strconv.FormatFloat(x, 'f', 2, 64), 64)
	if err != nil { // cannot happen for a finite x
		return x
	}
	return r
}

// ceil2 returns the smallest 2-decimal value that is >= x.
func ceil2(x float64) float64 {
	r := Round2(x)
	if r < x {
		r = Round2(r + 0.01)
	}
	return r
}

// floor2 returns the largest 2-decimal value that is <= x.
func floor2(x float64) float64 {
	r := Round2(x)
	if r > x {
		r = Round2(r - 0.01)
	}
	return r
}

// FormatValue prints v as Python's repr(v) does: the shortest text that
// reads back as v, with at least one decimal (27 → "27.0", 25.1 → "25.1"),
// in exponent form only below 1e-4 or from 1e16 up ("1e+16", "1e-05").
// Together with Round2 this is the course's repr(round(x, 2)).
func FormatValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "nan"
	case math.IsInf(v, 1):
		return "inf"
	case math.IsInf(v, -1):
		return "-inf"
	}
	if a := math.Abs(v); a != 0 && (a < 1e-4 || a >= 1e16) {
		// Go's shortest 'e' form matches Python's: "1e+16", "1.5e-05".
		return strconv.FormatFloat(v, 'e', -1, 64)
	}
	s := strconv.FormatFloat(v, 'f', -1, 64)
	if !strings.Contains(s, ".") {
		s += ".0"
	}
	return s
}
