// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

// Expected values were printed by CPython 3: repr(round(x, 2)) and repr(x).
func TestRound2MatchesPython(t *testing.T) {
	tests := []struct {
		in, want float64
	}{
		{2.675, 2.67}, // really 2.67499999...; math.Round(x*100)/100 gives 2.68
		{0.125, 0.12}, // exact tie: to even
		{0.135, 0.14},
		{1.005, 1.0},
		{23.405, 23.41},
		{0.015, 0.01},
		{99.995, 100.0},
		{123456789.125, 123456789.12},
		{-273.15, -273.15},
		{-5.5, -5.5},
		{0.0025, 0},
		{1e22, 1e22},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, Round2(tt.in), "Round2(%v)", tt.in)
	}
	require.True(t, math.IsInf(Round2(math.Inf(1)), 1))
	require.True(t, math.IsNaN(Round2(math.NaN())))
}

func TestFormatValueMatchesPythonRepr(t *testing.T) {
	tests := []struct {
		in   float64
		want string
	}{
		{27, "27.0"},
		{25.10, "25.1"},
		{25.1, "25.1"},
		{23.41, "23.41"},
		{20, "20.0"},
		{30.00, "30.0"},
		{0, "0.0"},
		{math.Copysign(0, -1), "-0.0"},
		{-3.5, "-3.5"},
		{0.01, "0.01"},
		{0.0001, "0.0001"},
		{0.00001, "1e-05"},
		{0.000015, "1.5e-05"},
		{1e15, "1000000000000000.0"},
		{1e16, "1e+16"},
		{1.5e16, "1.5e+16"},
		{9999999999999998, "9999999999999998.0"},
		{1e22, "1e+22"},
		{293.15, "293.15"},
		{0.30000000000000004, "0.30000000000000004"}, // 0.1+0.2 at run time
		{math.Inf(1), "inf"},
		{math.Inf(-1), "-inf"},
		{math.NaN(), "nan"},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, FormatValue(tt.in), "FormatValue(%v)", tt.in)
	}
}

func TestCeilFloor2(t *testing.T) {
	require.Equal(t, 20.01, ceil2(20.004))
	require.Equal(t, 20.0, ceil2(20))
	require.Equal(t, 20.0, floor2(20.004))
	require.Equal(t, 20.0, floor2(20.009))
	require.Equal(t, -20.01, floor2(-20.004))
	require.Equal(t, -20.0, ceil2(-20.004))
}
