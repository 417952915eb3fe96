// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Better says which direction of a metric is good.
type Better string

// Directions of a metric.
const (
	Lower  Better = "lower"
	Higher Better = "higher"
)

// Row is one line of the results table: one metric of one scenario, with
// the samples of every repetition for ours and for the reference.
type Row struct {
	ID       string // scenario id, e.g. "pub-l-q1"
	Scenario string // human name, e.g. "pub -l 200000 lines, QoS 1"
	Metric   string // e.g. "wall time"
	Unit     string // ms, s, msg/s, MiB, KiB/conn
	Better   Better
	Ours     []float64
	Ref      []float64
	// OursCount and RefCount are the worst delivery checks over the
	// repetitions, when the scenario counts messages.
	OursCount, RefCount *Count
	// Skip, when set, says why ours was not measured (e.g. a flag that
	// has not landed yet).
	Skip string
	Note string
}

// OursMedian returns the median of our samples.
func (r *Row) OursMedian() float64 { return Median(r.Ours) }

// RefMedian returns the median of the reference's samples.
func (r *Row) RefMedian() float64 { return Median(r.Ref) }

// Ratio returns the ratio of the medians, ours/reference.
func (r *Row) Ratio() float64 { return Ratio(r.OursMedian(), r.RefMedian()) }

// AddCount keeps the worst (fewest unique, then most duplicates) of the
// counts seen for one side.
func AddCount(worst **Count, c Count) {
	if *worst == nil || c.Unique < (*worst).Unique || (c.Unique == (*worst).Unique && c.Dups+c.Bad > (*worst).Dups+(*worst).Bad) {
		cc := c
		*worst = &cc
	}
}

// FormatValue renders a median in its unit with sensible precision; NaN
// renders as "–".
func FormatValue(v float64, unit string) string {
	if math.IsNaN(v) {
		return "–"
	}
	switch unit {
	case "msg/s":
		return Thousands(int64(math.Round(v))) + " msg/s"
	case "ms", "µs":
		switch {
		case v >= 100:
			return strconv.FormatFloat(v, 'f', 0, 64) + " " + unit
		case v >= 10:
			return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
		default:
			return strconv.FormatFloat(v, 'f', 2, 64) + " " + unit
		}
	case "s":
		return strconv.FormatFloat(v, 'f', 2, 64) + " s"
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + " " + unit
}

// FormatRatio renders ours/reference as "1.23x", or "–".
func FormatRatio(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	if v < 0.1 {
		return strconv.FormatFloat(v, 'f', 3, 64) + "x"
	}
	return strconv.FormatFloat(v, 'f', 2, 64) + "x"
}

// Thousands formats n with comma separators: 200000 -> "200,000".
func Thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	if neg {
		s = s[1:]
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func countCell(c *Count) string {
	if c == nil {
		return ""
	}
	s := c.String()
	if !c.OK() {
		s += " FAIL"
	}
	return s
}

// Cells returns the row's table cells: scenario, metric, ours,
// reference, ours/ref, better, delivered (ours), delivered (ref), runs, note.
func (r *Row) Cells() []string {
	ours := FormatValue(r.OursMedian(), r.Unit)
	ratio := FormatRatio(r.Ratio())
	note := r.Note
	if r.Skip != "" {
		ours, ratio = "n/a", "–"
		note = strings.TrimSpace("ours not measured: " + r.Skip + ". " + note)
	}
	return []string{
		r.Scenario, r.Metric, ours, FormatValue(r.RefMedian(), r.Unit), ratio,
		string(r.Better), countCell(r.OursCount), countCell(r.RefCount),
		fmt.Sprintf("%d/%d", len(r.Ours), len(r.Ref)), note,
	}
}

// Header is the first line of the results table.
var Header = []string{"scenario", "metric", "ours (median)", "mosquitto (median)", "ours/ref", "better", "delivered (ours)", "delivered (ref)", "runs", "note"}

// Markdown renders rows as a GitHub Markdown table.
func Markdown(rows []*Row) string {
	var b strings.Builder
	line := func(cells []string) {
		b.WriteString("|")
		for _, c := range cells {
			b.WriteString(" " + strings.ReplaceAll(c, "|", `\|`) + " |")
		}
		b.WriteString("\n")
	}
	line(Header)
	sep := make([]string, len(Header))
	for i := range sep {
		sep[i] = "---"
	}
	line(sep)
	for _, r := range rows {
		line(r.Cells())
	}
	return b.String()
}

// Text renders rows as an aligned plain-text table for the terminal; the
// note column is left unpadded at the end.
func Text(rows []*Row) string {
	all := [][]string{Header}
	for _, r := range rows {
		all = append(all, r.Cells())
	}
	width := make([]int, len(Header))
	for _, cells := range all {
		for i, c := range cells {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	var b strings.Builder
	for _, cells := range all {
		var l strings.Builder
		for i, c := range cells {
			l.WriteString(c)
			if i < len(cells)-1 {
				l.WriteString(strings.Repeat(" ", width[i]-len([]rune(c))+2))
			}
		}
		b.WriteString(strings.TrimRight(l.String(), " ") + "\n")
	}
	return b.String()
}
