// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"fmt"
	"math"
	"strings"
)

// Target is a performance target from an issue, checked against a row.
type Target struct {
	Issue  int
	Text   string
	RowID  string
	Metric string
	// MaxRatio, when > 0, requires ours/ref <= MaxRatio (times).
	MaxRatio float64
	// MinRatio, when > 0, requires ours/ref >= MinRatio (throughputs).
	MinRatio float64
	// MinOurs, when > 0, requires our median >= MinOurs (absolute).
	MinOurs float64
	// MaxOurs, when > 0, requires our median <= MaxOurs (absolute).
	MaxOurs float64
}

// Verdict is the outcome of checking one target.
type Verdict struct {
	Target Target
	Status string // "met", "missed" or "not measured"
	Detail string
}

// Evaluate checks t against rows. A target is missed when our side lost
// or duplicated messages, whatever the timing.
func (t Target) Evaluate(rows []*Row) Verdict {
	v := Verdict{Target: t, Status: "not measured"}
	var r *Row
	for _, x := range rows {
		if x.ID == t.RowID && x.Metric == t.Metric {
			r = x
		}
	}
	switch {
	case r == nil:
		v.Detail = "scenario not run"
		return v
	case r.Skip != "":
		v.Detail = r.Skip
		return v
	case len(r.Ours) == 0:
		v.Detail = "no successful run of ours"
		return v
	}
	if r.OursCount != nil && !r.OursCount.OK() {
		v.Status = "missed"
		v.Detail = "ours delivered " + r.OursCount.String()
		return v
	}
	ours, ref, ratio := r.OursMedian(), r.RefMedian(), r.Ratio()
	val := func(x float64) string { return FormatValue(x, r.Unit) }
	var ok bool
	var parts []string
	switch {
	case t.MinOurs > 0:
		ok = ours >= t.MinOurs
		parts = append(parts, fmt.Sprintf("ours %s, need ≥ %s", val(ours), val(t.MinOurs)))
	case t.MaxOurs > 0:
		ok = ours <= t.MaxOurs
		parts = append(parts, fmt.Sprintf("ours %s, need ≤ %s (mosquitto %s)", val(ours), val(t.MaxOurs), val(ref)))
	case math.IsNaN(ratio):
		v.Detail = "no reference value to compare with"
		return v
	case t.MaxRatio > 0:
		ok = ratio <= t.MaxRatio
		parts = append(parts, fmt.Sprintf("ours %s vs %s = %s (limit %s)", val(ours), val(ref), FormatRatio(ratio), FormatRatio(t.MaxRatio)))
		if ratio < 1 {
			parts = append(parts, fmt.Sprintf("%.2fx faster", 1/ratio))
		} else if ratio > 1 {
			parts = append(parts, fmt.Sprintf("%.2fx slower", ratio))
		}
	case t.MinRatio > 0:
		ok = ratio >= t.MinRatio
		parts = append(parts, fmt.Sprintf("ours %s vs %s = %s (need %s)", val(ours), val(ref), FormatRatio(ratio), FormatRatio(t.MinRatio)))
	}
	if r.RefCount != nil && !r.RefCount.OK() {
		parts = append(parts, "reference lost messages: "+r.RefCount.String())
	}
	v.Status = "missed"
	if ok {
		v.Status = "met"
	}
	v.Detail = strings.Join(parts, "; ")
	return v
}

// TargetsMarkdown renders verdicts as a Markdown table.
func TargetsMarkdown(vs []Verdict) string {
	var b strings.Builder
	b.WriteString("| issue | target | status | measured |\n| --- | --- | --- | --- |\n")
	for _, v := range vs {
		fmt.Fprintf(&b, "| %d | %s | %s | %s |\n", v.Target.Issue, v.Target.Text, v.Status, strings.ReplaceAll(v.Detail, "|", `\|`))
	}
	return b.String()
}

// TargetsText renders verdicts for the terminal.
func TargetsText(vs []Verdict) string {
	var b strings.Builder
	for _, v := range vs {
		fmt.Fprintf(&b, "issue %d  %-13s %s: %s\n", v.Target.Issue, v.Status, v.Target.Text, v.Detail)
	}
	return b.String()
}
