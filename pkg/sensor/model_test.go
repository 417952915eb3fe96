// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

var noon = time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)

func values(t *testing.T, c Config, sensor, n int, at time.Time, step time.Duration) []float64 {
	t.Helper()
	g, err := NewGenerator(c, sensor)
	require.NoError(t, err)
	out := make([]float64, n)
	for i := range out {
		out[i] = g.Next(at)
		at = at.Add(step)
	}
	return out
}

// The golden sequences pin the determinism contract of the package doc:
// changing the generator, the seeding or the arithmetic breaks them, and
// with them every user's reproducible data. TestMatchesPythonReference
// checks the same contract against an independent implementation.
func TestGoldenSequences(t *testing.T) {
	tests := []struct {
		name   string
		model  Model
		seed   uint64
		sensor int
		lo, hi float64
		at     time.Time
		want   []float64
	}{
		{"uniform seed 42", Uniform, 42, 1, 20, 30, noon,
			[]float64{26.93, 23.44, 26.98, 28.42, 29.3, 21.34, 29.15, 23.76, 21.15, 24.8}},
		{"walk seed 42", Walk, 42, 1, 20, 30, noon,
			[]float64{26.93, 26.78, 26.98, 27.32, 27.75, 27.38, 27.8, 27.67, 27.29, 27.27}},
		{"sine seed 42 at 15:00", Sine, 42, 1, 20, 30, noon.Add(3 * time.Hour),
			[]float64{29.39, 28.69, 29.4, 29.68, 29.86, 28.27, 29.83, 28.75, 28.23, 28.96}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Config{Model: tt.model, Seed: tt.seed, Min: tt.lo, Max: tt.hi}
			require.Equal(t, tt.want, values(t, c, tt.sensor, len(tt.want), tt.at, 0))
		})
	}
}

func TestSeedsAndSensorsGiveOwnStreams(t *testing.T) {
	c := DefaultConfig(7)
	a := values(t, c, 1, 50, noon, time.Second)
	require.Equal(t, a, values(t, c, 1, 50, noon, time.Second), "same seed and sensor")
	require.NotEqual(t, a, values(t, c, 2, 50, noon, time.Second), "other sensor")
	require.NotEqual(t, a, values(t, DefaultConfig(8), 1, 50, noon, time.Second), "other seed")
}

func TestMatchesPythonReference(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		if os.Getenv("MQTT_INTEROP") == "require" {
			t.Fatal("python3 not found and MQTT_INTEROP=require")
		}
		t.Skip("python3 not found: cannot check against the reference implementation")
	}
	tests := []struct {
		model  Model
		seed   uint64
		sensor int
		lo, hi float64
	}{
		{Uniform, 0, 1, 20, 30},
		{Uniform, 42, 1000, -40, 85},
		{Uniform, math.MaxUint64, 3, 68, 86},
		{Walk, 1, 1, 20, 30},
		{Walk, 123456789, 17, 0, 1},    // narrow: reflects often
		{Walk, 5, 2, 293.15, 303.15},   // kelvin
		{Uniform, 9, 4, 20.004, 20.03}, // bounds between 2-decimal values
	}
	const n = 2000
	var in strings.Builder
	for _, tt := range tests {
		fmt.Fprintf(&in, "%s %d %d %s %s %d\n", tt.model, tt.seed, tt.sensor,
			strconv.FormatFloat(tt.lo, 'g', -1, 64), strconv.FormatFloat(tt.hi, 'g', -1, 64), n)
	}
	cmd := exec.Command(py, "testdata/reference.py")
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.Output()
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	require.Len(t, lines, len(tests))
	for k, tt := range tests {
		t.Run(fmt.Sprintf("%s/seed=%d/sensor=%d/%v..%v", tt.model, tt.seed, tt.sensor, tt.lo, tt.hi), func(t *testing.T) {
			want := strings.Fields(lines[k])
			require.Len(t, want, n)
			got := values(t, Config{Model: tt.model, Seed: tt.seed, Min: tt.lo, Max: tt.hi}, tt.sensor, n, noon, 0)
			for i, v := range got {
				require.Equal(t, want[i], FormatValue(v), "value %d", i)
			}
		})
	}
}

func TestValuesStayInRange(t *testing.T) {
	ranges := []struct{ lo, hi float64 }{
		{20, 30}, {-40, -30}, {0, 0.01}, {25, 25}, {-0.5, 0.5}, {20.004, 20.016}, {1e9, 1e9 + 1}, {68, 86},
	}
	for _, m := range []Model{Uniform, Walk, Sine} {
		for _, r := range ranges {
			t.Run(fmt.Sprintf("%s/%v..%v", m, r.lo, r.hi), func(t *testing.T) {
				c := Config{Model: m, Min: r.lo, Max: r.hi, Seed: 3}
				at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
				for _, v := range values(t, c, 1, 3000, at, 29*time.Second) {
					require.GreaterOrEqual(t, v, r.lo)
					require.LessOrEqual(t, v, r.hi)
					require.Equal(t, Round2(v), v, "rounded to 2 decimals")
					require.False(t, v == 0 && math.Signbit(v), "no negative zero")
				}
			})
		}
	}
}

func TestUniformCoversRange(t *testing.T) {
	vs := values(t, DefaultConfig(11), 1, 10000, noon, 0)
	var lowQuarter, highQuarter int
	sum := 0.0
	for _, v := range vs {
		sum += v
		if v < 22.5 {
			lowQuarter++
		}
		if v >= 27.5 {
			highQuarter++
		}
	}
	mean := sum / float64(len(vs))
	require.InDelta(t, 25, mean, 0.2)
	require.InDelta(t, 2500, lowQuarter, 250)
	require.InDelta(t, 2500, highQuarter, 250)
}

func TestWalkMovesInSmallSteps(t *testing.T) {
	vs := values(t, Config{Model: Walk, Min: 20, Max: 30, Seed: 9}, 1, 5000, noon, 0)
	moved := false
	for i := 1; i < len(vs); i++ {
		d := math.Abs(vs[i] - vs[i-1])
		require.LessOrEqual(t, d, 0.5+0.011, "step %d: %v -> %v", i, vs[i-1], vs[i])
		moved = moved || d > 0
	}
	require.True(t, moved)
}

func TestSineFollowsTheDay(t *testing.T) {
	c := Config{Model: Sine, Min: 20, Max: 30, Seed: 1}
	day := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	at := func(hour int) []float64 { return values(t, c, 1, 200, day.Add(time.Duration(hour)*time.Hour), 0) }
	for _, v := range at(3) { // 25 - 4 ± 1
		require.GreaterOrEqual(t, v, 20.0)
		require.LessOrEqual(t, v, 22.0)
	}
	for _, v := range at(15) { // 25 + 4 ± 1
		require.GreaterOrEqual(t, v, 28.0)
		require.LessOrEqual(t, v, 30.0)
	}
	for _, v := range at(9) { // 25 ± 1
		require.InDelta(t, 25.0, v, 1.0)
	}
	// The cycle follows the reading time's own location: 15:00 in UTC+2.
	east := time.FixedZone("UTC+2", 2*3600)
	for _, v := range values(t, c, 1, 50, time.Date(2026, 6, 1, 15, 0, 0, 0, east), 0) {
		require.GreaterOrEqual(t, v, 28.0)
	}
}

func TestParseModel(t *testing.T) {
	for in, want := range map[string]Model{"": Uniform, "uniform": Uniform, "WALK": Walk, "Sine": Sine} {
		got, err := ParseModel(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got)
	}
	_, err := ParseModel("gauss")
	require.EqualError(t, err, `unknown model "gauss" (want uniform, walk or sine)`)
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		err  string
	}{
		{"default", DefaultConfig(1), ""},
		{"equal bounds", Config{Min: 25, Max: 25}, ""},
		{"min above max", Config{Min: 30, Max: 20}, "invalid range: min 30.0 is above max 20.0"},
		{"nan min", Config{Min: math.NaN(), Max: 20}, "invalid range: min NaN is not a finite number"},
		{"inf max", Config{Min: 0, Max: math.Inf(1)}, "invalid range: max +Inf is not a finite number"},
		{"too wide", Config{Min: -math.MaxFloat64, Max: math.MaxFloat64}, "invalid range: range -1.7976931348623157e+308..1.7976931348623157e+308 is too wide"},
		{"no 2-decimal value", Config{Min: 20.001, Max: 20.009}, "invalid range: no value with 2 decimals lies between min 20.001 and max 20.009"},
		{"bad model", Config{Model: "x", Max: 1}, `unknown model "x" (want uniform, walk or sine)`},
		{"bad unit", Config{Unit: "R", Max: 1}, `unknown unit "R" (want C, F or K)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.err == "" {
				require.NoError(t, err)
				return
			}
			require.EqualError(t, err, tt.err)
			_, err = NewGenerator(tt.c, 1)
			require.EqualError(t, err, tt.err)
		})
	}
	require.True(t, errors.Is(Config{Min: 2, Max: 1}.Validate(), ErrRange))
}
