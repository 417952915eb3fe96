# SPDX-License-Identifier: Apache-2.0
"""Independent reference for pkg/sensor's determinism contract.

Re-implements, from their published definitions, SplitMix64, Go's
math/rand/v2 PCG (128-bit LCG + DXSM output) and the uniform and walk
models. Reads cases from stdin, one per line: MODEL SEED SENSOR MIN MAX N,
and prints for each case one line of N values, each as repr(round(x, 2)),
the way the course prints readings.
"""
import sys

M64 = (1 << 64) - 1
M128 = (1 << 128) - 1
MUL = (2549297995355413924 << 64) | 4865540595714422341
INC = (6364136223846793005 << 64) | 1442695040888963407
CHEAP_MUL = 0xDA942042E4DD58B5


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return x ^ (x >> 31)


class PCG:
    def __init__(self, hi, lo):
        self.state = (hi << 64) | lo

    def uint64(self):
        self.state = (self.state * MUL + INC) & M128
        hi, lo = self.state >> 64, self.state & M64
        hi ^= hi >> 32
        hi = (hi * CHEAP_MUL) & M64
        hi ^= hi >> 48
        hi = (hi * (lo | 1)) & M64
        return hi

    def float(self):
        return (self.uint64() >> 11) * 2.0**-53


def ceil2(x):
    r = round(x, 2)
    return round(r + 0.01, 2) if r < x else r


def floor2(x):
    r = round(x, 2)
    return round(r - 0.01, 2) if r > x else r


def reflect(v, lo, hi):
    for _ in range(4):
        if v > hi:
            v = hi - (v - hi)
        elif v < lo:
            v = lo + (lo - v)
        else:
            return v
    return max(lo, min(hi, v))


def sequence(model, seed, sensor, lo, hi, n):
    rng = PCG(splitmix64(seed), splitmix64(sensor))
    span = hi - lo
    walk = None
    out = []
    for _ in range(n):
        if model == "uniform":
            v = lo + span * rng.float()
        elif model == "walk":
            if walk is None:
                walk = lo + span * rng.float()
            else:
                walk = reflect(walk + (span * 0.05) * (2 * rng.float() - 1), lo, hi)
            v = walk
        else:
            sys.exit("unknown model " + model)
        v = min(max(round(v, 2), ceil2(lo)), floor2(hi))
        if v == 0:
            v = 0.0
        out.append(repr(v))
    return out


for line in sys.stdin:
    model, seed, sensor, lo, hi, n = line.split()
    print(" ".join(sequence(model, int(seed), int(sensor), float(lo), float(hi), int(n))))
