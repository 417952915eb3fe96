// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mqttkit/mqttkit/internal/bench"
)

// microResult is one line of `go test -bench` output.
type microResult struct {
	Pkg, Name string
	N         string
	Metrics   []string // "123 ns/op", "16 B/op", ...
}

// microBench runs the packages' own testing.B benchmarks.
func (e *env) microBench() error {
	bt := os.Getenv("BENCH_MICRO_TIME")
	if bt == "" {
		bt = "300ms"
		if e.scale < 1 {
			bt = "30ms"
		}
	}
	args := []string{"go", "test", "-run", "^$", "-bench", ".", "-benchmem", "-benchtime", bt, "-timeout", "5m", "./pkg/..."}
	e.showCommands("micro-benchmarks", bench.ShellQuote(args))
	ctx, cancel := context.WithTimeout(e.ctx, 6*time.Minute)
	defer cancel()
	out, err := e.command(ctx, args...).CombinedOutput()
	e.micro = parseBench(string(out))
	e.microNote = fmt.Sprintf("`%s`", bench.ShellQuote(args))
	if err != nil {
		return fmt.Errorf("go test -bench: %v\n%s", err, tailString(string(out), 20))
	}
	if len(e.micro) == 0 {
		e.microNote += ": no benchmarks found in ./pkg/... yet"
	}
	return nil
}

// parseBench extracts benchmark lines from `go test -bench` output.
func parseBench(out string) []microResult {
	var res []microResult
	pkg := ""
	s := bufio.NewScanner(strings.NewReader(out))
	for s.Scan() {
		l := s.Text()
		if p, ok := strings.CutPrefix(l, "pkg: "); ok {
			pkg = strings.TrimPrefix(strings.TrimSpace(p), "github.com/mqttkit/mqttkit/")
			continue
		}
		if !strings.HasPrefix(l, "Benchmark") {
			continue
		}
		f := strings.Fields(l)
		if len(f) < 4 || (len(f)-2)%2 != 0 {
			continue
		}
		r := microResult{Pkg: pkg, Name: f[0], N: f[1]}
		for i := 2; i+1 < len(f); i += 2 {
			r.Metrics = append(r.Metrics, f[i]+" "+f[i+1])
		}
		res = append(res, r)
	}
	return res
}

func microMarkdown(rs []microResult) string {
	if len(rs) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| package | benchmark | iterations | results |\n| --- | --- | --- | --- |\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", r.Pkg, r.Name, r.N, strings.Join(r.Metrics, ", "))
	}
	return b.String()
}

func microText(rs []microResult) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "%-14s %-50s %12s  %s\n", r.Pkg, r.Name, r.N, strings.Join(r.Metrics, "  "))
	}
	return b.String()
}

func tailString(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
