// SPDX-License-Identifier: Apache-2.0

package format

import (
	"strconv"
	"time"
)

// mosquitto_sub's "@X" time specifiers call strftime("%X") in the C locale.
// appendStrftime reproduces glibc's output for every single conversion
// character, including glibc's handling of characters it does not know
// (copied verbatim, a digit acting as a field width). The vectors in
// testdata/strftime_glibc.txt were produced by glibc and pin this down.

var (
	weekdayAbbr = [7]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"}
	weekdayFull = [7]string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}
	monthAbbr   = [12]string{"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"}
	monthFull   = [12]string{"January", "February", "March", "April", "May", "June", "July",
		"August", "September", "October", "November", "December"}
)

// appendInt appends v in decimal, padded on the left with pad to width.
func appendInt(dst []byte, v int, width int, pad byte) []byte {
	var buf [24]byte
	b := strconv.AppendInt(buf[:0], int64(v), 10)
	neg := v < 0
	if neg && pad == '0' {
		dst = append(dst, '-')
		b = b[1:]
		width--
	}
	for i := len(b); i < width; i++ {
		dst = append(dst, pad)
	}
	return append(dst, b...)
}

func hour12(h int) int {
	h %= 12
	if h == 0 {
		return 12
	}
	return h
}

// appendStrftime appends strftime("%c") of t, C locale, glibc semantics.
func appendStrftime(dst []byte, t time.Time, c byte) []byte {
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	wday := int(t.Weekday())
	yday := t.YearDay() - 1
	switch c {
	case 'a':
		return append(dst, weekdayAbbr[wday]...)
	case 'A':
		return append(dst, weekdayFull[wday]...)
	case 'b', 'h':
		return append(dst, monthAbbr[month-1]...)
	case 'B':
		return append(dst, monthFull[month-1]...)
	case 'c':
		dst = appendStrftime(dst, t, 'a')
		dst = append(dst, ' ')
		dst = appendStrftime(dst, t, 'b')
		dst = append(dst, ' ')
		dst = appendInt(dst, day, 2, ' ')
		dst = append(dst, ' ')
		dst = appendStrftime(dst, t, 'T')
		dst = append(dst, ' ')
		return appendInt(dst, year, 1, '0')
	case 'C':
		return appendInt(dst, floorDiv(year, 100), 2, '0')
	case 'd':
		return appendInt(dst, day, 2, '0')
	case 'D', 'x':
		dst = appendInt(dst, int(month), 2, '0')
		dst = append(dst, '/')
		dst = appendInt(dst, day, 2, '0')
		dst = append(dst, '/')
		return appendInt(dst, floorMod(year, 100), 2, '0')
	case 'e':
		return appendInt(dst, day, 2, ' ')
	case 'F':
		dst = appendInt(dst, year, 4, '0')
		dst = append(dst, '-')
		dst = appendInt(dst, int(month), 2, '0')
		dst = append(dst, '-')
		return appendInt(dst, day, 2, '0')
	case 'g':
		iy, _ := t.ISOWeek()
		return appendInt(dst, floorMod(iy, 100), 2, '0')
	case 'G':
		iy, _ := t.ISOWeek()
		return appendInt(dst, iy, 1, '0')
	case 'H':
		return appendInt(dst, hour, 2, '0')
	case 'I':
		return appendInt(dst, hour12(hour), 2, '0')
	case 'j':
		return appendInt(dst, yday+1, 3, '0')
	case 'k':
		return appendInt(dst, hour, 2, ' ')
	case 'l':
		return appendInt(dst, hour12(hour), 2, ' ')
	case 'm':
		return appendInt(dst, int(month), 2, '0')
	case 'M':
		return appendInt(dst, minute, 2, '0')
	case 'n':
		return append(dst, '\n')
	case 'p':
		if hour < 12 {
			return append(dst, "AM"...)
		}
		return append(dst, "PM"...)
	case 'P':
		if hour < 12 {
			return append(dst, "am"...)
		}
		return append(dst, "pm"...)
	case 'r':
		dst = appendInt(dst, hour12(hour), 2, '0')
		dst = append(dst, ':')
		dst = appendInt(dst, minute, 2, '0')
		dst = append(dst, ':')
		dst = appendInt(dst, sec, 2, '0')
		dst = append(dst, ' ')
		return appendStrftime(dst, t, 'p')
	case 'R':
		dst = appendInt(dst, hour, 2, '0')
		dst = append(dst, ':')
		return appendInt(dst, minute, 2, '0')
	case 's':
		return strconv.AppendInt(dst, t.Unix(), 10)
	case 'S':
		return appendInt(dst, sec, 2, '0')
	case 't':
		return append(dst, '\t')
	case 'T', 'X':
		dst = appendInt(dst, hour, 2, '0')
		dst = append(dst, ':')
		dst = appendInt(dst, minute, 2, '0')
		dst = append(dst, ':')
		return appendInt(dst, sec, 2, '0')
	case 'u':
		if wday == 0 {
			return append(dst, '7')
		}
		return appendInt(dst, wday, 1, '0')
	case 'U':
		return appendInt(dst, (yday-wday+7)/7, 2, '0')
	case 'V':
		_, w := t.ISOWeek()
		return appendInt(dst, w, 2, '0')
	case 'w':
		return appendInt(dst, wday, 1, '0')
	case 'W':
		return appendInt(dst, (yday-(wday+6)%7+7)/7, 2, '0')
	case 'y':
		return appendInt(dst, floorMod(year, 100), 2, '0')
	case 'Y':
		return appendInt(dst, year, 1, '0')
	case 'z':
		_, off := t.Zone()
		return appendOffset(dst, off, false)
	case 'Z':
		name, _ := t.Zone()
		return append(dst, name...)
	case '%':
		return append(dst, '%')
	}
	// Unknown conversion: glibc copies "%c" verbatim; a digit 1-9 is parsed
	// as a field width that pads the copied text with spaces.
	if c >= '3' && c <= '9' {
		for i := 2; i < int(c-'0'); i++ {
			dst = append(dst, ' ')
		}
	}
	return append(dst, '%', c)
}

// Strftime formats t with a whole C strftime format string, as glibc does
// in the C locale: every conversion appendStrftime knows, "%%", unknown
// conversions copied as written, and a lone trailing "%" kept. mosquitto's
// log_timestamp_format is such a string.
func Strftime(format string, t time.Time) string {
	dst := make([]byte, 0, len(format)+16)
	for i := 0; i < len(format); i++ {
		if format[i] != '%' || i+1 == len(format) {
			dst = append(dst, format[i])
			continue
		}
		i++
		dst = appendStrftime(dst, t, format[i])
	}
	return string(dst)
}

// appendOffset appends a UTC offset as +hhmm (or +hh:mm with colon).
func appendOffset(dst []byte, off int, colon bool) []byte {
	sign := byte('+')
	if off < 0 {
		sign = '-'
		off = -off
	}
	off /= 60
	dst = append(dst, sign)
	dst = appendInt(dst, off/60, 2, '0')
	if colon {
		dst = append(dst, ':')
	}
	return appendInt(dst, off%60, 2, '0')
}

func floorDiv(a, b int) int {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func floorMod(a, b int) int {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
