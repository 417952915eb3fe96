// SPDX-License-Identifier: Apache-2.0

package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseBench(t *testing.T) {
	out := `goos: linux
goarch: amd64
pkg: github.com/mqttkit/mqttkit/pkg/passwd
cpu: Intel(R) Xeon(R)
BenchmarkVerify/sha512-pbkdf2-2         	    3522	    301234 ns/op	    1024 B/op	      12 allocs/op
BenchmarkVerify/odd	garbage
PASS
ok  	github.com/mqttkit/mqttkit/pkg/passwd	1.2s
pkg: github.com/mqttkit/mqttkit/pkg/sensor
BenchmarkFleet-2   	      10	 100000000 ns/op	     10000 msgs/s
`
	got := parseBench(out)
	require.Equal(t, []microResult{
		{Pkg: "pkg/passwd", Name: "BenchmarkVerify/sha512-pbkdf2-2", N: "3522", Metrics: []string{"301234 ns/op", "1024 B/op", "12 allocs/op"}},
		{Pkg: "pkg/sensor", Name: "BenchmarkFleet-2", N: "10", Metrics: []string{"100000000 ns/op", "10000 msgs/s"}},
	}, got)
	require.Contains(t, microMarkdown(got), "| pkg/passwd | BenchmarkVerify/sha512-pbkdf2-2 | 3522 | 301234 ns/op, 1024 B/op, 12 allocs/op |")
}

func TestSelectScenarios(t *testing.T) {
	all, err := selectScenarios(nil)
	require.NoError(t, err)
	require.Len(t, all, len(scenarios))
	two, err := selectScenarios([]string{"idle", "oneshot"})
	require.NoError(t, err)
	require.Equal(t, "idle", two[0].name)
	require.Equal(t, "oneshot", two[1].name)
	_, err = selectScenarios([]string{"nope"})
	require.ErrorContains(t, err, `unknown scenario "nope"`)
}

func TestMosquittoConfNeverDrops(t *testing.T) {
	c := mosquittoConf(4242)
	require.Contains(t, c, "listener 4242 127.0.0.1\n")
	require.Contains(t, c, "max_queued_messages 0\n")
}

func TestDocLine(t *testing.T) {
	e := &env{run: "/tmp/mqttkit-bench-1", binDir: "/repo/.bench/bin"}
	require.Equal(t, ".bench/bin/loadgen lines -n 5 > $RUN/lines.txt", e.docLine("/repo/.bench/bin/loadgen lines -n 5 > /tmp/mqttkit-bench-1/lines.txt"))
}

// TestTargetsNameScaledCounts: at BENCH_SCALE != 1 the targets name the
// counts that were run, not the full ones.
func TestTargetsNameScaledCounts(t *testing.T) {
	full := (&env{scale: 1}).targets()
	quick := (&env{scale: 0.05}).targets()
	require.Equal(t, len(full), len(quick))
	var fullText, quickText strings.Builder
	for i := range full {
		fullText.WriteString(full[i].Text + "\n")
		quickText.WriteString(quick[i].Text + "\n")
	}
	for _, c := range []string{"200,000 lines", "50,000 lines", "200,000 messages", "1,000 x 10 msg/s", "10,000 msg/s"} {
		require.Contains(t, fullText.String(), c)
		require.NotContains(t, quickText.String(), c)
	}
	for _, c := range []string{"10,000 lines", "2,500 lines", "10,000 messages", "50 x 10 msg/s", "500 msg/s"} {
		require.Contains(t, quickText.String(), c)
	}
	require.InDelta(t, 475, quick[len(quick)-1].MinOurs, 0.001)
}
