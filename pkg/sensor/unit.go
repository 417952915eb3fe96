// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"fmt"
	"strings"
)

// Unit is a temperature unit: C, F or K.
type Unit string

// The supported units.
const (
	Celsius    Unit = "C" // degrees Celsius, the default
	Fahrenheit Unit = "F" // degrees Fahrenheit
	Kelvin     Unit = "K" // kelvin (printed without a degree sign)
)

// ParseUnit returns the unit named by s (C, F or K, in either case).
func ParseUnit(s string) (Unit, error) {
	switch strings.ToUpper(strings.TrimSpace(s)) {
	case "C":
		return Celsius, nil
	case "F":
		return Fahrenheit, nil
	case "K":
		return Kelvin, nil
	}
	return "", fmt.Errorf("unknown unit %q (want C, F or K)", s)
}

// Symbol returns the unit as printed after a value: °C, °F or K.
func (u Unit) Symbol() string {
	if u == Kelvin {
		return "K"
	}
	return "°" + string(u)
}

// FromCelsius converts a Celsius temperature to u.
func (u Unit) FromCelsius(c float64) float64 {
	switch u {
	case Fahrenheit:
		return float64(c*9/5) + 32
	case Kelvin:
		return c + 273.15
	}
	return c
}

// DefaultRange returns the course's range, 20.0..30.0 °C, expressed in u:
// 68..86 for F and 293.15..303.15 for K.
func DefaultRange(u Unit) (lo, hi float64) {
	return Round2(u.FromCelsius(20)), Round2(u.FromCelsius(30))
}
