// SPDX-License-Identifier: Apache-2.0

package sensor

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"
)

// Model names how a sensor's values evolve.
type Model string

// The supported models.
const (
	// Uniform draws every value independently and uniformly from Min..Max,
	// as the course's random.uniform(20.0, 30.0) does. The default.
	Uniform Model = "uniform"
	// Walk is a bounded random walk: it starts at a uniform value and moves
	// by at most 5% of the range per reading, reflecting off Min and Max.
	Walk Model = "walk"
	// Sine follows a daily cycle, lowest at 03:00 and highest at 15:00 in
	// the reading time's location, spanning 80% of the range, plus uniform
	// noise of up to 20% of the half range.
	Sine Model = "sine"
)

// ParseModel returns the model named by s (uniform, walk or sine, in any
// case). The empty string means Uniform.
func ParseModel(s string) (Model, error) {
	switch m := Model(strings.ToLower(strings.TrimSpace(s))); m {
	case "":
		return Uniform, nil
	case Uniform, Walk, Sine:
		return m, nil
	}
	return "", fmt.Errorf("unknown model %q (want uniform, walk or sine)", s)
}

// walkStep is the largest move of the Walk model, as a fraction of the range.
const walkStep = 0.05

// Config describes the values a sensor produces.
type Config struct {
	Model Model   // how values evolve; "" means Uniform
	Min   float64 // lowest value, in Unit
	Max   float64 // highest value, in Unit
	Unit  Unit    // unit of Min, Max and the values; "" means Celsius
	Seed  uint64  // seed of the fleet; sensor n draws from its own stream
}

// DefaultConfig returns the course's sensor: uniform values in 20..30 °C.
func DefaultConfig(seed uint64) Config {
	return Config{Model: Uniform, Min: 20, Max: 30, Unit: Celsius, Seed: seed}
}

// Errors returned by Config.Validate.
var (
	ErrRange = errors.New("invalid range") // Min/Max not finite, Min above Max, or no 2-decimal value in between
)

// Validate reports whether c describes a sensor that can produce values.
func (c Config) Validate() error {
	if _, err := ParseModel(string(c.Model)); err != nil {
		return err
	}
	if c.Unit != "" {
		if _, err := ParseUnit(string(c.Unit)); err != nil {
			return err
		}
	}
	switch {
	case math.IsNaN(c.Min) || math.IsInf(c.Min, 0):
		return fmt.Errorf("%w: min %v is not a finite number", ErrRange, c.Min)
	case math.IsNaN(c.Max) || math.IsInf(c.Max, 0):
		return fmt.Errorf("%w: max %v is not a finite number", ErrRange, c.Max)
	case c.Min > c.Max:
		return fmt.Errorf("%w: min %s is above max %s", ErrRange, FormatValue(c.Min), FormatValue(c.Max))
	case math.IsInf(c.Max-c.Min, 0):
		return fmt.Errorf("%w: range %s..%s is too wide", ErrRange, FormatValue(c.Min), FormatValue(c.Max))
	case ceil2(c.Min) > floor2(c.Max):
		return fmt.Errorf("%w: no value with 2 decimals lies between min %v and max %v", ErrRange, c.Min, c.Max)
	}
	return nil
}

// Generator produces the values of one sensor. It is not safe for
// concurrent use.
type Generator struct {
	model    Model
	min, max float64 // the configured range
	lo, hi   float64 // the 2-decimal values nearest inside the range
	pcg      *rand.PCG
	walk     float64 // current unrounded position of the Walk model
	started  bool
}

// NewGenerator returns the generator of sensor number n (1-based) of a
// fleet configured by c. Generators with the same c.Seed and n produce the
// same sequence.
func NewGenerator(c Config, n int) (*Generator, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m, _ := ParseModel(string(c.Model))
	return &Generator{
		model: m,
		min:   c.Min,
		max:   c.Max,
		lo:    ceil2(c.Min),
		hi:    floor2(c.Max),
		pcg:   rand.NewPCG(mix64(c.Seed), mix64(uint64(n))),
	}, nil
}

// mix64 is the SplitMix64 finaliser: it spreads small seeds such as 1, 2,
// 3 over all 64 bits before they become PCG state.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// float returns a uniform draw in [0,1): the top 53 bits of the next PCG
// output divided by 2^53.
func (g *Generator) float() float64 {
	return float64(g.pcg.Uint64()>>11) * 0x1p-53
}

// Next returns the reading taken at time t, rounded to 2 decimals and
// within the configured range. Only the Sine model looks at t.
func (g *Generator) Next(t time.Time) float64 {
	span := g.max - g.min
	var v float64
	switch g.model {
	case Walk:
		if !g.started {
			g.walk = g.min + float64(span*g.float())
			g.started = true
		} else {
			step := float64(span*walkStep) * float64(2*g.float()-1)
			g.walk = reflect(g.walk+step, g.min, g.max)
		}
		v = g.walk
	case Sine:
		h, m, s := t.Clock()
		day := float64(h*3600+m*60+s) + float64(t.Nanosecond())/1e9
		// Lowest at 03:00, highest at 15:00: sin peaks a quarter day after 09:00.
		phase := float64(2*math.Pi) * float64((day-9*3600)/86400)
		half := span / 2
		mid := g.min + half
		noise := float64(2*g.float() - 1)
		v = mid + float64(float64(0.8*half)*math.Sin(phase)) + float64(float64(0.2*half)*noise)
	default:
		v = g.min + float64(span*g.float())
	}
	v = Round2(v)
	if v < g.lo {
		v = g.lo
	}
	if v > g.hi {
		v = g.hi
	}
	if v == 0 { // no "-0.0" readings
		v = 0
	}
	return v
}

// reflect folds v back into lo..hi as a ball bouncing off walls.
func reflect(v, lo, hi float64) float64 {
	for range 4 {
		switch {
		case v > hi:
			v = hi - (v - hi)
		case v < lo:
			v = lo + (lo - v)
		default:
			return v
		}
	}
	return math.Max(lo, math.Min(hi, v))
}
