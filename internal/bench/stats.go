// SPDX-License-Identifier: Apache-2.0

// Package bench holds the pieces of the `scripts/bench` harness that can be
// tested on their own: statistics, exact message accounting, payloads, the
// results table and the docs/benchmarks.md writer. The load generator lives
// in internal/bench/loadgen, the raw MQTT client in internal/bench/wire and
// the scenario driver in internal/bench/cmd/benchdriver.
package bench

import (
	"math"
	"slices"
	"time"
)

// Median returns the median of xs (the mean of the two middle values for
// an even count), or NaN for no values.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Percentile returns the p-th percentile (0..100) of sorted by the
// nearest-rank method: the smallest value with at least p% of the values
// at or below it. It returns 0 for no values.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	if p <= 0 {
		return sorted[0]
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	if rank > len(sorted) {
		rank = len(sorted)
	}
	return sorted[rank-1]
}

// Ratio returns ours/ref, or NaN when either is not a positive number.
func Ratio(ours, ref float64) float64 {
	if !(ours > 0) || !(ref > 0) || math.IsInf(ours, 0) || math.IsInf(ref, 0) {
		return math.NaN()
	}
	return ours / ref
}
