// SPDX-License-Identifier: Apache-2.0

// Package sensor simulates temperature sensors for `mqtt simulate-sensor`
// and `mqtt demo`. It knows nothing about MQTT or flags: it produces
// readings, formats them as payloads and schedules them for a fleet of
// sensors on an injected clock. The caller publishes the messages.
//
// # Determinism
//
// Every sensor draws from its own math/rand/v2 PCG generator (PCG-DXSM,
// 128-bit state, whose output sequence is fixed by the standard library's
// specification). Sensor number n (1-based) of a fleet with seed s uses
//
//	rand.NewPCG(splitmix64(s), splitmix64(uint64(n)))
//
// where splitmix64 is the SplitMix64 finaliser (see mix64). A uniform draw
// in [0,1) is the top 53 bits of PCG.Uint64 divided by 2^53. All arithmetic
// on the draws uses explicit float64 conversions so that no platform fuses
// a multiply and an add (the Go spec allows that otherwise), so the models
// uniform and walk give bit-identical sequences on every platform for a
// seed. The sine model also calls math.Sin, whose last bit may differ on
// a few architectures; after rounding to 2 decimals such a difference can
// only show on an exact rounding tie.
//
// # Values and units
//
// Values are rounded to 2 decimals exactly as Python's round(x, 2) does
// (correctly rounded, ties to even) and always lie within Min..Max. Min and
// Max are given in the sensor's unit: a Fahrenheit sensor with the default
// range (see DefaultRange) reports 68..86 °F, the course's 20..30 °C.
package sensor
