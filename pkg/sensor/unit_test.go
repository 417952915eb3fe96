// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseUnit(t *testing.T) {
	for in, want := range map[string]Unit{"C": Celsius, "c": Celsius, "F": Fahrenheit, "f": Fahrenheit, "K": Kelvin, " k ": Kelvin} {
		got, err := ParseUnit(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "X", "celsius", "°C"} {
		_, err := ParseUnit(in)
		require.EqualError(t, err, `unknown unit "`+in+`" (want C, F or K)`)
	}
}

func TestUnitSymbol(t *testing.T) {
	require.Equal(t, "°C", Celsius.Symbol())
	require.Equal(t, "°F", Fahrenheit.Symbol())
	require.Equal(t, "K", Kelvin.Symbol())
}

func TestDefaultRange(t *testing.T) {
	tests := []struct {
		unit   Unit
		lo, hi float64
	}{
		{Celsius, 20, 30},
		{Fahrenheit, 68, 86},
		{Kelvin, 293.15, 303.15},
	}
	for _, tt := range tests {
		lo, hi := DefaultRange(tt.unit)
		require.Equal(t, tt.lo, lo, tt.unit)
		require.Equal(t, tt.hi, hi, tt.unit)
	}
}
