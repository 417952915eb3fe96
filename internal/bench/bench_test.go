// SPDX-License-Identifier: Apache-2.0

package bench

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestMedian(t *testing.T) {
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"one", []float64{3}, 3},
		{"odd unsorted", []float64{5, 1, 3}, 3},
		{"even takes the mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"outlier does not move it", []float64{1, 2, 1000}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]float64(nil), tt.in...)
			require.Equal(t, tt.want, Median(tt.in))
			require.Equal(t, in, tt.in, "Median must not reorder its input")
		})
	}
	require.True(t, math.IsNaN(Median(nil)))
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	tests := []struct {
		p    float64
		want time.Duration
	}{
		{0, time.Millisecond},
		{50, 50 * time.Millisecond},
		{99, 99 * time.Millisecond},
		{99.5, 100 * time.Millisecond},
		{100, 100 * time.Millisecond},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Percentile(ds, tt.p), "p%v", tt.p)
	}
	require.Equal(t, 7*time.Second, Percentile([]time.Duration{7 * time.Second}, 99))
	require.Zero(t, Percentile(nil, 50))
}

func TestRatio(t *testing.T) {
	require.Equal(t, 2.0, Ratio(4, 2))
	require.True(t, math.IsNaN(Ratio(0, 2)))
	require.True(t, math.IsNaN(Ratio(1, math.NaN())))
	require.True(t, math.IsNaN(Ratio(math.Inf(1), 1)))
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, seq := range []int{0, 7, 199999, 1234567890} {
		p := Payload(seq, PayloadSize)
		require.GreaterOrEqual(t, len(p), PayloadSize)
		require.NotContains(t, string(p), "\n")
		got, ok := ParseSeq(p)
		require.True(t, ok)
		require.Equal(t, seq, got)
	}
	require.Len(t, Payload(5, 32), 32)
	_, ok := ParseSeq([]byte("ready"))
	require.False(t, ok)
	_, ok = ParseSeq([]byte("12345678901 too long"))
	require.False(t, ok, "more than 10 digits is not a sequence number")
}

func TestTracker(t *testing.T) {
	tr := NewTracker(130) // spans three bitmap words
	for _, s := range []int{0, 63, 64, 129, 64} {
		tr.Add(Payload(s, 16))
	}
	tr.Add([]byte("130 out of range"))
	tr.Add([]byte("garbage"))
	require.Equal(t, 4, tr.Unique())
	require.Equal(t, 1, tr.Dups())
	require.Equal(t, 2, tr.Bad())
	require.Equal(t, 126, tr.Missing())
	require.False(t, tr.Complete())
	c := tr.Count()
	require.False(t, c.OK())
	require.Equal(t, "4/130 (126 lost) (1 dup) (2 foreign)", c.String())

	full := NewTracker(3)
	for i := 0; i < 3; i++ {
		full.Add(Payload(i, 8))
	}
	require.True(t, full.Complete())
	require.True(t, full.Count().OK())
	require.Equal(t, "3/3", full.Count().String())
}

func TestCountLines(t *testing.T) {
	var buf bytes.Buffer
	buf.WriteString("ready\n")
	require.NoError(t, WriteLines(&buf, 1000, PayloadSize))
	buf.Write(Payload(10, PayloadSize)) // a duplicate, unterminated last line
	c, err := CountLines(&buf, 1000, func(l []byte) bool { return string(l) == "ready" })
	require.NoError(t, err)
	require.Equal(t, Count{Expect: 1000, Unique: 1000, Dups: 1}, c)
	require.False(t, c.OK(), "a duplicate is not an exact delivery")

	c, err = CountLines(strings.NewReader("0 a\n2 b\n"), 3, nil)
	require.NoError(t, err)
	require.Equal(t, Count{Expect: 3, Unique: 2}, c)
}

func TestAddCountKeepsWorst(t *testing.T) {
	var w *Count
	AddCount(&w, Count{Expect: 10, Unique: 10})
	AddCount(&w, Count{Expect: 10, Unique: 7})
	AddCount(&w, Count{Expect: 10, Unique: 9})
	require.Equal(t, 7, w.Unique)
	AddCount(&w, Count{Expect: 10, Unique: 7, Dups: 2})
	require.Equal(t, 2, w.Dups, "same loss, more duplicates is worse")
}

func TestFormat(t *testing.T) {
	tests := []struct {
		v    float64
		unit string
		want string
	}{
		{123456.4, "msg/s", "123,456 msg/s"},
		{2.137, "ms", "2.14 ms"},
		{41.26, "ms", "41.3 ms"},
		{412.6, "ms", "413 ms"},
		{0.9, "s", "0.90 s"},
		{27.84, "KiB", "27.8 KiB"},
		{math.NaN(), "s", "–"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, FormatValue(tt.v, tt.unit))
	}
	require.Equal(t, "1.10x", FormatRatio(1.1))
	require.Equal(t, "–", FormatRatio(math.NaN()))
	require.Equal(t, "0.005x", FormatRatio(0.0048))
	for n, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 200000: "200,000", 1234567: "1,234,567", -4500: "-4,500"} {
		require.Equal(t, want, Thousands(n))
	}
}

func TestTables(t *testing.T) {
	rows := []*Row{
		{ID: "a", Scenario: "pub -l", Metric: "wall time", Unit: "s", Better: Lower,
			Ours: []float64{1, 3, 2}, Ref: []float64{4, 4},
			OursCount: &Count{Expect: 5, Unique: 5}, RefCount: &Count{Expect: 5, Unique: 2}},
		{ID: "b", Scenario: "x|y", Metric: "m", Unit: "ms", Better: Higher, Ref: []float64{1}, Skip: "no -l yet"},
	}
	md := Markdown(rows)
	lines := strings.Split(strings.TrimSpace(md), "\n")
	require.Len(t, lines, 4)
	require.Equal(t, "| pub -l | wall time | 2.00 s | 4.00 s | 0.50x | lower | 5/5 | 2/5 (3 lost) FAIL | 3/2 |  |", lines[2])
	require.Contains(t, lines[3], `x\|y`, "pipes in cells are escaped")
	require.Contains(t, lines[3], "| n/a |")
	require.Contains(t, lines[3], "ours not measured: no -l yet.")

	txt := Text(rows)
	tl := strings.Split(strings.TrimRight(txt, "\n"), "\n")
	require.Len(t, tl, 3)
	col := strings.Index(tl[0], "metric")
	require.Equal(t, "wall time", tl[1][col:col+len("wall time")], "columns are aligned")
	for _, l := range tl {
		require.Equal(t, strings.TrimRight(l, " "), l, "no trailing blanks")
	}
}

func TestTargetEvaluate(t *testing.T) {
	row := func(ours, ref float64, oc *Count) []*Row {
		return []*Row{{ID: "r", Metric: "wall time", Unit: "ms", Ours: []float64{ours}, Ref: []float64{ref}, OursCount: oc}}
	}
	maxT := Target{Issue: 4, RowID: "r", Metric: "wall time", MaxRatio: 1.1}
	require.Equal(t, "met", maxT.Evaluate(row(2.1, 2, nil)).Status)
	v := maxT.Evaluate(row(4, 2, nil))
	require.Equal(t, "missed", v.Status)
	require.Contains(t, v.Detail, "2.00x slower")

	minT := Target{RowID: "r", Metric: "wall time", MinRatio: 1.3}
	require.Equal(t, "met", minT.Evaluate(row(13, 10, nil)).Status)
	require.Equal(t, "missed", minT.Evaluate(row(12, 10, nil)).Status)

	v = minT.Evaluate(row(100, 10, &Count{Expect: 10, Unique: 9}))
	require.Equal(t, "missed", v.Status, "a lost message fails the target whatever the speed")
	require.Contains(t, v.Detail, "1 lost")

	abs := Target{RowID: "r", Metric: "wall time", MinOurs: 9500}
	require.Equal(t, "met", abs.Evaluate(row(9800, math.NaN(), nil)).Status)
	ceil := Target{RowID: "r", Metric: "wall time", MaxOurs: 16}
	require.Equal(t, "met", ceil.Evaluate(row(15.5, 0.7, nil)).Status)
	v = ceil.Evaluate(row(29, 0.7, nil))
	require.Equal(t, "missed", v.Status)
	require.Contains(t, v.Detail, "need ≤")

	require.Equal(t, "not measured", maxT.Evaluate(nil).Status)
	skipped := []*Row{{ID: "r", Metric: "wall time", Skip: "no -l yet"}}
	v = maxT.Evaluate(skipped)
	require.Equal(t, "not measured", v.Status)
	require.Equal(t, "no -l yet", v.Detail)
	require.Contains(t, TargetsMarkdown([]Verdict{v}), "| not measured | no -l yet |")
}

func TestReplaceGenerated(t *testing.T) {
	doc := "# Bench\n\nhand written\n\n" + BeginMarker + "\nold table\n" + EndMarker + "\n\nfooter\n"
	got, err := ReplaceGenerated(doc, "new table")
	require.NoError(t, err)
	require.Equal(t, "# Bench\n\nhand written\n\n"+BeginMarker+"\nnew table\n"+EndMarker+"\n\nfooter\n", got)

	got, err = ReplaceGenerated("# Bench", "t\n")
	require.NoError(t, err)
	require.Equal(t, "# Bench\n\n"+BeginMarker+"\nt\n"+EndMarker+"\n", got)

	_, err = ReplaceGenerated(EndMarker+"\n"+BeginMarker, "x")
	require.Error(t, err)
	_, err = ReplaceGenerated(BeginMarker, "x")
	require.Error(t, err)
}

func TestUpdateDoc(t *testing.T) {
	path := t.TempDir() + "/benchmarks.md"
	require.NoError(t, UpdateDoc(path, "first"))
	require.NoError(t, UpdateDoc(path, "second"))
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, BeginMarker+"\nsecond\n"+EndMarker+"\n", string(got))
}

func TestShellQuote(t *testing.T) {
	require.Equal(t, `mqtt pub -t 'a/#' -m 'it'\''s' -p 1883 ''`, ShellQuote([]string{"mqtt", "pub", "-t", "a/#", "-m", "it's", "-p", "1883", ""}))
}

func TestGridSeq(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"1 1", 0, true},
		{"1 50", 49, true},
		{"2 1", 50, true},
		{"1000 50 extra", 49999, true},
		{"1 51", 0, false}, // beyond the stride
		{"0 1", 0, false},  // sensors count from 1
		{"1 0", 0, false},
		{"01 1", 0, false}, // not how a sensor number is printed
		{"7", 0, false},
		{"Temperature: 23.4", 0, false},
	}
	for _, tt := range tests {
		got, ok := GridSeq([]byte(tt.in), 50)
		require.Equal(t, tt.ok, ok, tt.in)
		if ok {
			require.Equal(t, tt.want, got, tt.in)
		}
	}
	tr := NewTracker(4)
	for _, p := range []string{"1 1", "1 2", "2 1", "2 2", "2 2"} {
		seq, ok := GridSeq([]byte(p), 2)
		require.True(t, ok)
		tr.AddSeq(seq)
	}
	require.Equal(t, Count{Expect: 4, Unique: 4, Dups: 1}, tr.Count())
}
